"""What every page shares: the sidebar's image, model and device pickers, the clickable
picture, and the caches that let one server serve a whole class.

Every session runs its page in its own thread of one process. What is heavy is computed
once and shared, read-only, between sessions: the models, the working images of a
gallery image or an upload, the traced forward pass of a working image (`Source.trace`)
and the drawings of one pixel (`PixelView`). A drawing is keyed by everything it shows,
so two sessions share one only when they show the same thing, and each gets its own copy
(st.cache_data); traces and working images are never written to (the image arrays are
read-only). Every cache is bounded, in entries or in bytes (MODELS ... DRAWINGS below).

A click reruns only the pixel's part of a page (an `st.fragment`: the pixel inputs, the
picture and the panels, drawn from the cached trace), not the sidebar, the model or the
trace.
"""
import gc
import io
import zlib
from functools import partial
from types import MappingProxyType
from typing import Mapping, NamedTuple, Optional, Tuple

import numpy as np
import streamlit as st
import torch
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates

from sasa_viz.choices import (ModelChoice, OpeningView, conv_twin, keep_choice, keep_pixel,
                              layer_label, load_model, model_choices, opening_view)
from sasa_viz.drawing import images, overlay
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import LayerTrace, PixelTrace, Trace, trace
from sasa_viz.models.pretrained import PretrainedError, resolve_device
from sasa_viz.numbers import percent

WORKING_SIZES = [16, 24, 32, 48, 64, 96, 128]
ALL_HEADS = "all heads"        # the head picker's choice of every head, drawn as their mean
BACKDROP = 640         # pixels, the longer side of the picture drawn under the model's grid
SHOWN_WIDTH = 480      # CSS pixels the clickable picture is shown at: with the title and
                       # its colour bar it fits a projector's 720 pixels

# The bounds of the shared caches (README, "A class on one server", says what they come to):
MODELS = 6             # models (3.5 MB each for the CIFAR models)
GALLERY_IMAGES = 128   # gallery items at every working size and as shown (about 1.3 MB each)
UPLOADS = 32           # uploads at every working size and as shown (at most 1.3 MB each)
TRACES = 16            # traced forward passes (sasa-cifar10: 5 MiB at 32 px, 71 MiB at 128 px);
                       # each open session also holds the one it shows
DRAWINGS = "16MB"      # per kind of drawing (pickled PNG or HTML, 5-60 KB each)



class Picture(NamedTuple):
    """What the pages keep of a gallery image or an upload, read-only."""
    working: Mapping[int, np.ndarray]   # working size -> (H, W, 3) uint8: what models see
    backdrop: np.ndarray                # (Hd, Wd, 3) uint8, longer side BACKDROP: the
                                        # picture at (nearly) its own resolution, drawn
                                        # under the model's grid


HELD_TRACE = "_held_trace"     # session state: (Source, Trace), the trace a session shows

# A full garbage collection walks every object of the process, and the 240,000 that torch,
# numpy, matplotlib and Streamlit make on import live as long as the server: they are
# moved out of the collector's way, once, when the pages first import this module.
gc.freeze()


class Source(NamedTuple):
    """What a page traces: a model on a device, and a working image, with the picture it
    was made from (to draw on). The shared caches hash it by content, so sessions looking
    at the same image share one trace."""
    choice: ModelChoice
    device: str
    image: np.ndarray           # (H, W, 3) uint8, read-only: the working image
    backdrop: np.ndarray        # (Hd, Wd, 3) uint8, read-only: `Picture.backdrop`

    def picture(self) -> Image.Image:
        """The backdrop as the overlays take it."""
        return Image.fromarray(self.backdrop)

    def trace(self) -> Trace:
        """The traced forward pass: the one this session holds, or the shared cache's,
        which the session then holds for as long as it shows this Source, so that a
        class of more students than the bounded cache holds (TRACES) never has a trace
        pushed out from under its clicks."""
        held = st.session_state.get(HELD_TRACE)
        if held is not None and held[0].same_as(self):
            return held[1]
        traced = cached_trace(self.choice, self.device, self.image)
        st.session_state[HELD_TRACE] = (self, traced)
        return traced

    def same_as(self, other: "Source") -> bool:
        return (self.choice == other.choice and self.device == other.device
                and all(mine is theirs or np.array_equal(mine, theirs) for mine, theirs
                        in ((self.image, other.image), (self.backdrop, other.backdrop))))

    def model(self) -> torch.nn.Module:
        return cached_model(self.choice, self.device)


class PixelView(NamedTuple):
    """One feature pixel of one layer of a Source, as recorded or without the position
    term (`explain.without_position`): the key of the shared drawings of a pixel."""
    source: Source
    layer: str
    row: int                    # feature pixel
    col: int
    without_position: bool = False

    def traced(self) -> Tuple[LayerTrace, PixelTrace]:
        """The layer's trace, and the pixel's (recorded, or its hypothetical)."""
        layer = self.source.trace().layers[self.layer]
        px = layer.pixel(self.row, self.col)
        return layer, explain.without_position(px) if self.without_position else px

    def pixel(self) -> PixelTrace:
        return self.traced()[1]

    def recorded(self) -> "PixelView":
        """The same pixel, as the model computed it."""
        return self._replace(without_position=False)


# --- shared caches ------------------------------------------------------------------------

@st.cache_resource(max_entries=MODELS, show_spinner="Loading the model...")
def cached_model(choice: ModelChoice, device: str) -> torch.nn.Module:
    return load_model(choice, device)


@st.cache_resource(max_entries=TRACES, show_spinner="Running the model on the image...")
def cached_trace(choice: ModelChoice, device: str, image: np.ndarray) -> Trace:
    """The traced forward pass of one working image (H, W, 3) uint8."""
    x = images.to_tensor(Image.fromarray(image)).to(resolve_device(device))
    return trace(cached_model(choice, device), x)


@st.cache_resource(show_spinner=False)
def gallery():
    return images.gallery()


def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def picture_views(picture: Image.Image) -> Picture:
    """The picture at every working size and as shown (`Picture`), read-only: what a page
    needs of a picture, at most 1.3 MB whatever the size of the upload."""
    working = {size: read_only(np.array(images.to_working_size(picture, size)))
               for size in WORKING_SIZES}
    return Picture(MappingProxyType(working),
                   read_only(np.array(images.to_display(picture, BACKDROP))))


@st.cache_resource(max_entries=GALLERY_IMAGES, show_spinner=False)
def gallery_images(label: str) -> Picture:
    return picture_views(gallery()[label]())


@st.cache_resource(max_entries=UPLOADS, show_spinner="Reading the image...")
def uploaded_images(data: bytes, name: str) -> Picture:
    return picture_views(images.load_image(data, name))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_opening_view(source: Source) -> OpeningView:
    return opening_view(source.trace())


# --- the sidebar ----------------------------------------------------------------------------

def pick_image() -> Tuple[np.ndarray, np.ndarray]:
    """Sidebar: a gallery image or an upload, at the chosen working resolution.

    A bad upload shows a short message and the page keeps the last good image.
    Returns (the working image (H, W, 3), the picture as shown (`Picture.backdrop`)),
    uint8, read-only.
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
    size = bar.select_slider("Working resolution (longer side, pixels)", WORKING_SIZES,
                             value=32, key="size",
                             help="The models were trained on 32x32 images; larger sizes "
                                  "show more detail and take longer. The picture is drawn "
                                  "at its own resolution under the model's grid.")
    return picture.working[size], picture.backdrop


def pick_drawing() -> "overlay.Drawing":
    """Sidebar: how the weights are drawn on the picture: cells filled at an opacity, or
    outlined, leaving the picture untouched."""
    bar = st.sidebar
    mode = bar.radio("Weights on the picture", overlay.MODES, horizontal=True,
                     key="drawing_mode", format_func={"fill": "filled cells",
                                                      "outline": "outlined cells"}.get)
    opacity = bar.slider("Opacity of the filled cells", 0.1, 1.0, overlay.OPACITY, 0.05,
                         key="opacity", disabled=mode != "fill")
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
    image, backdrop = pick_image()
    choice = pick_model()
    device = pick_device()
    model_or_stop(choice, device)
    source = Source(choice, device, image, backdrop)
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


# --- the pixel: call these inside a page's st.fragment ---------------------------------------

def pick_pixel(source: Source, layer: LayerTrace, head=None) -> PixelView:
    """The clickable image beside the pixel's number inputs -> the selected pixel.
    With a `head` (or "all heads"), its attention is drawn on the image, filled."""
    left, right = st.columns([3, 2])
    with right:
        view = selected_pixel(source, layer)
    with left:
        if head is None:
            clickable_image(view)
        else:
            clickable_attention(view, head, overlay.Drawing())
    return view


def selected_pixel(source: Source, layer: LayerTrace, without_position: bool = False
                   ) -> PixelView:
    """The number inputs of the selected image pixel, a sentence saying which feature
    pixel of `layer` it is, and that pixel (`without_position`: its hypothetical)."""
    row, col = pixel_selection(source.image)
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
    return PixelView(source, layer.name, i, j, without_position)


def pixel_selection(image: np.ndarray) -> tuple:
    """The selected image pixel (row, col), kept in the session across panels and layers,
    and at the same place in the picture across working resolutions (`keep_pixel`; the
    pinned pixel too).

    A click on the image (see `on_click`) and the two number inputs set the same keys.
    """
    H, W = shape = image.shape[:2]
    state = st.session_state
    state.setdefault("pixel_row", H // 2)
    state.setdefault("pixel_col", W // 2)
    before = tuple(state.get("pixel_shape", shape))
    if before != shape:
        state["pixel_row"], state["pixel_col"] = keep_pixel(state["pixel_row"],
                                                            state["pixel_col"], before, shape)
        if state.get("pinned") is not None:
            state["pinned"] = keep_pixel(*state["pinned"], before, shape)
    state["pixel_shape"] = shape
    state["pixel_row"] = min(state["pixel_row"], H - 1)
    state["pixel_col"] = min(state["pixel_col"], W - 1)
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


def png(picture: Image.Image) -> bytes:
    """A picture as PNG bytes, quickly (zlib level 1): for drawings with text and flat
    colours."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def jpeg(picture: Image.Image) -> bytes:
    """A photograph with the weights drawn in as JPEG bytes: a tenth of its PNG."""
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class AttentionPicture(NamedTuple):
    """The clickable picture with a head's weights drawn in, drawn once for everyone."""
    picture: bytes               # JPEG
    colour_bar: bytes            # PNG
    outside: float               # the weight on cells outside the image (zero padding)


@st.cache_data(max_size=DRAWINGS, show_spinner=False)
def attention_picture(view: PixelView, head, drawing: "overlay.Drawing") -> AttentionPicture:
    """The picture with `head`'s weights at the pixel ("all heads": their mean) drawn
    over its window as `drawing` says, and the colour bar of those weights."""
    layer, px = view.traced()
    shown = overlay.attention_overlay(view.source.picture(), layer, px,
                                      drawn_head(head),
                                      mode=drawing.mode, opacity=drawing.opacity)
    what = "hypothetical " if px.counterfactual is not None else ""
    bar = overlay.colour_bar(shown.vmin, shown.vmax, length=shown.image.width // 2,
                             label=f"{what}weight of {whose(head)}".capitalize())
    return AttentionPicture(jpeg(shown.image), png(bar), shown.outside)


@st.cache_data(max_size=DRAWINGS, show_spinner=False)
def boxed_picture(view: PixelView) -> bytes:
    """The picture with the pixel (red) and its window (yellow), JPEG."""
    px, shape = view.pixel(), view.source.image.shape[:2]
    shown = images.draw_box(view.source.picture(), px.window, shape, colour="yellow")
    return jpeg(images.draw_box(shown, px.centre, shape, colour="red"))


class EncodedPicture:
    """JPEG bytes as streamlit_image_coordinates takes a picture (it calls
    picture.save(buffer, format="JPEG", ...)), so that a cached picture goes out as it is
    instead of being decoded and encoded again on every click."""

    def __init__(self, data: bytes):
        self.data = data

    def save(self, buffer, **_options) -> None:
        buffer.write(self.data)


def clickable(view: PixelView, data: bytes) -> None:
    """The picture `data` (JPEG), SHOWN_WIDTH wide and clickable: a click selects the
    working-image pixel under it."""
    streamlit_image_coordinates(EncodedPicture(data), key="click", cursor="crosshair",
                                width=SHOWN_WIDTH, image_format="JPEG",
                                on_click=partial(on_click, view.source.image.shape[:2]))


def clickable_attention(view: PixelView, head, drawing: "overlay.Drawing") -> None:
    """The picture with `head`'s weights at the pixel drawn over its window ("all
    heads": their mean), the pixel (red) and its window (yellow); a click picks a
    pixel."""
    drawn = attention_picture(view, head, drawing)
    clickable(view, drawn.picture)
    st.image(drawn.colour_bar, output_format="PNG")
    outside = (f" {percent(drawn.outside)} of it falls on cells outside the image (zero "
               f"padding), not drawn." if drawn.outside > 0 else "")
    st.caption(f"Click a pixel (or type its row and column). Red: the pixel; yellow: its "
               f"window at this layer, coloured by {whose(head)}'s attention weights (0 to the "
               f"largest).{outside}")


def clickable_image(view: PixelView) -> None:
    """The picture with the pixel (red) and its window (yellow)."""
    clickable(view, boxed_picture(view.recorded()))
    st.caption("Click a pixel (or type its row and column). Red: the pixel; yellow: its "
               "window at this layer.")
