"""Matplotlib figures of a trace, shared by the app and the CLI.

Every function takes tensors / traces / arrays and returns a `matplotlib.figure.Figure`;
nothing here touches pyplot's global state (the Streamlit server draws from several
threads at once) or imports streamlit. Show one with `st.pyplot(fig)` or save it with
`fig.savefig(path)`. The numbers come from `sasa_viz.inspection.explain`.

Window panels are the `grids` panels the explorer's HTML tables show too, drawn the same
way: rows are dy, columns dx (offsets from the pixel); the pixel's own cell (px.cell: the
centre of a sliding window, its place in its block for the block stem) is outlined in
red; out-of-image neighbours are grey with an "x" when the layer masks them ("mask"
padding) and hatched under their numbers when they take part ("zeros"). Colour scales
are stretched to the numbers they colour, each with a colour bar whose ends are written
in the panel's one `numbers` format (a shared power of ten goes in the titles). A
counterfactual pixel (px.counterfactual) is labelled as one in every title.
"""
import io
import math
import textwrap
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw
from torch import Tensor

from sasa_viz.drawing import grids
from sasa_viz.drawing.grids import (ENTROPY_CMAP, LOGITS_CMAP, OFFSET_CMAP, OWN_CELL_COLOUR,
                                    WEIGHTS_CMAP, Grid, Panel, as_array, check_head,
                                    stretched)
from sasa_viz.inspection import cost, explain
from sasa_viz.inspection.trace import LayerTrace, PixelTrace
from sasa_viz.numbers import NATS, NumberFormat, number_format, significant

WINDOW_COLOR = "#ffd700"

PANEL = 1.85            # inches per window panel
TITLE_SIZE = 10         # points: figure titles; panel titles one less, notes two less
HEADS_PER_ROW = 4       # head maps a row in head_maps_figure


# --- drawing a panel ----------------------------------------------------------------------

def _cell_fontsize(K: int, chars: int, panel: float = PANEL,
                   largest: float = TITLE_SIZE - 1) -> float:
    """Points for the numbers of a K x K panel `panel` inches wide, `chars` long at most,
    `largest` points at most."""
    cell = panel * 72 / K                                      # a cell's side in points
    return float(np.clip(min(cell * 0.34, cell / (0.62 * max(chars, 1))), 4.0, largest))


def draw_grid(ax, panel: Panel, grid: Grid, size: float = PANEL, points: float = TITLE_SIZE):
    """Draw one grid of a panel into `ax`, `size` inches wide, its title in `points` - 1
    points (the numbers at most as large, the ticks 3 smaller), as the panel says: every
    cell in its value's colour with its text (numbers: gid "number"; crossed-out cells:
    grey, hatched, an "x", gid "crossed"), cells outside the map that take part hatched
    under their number, no value: white. The pixel's own cell is outlined and the ticks
    count the offsets dy, dx from it. Returns the AxesImage (for a colour bar)."""
    values = grid.values
    crossed, outside_shown = panel.crossed(grid), panel.outside_shown(grid)
    coloured = panel.coloured(grid)
    colormap = colormaps[panel.scale.cmap].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_where(~coloured, values), cmap=colormap,
                      norm=panel.scale.norm, interpolation="nearest")
    rows, cols = values.shape
    texts = {(a, b): panel.text(grid, a, b) for a in range(rows) for b in range(cols)}
    fontsize = _cell_fontsize(max(rows, cols), max(map(len, texts.values())), size, points - 1)
    for (a, b), text in texts.items():
        if crossed[a, b] or outside_shown[a, b]:
            ax.add_patch(Rectangle((b - .5, a - .5), 1, 1, hatch="////", linewidth=0,
                                   edgecolor="#8c8c8c", facecolor=grids.OUTSIDE_COLOUR
                                   if crossed[a, b] else "none"))
        if crossed[a, b]:
            ax.text(b, a, text, ha="center", va="center", fontsize=fontsize,
                    color=grids.OUTSIDE_TEXT_COLOUR, gid="crossed")
        elif text:
            ax.text(b, a, text, ha="center", va="center", fontsize=fontsize,
                    color=panel.scale.text_colour(values[a, b]), gid="number")
    ax.set_xticks([])
    ax.set_yticks([])
    if grid.cell is not None:
        top, left = grid.cell
        ax.add_patch(Rectangle((left - .5, top - .5), 1, 1, fill=False,
                               edgecolor=OWN_CELL_COLOUR, linewidth=1.8))
        ax.set_xticks(range(cols), [_offset(b - left) for b in range(cols)],
                      fontsize=points - 3)
        ax.set_yticks(range(rows), [_offset(a - top) for a in range(rows)],
                      fontsize=points - 3)
        ax.tick_params(length=0, pad=1.5)
    ax.set_title(panel.title(grid), fontsize=points - 1)
    return image


def _offset(steps: int) -> str:
    """A tick label for an offset: "0", "+1", "-2"."""
    return f"{steps:+d}" if steps else "0"


def colour_bar(fig, image, label: str, fmt: Optional[NumberFormat] = None,
               points: float = TITLE_SIZE, **options):
    """fig.colorbar(image, **options), its two ends ticked so that the range is printed,
    every tick in `fmt` (default: the format of the range), its power of ten in the
    label."""
    low, high = image.norm.vmin, image.norm.vmax
    fmt = number_format([low, high]) if fmt is None else fmt
    bar = fig.colorbar(image, label=f"{label}\n[{fmt.unit}]" if fmt.unit else label,
                       **options)
    margin = 0.015 * points * (high - low)          # no tick label over an end's
    ticks = [t for t in bar.get_ticks() if low + margin < t < high - margin]
    bar.set_ticks([low, *ticks, high], labels=[fmt(t) for t in [low, *ticks, high]])
    bar.ax.tick_params(labelsize=points - 2)
    bar.ax.yaxis.label.set_size(points - 1)
    bar.ax.xaxis.label.set_size(points - 1)
    return bar


def panel_bar(fig, image, panel: Panel, points: float = TITLE_SIZE, **options):
    """The colour bar of a panel: its scale's label, its ends in the panel's format."""
    return colour_bar(fig, image, panel.scale.label, panel.fmt, points, **options)


def _to_image(image) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from uint8 / float arrays or tensors, HWC or CHW."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array.astype(float) / 255.0 if np.issubdtype(array.dtype, np.integer) else \
        array.astype(float)
    return np.clip(array, 0.0, 1.0)


def _image_panel(ax, image, px: Optional[PixelTrace] = None, title: str = "input"):
    ax.imshow(_to_image(image), interpolation="nearest")
    if px is not None:
        top, left, bottom, right = px.window
        ax.add_patch(Rectangle((left - .5, top - .5), right - left, bottom - top,
                               fill=False, edgecolor=WINDOW_COLOR, linewidth=1.5))
        top, left, bottom, right = px.centre
        ax.add_patch(Rectangle((left - .5, top - .5), right - left, bottom - top,
                               fill=False, edgecolor=OWN_CELL_COLOUR, linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=TITLE_SIZE - 1)


def _note_panel(ax, text: str, fontsize: float = TITLE_SIZE - 2, family: Optional[str] = None,
                in_layout: bool = True):
    """Text in an axes without frame; in_layout=False lets it run past the axes."""
    ax.axis("off")
    ax.text(0.0, 1.0, text, ha="left", va="top", fontsize=fontsize, family=family,
            transform=ax.transAxes, wrap=False).set_in_layout(in_layout)


def _pixel_title(px: PixelTrace, name: Optional[str]) -> str:
    where = f"feature pixel (row {px.row}, col {px.col})"
    return f"{name}: {where}" if name else where


def _hypothesis(px: PixelTrace) -> str:
    """A figure title's first line for a counterfactual pixel, "" for recorded numbers."""
    return f"{grids.hypothesis(px)}\n" if px.counterfactual is not None else ""


# --- the figures --------------------------------------------------------------------------

def weights_figure(px: PixelTrace, heads: Optional[Sequence[int]] = None,
                   layer_name: Optional[str] = None, stretch: bool = False) -> Figure:
    """Each head's K x K softmax weights at one pixel, side by side, then their mean
    (`grids.weights_panel`; no mean for a single head).

    Numbers in the cells are the weights (`numbers.WEIGHT`); one colour scale from 0 to
    the largest weight, or stretched from the smallest (stretch=True). Panels: one per
    head in `heads` (default all) plus the
    mean; at most 5 per row; one colour bar. The title of each head gives its entropy in
    nats. Axes: panels + 1 colour bar."""
    heads = list(range(px.weights.shape[0])) if heads is None else heads
    panel = grids.weights_panel(px, heads, stretch)
    n = len(panel.grids)
    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * PANEL + 0.9, nrows * (PANEL + 0.6) + 0.6),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, grid in zip(axes, panel.grids):
        image = draw_grid(ax, panel, grid)
    for ax in axes[n:]:
        ax.remove()
    panel_bar(fig, image, panel, ax=list(axes[:n]), shrink=0.85, aspect=25, pad=0.01)
    K = px.weights.shape[-1]
    outside_note = {"mask": "out-of-image neighbours: x, left out of the softmax",
                    "zeros": "out-of-image neighbours: hatched, zero key and value "
                             "but still in the softmax"}
    fig.suptitle(f"{_hypothesis(px)}Attention weights at {_pixel_title(px, layer_name)}, "
                 f"{K}x{K} window\nrows dy, columns dx from the pixel (red); "
                 f"{outside_note[px.padding]}", fontsize=TITLE_SIZE)
    return fig


def logits_figure(px: PixelTrace, head: int = 0, layer_name: Optional[str] = None,
                  stretch: bool = False) -> Figure:
    """Where one head's weights come from (`grids.logits_panels`).

    Top row, one diverging scale: content q.k, row part q_row.r_row(dy), column part
    q_col.r_col(dx), their sum (the logit). Bottom row: softmax of content alone, of
    position alone (row + column) and the weights = softmax(sum), on one scale (from 0,
    or stretched: `weights_figure`), and a
    note with entropies and what dropping the position term does to this head's output.
    Axes: 8 panels (the note is one) + 2 colour bars."""
    logits, softmaxes = grids.logits_panels(px, head, stretch)
    fig = Figure(figsize=(4 * PANEL + 0.9, 2 * (PANEL + 0.6) + 0.7), layout="constrained")
    axes = fig.subplots(2, 5, width_ratios=[1, 1, 1, 1, 0.07])
    for row, panel in zip(axes, (logits, softmaxes)):
        for ax, grid in zip(row, panel.grids):
            image = draw_grid(ax, panel, grid)
        panel_bar(fig, image, panel, cax=row[4])
    _note_panel(axes[1, 3], _logits_note(px, head), family="monospace",
                fontsize=TITLE_SIZE - 2.5)
    fig.suptitle(f"{_hypothesis(px)}Logits of head {head} at {_pixel_title(px, layer_name)}",
                 fontsize=TITLE_SIZE)
    return fig


def _logits_note(px: PixelTrace, head: int) -> str:
    """How many neighbours the head's softmax has, the entropy of each softmax of the
    logits figure, and how far dropping q.r moves the head's output."""
    K = px.weights.shape[-1]
    used = explain.in_softmax(px)
    n_in, n_used = int(px.valid.sum()), int(used.sum())
    if n_in == K * K:
        borders = "all inside the map"
    elif px.padding == "mask":
        borders = f"{K * K - n_in} outside, left out"
    else:
        borders = f"{K * K - n_in} outside, zero value"
    softmaxes = {"content only": explain.content_only_weights(px),
                 "position only": explain.position_only_weights(px),
                 "hypothetical" if px.counterfactual is not None else "real": px.weights}
    entropy = {name: float(explain.entropy_of(w[head][None], px.valid, px.padding)[0])
               for name, w in softmaxes.items()}
    entropy["uniform"] = math.log(n_used)
    lines = [f"head {head}: {n_used} of {K * K}", "neighbours in the softmax", f"({borders})",
             "", "entropy (nats)"]
    lines += [f"  {name:<13} {NATS(value)}" for name, value in entropy.items()]
    d = px.values.shape[1]
    block = slice(head * d, (head + 1) * d)
    if px.counterfactual is not None:
        lines += ["", "q.r dropped here:", "a hypothetical"]
    elif bool(px.logits_row[head].any() or px.logits_col[head].any()):
        change = float((explain.without_position(px).output[block] - px.output[block]).norm())
        size = float(px.output[block].norm())
        lines += ["", "drop q.r: head output", f"moves by {significant(change)}",
                  f"(its norm: {significant(size)})"]
    else:
        lines += ["", "no q.r term here:", "nothing to drop"]
    return "\n".join(lines)


def head_maps_figure(layer: LayerTrace, image, heads: Optional[Sequence[int]] = None,
                     normalize: bool = False, pixel: Optional[Tuple[int, int]] = None
                     ) -> Figure:
    """Whole-map summaries, up to HEADS_PER_ROW heads a row: the attention entropy at
    every pixel (dark = picks few neighbours), and below, the mean attended offset
    (colour: its length in feature pixels; arrows: its direction). Both colour scales
    are stretched to the maps, their ranges on the colour bars and in the note. The
    input image sits on the left, the note below it. `pixel`, a feature pixel (row,
    col), is outlined in OWN_CELL_COLOUR on every map (None: no pixel marked). Axes:
    2 * (heads + 1) + 2 colour bars."""
    n_heads = layer.heads
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        check_head(h, n_heads)
    entropy = as_array(explain.attention_entropy(layer, normalize))[heads]          # (n, H, W)
    offset = as_array(explain.mean_offset(layer))[heads]                           # (n, 2, H, W)
    length = np.hypot(offset[:, 0], offset[:, 1])                               # (n, H, W)
    H, W = layer.size
    if pixel is not None and not (0 <= pixel[0] < H and 0 <= pixel[1] < W):
        raise ValueError(f"feature pixel {tuple(pixel)} is outside this layer's {H}x{W} "
                         f"map; rows run 0..{H - 1}, columns 0..{W - 1}.")
    K = layer.kernel_size

    groups = math.ceil(len(heads) / HEADS_PER_ROW)
    ncols = min(len(heads), HEADS_PER_ROW) + 1
    fig = Figure(figsize=(ncols * 1.75 + 1.3, 2 * groups * 1.9 + 0.5), layout="constrained")
    axes = fig.subplots(2 * groups, ncols, squeeze=False)
    entropy_axes, offset_axes = axes[:groups, 1:].ravel(), axes[groups:, 1:].ravel()
    e_norm = stretched(entropy, ENTROPY_CMAP).norm
    e_fmt = NATS                                   # entropy, and its ratio to ln n
    o_norm = stretched(length, OFFSET_CMAP).norm
    step = max(1, round(max(H, W) / 8))
    ys, xs = np.mgrid[step // 2:H:step, step // 2:W:step]
    longest = max(float(length[:, ys, xs].max()), 1e-9)
    arrow_scale = longest / (0.9 * step)           # data units per arrow length
    for n, h in enumerate(heads):
        e_image = entropy_axes[n].imshow(entropy[n], cmap=ENTROPY_CMAP, norm=e_norm,
                                         interpolation="nearest")
        entropy_axes[n].set_title(f"head {h}: entropy", fontsize=TITLE_SIZE)
        o_image = offset_axes[n].imshow(length[n], cmap=OFFSET_CMAP, norm=o_norm,
                                        interpolation="nearest")
        offset_axes[n].set_title(f"head {h}: offset", fontsize=TITLE_SIZE)
        offset_axes[n].quiver(xs, ys, offset[n, 1][ys, xs], offset[n, 0][ys, xs], angles="xy",
                              scale_units="xy", scale=arrow_scale, color="black", width=0.012,
                              headwidth=3.5, headlength=4, minlength=0.3, pivot="tail")
        if pixel is not None:
            for ax in (entropy_axes[n], offset_axes[n]):
                ax.add_patch(Rectangle((pixel[1] - .5, pixel[0] - .5), 1, 1, fill=False,
                                       edgecolor=OWN_CELL_COLOUR, linewidth=1.5))
    for ax in [*entropy_axes, *offset_axes]:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in [*entropy_axes[len(heads):], *offset_axes[len(heads):], *axes[1:groups, 0],
               *axes[groups + 1:, 0]]:
        ax.remove()
    uniform = "1" if normalize else e_fmt.text(math.log(K * K))
    colour_bar(fig, e_image, "entropy / log n" if normalize else "entropy (nats)",
                ax=list(axes[:groups, 1:].ravel()), shrink=0.9, aspect=15, pad=0.01)
    colour_bar(fig, o_image, "mean offset (feature px)",
                ax=list(axes[groups:, 1:].ravel()), shrink=0.9, aspect=15, pad=0.01)
    _image_panel(axes[0, 0], image, title=f"input {layer.image_size[0]}x{layer.image_size[1]}")
    _note_panel(axes[groups, 0],
                f"maps {H}x{W}; 1 px =\n  {layer.stride}x{layer.stride} image px\n"
                f"window {K}x{K}\n\nentropy here:\n  {e_fmt.span(e_norm.vmin, e_norm.vmax)}\n"
                f"  (0: one neighbour,\n  {uniform}: uniform)\n\narrows: where the\n"
                f"  weights lean\n  (longest {significant(longest, 2)} px)",
                fontsize=TITLE_SIZE - 1)
    fig.suptitle(f"{layer.name}: attention entropy and mean attended offset per head",
                 fontsize=TITLE_SIZE + 1)
    return fig


class MapCells(NamedTuple):
    """Where the cells of a figure's maps land in its PNG (`head_maps_png`): cell (i, j)
    of map n covers x from left[n] + j * width[n] and y from top[n] + i * height[n], one
    cell wide and high, in PNG pixels. A pixel is marked on a PNG drawn once per layer
    in a few milliseconds (`mark_pixel`), where drawing the figure again takes 0.4 s."""
    left: Tuple[float, ...]
    top: Tuple[float, ...]
    width: Tuple[float, ...]
    height: Tuple[float, ...]


def head_maps_png(layer: LayerTrace, image, heads: Optional[Sequence[int]] = None,
                  normalize: bool = False, dpi: int = 110) -> Tuple[bytes, MapCells]:
    """`head_maps_figure` without a pixel, as PNG bytes (not trimmed, so that its maps
    stay where the figure put them), and where the cells of its maps are."""
    fig = head_maps_figure(layer, image, heads, normalize)
    fig.set_dpi(dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)          # lays the figure out, at dpi
    height = fig.bbox.height                            # pixels; display y runs upwards
    maps = [ax for ax in fig.axes if ax.get_title().startswith("head ")]
    corners = [(ax.transData.transform((-0.5, -0.5)), ax.transData.transform((0.5, 0.5)))
               for ax in maps]                          # imshow: row 0 on top
    cells = MapCells(tuple(float(a[0]) for a, _ in corners),
                     tuple(float(height - a[1]) for a, _ in corners),
                     tuple(float(b[0] - a[0]) for a, b in corners),
                     tuple(float(a[1] - b[1]) for a, b in corners))
    return buffer.getvalue(), cells


def mark_pixel(png: bytes, cells: MapCells, pixel: Tuple[int, int]) -> bytes:
    """The PNG of `head_maps_png` with feature pixel (row, col) outlined in
    OWN_CELL_COLOUR on every map, as `head_maps_figure(pixel=...)` outlines it."""
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    i, j = pixel
    for left, top, width, height in zip(*cells):
        x0, y0 = left + j * width, top + i * height
        draw.rectangle((round(x0), round(y0), round(x0 + width) - 1, round(y0 + height) - 1),
                       outline=OWN_CELL_COLOUR, width=2)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _frame(ax, size: int, k: int) -> None:
    """A dashed frame around the k x k kernel in the middle of a size x size grid."""
    start = (size - k) // 2
    ax.add_patch(Rectangle((start - .5, start - .5), k, k, fill=False, edgecolor="black",
                           linewidth=1.2, linestyle="--"))


def kernels_figure(effective, conv=None, channel: int = 0, channels: int = 3,
                   pixel: Optional[Tuple[int, int]] = None, valid=None,
                   layer_name: Optional[str] = None,
                   cell: Optional[Tuple[int, int]] = None) -> Figure:
    """Attention's effective kernel at one pixel (C_in, K, K) beside the conv twin's
    kernel (C_in, k, k) for the same output channel, summarised the same way.

    Per row: the L2 norm over input channels (`grids.kernel_panel`, the numbers in the
    cells), then the `channels` input channels with the largest norm (signed, one
    diverging scale per row, `grids.channels_panel`), each scale with its colour bar.
    The conv kernel is drawn on the same K x K grid so the extents compare (its k x k
    dashed). `valid` (K, K) crosses out the attention's out-of-image cells; `cell` is
    the pixel's own window cell (px.cell; default the centre, as in a sliding window).
    conv=None leaves a note instead (no twin, e.g. the attention stem). For an ordinary
    layer the attention kernel is w[h(c)] (x) W_V[c]: its norm map is the head's weights
    times |W_V[c]|. Axes: 2 * (channels + 1) + 4 colour bars (conv None: channels + 2
    + 2)."""
    eff = as_array(effective)
    C_in, K, _ = eff.shape
    channels = max(0, min(channels, C_in))
    ncols = channels + 1
    rows = [1.0, 1.0] if conv is not None else [1.0, 0.25]
    fig = Figure(figsize=(ncols * PANEL + 1.6, sum(rows) * (PANEL + 0.35) + 0.6),
                 layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False, height_ratios=rows)
    where = f"pixel ({pixel[0]}, {pixel[1]})" if pixel is not None else "this pixel"

    def draw_row(row_axes, kernel: np.ndarray, mask, label: str, cell: Tuple[int, int]):
        k = kernel.shape[-1]
        size = max(K, k)
        norms = grids.kernel_panel(kernel, "all input channels", cell, mask, size)
        panel_bar(fig, draw_grid(row_axes[0], norms, norms.grids[0]), norms,
                   ax=row_axes[0], shrink=0.85, aspect=18, pad=0.01)
        signed = grids.channels_panel(kernel, channels, cell, mask, size)
        for ax, grid in zip(row_axes[1:], signed.grids):
            image = draw_grid(ax, signed, grid)
        if signed.grids:
            panel_bar(fig, image, signed, ax=list(row_axes[1:]), shrink=0.85, aspect=18,
                       pad=0.01)
        if k < size:
            for ax in row_axes:
                _frame(ax, size, k)
        row_axes[0].set_ylabel(label, fontsize=TITLE_SIZE - 1)

    draw_row(axes[0], eff, valid, f"attention\n{where} only",
             (K // 2, K // 2) if cell is None else cell)
    if conv is None:
        for ax in axes[1, 1:]:
            ax.remove()
        _note_panel(axes[1, 0], "No convolution to compare: the conv twin has no layer here "
                    "(e.g. the attention stem), or none was given.", in_layout=False)
    else:
        k = conv.shape[-1]
        draw_row(axes[1], as_array(conv), None, "conv twin\nevery pixel", (k // 2, k // 2))
    fig.suptitle(f"{layer_name + ': ' if layer_name else ''}output channel {channel}. "
                 f"Attention's effective {K}x{K} kernel changes from pixel to pixel;\n"
                 f"the convolution's kernel is the same at every pixel "
                 f"(two different networks: compare shapes, not values)", fontsize=TITLE_SIZE)
    return fig


def pixel_figure(layer: LayerTrace, pixel: Union[PixelTrace, Tuple[int, int]],
                 head: int = 0, channel: int = 0, image=None, conv=None) -> Figure:
    """One slide about one pixel: the input with the window, the mean weights over heads
    and head `head`'s weights (one scale), its content and position logits (one scale),
    attention's effective kernel (L2 norm over input channels) for output `channel`
    beside the conv twin's (`conv`: (C_in, k, k) or None), and y_ij[channel] written
    out as an equation."""
    px = pixel if isinstance(pixel, PixelTrace) else layer.pixel(*pixel)
    check_head(head, layer.heads)
    K = layer.kernel_size
    fig = Figure(figsize=(13.3, 6.4), layout="constrained")
    axes = fig.subplot_mosaic([["image", "mean", "content", "position", "weights"],
                               ["eff", "conv", "eq", "eq", "eq"]])
    size = 2.3                                        # inches per window panel here

    if image is not None:
        _image_panel(axes["image"], image, px, "input: window (yellow),\npixel (red)")
    else:
        _note_panel(axes["image"], "(no image given)")
    extra = "\n(hypothetical)" if px.counterfactual is not None else ""
    valid = as_array(px.valid).astype(bool)

    def grid(values, title: str) -> Grid:
        return Grid(as_array(values), title, valid, px.cell)

    weights = grids.make_panel(
        [grid(px.weights.mean(0), "weights, mean over heads" + extra),
         grid(px.weights[head], f"head {head}: weights\n= softmax(sum)" + extra)],
        WEIGHTS_CMAP, "softmax weight", px.padding)
    logits = grids.make_panel(
        [grid(px.logits_content[head], f"head {head}: content q·k"),
         grid(px.logits_row[head] + px.logits_col[head], f"head {head}: position q·r\n"
              f"(row + column)" + (", dropped" if extra else ""))],
        LOGITS_CMAP, "logit", px.padding, diverging=True)
    for name, panel, shown in [("mean", weights, 0), ("weights", weights, 1),
                               ("content", logits, 0), ("position", logits, 1)]:
        draw_grid(axes[name], panel, panel.grids[shown], size)

    effective = grids.kernel_panel(
        explain.effective_kernel(layer, px, channel),
        f"attention kernel, output\nchannel {channel}, this pixel{extra}", px.cell, valid)
    draw_grid(axes["eff"], effective, effective.grids[0], size)
    if conv is None:
        _note_panel(axes["conv"], "no conv twin\nat this layer")
    else:
        k = conv.shape[-1]
        twin = grids.kernel_panel(conv, f"conv twin {k}x{k}, output\nchannel {channel}, "
                                  f"every pixel", (k // 2, k // 2), size=max(K, k))
        draw_grid(axes["conv"], twin, twin.grids[0], size)
        if k < K:
            _frame(axes["conv"], K, k)

    equation = explain.output_terms(px, channel)
    text = explain.format_equation(equation, max_terms=5)
    d = px.values.shape[1]
    _note_panel(axes["eq"],
                f"Output channel c = {channel} is channel {channel - equation.head * d} of "
                f"head {equation.head} (each head has {d} channels):\n"
                f"y_ij[c] = sum_ab w_ab * v_ab[c] over the window, largest terms first\n\n"
                + textwrap.fill(text, 76, subsequent_indent="    ")
                + "\n\n" + textwrap.fill(explain.output_sentence(equation), 76)
                + f"\n{len(equation.terms)} neighbours in the softmax"
                + "\nkernel panels: L2 norm over input channels",
                fontsize=TITLE_SIZE - 1.5, family="monospace")
    fig.suptitle(f"{_hypothesis(px)}{layer.name}: feature pixel (row {px.row}, col {px.col}) "
                 f"of {layer.size[0]}x{layer.size[1]}, {K}x{K} window, {layer.heads} heads, "
                 f"{px.padding} padding, {layer.position} position", fontsize=TITLE_SIZE + 1)
    return fig


def cost_figure(d_in: int, d_out: int, heads: int = 8, conv_k: int = 3,
                max_k: int = 25) -> Figure:
    """Parameters and multiply-adds per output pixel of attention as its window k grows,
    against one conv_k x conv_k convolution, with the crossover window marked."""
    ks = np.arange(1, max_k + 1, 2)
    curves = {
        "parameters": ([cost.attention_params(k, d_in, d_out, heads) for k in ks],
                       cost.conv_params(conv_k, d_in, d_out)),
        "multiply-adds per pixel": ([cost.attention_madds(k, d_in, d_out, heads) for k in ks],
                                    cost.conv_madds(conv_k, d_in, d_out)),
    }
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    for ax, (label, (attention, conv)) in zip(fig.subplots(1, 2), curves.items()):
        ax.plot(ks, attention, "o-", color="#1f77b4", label="attention, k x k window")
        ax.axhline(conv, color="#d95f02", label=f"{conv_k}x{conv_k} convolution")
        ax.set_xlabel("attention window k")
        ax.set_ylabel(label)
        ax.set_xticks(ks)
        ax.set_ylim(0, max(max(attention), conv) * 1.1)
        ax.grid(alpha=0.3)
    crossover = cost.crossover_k(d_in, d_out, conv_k, heads)
    ax.axvline(crossover, color="grey", linestyle="--")
    ax.annotate(f"k = {crossover}: no costlier than\nthe {conv_k}x{conv_k} convolution",
                (crossover, cost.attention_madds(crossover, d_in, d_out, heads)),
                xytext=(0.03, 0.8), textcoords="axes fraction", fontsize=8,
                arrowprops=dict(arrowstyle="->", color="grey"))
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"d_in = {d_in}, d_out = {d_out}, {heads} heads", fontsize=10)
    return fig


def maps_figure(maps: Sequence[tuple], hatched=None) -> Figure:
    """Feature maps side by side: (array (H, W), title, colour map[, (vmin, vmax)]) each,
    with a colour bar under each, its ends printed; without limits a map's scale is
    stretched to its own numbers. Maps given the same limits are directly comparable.
    hatched: an (H, W) bool map (tensor or array) whose True pixels are hatched on every
    map, e.g. those a border can reach."""
    fig = Figure(figsize=(3.0 * len(maps), 3.3), layout="constrained")
    for ax, (values, title, cmap, *limits) in zip(np.atleast_1d(fig.subplots(1, len(maps))),
                                                  maps):
        norm = Normalize(*limits[0]) if limits else stretched(values, cmap).norm
        shown = ax.imshow(as_array(values), cmap=cmap, norm=norm, interpolation="nearest")
        if hatched is not None:
            _hatch(ax, as_array(hatched) > 0)
        ax.set_title(title, fontsize=TITLE_SIZE)
        ax.set_xticks([])
        ax.set_yticks([])
        colour_bar(fig, shown, "", ax=ax, orientation="horizontal", shrink=0.8,
                    pad=0.02)
    return fig


def _hatch(ax, mask: np.ndarray) -> None:
    """Hatch the True pixels of an (H, W) bool map: one patch per run along a row, gid
    "hatched"."""
    for row, line in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):              # runs [start, stop)
            ax.add_patch(Rectangle((start - .5, row - .5), stop - start, 1, hatch="////",
                                   fill=False, linewidth=0, edgecolor="#8c8c8c",
                                   gid="hatched"))


def layers_heads_figure(rows: Sequence[Tuple[str, str, PixelTrace]],
                        chosen: Optional[Tuple[str, int]] = None) -> Figure:
    """Every head of every layer at one place in the picture, one row per layer (name,
    label, the layer's pixel there), one column per head: each head's K x K weights as
    a tile, all on one scale from 0 to the largest, cells outside the map grey, in one
    mosaic (one image, quick to draw). `chosen` (layer name, head) is outlined in red.
    Axes: the mosaic + 1 colour bar."""
    K = max(px.weights.shape[-1] for _, _, px in rows)
    step = K + 1                                             # a tile and a gap
    columns = max(px.weights.shape[0] for _, _, px in rows)
    mosaic = np.full((len(rows) * step - 1, columns * step - 1), np.nan)
    outside = np.zeros(mosaic.shape, bool)
    for r, (_, _, px) in enumerate(rows):
        weights, valid = as_array(px.weights), as_array(px.valid).astype(bool)
        k = weights.shape[-1]
        for head in range(weights.shape[0]):
            tile = (slice(r * step, r * step + k), slice(head * step, head * step + k))
            mosaic[tile] = np.where(valid, weights[head], np.nan)
            outside[tile] = ~valid
    fig = Figure(figsize=(0.3 * columns + 2.4, 0.33 * len(rows) + 0.7), layout="constrained")
    ax = fig.subplots()
    ax.imshow(np.where(outside, 1.0, np.nan), cmap="Greys", vmin=0, vmax=6,
              interpolation="nearest")                       # outside cells: light grey
    image = ax.imshow(mosaic, cmap=WEIGHTS_CMAP, vmin=0.0, interpolation="nearest",
                      vmax=max(float(px.weights.max()) for _, _, px in rows))
    ax.set_xticks([h * step + (K - 1) / 2 for h in range(columns)], range(columns),
                  fontsize=TITLE_SIZE - 1)
    ax.set_yticks([r * step + (K - 1) / 2 for r in range(len(rows))],
                  [label for _, label, _ in rows], fontsize=TITLE_SIZE)
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    ax.set_xlabel("head", fontsize=TITLE_SIZE)
    for r, (name, _, px) in enumerate(rows):
        if chosen is not None and name == chosen[0]:
            k = px.weights.shape[-1]
            ax.add_patch(Rectangle((chosen[1] * step - 0.7, r * step - 0.7), k + 0.4, k + 0.4,
                                   fill=False, edgecolor=OWN_CELL_COLOUR, linewidth=2.5))
    colour_bar(fig, image, "softmax weight", ax=ax, shrink=0.8, aspect=20, pad=0.01)
    return fig
