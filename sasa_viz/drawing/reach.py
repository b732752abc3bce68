"""A pixel's reach drawn on the picture: which input pixels one feature pixel draws on
(`inspection.reach`), as a heat layer over the photo.

    r = reach(model, to_tensor(working), "stages.1.1.spatial", y, x)
    reach_overlay(backdrop, r)                  # its gradient (ERF), a PIL image
    reach_overlay(backdrop, r, "rollout")       # its attention rollout
    reach_panels(backdrop, r, reach(twin, to_tensor(working), "stages.1.1.spatial", y, x))

The backdrop is the picture the working image was made from, or the working image itself
(see `overlay`). Each working pixel's share of the reach is drawn in its colour (0 to the
largest share, or `vmax`) blended over the display pixels that show it, `opacity` of the
colour to the rest of the photo; pixels with no share are left as they are. The
theoretical box is outlined in yellow, the feature pixel's own cell in red, as the
window and the pixel are in `overlay`.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from sasa_viz.drawing import images
from sasa_viz.drawing.grids import WEIGHTS_CMAP
from sasa_viz.drawing.overlay import (BACKGROUND, GAP, LABEL_FONT, NOTE_FONT, OPACITY,
                                      Backdrop, backdrop_pixels, colour_bar, text_tile,
                                      weight_colours)
from sasa_viz.inspection.reach import Reach, half_radius

MAPS = ("gradient", "rollout")
PANEL = 256         # pixels, the longer side of each panel of `reach_panels`


def reach_overlay(backdrop: Backdrop, result: Reach, which: str = "gradient", *,
                  opacity: float = OPACITY, cmap: str = WEIGHTS_CMAP,
                  vmax: Optional[float] = None, longest: Optional[int] = None) -> Image.Image:
    """The backdrop (longer side `longest`; a picture at its own size, the working image
    at images.DISPLAY, when None) with `result`'s gradient or rollout (`which`) drawn
    over it, its theoretical box and its cell outlined. The colour scale runs from 0 to
    the largest share unless `vmax` is given (the same vmax puts several on one scale)."""
    share = _share(result, which)                                   # (H, W)
    vmax = _largest(share) if vmax is None else float(vmax)
    pixels = backdrop_pixels(backdrop, result, longest)     # (Hd, Wd, 3); reads .image_size only
    picture = Image.fromarray(_heat(pixels, share, vmax, opacity, cmap))
    line = 2 if pixels.shape[0] >= 3 * share.shape[0] else 1       # thin on small panels
    picture = images.draw_box(picture, result.theoretical_box, result.image_size, "yellow",
                              line)
    return images.draw_box(picture, result.cell, result.image_size, "red", line)


def reach_panels(backdrop: Backdrop, attention: Reach, twin: Optional[Reach] = None, *,
                 opacity: float = OPACITY, cmap: str = WEIGHTS_CMAP) -> Image.Image:
    """Side by side, on one colour scale (every map sums to 1): the attention model's
    rollout, its gradient (ERF) and, when given, its conv twin's gradient at the same
    image pixel, each captioned with how near half of it lies and its theoretical side,
    and the colour bar below."""
    if twin is not None and (attention.pixel, attention.image_size) != (twin.pixel,
                                                                        twin.image_size):
        raise ValueError(f"the two reaches must be of one image pixel of one image: "
                         f"{attention.pixel} in {attention.image_size} and {twin.pixel} "
                         f"in {twin.image_size}.")
    shown = [(attention, "rollout", "attention rollout"),
             (attention, "gradient", "attention ERF (gradient)")]
    if twin is not None:
        shown.append((twin, "gradient", "conv twin ERF (gradient)"))
    vmax = max(_largest(_share(r, which)) for r, which, _ in shown)
    panels = [reach_overlay(backdrop, r, which, opacity=opacity, cmap=cmap, vmax=vmax,
                            longest=PANEL) for r, which, _ in shown]
    captions = [(title, _note(r, which)) for r, which, title in shown]
    bar = colour_bar(0.0, vmax, cmap, length=2 * PANEL, font=NOTE_FONT,
                     label="share of the pixel's reach, every panel")
    return _side_by_side(panels, captions, bar)


def _note(result: Reach, which: str) -> str:
    """A panel's second caption line: "half within 3 px, window 43 px"."""
    radius = half_radius(_share(result, which), *result.pixel)
    return f"half within {radius} px, window {result.side} px"


def _side_by_side(panels: Sequence[Image.Image], captions: Sequence[Tuple[str, str]],
                  bar: Image.Image) -> Image.Image:
    """Panels of one size in a row, GAP apart, each under its two caption lines, and the
    colour bar below."""
    width, height = panels[0].size
    top = LABEL_FONT + 6 + NOTE_FONT + 6                            # the captions' height
    sheet = Image.new("RGB", (len(panels) * (width + GAP) - GAP,
                              top + height + GAP + bar.height), BACKGROUND)
    for k, (panel, (title, note)) in enumerate(zip(panels, captions)):
        x = k * (width + GAP)
        sheet.paste(text_tile(title, width, LABEL_FONT), (x, 0))
        sheet.paste(text_tile(note, width, NOTE_FONT), (x, LABEL_FONT + 6))
        sheet.paste(panel, (x, top))
    sheet.paste(bar, (0, top + height + GAP))
    return sheet


def _heat(pixels: np.ndarray, share, vmax: float, opacity: float, cmap: str) -> np.ndarray:
    """(Hd, Wd, 3) uint8: `pixels` with each working pixel's share (H, W) blended in its
    colour over the display pixels that show it; pixels with no share untouched."""
    values = np.asarray(share, dtype=float)                         # (H, W)
    (H, W), (Hd, Wd) = values.shape, pixels.shape[:2]
    rows, cols = images.display_index(H, Hd), images.display_index(W, Wd)
    tint = weight_colours(values, vmax, cmap).take(rows, 0).take(cols, 1)     # (Hd, Wd, 3)
    drawn = values.take(rows, 0).take(cols, 1) > 0                  # (Hd, Wd)
    blended = (1 - opacity) * pixels.astype(np.float32) + opacity * tint
    shown = pixels.copy()
    shown[drawn] = np.round(blended[drawn])
    return shown


def _share(result: Reach, which: str):
    """(H, W) the map `which` names, or a ValueError."""
    if which not in MAPS:
        raise ValueError(f"which must be one of {', '.join(MAPS)}; got {which!r}.")
    share = getattr(result, which)
    if share is None:
        raise ValueError(f"this reach has no {which}: its layer is not attention.")
    return share


def _largest(share) -> float:
    """The largest share, never 0 (a colour scale's top)."""
    return max(float(share.max()), 1e-12)
