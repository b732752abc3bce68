"""What the pages draw and compute, cached for the whole server.

Each is computed once for everything it shows (a `Source`, a `PixelView`, a head...) and
handed to every session that shows the same (st.cache_data: each gets its own copy). They
live here, not in the page script: Streamlit runs a page script afresh on every run, and
a cached function defined there would be made again each time (reading and tokenising
its source for the cache's key: a tenth of an image switch's server time).
"""
from typing import List, Tuple

import streamlit as st
import torch
from PIL import Image

from sasa_viz import cost, experiments, explain, export, grids, html, images, overlay
from sasa_viz.choices import class_names
from sasa_viz.models import create
from sasa_viz.numbers import sentence_format
from sasa_viz.statistics import describe_layer, layer_statistics
from sasa_viz.ui import common
from sasa_viz.ui.common import PixelView, Source

SWEEP_SIDE = 256    # pixels, the longer side of a sweep's frames


@st.cache_data(max_entries=64, show_spinner=False)
def layer_sentence(source: Source, name: str) -> str:
    """What layer `name` does on this image (`statistics.describe_layer`): in the layer
    the explorer opens on, the head it names as the most selective is the one opened on."""
    return describe_layer(layer_statistics(source.trace().layers[name]))


@st.cache_data(max_entries=64, show_spinner=False)
def top5_html(source: Source) -> str:
    classes = class_names(source.model())
    return html.predictions_table(explain.top_k(source.trace().logits[0], classes))


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def weights_drawings(view: PixelView, heads: Tuple[int, ...]) -> Tuple[bytes, str]:
    """Every head's weights on the picture and their mean (PNG), and the grids of the
    chosen heads' weights (HTML)."""
    layer, px = view.traced()
    strip = overlay.head_strip(view.source.image, layer, px)
    return common.png(strip), html.weights_panel(px, list(heads))


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def logits_html(view: PixelView, head: int) -> str:
    return html.logits_panel(view.pixel(), head)


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def kernels_html(view: PixelView, channel: int) -> Tuple[str, bool]:
    """Attention's effective kernel at the pixel beside the conv twin's (HTML), and
    whether there is a twin."""
    layer, px = view.traced()
    conv = twin_kernel(view.source, view.layer, channel)
    effective = explain.effective_kernel(layer, px, channel)
    drawn = html.kernels_panel(effective.numpy(), None if conv is None else conv.numpy(),
                               px.cell, grids.hypothetical(px), px.valid.numpy())
    return drawn, conv is not None


@st.cache_data(max_size=common.DRAWINGS, show_spinner="Drawing the head maps...")
def head_maps_png(source: Source, name: str) -> bytes:
    from sasa_viz import figures          # matplotlib's figures: only when drawn (0.5 s)
    layer = source.trace().layers[name]
    return export.figure_png(figures.head_maps_figure(layer, source.image), dpi=110)


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def comparison(pinned: PixelView, selected: PixelView, head
               ) -> Tuple[List[Tuple[bytes, str]], bytes]:
    """([(PNG, caption) of the pinned and the selected pixel], the colour bar's PNG)."""
    whose = None if head == "all heads" else head
    layer, first = pinned.traced()
    image = pinned.source.image
    pixels = (first, selected.pixel())
    scale = overlay.default_scale(layer, 256)
    vmax = max(overlay.attention_overlay(image, layer, p, whose, scale).vmax for p in pixels)
    pictures = []
    for p, title in zip(pixels, ("Pinned", "Selected")):
        shown = overlay.attention_overlay(image, layer, p, whose, scale, vmax=vmax)
        entropy = explain.entropy_of(p.weights, p.valid, layer.padding)        # (heads,)
        entropy = entropy.mean() if whose is None else entropy[whose]
        pictures.append((common.png(shown.image),
                         f"{title}: feature pixel ({p.row}, {p.col}); largest weight "
                         f"{shown.weights.max():.3f}, entropy {float(entropy):.2f} nats"))
    bar = overlay.colour_bar(0.0, vmax, length=200, label="Weight, one scale")
    return pictures, common.png(bar)


@st.cache_data(max_entries=16, show_spinner="Drawing the sweep...")
def sweep_gif(source: Source, name: str, head, along: str, index: int) -> bytes:
    layer = source.trace().layers[name]
    whose = None if head == "all heads" else head
    scale = overlay.default_scale(layer, SWEEP_SIDE)
    return overlay.sweep_gif(overlay.sweep_frames(source.image, layer, whose, along, index,
                                                  scale))


def twin_kernel(source: Source, name: str, channel: int):
    """The conv twin's (C_in, 3, 3) kernel for `channel` at layer `name`, or None."""
    conv = explain.twin_conv(common.twin_model(source.choice, source.device), name)
    return None if conv is None else explain.conv_kernel(conv, channel)


# --- the Position page ---------------------------------------------------------------

@st.cache_data(max_entries=16, show_spinner="Running the model on both images...")
def shift_result(source: Source, layer: str, dy: int, dx: int, absolute: bool):
    model = absolute_twin(source.choice.name) if absolute else source.model()
    x = images.to_tensor(Image.fromarray(source.image))
    return experiments.shift_equivariance(model, x, layer, dy, dx)


@st.cache_resource(max_entries=2)
def absolute_twin(name: str):
    """The same architecture with absolute position embeddings, untrained, on the CPU."""
    torch.manual_seed(0)
    return create(name, position="absolute").eval()


@st.cache_data(max_size=common.DRAWINGS, show_spinner="Drawing the maps...")
def shift_maps_png(source: Source, layer: str, dy: int, dx: int) -> bytes:
    """The weight on itself at every feature pixel, original and shifted, and how much
    the maps differ (the model's, and an absolute-position twin's beside it), PNG."""
    from sasa_viz import figures          # matplotlib's figures: only when drawn (0.5 s)
    result = shift_result(source, layer, dy, dx, False)
    maps = [(result.original, "weight on itself, original", "viridis"),
            (result.shifted, "weight on itself, shifted image", "viridis"),
            (result.difference, difference_title(result.difference, source.choice.name),
             "magma")]
    if source.trace().layers[layer].position == "relative":
        absolute = shift_result(source, layer, dy, dx, True)
        maps.append((absolute.difference,
                     difference_title(absolute.difference, "absolute position (untrained)"),
                     "magma"))
    return export.figure_png(figures.maps_figure(maps))


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def border_pixels(view: PixelView) -> dict:
    """{"mask": px, "zeros": px}: the pixel with the layer run both ways at the border."""
    layer, _ = view.traced()
    return experiments.border_comparison(view.source.model(), layer, view.row, view.col)


def difference_title(difference, label: str) -> str:
    """e.g. "|difference|, sasa-cifar10" over "median 0, max 0.17"."""
    median, top = (sentence_format([v], significant=2).text(v)
                   for v in (float(difference.median()), float(difference.max())))
    return f"|difference|, {label}\nmedian {median}, max {top}"


# --- the Cost page -------------------------------------------------------------------

@st.cache_data(show_spinner="Counting the parameters and FLOPS of nine ImageNet ResNets...")
def live_table1():
    return cost.table1()
