"""Attention drawn on the picture: a pixel's k x k softmax weights as a heat map over the
part of the picture each window cell covers, instead of a grid of numbers to map on in
one's head.

    layer = trace(model, to_tensor(working)).layers["stages.0.0.spatial"]
    backdrop = images.to_display(picture)   # the photo itself, longer side 768 px: make
    px = layer.pixel(8, 8)                  # it once per picture and keep it
    shown = attention_overlay(backdrop, layer, px, head=3)       # an Overlay
    shown.image                      # PIL RGB, the backdrop's size, the heat drawn in
    attention_overlay(backdrop, layer, px, 3, drawing=Drawing("outline"))   # photo untouched
    head_strip(backdrop, layer, px)  # every head and their mean, rows of PER_ROW panels
    gif = sweep_gif(sweep_frames(backdrop, layer, head=3, along="row", index=8))

The model runs on the working image (layer.image_size, e.g. 32x32); the weights are drawn
on a backdrop: the picture the working image was made from, at any resolution with its
aspect (a PIL image, drawn at its own size; `images.to_display` makes one), or the
working image itself, an (H, W, 3) uint8 array, enlarged to images.DISPLAY. Working pixel
(r, c) covers the display pixels `images.display_rectangle` gives (by fractions of the
height and width), and a click anywhere on them maps back to (r, c) with
`images.display_to_image`, as a click on the plain picture does.

Window cell [a, b] of pixel px is the feature pixel (top + a, left + b), (top, left) =
px.origin (the block corner for the block stem); it covers working rows (top + a) * stride
.. (top + a + 1) * stride - 1 and the same columns, clipped to the image. It is drawn in
its weight's colour on a 0..vmax scale, in one of two MODES:

- "fill": the colour blended over the cell, `opacity` of it to 1 - opacity of the photo;
- "outline": a frame along the cell's edges in the full colour, the photo untouched
  inside, so that the picture stays recognisable.

The picture outside the window is left exactly as it is; the pixel (red) and its window
(yellow) are outlined as in the explorer.

Cells outside the feature map cover no part of the picture, so they are not drawn: with
padding="mask" their weight is 0; with padding="zeros" they take part in the softmax and
their total weight is reported as Overlay.outside instead.
"""
import io
from dataclasses import dataclass
from functools import lru_cache
from math import ceil
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sasa_viz.drawing import images
from sasa_viz.drawing.grids import WEIGHTS_CMAP, colormap
from sasa_viz.inspection.trace import LayerTrace, PixelTrace
from sasa_viz.numbers import WEIGHT, percent

OPACITY = 0.45      # share of a window cell's colour that is its weight's ("fill")
MODES = ("fill", "outline")
OUTLINE_MAX = 4     # pixels, the thickest frame of a cell ("outline")
PER_ROW = 4         # panels a row of a head strip, at most
GAP = 8             # pixels between the panels of a strip
STRIP_WIDTH = 800   # pixels, a strip of PER_ROW panels: the width the explorer shows it at
STRIP_PANEL = (STRIP_WIDTH - (PER_ROW - 1) * GAP) // PER_ROW   # longer side of a panel
SWEEP_WIDTH = 768   # pixels, the width of a sweep's frames
LABEL_FONT = 20     # pixels, a panel's or a frame's label
NOTE_FONT = 16      # pixels, a second label line and the colour bar of a strip or sweep
BAR_FONT = 13       # pixels, a colour bar's text unless told
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)

Backdrop = Union[Image.Image, np.ndarray]   # a picture, or the (H, W, 3) working image


@dataclass
class Overlay:
    image: Image.Image      # RGB, the backdrop's size: the picture with the heat drawn in
    weights: np.ndarray     # (K, K) the weights drawn: one head's, or the mean over heads
    vmin: float             # colour range used: vmin -> cmap(0), vmax and above -> cmap(1)
    vmax: float
    outside: float          # total weight on cells outside the picture (0 with "mask")
    head: Optional[int]     # None: the mean over heads


@dataclass(frozen=True)
class Drawing:
    """How window cells are drawn: one of MODES, the fill's opacity, the colour map
    (frozen, so a page's cached drawing is keyed by it)."""
    mode: str = "fill"
    opacity: float = OPACITY
    cmap: str = WEIGHTS_CMAP

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if not 0 <= self.opacity <= 1:
            raise ValueError(f"opacity is a share of the colour, 0 to 1; got {self.opacity}.")


def attention_overlay(backdrop: Backdrop, layer: LayerTrace, px: PixelTrace,
                      head: Optional[int] = None, *, drawing: Drawing = Drawing(),
                      vmax: Optional[float] = None) -> Overlay:
    """The backdrop (a picture of the working image's aspect, drawn at its own size, or
    the working image, enlarged to images.DISPLAY) with one head's weights at pixel px
    (head=None: the mean over heads) drawn over its window cells as `drawing` says
    ("fill": at its opacity; "outline": cell frames).

    The colour scale runs from 0 to the largest weight drawn (on a cell inside the
    picture), unless `vmax` is given: pass the same vmax to several overlays to compare
    them on one scale."""
    return _overlay(backdrop_pixels(backdrop, layer), layer, px, _head_weights(layer, px, head),
                    head, drawing, vmax)


def _overlay(pixels: np.ndarray, layer: LayerTrace, px: PixelTrace, weights: np.ndarray,
             head: Optional[int], style: Drawing, vmax: Optional[float]) -> Overlay:
    """`attention_overlay` on the backdrop's pixels (Hd, Wd, 3) uint8, of the (K, K)
    weights drawn (head's, or the mean over heads: head None)."""
    inside = px.valid.numpy()                                       # (K, K) bool
    vmax = _vmax(weights, inside) if vmax is None else float(vmax)
    shown = pixels.copy()                                           # (Hd, Wd, 3) uint8
    _draw_cells(shown, layer, px, weight_colours(weights, vmax, style.cmap), inside, style)
    picture = Image.fromarray(shown)
    line = 2 if _cell_side(layer, shown.shape) >= 6 else 1         # thin on small panels
    picture = images.draw_box(picture, px.window, layer.image_size, "yellow", line)
    picture = images.draw_box(picture, px.centre, layer.image_size, "red", line)
    return Overlay(image=picture, weights=weights, vmin=0.0, vmax=vmax,
                   outside=float(weights[~inside].sum()), head=head)


def _draw_cells(shown: np.ndarray, layer: LayerTrace, px: PixelTrace, colours: np.ndarray,
                inside: np.ndarray, style: Drawing) -> None:
    """Draw every window cell inside the map on the display pixels that show it, in
    `shown` (Hd, Wd, 3) uint8, in place; leave every other pixel as it is.

    colours: (K, K, 3) float32 0..255, the cells' colours; inside: (K, K) bool."""
    (H, W), (Hd, Wd) = layer.image_size, shown.shape[:2]
    rectangle = images.display_rectangle(px.window, layer.image_size, (Hd, Wd))
    if rectangle is None:
        return
    top, left, bottom, right = rectangle                            # display pixels
    s = layer.stride
    a = images.display_index(H, Hd)[top:bottom] // s - px.origin[0]   # (h,) cell row
    b = images.display_index(W, Wd)[left:right] // s - px.origin[1]   # (w,) cell column
    region = shown[top:bottom, left:right]                          # (h, w, 3), a view
    drawn = inside.take(a, 0).take(b, 1)                            # (h, w) bool
    tint = colours.take(a, 0).take(b, 1)                            # (h, w, 3)
    if style.mode == "outline":
        width = _outline_width(_cell_side(layer, shown.shape))
        drawn &= _near_edges(a, width)[:, None] | _near_edges(b, width)
    else:
        tint = (1 - style.opacity) * region.astype(np.float32) + style.opacity * tint
    region[drawn] = np.round(tint[drawn])


def _cell_side(layer: LayerTrace, shown: Tuple[int, ...]) -> float:
    """Display pixels per feature pixel (the shorter way) on a backdrop of shape `shown`."""
    (H, W), (Hd, Wd) = layer.image_size, shown[:2]
    return layer.stride * min(Hd / H, Wd / W)


def _outline_width(cell: float) -> int:
    """Pixels of a cell's frame in "outline" mode, for a cell `cell` pixels wide: a
    tenth of it, 1 to OUTLINE_MAX, so that most of the cell shows the photo."""
    return max(1, min(OUTLINE_MAX, round(cell / 10)))


def _near_edges(cells: np.ndarray, width: int) -> np.ndarray:
    """(n,) bool: which of n display rows (or columns), showing window cell rows `cells`
    (n,) in runs, are within `width` pixels of either end of their run."""
    starts = np.r_[True, cells[1:] != cells[:-1]]                   # (n,) a run starts
    first = np.flatnonzero(starts)                                  # (runs,) its index
    last = np.r_[first[1:], len(cells)] - 1                         # (runs,)
    run = np.cumsum(starts) - 1                                     # (n,) which run
    index = np.arange(len(cells))
    return np.minimum(index - first[run], last[run] - index) < width


def head_strip(backdrop: Backdrop, layer: LayerTrace, px: PixelTrace, *,
               drawing: Drawing = Drawing()) -> Image.Image:
    """Every head's overlay, then the mean over heads, each labelled, in rows of at most
    PER_ROW panels (balanced: 16 heads and the mean make 5 rows of 4, 1), all on one
    colour scale (0 to the largest weight of any head), with its colour bar below.

    Each panel is the backdrop with its longer side STRIP_PANEL pixels, so a row of
    PER_ROW is STRIP_WIDTH wide and its labels LABEL_FONT pixels tall."""
    style = drawing
    pixels = backdrop_pixels(backdrop, layer, STRIP_PANEL)                # (h, w, 3) one panel
    inside = px.valid.numpy()
    weights = px.weights.double().numpy()                           # (heads, K, K)
    heads: List[Optional[int]] = [*range(layer.heads), None]
    drawn = [*weights, weights.mean(0)]                             # each head's, the mean
    vmax = max(_vmax(w, inside) for w in drawn)
    panels = [_overlay(pixels, layer, px, w, h, style, vmax) for h, w in zip(heads, drawn)]
    return _panel_grid(panels, vmax, drawing.cmap)


def _panel_grid(panels: Sequence[Overlay], vmax: float, cmap: str) -> Image.Image:
    """Labelled panels of one size in balanced rows of at most PER_ROW, GAP apart, and
    the colour bar 0..vmax below them."""
    per_row = ceil(len(panels) / ceil(len(panels) / PER_ROW))
    rows = ceil(len(panels) / per_row)
    width, height = panels[0].image.size
    lines = 2 if any(p.outside > 0 for p in panels) else 1         # room for "... outside"
    label_height = LABEL_FONT + 6 + (NOTE_FONT + 6) * (lines - 1)
    row_height = label_height + height + GAP
    strip_width = per_row * (width + GAP) - GAP
    bar = colour_bar(0.0, vmax, cmap, length=min(strip_width, STRIP_WIDTH // 2),
                     label="attention weight, every panel", font=NOTE_FONT)
    strip = Image.new("RGB", (strip_width, rows * row_height + bar.height), BACKGROUND)
    for k, panel in enumerate(panels):
        x, y = (k % per_row) * (width + GAP), (k // per_row) * row_height
        name = "mean of heads" if panel.head is None else f"head {panel.head}"
        strip.paste(text_tile(name, width, LABEL_FONT), (x, y))
        if panel.outside > 0:
            strip.paste(text_tile(f"{percent(panel.outside)} outside", width, NOTE_FONT),
                        (x, y + LABEL_FONT + 6))
        strip.paste(panel.image, (x, y + label_height))
    strip.paste(bar, (0, rows * row_height))
    return strip


def colour_bar(vmin: float, vmax: float, cmap: str = WEIGHTS_CMAP, length: int = 256,
               thickness: int = 14, label: str = "attention weight",
               font: int = BAR_FONT) -> Image.Image:
    """A horizontal colour bar, `length` pixels wide: the label above, the bar (vmin at
    the left, vmax at the right), and the two ends' values below (see range_labels),
    the text `font` pixels tall."""
    bar = _bare_colour_bar(cmap, length, thickness, label, font).copy()
    low, high = range_labels(vmin, vmax)
    draw = ImageDraw.Draw(bar)
    below = font + 4 + thickness + 2
    typeface = _font(font)
    draw.text((0, below), low, fill=TEXT, font=typeface)
    draw.text((length - draw.textlength(high, font=typeface), below), high, fill=TEXT,
              font=typeface)
    return bar


@lru_cache(maxsize=64)
def _bare_colour_bar(cmap: str, length: int, thickness: int, label: str,
                     font: int) -> Image.Image:
    """A colour bar with its label and no values: drawn once, then copied (drawing text
    took a tenth of a click's server time)."""
    line = font + 4
    bar = Image.new("RGB", (length, line + thickness + 2 + line), BACKGROUND)
    ramp = colormap(cmap)(np.linspace(0, 1, length), bytes=True)[:, :3]   # (length, 3)
    bar.paste(Image.fromarray(np.repeat(ramp[None], thickness, axis=0)), (0, line))
    ImageDraw.Draw(bar).text((0, 0), label, fill=TEXT, font=_font(font))
    return bar


def range_labels(vmin: float, vmax: float) -> Tuple[str, str]:
    """The two ends of a weights' colour scale as text, as every weight is written
    (`numbers.WEIGHT`: "0.000", "0.355")."""
    return WEIGHT(vmin), WEIGHT(vmax)


def sweep_frames(backdrop: Backdrop, layer: LayerTrace, head: Optional[int] = None,
                 along: str = "row", index: int = 0, *, drawing: Drawing = Drawing(),
                 vmax: Optional[float] = None) -> List[Image.Image]:
    """The window and its weights moving along feature-map row `index` (along="row": one
    frame per column) or column `index` (along="col": one frame per row). Each frame is
    SWEEP_WIDTH pixels wide: the overlay (the backdrop with its longer side SWEEP_WIDTH),
    a caption (the feature pixel and its largest weight) and the colour bar below it.
    All frames share one colour scale (0 to the largest weight in the sweep) unless vmax
    is given."""
    style = drawing
    steps = _sweep_length(layer, along, index)
    pixels = [_swept_pixel(layer, along, index, step) for step in range(steps)]
    drawn = [_head_weights(layer, px, head) for px in pixels]      # each (K, K)
    if vmax is None:
        vmax = max(_vmax(w, px.valid.numpy()) for w, px in zip(drawn, pixels))
    picture = backdrop_pixels(backdrop, layer, SWEEP_WIDTH)               # (Hd, Wd, 3)
    who = "mean of heads" if head is None else f"head {head}"
    bar = colour_bar(0.0, vmax, drawing.cmap, length=SWEEP_WIDTH // 2, font=NOTE_FONT,
                     label=f"attention weight of {who}, every frame")
    caption_top = picture.shape[0] + GAP                            # below the picture
    blank = _sweep_blank(bar, caption_top + LABEL_FONT + 6 + GAP)
    left = (SWEEP_WIDTH - picture.shape[1]) // 2                    # the picture centred
    frames = []
    for px, weights in zip(pixels, drawn):
        shown = _overlay(picture, layer, px, weights, head, style, vmax)
        frame = blank.copy()
        frame.paste(shown.image, (left, 0))
        caption = (f"feature pixel ({px.row}, {px.col})   {who}   largest weight "
                   f"{WEIGHT(weights.max())}")
        ImageDraw.Draw(frame).text((GAP, caption_top), caption, fill=TEXT,
                                   font=_font(LABEL_FONT))
        frames.append(frame)
    return frames


def _sweep_length(layer: LayerTrace, along: str, index: int) -> int:
    """How many frames a sweep along row (or column) `index` has; ValueError for a
    direction or an index the map does not have."""
    H, W = layer.size
    if along not in ("row", "col"):
        raise ValueError(f'along must be "row" or "col", got {along!r}.')
    count, steps = (H, W) if along == "row" else (W, H)
    if not 0 <= index < count:
        raise ValueError(f"{along} {index} is outside this layer's {H}x{W} map; "
                         f"{along}s run 0..{count - 1}.")
    return steps


def _swept_pixel(layer: LayerTrace, along: str, index: int, step: int) -> PixelTrace:
    """The pixel of frame `step` of a sweep along row (or column) `index`."""
    return layer.pixel(index, step) if along == "row" else layer.pixel(step, index)


def _sweep_blank(bar: Image.Image, bar_top: int) -> Image.Image:
    """A sweep frame without its picture and caption: SWEEP_WIDTH wide, the colour bar
    `bar_top` pixels down (below the picture and the caption)."""
    frame = Image.new("RGB", (SWEEP_WIDTH, bar_top + bar.height + GAP), BACKGROUND)
    frame.paste(bar, (GAP, bar_top))
    return frame


def sweep_gif(frames: Sequence[Image.Image], ms_per_frame: int = 250,
              cmap: str = WEIGHTS_CMAP) -> bytes:
    """An animated GIF of `frames`, `ms_per_frame` milliseconds each, looping forever.

    Every frame is mapped, undithered, to one palette (`_gif_palette`: `cmap`'s ramp, the
    boxes' and the text's colours, and the frames' own), so what does not change from one
    frame to the next (the picture outside the window) is stored once: a sweep of 768-px
    frames is a few hundred KB. (Pillow merges identical consecutive frames; a sweep's
    frames all differ.)"""
    if not frames:
        raise ValueError("a GIF needs at least one frame.")
    palette = _gif_palette(frames, cmap)
    mapped = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    mapped[0].save(buffer, format="GIF", save_all=True, append_images=mapped[1:],
                   duration=ms_per_frame, loop=0)
    return buffer.getvalue()


GIF_RAMP = 48       # colours of a sweep GIF's palette kept for the colour map's ramp
GIF_FIXED = [(255, 0, 0), (255, 255, 0), BACKGROUND, TEXT]   # the boxes', the text's


def _gif_palette(frames: Sequence[Image.Image], cmap: str) -> Image.Image:
    """A "P" image carrying 256 colours: GIF_RAMP evenly along `cmap` (the colour bar,
    the outlines), GIF_FIXED, and the rest chosen (octree) from the first, middle and
    last frame (the picture, the blends)."""
    sample = Image.new("RGB", (frames[0].width, 3 * frames[0].height))
    for k, frame in enumerate((frames[0], frames[len(frames) // 2], frames[-1])):
        sample.paste(frame.convert("RGB"), (0, k * frames[0].height))
    own = 256 - GIF_RAMP - len(GIF_FIXED)
    chosen = sample.quantize(own, method=Image.Quantize.FASTOCTREE).getpalette()[:3 * own]
    ramp = colormap(cmap)(np.linspace(0, 1, GIF_RAMP), bytes=True)[:, :3]   # (GIF_RAMP, 3)
    palette = Image.new("P", (1, 1))
    palette.putpalette([*chosen, *ramp.ravel().tolist(), *np.ravel(GIF_FIXED).tolist()])
    return palette


# --- helpers ----------------------------------------------------------------------------

def backdrop_pixels(backdrop: Backdrop, layer: LayerTrace,
              longest: Optional[int] = None) -> np.ndarray:
    """The backdrop's pixels (Hd, Wd, 3) uint8, checked against the traced image: a
    picture at its own size (longest None) or with its longer side `longest`; the
    working image (an array) enlarged to `longest`, images.DISPLAY by default."""
    if not isinstance(backdrop, Image.Image):
        backdrop = _working(backdrop, layer)
        longest = longest or images.DISPLAY
    if longest is not None:
        backdrop = images.to_display(backdrop, longest)
    pixels = np.asarray(backdrop if backdrop.mode == "RGB" else backdrop.convert("RGB"))
    images.check_aspect(layer.image_size, pixels.shape[:2])
    return pixels


def _working(image: np.ndarray, layer: LayerTrace) -> np.ndarray:
    """The working image as an (H, W, 3) array, checked against the layer's."""
    pixels = np.asarray(image)
    if pixels.shape != (*layer.image_size, 3):
        raise ValueError(f"the image is {pixels.shape}, but this trace was made from a "
                         f"{layer.image_size[0]}x{layer.image_size[1]} RGB image; pass "
                         f"the working image that was traced, or a picture (PIL) of "
                         f"its shape.")
    return pixels


def _head_weights(layer: LayerTrace, px: PixelTrace, head: Optional[int]) -> np.ndarray:
    """(K, K): head `head`'s weights at px, or the mean over heads (head=None)."""
    weights = px.weights.double().numpy()                          # (heads, K, K)
    if head is None:
        return weights.mean(0)
    if not 0 <= head < layer.heads:
        raise ValueError(f"head {head} does not exist: this layer has heads "
                         f"0..{layer.heads - 1}.")
    return weights[head]


def _vmax(weights: np.ndarray, inside: np.ndarray) -> float:
    """The largest weight drawn (cells inside the picture), never 0."""
    return max(float(weights[inside].max(initial=0.0)), 1e-12)


def weight_colours(weights: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    """(K, K) weights -> (K, K, 3) float32 colours 0..255 on the scale 0..vmax."""
    rgba = colormap(cmap)(np.clip(weights / vmax, 0.0, 1.0), bytes=True)
    return rgba[..., :3].astype(np.float32)


@lru_cache(maxsize=256)
def text_tile(text: str, width: int, size: int) -> Image.Image:
    """`text` at `size` pixels on the background, clipped to `width`: drawn once and
    shared, since it is only ever pasted."""
    tile = Image.new("RGB", (width, size + 4), BACKGROUND)
    ImageDraw.Draw(tile).text((0, 0), text, fill=TEXT, font=_font(size))
    return tile


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` pixels (Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)
