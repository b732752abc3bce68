"""The clickable picture and the selected pixel, for a page's st.fragment: a click reruns
only these (the pixel inputs, the picture with its weights, and what the page draws
under it), drawn from the cached trace.
"""
import io
from functools import partial
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_image_coordinates import streamlit_image_coordinates

from sasa_viz.choices import keep_pixel
from sasa_viz.drawing import images, overlay
from sasa_viz.inspection.trace import LayerTrace
from sasa_viz.numbers import percent
from sasa_viz.ui.sidebar import drawn_head, whose
from sasa_viz.ui.sources import DRAWINGS, PixelView, Source, cache_drawing

SHOWN_WIDTH = 480      # CSS pixels the clickable picture is shown at: with the title and
                       # its colour bar it fits a projector's 720 pixels


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


@cache_drawing(max_size=DRAWINGS, show_spinner=False)
def attention_picture(view: PixelView, head, drawing: "overlay.Drawing") -> AttentionPicture:
    """The picture with `head`'s weights at the pixel ("all heads": their mean) drawn
    over its window as `drawing` says, and the colour bar of those weights."""
    layer, px = view.traced()
    shown = overlay.attention_overlay(view.source.picture(), layer, px,
                                      drawn_head(head),
                                      drawing=drawing)
    what = "hypothetical " if px.counterfactual is not None else ""
    bar = overlay.colour_bar(shown.vmin, shown.vmax, length=shown.image.width // 2,
                             label=f"{what}weight of {whose(head)}".capitalize())
    return AttentionPicture(jpeg(shown.image), png(bar), shown.outside)


@cache_drawing(max_size=DRAWINGS, show_spinner=False)
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
