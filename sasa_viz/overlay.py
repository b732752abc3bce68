"""Attention drawn on the picture: a pixel's k x k softmax weights as a heat map over the
image area each window cell covers, instead of a grid of numbers to map on in one's head.

    layer = trace(model, x).layers["stages.0.0.spatial"]
    px = layer.pixel(8, 8)
    shown = attention_overlay(image, layer, px, head=3)    # an Overlay
    shown.image                      # PIL RGB: the enlarged picture with the heat drawn in
    head_strip(image, layer, px)     # every head and their mean, one shared colour bar
    gif = sweep_gif(sweep_frames(image, layer, head=3, along="row", index=8))

`image` is the working image the model saw: an (H, W, 3) uint8 array or a PIL image of
layer.image_size. Window cell [a, b] of pixel px is the feature pixel (top + a, left + b),
(top, left) = px.origin (the block corner for the block stem); in the picture it covers
rows (top + a) * stride .. (top + a + 1) * stride - 1 and the same columns, clipped to
the image. Each cell is blended (ALPHA) with the colour of its weight on a 0..vmax scale,
the rest of the picture is darkened (DIM) so the window stands out, and the pixel (red)
and its window (yellow) are outlined as in the explorer.

Cells outside the feature map cover no part of the picture, so they are not drawn: with
padding="mask" their weight is 0; with padding="zeros" they take part in the softmax and
their total weight is reported as Overlay.outside instead.

An overlay has the clickable picture's geometry (the same default scale,
`max(1, 384 // max(H, W))`, and size W*scale x H*scale), so a click on it maps to a
working-image pixel with `images.display_to_image`, as a click on the plain picture does.
"""
import io
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import images
from .grids import WEIGHTS_CMAP, colormap
from .numbers import number_format, percent, significant
from .trace import LayerTrace, PixelTrace

DISPLAY = 384       # longer side of the enlarged picture, as the explorer shows it
STRIP_PANEL = 128   # longer side of one panel in a head strip
ALPHA = 0.65        # share of a window cell's colour that is the weight's colour
DIM = 0.35          # brightness kept by the picture outside the window
GAP = 8             # pixels between the panels of a strip
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)

ImageLike = Union[np.ndarray, Image.Image]


@dataclass
class Overlay:
    image: Image.Image      # RGB, W*scale x H*scale: the picture with the heat drawn in
    weights: np.ndarray     # (K, K) the weights drawn: one head's, or the mean over heads
    vmin: float             # colour range used: vmin -> cmap(0), vmax and above -> cmap(1)
    vmax: float
    outside: float          # total weight on cells outside the picture (0 with "mask")
    scale: int              # display pixels per working-image pixel
    head: Optional[int]     # None: the mean over heads


def default_scale(layer: LayerTrace, longest: int = DISPLAY) -> int:
    """The explorer's enlargement: the longer side shown at about `longest` pixels."""
    return max(1, longest // max(layer.image_size))


def attention_overlay(image: ImageLike, layer: LayerTrace, px: PixelTrace,
                      head: Optional[int] = None, scale: Optional[int] = None,
                      cmap: str = WEIGHTS_CMAP, vmax: Optional[float] = None) -> Overlay:
    """The enlarged picture with one head's weights at pixel px (head=None: the mean
    over heads) drawn over its window cells.

    The colour scale runs from 0 to the largest weight drawn (on a cell inside the
    picture), unless `vmax` is given: pass the same vmax to several overlays to compare
    them on one scale. scale: display pixels per image pixel, default the explorer's."""
    return _overlay(_pixels(image, layer), layer, px, _head_weights(layer, px, head), head,
                    scale, cmap, vmax)


def _overlay(pixels: np.ndarray, layer: LayerTrace, px: PixelTrace, weights: np.ndarray,
             head: Optional[int], scale: Optional[int], cmap: str,
             vmax: Optional[float]) -> Overlay:
    """`attention_overlay` of the picture's pixels (H, W, 3) float and the (K, K) weights
    drawn (head's, or the mean over heads: head None)."""
    inside = px.valid.numpy()                                       # (K, K) bool
    vmax = _vmax(weights, inside) if vmax is None else float(vmax)
    scale = default_scale(layer) if scale is None else int(scale)
    colours = _colours(weights, vmax, cmap)                         # (K, K, 3) 0..255

    shown = pixels * DIM                                            # the dimmed picture
    _tint_cells(shown, pixels, colours, inside, px.origin, layer.stride)
    picture = images.enlarge(Image.fromarray(np.round(shown).astype(np.uint8)), scale)
    line = 2 if scale * layer.stride >= 6 else 1                    # thin on small panels
    picture = images.draw_box(picture, px.window, scale, colour="yellow", width=line)
    picture = images.draw_box(picture, px.centre, scale, colour="red", width=line)
    return Overlay(image=picture, weights=weights, vmin=0.0, vmax=vmax,
                   outside=float(weights[~inside].sum()), scale=scale, head=head)


def head_strip(image: ImageLike, layer: LayerTrace, px: PixelTrace,
               scale: Optional[int] = None, cmap: str = WEIGHTS_CMAP) -> Image.Image:
    """Every head's overlay side by side, then the mean over heads, each labelled, all on
    one colour scale (0 to the largest weight of any head), with its colour bar below.

    Panels are W*scale wide and GAP apart: the strip is (heads + 1) panels wide.
    scale: default so the longer side of a panel is about STRIP_PANEL pixels."""
    scale = default_scale(layer, STRIP_PANEL) if scale is None else int(scale)
    inside = px.valid.numpy()
    pixels = _pixels(image, layer)                                  # (Hi, Wi, 3) float
    weights = px.weights.double().numpy()                           # (heads, K, K)
    heads: List[Optional[int]] = list(range(layer.heads)) + [None]
    drawn = [*weights, weights.mean(0)]                             # each head's, the mean
    vmax = max(_vmax(w, inside) for w in drawn)
    panels = [_overlay(pixels, layer, px, w, h, scale, cmap, vmax)
              for h, w in zip(heads, drawn)]

    size = 14                                                      # label font, pixels
    lines = 2 if any(p.outside > 0 for p in panels) else 1         # room for "... outside"
    label_height = lines * (size + 4) + 2
    width, height = panels[0].image.size
    bar = colour_bar(0.0, vmax, cmap, length=min(320, len(panels) * (width + GAP) - GAP),
                     label="attention weight, every panel")
    strip = Image.new("RGB", (len(panels) * (width + GAP) - GAP,
                              label_height + height + GAP + bar.height), BACKGROUND)
    for k, panel in enumerate(panels):
        x = k * (width + GAP)
        name = "mean" if panel.head is None else f"head {panel.head}"
        strip.paste(_text_tile(name, width, size), (x, 2))
        if panel.outside > 0:
            strip.paste(_text_tile(f"{percent(panel.outside)} outside", width, 12),
                        (x, size + 6))
        strip.paste(panel.image, (x, label_height))
    strip.paste(bar, (0, label_height + height + GAP))
    return strip


def colour_bar(vmin: float, vmax: float, cmap: str = WEIGHTS_CMAP, length: int = 256,
               thickness: int = 14, label: str = "attention weight") -> Image.Image:
    """A horizontal colour bar, `length` pixels wide: the label above, the bar (vmin at
    the left, vmax at the right), and the two ends' values below (see range_labels)."""
    font = _font(BAR_FONT)
    bar = _bare_colour_bar(cmap, length, thickness, label).copy()
    low, high = range_labels(vmin, vmax)
    draw = ImageDraw.Draw(bar)
    below = BAR_FONT + 4 + thickness + 2
    draw.text((0, below), low, fill=TEXT, font=font)
    draw.text((length - draw.textlength(high, font=font), below), high, fill=TEXT, font=font)
    return bar


BAR_FONT = 13       # pixels, a colour bar's text


@lru_cache(maxsize=64)
def _bare_colour_bar(cmap: str, length: int, thickness: int, label: str) -> Image.Image:
    """A colour bar with its label and no values: drawn once, then copied (drawing text
    took a tenth of a click's server time)."""
    line = BAR_FONT + 4
    bar = Image.new("RGB", (length, line + thickness + 2 + line), BACKGROUND)
    ramp = colormap(cmap)(np.linspace(0, 1, length), bytes=True)[:, :3]   # (length, 3)
    bar.paste(Image.fromarray(np.repeat(ramp[None], thickness, axis=0)), (0, line))
    ImageDraw.Draw(bar).text((0, 0), label, fill=TEXT, font=_font(BAR_FONT))
    return bar


def range_labels(vmin: float, vmax: float) -> Tuple[str, str]:
    """The two ends of a colour scale as text, in the `numbers.number_format` of the two
    (their difference shows: 0.0204 and 0.0208, not 0.02 and 0.02), in plain decimals:
    the picture's font has no superscripts for a power of ten."""
    fmt = number_format([vmin, vmax], max_decimals=10)
    return fmt(vmin), fmt(vmax)


def sweep_frames(image: ImageLike, layer: LayerTrace, head: Optional[int] = None,
                 along: str = "row", index: int = 0, scale: Optional[int] = None,
                 cmap: str = WEIGHTS_CMAP, vmax: Optional[float] = None) -> List[Image.Image]:
    """The window and its weights moving along feature-map row `index` (along="row": one
    frame per column) or column `index` (along="col": one frame per row). Each frame is
    an overlay with a caption below it: the feature pixel and its largest weight. All frames
    share one colour scale (0 to the largest weight in the sweep) unless vmax is given."""
    H, W = layer.size
    if along not in ("row", "col"):
        raise ValueError(f'along must be "row" or "col", got {along!r}.')
    count, steps = (H, W) if along == "row" else (W, H)
    if not 0 <= index < count:
        raise ValueError(f"{along} {index} is outside this layer's {H}x{W} map; "
                         f"{along}s run 0..{count - 1}.")
    pixels = [layer.pixel(index, j) if along == "row" else layer.pixel(j, index)
              for j in range(steps)]
    if vmax is None:
        vmax = max(_vmax(_head_weights(layer, px, head), px.valid.numpy())
                   for px in pixels)
    size = 13
    font = _font(size)
    frames = []
    for px in pixels:
        shown = attention_overlay(image, layer, px, head, scale, cmap, vmax)
        frame = Image.new("RGB", (shown.image.width, shown.image.height + size + 8),
                          BACKGROUND)
        frame.paste(shown.image, (0, 0))
        who = "mean of heads" if head is None else f"head {head}"
        caption = (f"feature pixel ({px.row}, {px.col})  {who}  "
                   f"largest {significant(shown.weights.max())}")
        ImageDraw.Draw(frame).text((4, shown.image.height + 4), caption, fill=TEXT,
                                   font=font)
        frames.append(frame)
    return frames


def sweep_gif(frames: Sequence[Image.Image], ms_per_frame: int = 250) -> bytes:
    """An animated GIF of `frames`, `ms_per_frame` milliseconds each, looping forever.
    (Pillow merges identical consecutive frames; a sweep's frames all differ.)"""
    if not frames:
        raise ValueError("a GIF needs at least one frame.")
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=list(frames[1:]),
                   duration=ms_per_frame, loop=0)
    return buffer.getvalue()


# --- helpers ----------------------------------------------------------------------------

def _pixels(image: ImageLike, layer: LayerTrace) -> np.ndarray:
    """The working image as an (H, W, 3) float array, checked against the layer's."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.shape != (*layer.image_size, 3):
        raise ValueError(f"the image is {pixels.shape}, but this trace was made from a "
                         f"{layer.image_size[0]}x{layer.image_size[1]} RGB image; pass "
                         f"the working image that was traced.")
    return pixels.astype(np.float64)


def _head_weights(layer: LayerTrace, px: PixelTrace, head: Optional[int]) -> np.ndarray:
    """(K, K): head `head`'s weights at px, or the mean over heads (head=None)."""
    weights = px.weights.double().numpy()                          # (heads, K, K)
    if head is None:
        return weights.mean(0)
    if not 0 <= head < layer.heads:
        raise ValueError(f"head {head} does not exist: this layer has heads "
                         f"0..{layer.heads - 1}.")
    return weights[head]


def _tint_cells(shown: np.ndarray, pixels: np.ndarray, colours: np.ndarray,
                inside: np.ndarray, origin: Tuple[int, int], stride: int) -> None:
    """Blend the image pixels of every window cell inside the map with its colour, in
    `shown` (H, W, 3). Cell [a, b] is feature pixel origin + (a, b): image pixels
    (top + a) * stride .. + stride - 1, and the same columns, clipped to the image.

    pixels: (H, W, 3) the picture; colours: (K, K, 3); inside: (K, K) bool."""
    cells = np.repeat(np.repeat(inside, stride, 0), stride, 1)            # (K s, K s)
    tint = np.repeat(np.repeat(colours, stride, 0), stride, 1)           # (K s, K s, 3)
    top, left = origin[0] * stride, origin[1] * stride      # the window's first image pixel
    rows = slice(max(top, 0), min(top + cells.shape[0], shown.shape[0]))
    cols = slice(max(left, 0), min(left + cells.shape[1], shown.shape[1]))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    window = (slice(rows.start - top, rows.stop - top),           # the same, in cells
              slice(cols.start - left, cols.stop - left))
    blended = (1 - ALPHA) * pixels[rows, cols] + ALPHA * tint[window]
    shown[rows, cols] = np.where(cells[window][..., None], blended, shown[rows, cols])


def _vmax(weights: np.ndarray, inside: np.ndarray) -> float:
    """The largest weight drawn (cells inside the picture), never 0."""
    return max(float(weights[inside].max(initial=0.0)), 1e-12)


def _colours(weights: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    """(K, K) weights -> (K, K, 3) float colours 0..255 on the scale 0..vmax."""
    rgba = colormap(cmap)(np.clip(weights / vmax, 0.0, 1.0), bytes=True)
    return rgba[..., :3].astype(np.float64)


@lru_cache(maxsize=256)
def _text_tile(text: str, width: int, size: int) -> Image.Image:
    """`text` at `size` pixels on the background, clipped to `width`: drawn once and
    shared, since it is only ever pasted."""
    tile = Image.new("RGB", (width, size + 4), BACKGROUND)
    ImageDraw.Draw(tile).text((0, 0), text, fill=TEXT, font=_font(size))
    return tile


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` pixels (Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)
