"""The sidebar every page shares: the image, the model and the device (together a
`sources.Source`), the layer and head kept across choices, how weights are drawn, and
the pickers a one-head panel adds. A page calls these in its script, outside the
fragment a click reruns.
"""
import zlib
from functools import partial
from typing import Optional, Tuple

import numpy as np
import streamlit as st
import torch

from sasa_viz.choices import ModelChoice, conv_twin, keep_choice, layer_label, model_choices
from sasa_viz.drawing import images, overlay
from sasa_viz.inspection.trace import Trace
from sasa_viz.models.pretrained import PretrainedError, resolve_device
from sasa_viz.ui.sources import (WORKING_SIZES, Picture, Source, cached_model, cached_opening_view,
                                 gallery, gallery_images, uploaded_images)

ALL_HEADS = "all heads"        # the head picker's choice of every head, drawn as their mean


def pick_image() -> Tuple[np.ndarray, Picture]:
    """Sidebar: a gallery image or an upload, at the chosen working resolution.

    A bad upload shows a short message and the page keeps the last good image.
    Returns (the working image (H, W, 3) uint8, read-only, and the `Picture` it is one
    size of).
    """
    bar = st.sidebar
    source = bar.radio("Image", ["Gallery", "Upload"], horizontal=True, key="image_source")
    picture = None
    if source == "Gallery":
        label = bar.selectbox("Gallery image", list(gallery()), key="gallery_item",
                              help="Photographs (see SOURCES.md) and held-out CIFAR-10 images.")
        picture = gallery_images(label)
    else:
        upload = bar.file_uploader("Your image (PNG, JPEG, WebP, BMP, GIF)", key="upload")
        if upload is None:
            bar.info("Choose a file; until then the gallery image stays.")
        else:
            try:
                picture = uploaded_images(upload.getvalue(), upload.name)
            except images.ImageError as error:
                bar.error(str(error))
    if picture is None:
        picture = st.session_state.get("last_picture")
    if picture is None:
        picture = gallery_images(next(iter(gallery())))
    st.session_state["last_picture"] = picture
    st.session_state.setdefault("size", 32)
    size = bar.select_slider("Working resolution (longer side, pixels)", WORKING_SIZES,
                             key="size",
                             help="The models were trained on 32x32 images; larger sizes "
                                  "show more detail and take longer. The picture is drawn "
                                  "at its own resolution under the model's grid.")
    return picture.working[size], picture


def pick_drawing() -> "overlay.Drawing":
    """Sidebar: how the weights are drawn on the picture: cells filled at an opacity, or
    outlined, leaving the picture untouched."""
    bar = st.sidebar
    mode = bar.radio("Weights on the picture", overlay.MODES, horizontal=True,
                     key="drawing_mode", format_func={"fill": "filled cells",
                                                      "outline": "outlined cells"}.get)
    st.session_state.setdefault("opacity", overlay.OPACITY)
    opacity = bar.slider("Opacity of the filled cells", 0.1, 1.0, step=0.05, key="opacity",
                         disabled=mode != "fill")
    return overlay.Drawing(mode, opacity)


def pick_model(label: str = "Model") -> ModelChoice:
    choices = model_choices()
    return st.sidebar.selectbox(label, choices, format_func=lambda c: c.label, key="model",
                                help="Each shipped model, and the same architecture "
                                     "untrained for comparison.")


def pick_device() -> str:
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.sidebar.selectbox("Device", options, key="device",
                                  help="auto: CUDA when present, else the CPU.")
    st.sidebar.caption(f"Running on **{resolve_device(device)}**.")
    return device


def model_or_stop(choice: ModelChoice, device: str) -> torch.nn.Module:
    """The cached model, or a friendly message and a stopped page if it cannot load."""
    try:
        return cached_model(choice, device)
    except PretrainedError as error:
        st.error(f"The model {choice.name} cannot be loaded: {error}")
        st.stop()


def twin_model(choice: ModelChoice, device: str):
    """The convolutional twin of `choice`, or None."""
    twin = conv_twin(choice)
    return None if twin is None else cached_model(twin, device)


def pick_traced() -> Tuple[Source, Trace]:
    """Sidebar: image, model and device -> (the Source, its cached Trace)."""
    image, picture = pick_image()
    choice = pick_model()
    device = pick_device()
    model_or_stop(choice, device)
    source = Source.of(choice, device, image, picture)
    return source, source.trace()


def pick_kept(label: str, options: list, key: str, format_func=str, describe=str,
              where: str = ""):
    """A sidebar selectbox whose choice is kept by value, in st.session_state[key], when
    its options or their labels change (`choices.keep_choice`); when the choice is not
    an option, an st.info says what is shown instead (`describe`: any value -> words),
    for as long as that lasts.

    Streamlit keeps a selectbox's labels as long as its key, so the widget's key names
    the labels: new labels (another map size) make a new widget, and stale ones are never
    shown. The widget is set to the kept choice on every run; only the user's own picks
    (on_change) change the choice, so a fallback does not overwrite it.
    """
    chosen, note = keep_choice(st.session_state.get(key), options, describe, where)
    labels = "\n".join(format_func(option) for option in options)
    widget = f"{key}_{zlib.crc32(labels.encode()):08x}"
    st.session_state[widget] = chosen
    st.sidebar.selectbox(label, options, format_func=format_func, key=widget,
                         on_change=partial(_remember, key, widget))
    if note:
        st.sidebar.info(note)
    return chosen


def _remember(key: str, widget: str) -> None:
    """A user's pick in the selectbox `widget` becomes the choice kept in `key`."""
    st.session_state[key] = st.session_state[widget]


def pick_layer(traced: Trace):
    """Sidebar: one attention layer of the trace, kept by name -> (name, LayerTrace)."""
    name = pick_kept("Layer", list(traced.layers), "layer",
                     lambda n: layer_label(n, traced.layers[n]), lambda n: f"layer {n}",
                     "in this model")
    return name, traced.layers[name]


def pick_head(name: str, layer, allow_all: bool = False):
    """Sidebar: a head of the layer `name` (or "all heads"), kept across layers."""
    options = ([ALL_HEADS] if allow_all else []) + list(range(layer.heads))
    return pick_kept("Head", options, "head", head_label, head_label,
                     f"for {name} on this page")


def head_label(head) -> str:
    """ "all heads" or "head 3", as the picker writes a choice."""
    return head if head == ALL_HEADS else f"head {head}"


def drawn_head(head) -> Optional[int]:
    """The head an overlay draws: the head, or None (the mean over heads) for ALL_HEADS."""
    return None if head == ALL_HEADS else head


def whose(head) -> str:
    """ "the mean over heads" or "head 3": whose weights a picture shows."""
    return "the mean over heads" if head == ALL_HEADS else f"head {head}"


def pick_channel(layer, head: int) -> int:
    """An output channel of `head` (its d channels, head * d .. head * d + d - 1): a
    channel is always the shown head's, so a kernel or an equation never shows another
    head than the picture above it. Kept while it belongs to the head; another head
    starts at its first channel."""
    d = layer.q.shape[1]
    first, last = head * d, head * d + d - 1
    kept = st.session_state.get("channel", first)
    st.session_state["channel"] = kept if first <= kept <= last else first
    return int(st.number_input(f"Output channel (head {head}'s are {first}-{last})", first,
                               last, key="channel", help="For the kernels and the equation."))


def pick_panel_head(layer, head) -> int:
    """The head a one-head panel shows: the chosen head, or with "all heads" a picker of
    the panel's own (kept in the session)."""
    if head != ALL_HEADS:
        return head
    kept = st.session_state.get("panel_head", 0)
    st.session_state["panel_head"] = kept if kept < layer.heads else 0
    return st.selectbox("This panel shows one head:", list(range(layer.heads)),
                        format_func=head_label, key="panel_head")


def open_on_telling_view(source: Source) -> None:
    """A new session opens where its image shows attention best (`opening_view`: the
    most selective head on this image, at its most selective pixel); a reader's own
    choices, once made, are kept."""
    if "layer" in st.session_state:
        return
    view = cached_opening_view(source)
    st.session_state.update(layer=view.layer, head=view.head, pixel_row=view.row,
                            pixel_col=view.col, pixel_shape=source.image.shape[:2])
