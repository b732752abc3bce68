"""What a per-pixel panel shows, decided once for both renderers.

A panel is a few K x K grids side by side on one colour scale: every head's weights and
their mean, the parts of a logit, the size of a kernel. Everything about it is decided
here: the numbers of each grid, which cells lie outside the map and how they are drawn,
the colour scale (weights from 0 to the largest, or stretched to the numbers it colours;
logits symmetric around 0), the format of the numbers (weights and probabilities in
`numbers.WEIGHT` everywhere, other quantities in one format for the whole panel, fine
enough for every grid's own differences: `numbers.shared_format`), the text colour on a cell and the titles. `html` draws a Panel
as HTML tables (the explorer: a millisecond a click); `figures` draws it with matplotlib
(PNGs for slides and the command line).

    panel = weights_panel(px, heads=[0, 1])      # a Panel: two heads and their mean
    panel.grids[0].title                         # "head 0 (entropy 2.53 nats)"
    panel.text(panel.grids[0], a, b)             # what cell [a, b] says: "0.21", "x", ""
    panel.scale.colour(v), panel.scale.text_colour(v)   # a cell's colour and its text's

Cells outside the map: with "mask" padding they are left out of the softmax, so they are
crossed out (grey, an x, no number); with "zeros" padding they take part, so they keep
their colour and number and are marked as outside (dashed, or hatched).

One colour map per quantity, everywhere:
  attention weights   WEIGHTS_CMAP (sequential, 0 = dark)
  logits              LOGITS_CMAP (diverging, 0 = white, symmetric around 0)
  kernel weights      KERNEL_CMAP (diverging, symmetric around 0)
  sizes: L2 norms, mixture weights   NORM_CMAP
  entropy             ENTROPY_CMAP;  mean offset length  OFFSET_CMAP
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, Normalize, TwoSlopeNorm
from torch import Tensor

from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import PixelTrace
from sasa_viz.numbers import NATS, WEIGHT, NumberFormat, finite, shared_format

WEIGHTS_CMAP = "viridis"
LOGITS_CMAP = "RdBu_r"
KERNEL_CMAP = "PuOr_r"
NORM_CMAP = "Greens"
ENTROPY_CMAP = "cividis"
OFFSET_CMAP = "YlOrRd"
OUTSIDE_COLOUR = "#d9d9d9"      # a crossed-out cell
OUTSIDE_TEXT_COLOUR = "#666666"  # its x
OWN_CELL_COLOUR = "#e8000b"     # the outline of the pixel's own cell


def as_array(values) -> np.ndarray:
    """A tensor (any device, dtype) or array-like as a float64 numpy array."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def text_colour(rgba) -> str:
    """"black" or "white": whichever reads on a cell of colour rgba (by its luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def hypothetical(px: PixelTrace) -> str:
    """", hypothetical" for a title of a counterfactual pixel's numbers, "" otherwise."""
    return "" if px.counterfactual is None else ", hypothetical"


def hypothesis(px: PixelTrace) -> str:
    """The line that says a counterfactual pixel's numbers are not what the model
    computed; "" for recorded numbers."""
    if px.counterfactual is None:
        return ""
    return f"Hypothetical, not what the model computed: {px.counterfactual.description}."


def check_head(head: int, n_heads: int) -> None:
    if not 0 <= head < n_heads:
        raise ValueError(f"head {head} does not exist; this layer has heads 0..{n_heads - 1}.")


# --- colour scales -----------------------------------------------------------------------

@lru_cache(maxsize=None)
def colormap(name: str) -> Colormap:
    """matplotlib's colour map `name`, looked up once. The registry hands out a fresh copy
    on every lookup, and a copy builds its colour table on first use: that took 15% of
    a click's server time. Shared read-only between threads: the table is built here."""
    cmap = colormaps[name]
    cmap(0.0)                                       # builds the table before it is shared
    return cmap


@dataclass(frozen=True)
class Scale:
    """A colour scale: its colour map, its range (a matplotlib norm) and what it colours."""
    cmap: str
    norm: Normalize
    label: str = ""

    def colour(self, value: float) -> Tuple[float, float, float, float]:
        """The RGBA colour (0..1) of `value`."""
        return colormap(self.cmap)(self.norm(value))

    def colours(self, values) -> np.ndarray:
        """(..., 4): the RGBA colours (0..1) of an array of values, in one call (the same
        colours as `colour`, value by value, at a fraction of the cost: a grid's cells
        coloured one by one took most of a click)."""
        return colormap(self.cmap)(self.norm(as_array(values)))

    def text_colour(self, value: float) -> str:
        """The colour of a number written on a cell of `value`'s colour."""
        return text_colour(self.colour(value))


def stretched(values, cmap: str, label: str = "") -> Scale:
    """A sequential scale from the smallest to the largest finite value."""
    shown = finite(as_array(values))
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    return Scale(cmap, Normalize(low, high if high > low else low + 1e-12), label)


def symmetric(values, cmap: str, label: str = "") -> Scale:
    """A diverging scale centred on 0, as far out as the largest finite |value|."""
    shown = finite(as_array(values))
    limit = float(np.abs(shown).max()) if shown.size else 0.0
    limit = limit if limit > 0 else 1.0
    return Scale(cmap, TwoSlopeNorm(0.0, -limit, limit), label)


# --- grids and panels ----------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """One K x K window of numbers and its title."""
    values: np.ndarray                       # (K, K) float; NaN: no value (around a kernel)
    title: str
    valid: Optional[np.ndarray] = None       # (K, K) bool, inside the map; None: all are
    cell: Optional[Tuple[int, int]] = None   # the pixel's own cell [a, b]: outlined, and
                                             # the offsets dy, dx are counted from it

    @property
    def outside(self) -> np.ndarray:
        """(K, K) bool: the cells outside the map."""
        return np.zeros(self.values.shape, bool) if self.valid is None else ~self.valid


def _crossed(grid: Grid, padding: str) -> np.ndarray:
    """(K, K) bool: cells outside the map that "mask" padding leaves out of the softmax."""
    return grid.outside & (padding == "mask")


@dataclass(frozen=True)
class Panel:
    """Grids side by side on one colour scale, their numbers in one format."""
    grids: Tuple[Grid, ...]
    scale: Scale
    fmt: NumberFormat
    padding: str = "mask"    # "mask": cells outside the map are crossed out; "zeros":
                             # they take part (in the softmax), with colour and number
    numbers: bool = True     # write the numbers in the cells

    def crossed(self, grid: Grid) -> np.ndarray:
        """(K, K) bool: cells drawn grey with an x and no number."""
        return _crossed(grid, self.padding)

    def outside_shown(self, grid: Grid) -> np.ndarray:
        """(K, K) bool: cells outside the map drawn with their colour and number (in the
        softmax with "zeros" padding), marked as outside."""
        return grid.outside & ~self.crossed(grid)

    def coloured(self, grid: Grid) -> np.ndarray:
        """(K, K) bool: cells drawn in their value's colour (the rest: crossed, or blank
        where there is no value)."""
        return np.isfinite(grid.values) & ~self.crossed(grid)

    def text(self, grid: Grid, a: int, b: int) -> str:
        """What cell [a, b] says: "x" when crossed out, its number in the panel's format,
        or "" (no value, or a panel without numbers)."""
        if self.crossed(grid)[a, b]:
            return "x"
        if not self.numbers or not np.isfinite(grid.values[a, b]):
            return ""
        return self.fmt(grid.values[a, b])

    def title(self, grid: Grid) -> str:
        """The grid's title, and on a line of its own the power of ten its numbers are
        written in, if any."""
        unit = self.fmt.unit if self.numbers else ""
        return f"{grid.title}\n[{unit}]" if unit else grid.title


def from_zero(values, cmap: str, label: str = "") -> Scale:
    """A sequential scale from 0 to the largest finite value: equal weights look equal
    (a uniform head is one colour), the largest one is the brightest."""
    shown = finite(as_array(values))
    high = float(shown.max()) if shown.size else 1.0
    return Scale(cmap, Normalize(0.0, high if high > 0 else 1e-12), label)


def make_panel(grids: Sequence[Grid], cmap: str, label: str, padding: str = "mask",
               diverging: bool = False, numbers: bool = True,
               fmt: Optional[NumberFormat] = None, stretch: bool = True) -> Panel:
    """Grids on one colour scale, labelled `label`: stretched to the cells it colours
    (stretch=True), or from 0 to the largest (stretch=False), or symmetric around 0
    when diverging. Their numbers are written in `fmt` (a quantity's fixed format, e.g.
    `numbers.WEIGHT`), by default in one format fine enough for each grid's own
    differences."""
    shown = [g.values[np.isfinite(g.values) & ~_crossed(g, padding)] for g in grids]
    everything = np.concatenate(shown) if shown else np.zeros(0)
    kind = symmetric if diverging else stretched if stretch else from_zero
    scale = kind(everything, cmap, label)
    return Panel(tuple(grids), scale, shared_format(shown) if fmt is None else fmt, padding,
                 numbers)


# --- the panels of a pixel -------------------------------------------------------------------

def weights_panel(px: PixelTrace, heads: Sequence[int], stretch: bool = False) -> Panel:
    """Each chosen head's softmax weights at px, titled with its entropy, and for more
    than one head their mean, on one scale: from 0 to the largest weight, or stretched
    from the smallest to the largest (stretch=True). Weights in `numbers.WEIGHT`."""
    n_heads = px.weights.shape[0]
    heads = [int(h) for h in heads]
    for h in heads:
        check_head(h, n_heads)
    weights, valid = as_array(px.weights), as_array(px.valid).astype(bool)
    extra = hypothetical(px)
    entropy = as_array(explain.entropy_of(px.weights, px.valid, px.padding))    # (heads,)
    grids = [Grid(weights[h], f"head {h} (entropy\n{NATS(entropy[h])} nats){extra}",
                  valid, px.cell) for h in heads]
    if len(heads) > 1:
        mean = "mean over heads" if len(heads) == n_heads else "mean of these heads"
        grids.append(Grid(weights[heads].mean(0), mean + extra, valid, px.cell))
    return make_panel(grids, WEIGHTS_CMAP, "softmax weight" + extra, px.padding,
                      fmt=WEIGHT, stretch=stretch)


def mean_weights_panel(px: PixelTrace, stretch: bool = False) -> Panel:
    """The mean of every head's weights at px alone (what the picture shows for "all
    heads"), on a scale as in `weights_panel`."""
    extra = hypothetical(px)
    valid = as_array(px.valid).astype(bool)
    grid = Grid(as_array(px.weights).mean(0), "mean over heads" + extra, valid, px.cell)
    return make_panel([grid], WEIGHTS_CMAP, "softmax weight" + extra, px.padding,
                      fmt=WEIGHT, stretch=stretch)


def logits_panels(px: PixelTrace, head: int, stretch: bool = False) -> Tuple[Panel, Panel]:
    """Where one head's weights come from: (content q·k, the row part and the column
    part of q·r and their sum, the logit, on one diverging scale; the softmax of content
    alone, of position alone, and the weights the pixel used, on one scale, as in
    `weights_panel`)."""
    check_head(head, px.weights.shape[0])
    valid, extra = as_array(px.valid).astype(bool), hypothetical(px)
    row, col = as_array(px.logits_row[head]), as_array(px.logits_col[head])
    if px.counterfactual is not None:
        note = "\n(dropped)"
    else:
        note = "" if row.any() or col.any() else "\n(no position term)"
    parts = [(px.logits_content[head], "content q·k"),
             (row, "row part q_row·r_row(dy)" + note),
             (col, "column part q_col·r_col(dx)" + note),
             (px.logits[head], "sum = logit" + extra)]
    used = ("real weights = softmax(sum)" if px.counterfactual is None
            else "weights without position, hypothetical")
    softmaxes = [(explain.content_only_weights(px)[head], "softmax(content only)"),
                 (explain.position_only_weights(px)[head], "softmax(position only)"),
                 (px.weights[head], used)]

    def grids(items):
        return [Grid(as_array(values), title, valid, px.cell) for values, title in items]

    return (make_panel(grids(parts), LOGITS_CMAP, "logit", px.padding, diverging=True),
            make_panel(grids(softmaxes), WEIGHTS_CMAP, "softmax weight", px.padding,
                       fmt=WEIGHT, stretch=stretch))


def _on_grid(values: np.ndarray, size: int, around) -> np.ndarray:
    """(..., k, k) -> (..., size, size): values in the middle, `around` around them."""
    k = values.shape[-1]
    start = (size - k) // 2
    grid = np.full((*values.shape[:-2], size, size), around, dtype=values.dtype)
    grid[..., start:start + k, start:start + k] = values
    return grid


def _kernel_placement(kernel, cell: Tuple[int, int], valid, size: Optional[int]):
    """(the kernel as a (C_in, k, k) array, the side of the grid it is drawn on, and the
    pixel's cell and the validity (or None) on that grid)."""
    kernel = as_array(kernel)
    k = kernel.shape[-1]
    size = k if size is None else size
    start = (size - k) // 2
    if valid is not None:
        valid = _on_grid(as_array(valid).astype(bool), size, True)
    return kernel, size, (cell[0] + start, cell[1] + start), valid


def kernel_panel(kernel, title: str, cell: Tuple[int, int], valid=None,
                 size: Optional[int] = None) -> Panel:
    """The size of a (C_in, k, k) kernel at every cell, its L2 norm over the input
    channels, with the numbers, on a scale of its own. `cell`: the pixel's own cell (a
    convolution's centre), `valid`: (k, k) the cells inside the map (outside ones are
    crossed out: the input there is 0). size: draw it in the middle of a size x size
    grid (no values around), so that kernels of different sizes compare by extent."""
    kernel, size, cell, valid = _kernel_placement(kernel, cell, valid, size)
    norms = _on_grid(np.sqrt((kernel ** 2).sum(0)), size, np.nan)           # (size, size)
    return make_panel([Grid(norms, title, valid, cell)], NORM_CMAP,
                      "L2 norm over input channels")


def channels_panel(kernel, channels: int, cell: Tuple[int, int], valid=None,
                   size: Optional[int] = None) -> Panel:
    """The `channels` input channels of a (C_in, k, k) kernel with the largest L2 norm,
    signed, on one diverging scale, without numbers; placed as in `kernel_panel`."""
    kernel, size, cell, valid = _kernel_placement(kernel, cell, valid, size)
    order = np.argsort(-np.sqrt((kernel ** 2).sum(axis=(1, 2))), kind="stable")[:channels]
    grids = [Grid(_on_grid(kernel[i], size, np.nan), f"input channel {i}", valid, cell)
             for i in order]
    return make_panel(grids, KERNEL_CMAP, "kernel weight", diverging=True, numbers=False)


def mixture_panel(p) -> Panel:
    """The stem's p(a, b, m), (K, K, m): one K x K grid per value matrix m, one scale."""
    p = as_array(p)
    grids = [Grid(p[:, :, m], f"m = {m}") for m in range(p.shape[-1])]
    return make_panel(grids, NORM_CMAP, "p(a, b, m)", fmt=WEIGHT, stretch=False)
