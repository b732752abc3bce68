"""A map of the network in one row, for a page's top: the image, the stem, each stage's
blocks, the pool and the classifier as boxes with their map sizes and windows
(`inspection.network`), the chosen layer highlighted. A click on an attention layer's box
chooses it: it becomes st.session_state["layer"], the choice the sidebar's layer picker
keeps (`sidebar.pick_layer`), so the picker follows on the rerun the click starts.

    source, traced = sidebar.pick_traced()
    name, layer = sidebar.pick_layer(traced)
    network_map.show_network_map(traced, source.model(), name)

Under its stage's title, a block's box says its number, map and window ("1", "16×16",
"7×7"), or only its number when more boxes than fit a 1280-pixel projector's row are
drawn (ROOMY); its tooltip names it in full, for people and in the code. Boxes that
choose nothing (the image, a conv stem, the pool, the classifier, every box of a
convolutional model) are drawn disabled.
"""
from itertools import groupby
from typing import List, Optional, Sequence

import streamlit as st
import torch.nn as nn

from sasa_viz.inspection.network import Part, network_map, size_text, stage_and_block
from sasa_viz.inspection.trace import Trace
from sasa_viz.models.catalogue import ResNet

ROOMY = 12          # boxes that each fit their map size and window on a 1280-pixel row
NARROW_WIDTH = 2    # when not roomy: how many blocks' boxes wide any other box is
TITLES = {"input": "image", "stem": "stem", "pool": "pool", "classifier": "classifier"}


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs={ResNet: repr})
def cached_network_map(model: nn.Module, image_size: Sequence[int]) -> List[Part]:
    """`network_map`, kept per architecture (the model's repr) and image size: it runs a
    copy of the model, tens of milliseconds a rerun otherwise."""
    return network_map(model, tuple(image_size))


def show_network_map(traced: Trace, model: nn.Module, chosen_layer: Optional[str]) -> None:
    """The network's parts in one row of columns, one per stage and one per other part,
    as wide as their boxes; attention layers of `traced` are buttons that choose them,
    `chosen_layer`'s highlighted (None for a model without attention layers)."""
    parts = cached_network_map(model, traced.input_shape[-2:])
    roomy = len(parts) <= ROOMY
    groups = [(title, list(members)) for title, members in groupby(parts, _title)]
    widths = [len(members) if members[0].kind == "block" or roomy else NARROW_WIDTH
              for _, members in groups]
    for column, (title, members) in zip(st.columns(widths, gap="small"), groups):
        column.caption(title)
        for box, part in zip(column.columns(len(members), gap="small"), members):
            with box:
                _box(part, traced, chosen_layer, roomy)


def _title(part: Part) -> str:
    """The title of the column a part is drawn in: "stage 2" for a block."""
    if part.kind != "block":
        return TITLES[part.kind]
    return f"stage {stage_and_block(part.name)[0]}"


def _box(part: Part, traced: Trace, chosen_layer: Optional[str], roomy: bool) -> None:
    """One part as a button: one that chooses its layer when the trace has it, disabled
    otherwise; primary when its layer is the chosen one."""
    choosable = part.layer is not None and part.layer in traced.layers
    st.button(_box_text(part, roomy), key=f"network_map_{part.name}", help=part.label,
              on_click=_choose, args=(part.layer,), disabled=not choosable,
              type="primary" if choosable and part.layer == chosen_layer else "secondary",
              width="stretch", wrap=True)


def _box_text(part: Part, roomy: bool) -> str:
    """What a box says, in lines of a few characters: a block its number, map and window
    ("**1**", "16×16", "7×7"), or only its number when not roomy; the stem its map and
    window; the image its size, the pool its map, the classifier its classes."""
    block = stage_and_block(part.name)
    if part.kind == "input":
        lines = [size_text(part.size), "RGB"]
    elif part.kind == "pool":
        lines = [size_text(part.size), f"→{size_text(part.out_size)}"]
    elif part.kind == "classifier":
        lines = [str(part.channels), "classes"]
    elif block and not roomy:
        lines = [f"**{block[1]}**"]
    else:                                   # a block or the stem: its map and window
        lines = [size_text(part.size), size_text((part.window, part.window))]
        if block:
            lines.insert(0, f"**{block[1]}**")
    return "  \n".join(lines)


def _choose(layer: str) -> None:
    """A click on a layer's box: it becomes the chosen layer, kept by name."""
    st.session_state["layer"] = layer
