"""What every page shares: the sidebar's image, model and device pickers, and the caches
that let one server serve a whole class (models and traces are computed once per
image, size, model and device, and shared read-only between sessions)."""
import zlib
from functools import partial

import numpy as np
import streamlit as st
import torch
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates

from sasa_viz import images, overlay
from sasa_viz.choices import (ModelChoice, conv_twin, keep_choice, layer_label, load_model,
                               model_choices, opening_view, telling_head)
from sasa_viz.pretrained import PretrainedError, resolve_device
from sasa_viz.trace import Trace, trace

WORKING_SIZES = [16, 24, 32, 48, 64, 96, 128]
PANELS = ["Weights", "Logits", "Heads", "Convolution vs attention", "Output equation",
          "Sweep", "Downloads"]           # the explorer's panels, in order
DISPLAY_WIDTH = 384            # pixels the working image is shown at


@st.cache_resource(max_entries=6, show_spinner="Loading the model...")
def cached_model(choice: ModelChoice, device: str) -> torch.nn.Module:
    return load_model(choice, device)


@st.cache_resource(max_entries=32, show_spinner="Running the model on the image...")
def cached_trace(choice: ModelChoice, device: str, image: np.ndarray) -> Trace:
    """The traced forward pass of one working image (H, W, 3) uint8."""
    x = images.to_tensor(Image.fromarray(image)).to(resolve_device(device))
    return trace(cached_model(choice, device), x)


@st.cache_resource(show_spinner=False)
def gallery():
    return images.gallery()


@st.cache_resource(max_entries=64, show_spinner=False)
def gallery_image(label: str) -> Image.Image:
    return gallery()[label]()


@st.cache_data(max_entries=8, show_spinner="Reading the image...")
def decoded_upload(data: bytes, name: str) -> Image.Image:
    return images.load_image(data, name)


def pick_image() -> np.ndarray:
    """Sidebar: a gallery image or an upload, at the chosen working resolution.

    A bad upload shows a short message and the page keeps the last good image.
    Returns the working image (H, W, 3) uint8.
    """
    bar = st.sidebar
    source = bar.radio("Image", ["Gallery", "Upload"], horizontal=True, key="image_source")
    picture = None
    if source == "Gallery":
        label = bar.selectbox("Gallery image", list(gallery()), key="gallery_item",
                              help="Photographs (see SOURCES.md) and held-out CIFAR-10 images.")
        picture = gallery_image(label)
    else:
        upload = bar.file_uploader("Your image (PNG, JPEG, WebP, BMP, GIF)", key="upload")
        if upload is None:
            bar.info("Choose a file; until then the gallery image stays.")
        else:
            try:
                picture = decoded_upload(upload.getvalue(), upload.name)
            except images.ImageError as error:
                bar.error(str(error))
    if picture is None:
        picture = st.session_state.get("last_picture")
    if picture is None:
        picture = gallery_image(next(iter(gallery())))
    st.session_state["last_picture"] = picture
    size = bar.select_slider("Working resolution (longer side, pixels)", WORKING_SIZES,
                             value=32, key="size",
                             help="The models were trained on 32x32 images; larger sizes "
                                  "show more detail and take longer.")
    return np.asarray(images.to_working_size(picture, size))


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


def pick_traced():
    """Sidebar: image, model and device -> (image, choice, device, its cached Trace)."""
    image = pick_image()
    choice = pick_model()
    device = pick_device()
    model_or_stop(choice, device)
    return image, choice, device, cached_trace(choice, device, image)


def pick_pixel(image: np.ndarray, layer, head=None):
    """The clickable image beside the pixel's number inputs -> the selected PixelTrace.
    With a `head` (or "all heads"), its attention is drawn on the image."""
    left, right = st.columns([3, 2])
    with right:
        px = selected_pixel(image, layer)
    with left:
        if head is None:
            clickable_image(image, px)
        else:
            clickable_attention(image, layer, px, head)
    return px


def pick_kept(label: str, options: list, key: str, format_func=str, describe=str,
              where: str = ""):
    """A sidebar selectbox whose choice is kept by value, in st.session_state[key], when
    its options or their labels change (`explorer.keep_choice`); when the choice is not
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
    options = (["all heads"] if allow_all else []) + list(range(layer.heads))
    return pick_kept("Head", options, "head", head_label, head_label,
                     f"for {name} on this page")


def head_label(head) -> str:
    return head if head == "all heads" else f"head {head}"


def pick_channel(layer) -> int:
    """Sidebar: an output channel of the layer, kept (or clipped) across layers."""
    last = layer.output.shape[0] - 1
    st.session_state["channel"] = min(st.session_state.get("channel", 0), last)
    return int(st.sidebar.number_input("Output channel", 0, last, key="channel",
                                       help="For the kernels and the equation."))


def selected_pixel(image: np.ndarray, layer):
    """The number inputs of the selected image pixel, and its PixelTrace at `layer`,
    with a sentence saying how the two relate."""
    row, col = pixel_selection(image)
    i, j = layer.feature_pixel(row, col)
    px = layer.pixel(i, j)
    H, W = layer.size
    st.markdown(
        f"Image pixel **({row}, {col})** is feature pixel **({i}, {j})** of this "
        f"layer's {H}x{W} map (one feature pixel = {layer.stride}x{layer.stride} image "
        f"pixels). Its {layer.kernel_size}x{layer.kernel_size} window (yellow) covers "
        f"image rows {px.window[0]}-{px.window[2] - 1}, columns {px.window[1]}-"
        f"{px.window[3] - 1}; {int(px.valid.sum())} of its {px.valid.numel()} "
        f"neighbours are inside the map.")
    return px


def pixel_selection(image: np.ndarray) -> tuple:
    """The selected image pixel (row, col), kept in the session across panels and layers.

    A click on the image (see `on_click`) and the two number inputs set the same keys.
    """
    H, W = image.shape[:2]
    st.session_state.setdefault("pixel_row", H // 2)
    st.session_state.setdefault("pixel_col", W // 2)
    st.session_state["pixel_row"] = min(st.session_state["pixel_row"], H - 1)
    st.session_state["pixel_col"] = min(st.session_state["pixel_col"], W - 1)
    left, right = st.columns(2)
    row = left.number_input("Image row", 0, H - 1, key="pixel_row")
    col = right.number_input("Image column", 0, W - 1, key="pixel_col")
    return int(row), int(col)


def on_click(shape: tuple) -> None:
    """Turn a click on the displayed image into the selected image pixel."""
    click = st.session_state.get("click")
    if click:
        H, W = shape
        row, col = images.display_to_image(click["x"], click["y"], click["width"],
                                           click["height"], W, H)
        st.session_state["pixel_row"], st.session_state["pixel_col"] = row, col


@st.cache_resource(max_entries=6, show_spinner="Finding the most telling head...")
def cached_telling_head(choice: ModelChoice, device: str):
    """(layer, head) to open on: statistics over the committed held-out sample."""
    return telling_head(cached_model(choice, device))


def open_on_telling_view(choice: ModelChoice, device: str, traced: Trace) -> None:
    """A new session opens on the most selective head of the model (`telling_head`) at
    the pixel of this image where it is most selective; a reader's own choices, once
    made, are kept."""
    if "layer" in st.session_state:
        return
    view = opening_view(traced, *cached_telling_head(choice, device))
    st.session_state.update(layer=view.layer, head=view.head, pixel_row=view.row,
                            pixel_col=view.col)


def clickable_attention(image: np.ndarray, layer, px, head, what: str = "") -> None:
    """The enlarged working image with `head`'s weights at px drawn over its window ("all
    heads": their mean), the pixel (red) and its window (yellow); a click picks a pixel.
    `what`: words naming the weights, e.g. "hypothetical" (default: recorded)."""
    shown = overlay.attention_overlay(image, layer, px, None if head == "all heads" else head)
    streamlit_image_coordinates(shown.image, key="click", cursor="crosshair",
                                on_click=partial(on_click, image.shape[:2]))
    whose = "the mean over heads" if head == "all heads" else f"head {head}"
    st.image(overlay.colour_bar(shown.vmin, shown.vmax, length=shown.image.width // 2,
                                label=f"{what} weight of {whose}".strip().capitalize()),
             output_format="PNG")
    outside = (f" {shown.outside:.0%} of it falls on cells outside the image "
               f"(zero padding)." if shown.outside > 0 else "")
    st.caption(f"Click a pixel (or type its row and column). Red: the pixel; yellow: its "
               f"window at this layer, coloured by {whose}'s attention weights.{outside}")


def clickable_image(image: np.ndarray, px) -> None:
    """The working image, enlarged, with the pixel (red) and its window (yellow)."""
    H, W = image.shape[:2]
    scale = max(1, DISPLAY_WIDTH // max(H, W))
    shown = images.enlarge(Image.fromarray(image), scale)
    shown = images.draw_box(shown, px.window, scale, colour="yellow")
    shown = images.draw_box(shown, px.centre, scale, colour="red")
    streamlit_image_coordinates(shown, key="click", on_click=partial(on_click, (H, W)),
                                cursor="crosshair")
    st.caption("Click a pixel (or type its row and column). Red: the pixel; yellow: its "
               "window at this layer.")
