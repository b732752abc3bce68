"""Matplotlib figures of a trace, shared by the app and the CLI.

Every function takes tensors / traces / arrays and returns a `matplotlib.figure.Figure`;
nothing here touches pyplot's global state (the Streamlit server draws from several
threads at once) or imports streamlit. Show one with `st.pyplot(fig)` or save it with
`fig.savefig(path)`. The numbers come from `sasa_viz.explain`.

One colour map per quantity, everywhere:
  attention weights  WEIGHTS_CMAP (sequential, 0 = dark)
  logits, kernels    LOGITS_CMAP / KERNEL_CMAP (diverging, 0 = white, shared symmetric scale)
  entropy            ENTROPY_CMAP;  mean offset length  OFFSET_CMAP
Window panels: rows are dy, columns dx (offsets from the pixel); the pixel's own cell
(px.cell: the centre of a sliding window, its place in its block for the block stem) is
outlined in red; out-of-image neighbours are grey with an "x" when the layer masks them
("mask" padding) and hatched over their real numbers when they take part ("zeros").
Colour scales are stretched to the numbers they colour, each with a colour bar; numbers
sharing a scale share one `numbers.number_format` (a shared power of ten goes in the
titles). A counterfactual pixel (px.counterfactual) is labelled as one in every title.
"""
import math
import textwrap
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from . import cost, explain
from .numbers import NumberFormat, number_format
from .trace import LayerTrace, PixelTrace

WEIGHTS_CMAP = "viridis"
LOGITS_CMAP = "RdBu_r"
KERNEL_CMAP = "PuOr_r"
NORM_CMAP = "Greens"
ENTROPY_CMAP = "cividis"
OFFSET_CMAP = "YlOrRd"
OUTSIDE_COLOR = "#d4d4d4"
CENTRE_COLOR = "#e8000b"
WINDOW_COLOR = "#ffd700"

PANEL = 1.85            # inches per window panel
TITLE_SIZE = 10         # points: figure titles; panel titles one less, notes two less
HEADS_PER_ROW = 4       # head maps a row in head_maps_figure


# --- small helpers ----------------------------------------------------------------------

def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, Tensor) else np.asarray(t)


def _cmap(name: str, bad: str = OUTSIDE_COLOR):
    return colormaps[name].with_extremes(bad=bad)


def _text_colour(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _cell_fontsize(K: int, chars: int, panel: float = PANEL) -> float:
    """Points for the numbers of a K x K panel `panel` inches wide, `chars` long at most."""
    cell = panel * 72 / K                                      # a cell's side in points
    return float(np.clip(min(cell * 0.34, cell / (0.62 * max(chars, 1))), 4.0, 9.0))


def _stretched(*arrays) -> Normalize:
    """A sequential scale from the smallest to the largest finite number of `arrays`."""
    values = np.concatenate([np.ravel(_np(a)) for a in arrays])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return Normalize(low, high if high > low else low + 1e-12)


def _titled(title: str, fmt: Optional[NumberFormat]) -> str:
    """A title with the shared power of ten of its numbers, if any, on a line of its own."""
    return f"{title}\n[{fmt.unit}]" if fmt is not None and fmt.unit else title


def _sym_norm(*arrays: np.ndarray) -> Normalize:
    """A diverging scale centred on 0, symmetric, shared by all `arrays` (finite cells)."""
    values = np.concatenate([np.ravel(a[np.isfinite(a)]) for a in arrays] or [np.zeros(1)])
    vmax = float(np.abs(values).max()) if values.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    return TwoSlopeNorm(0.0, -vmax, vmax)


def _window_panel(ax, values, valid, cmap: str, norm: Normalize, numbers: bool = True,
                  outside: str = "hide", title: Optional[str] = None,
                  panel: float = PANEL, *, cell: Tuple[int, int],
                  ticks: bool = True, gid: Optional[str] = None, bad: str = OUTSIDE_COLOR):
    """Draw one K x K window, `panel` inches wide: colour, the number in every cell
    (numbers=False: none) in the panel's own format (`number_format` of the numbers it
    writes; a shared power of ten goes in the title), out-of-image cells ("hide": grey
    with an x; "hatch": hatched over their number) and the pixel's own `cell` [a, b],
    outlined, from which the ticks count the offsets dy and dx. NaN cells (no value at
    all, e.g. outside a smaller kernel) are drawn in `bad`.
    Returns the AxesImage (for a colour bar)."""
    values = _np(values).astype(float)
    valid = _np(valid).astype(bool) if valid is not None else np.ones(values.shape, bool)
    K0, K1 = values.shape
    hidden = ~np.isfinite(values) | (~valid if outside == "hide" else False)
    colormap = _cmap(cmap, bad)
    image = ax.imshow(np.ma.masked_where(hidden, values), cmap=colormap, norm=norm,
                      interpolation="nearest")
    written = values[~hidden & np.isfinite(values)]
    fmt = number_format(written) if numbers and written.size else None
    chars = max((len(fmt(v)) for v in written), default=1) if fmt else 1
    size = _cell_fontsize(max(K0, K1), chars, panel)
    for a in range(K0):
        for b in range(K1):
            if not valid[a, b]:
                ax.add_patch(Rectangle((b - .5, a - .5), 1, 1, hatch="////",
                                       facecolor=OUTSIDE_COLOR if outside == "hide" else "none",
                                       edgecolor="#8c8c8c", linewidth=0))
                if outside == "hide":
                    ax.text(b, a, "x", ha="center", va="center", fontsize=size,
                            color="#666666")
                    continue
            v = values[a, b]
            if fmt is None or not np.isfinite(v):
                continue
            if valid[a, b]:
                text = ax.text(b, a, fmt(v), ha="center", va="center", fontsize=size,
                               color=_text_colour(colormap(norm(v))))
            else:                  # over the hatching: on a light box to stay readable
                text = ax.text(b, a, fmt(v), ha="center", va="center", fontsize=size,
                               color="black", bbox=dict(boxstyle="square,pad=0.08",
                                                        facecolor="white", alpha=0.75,
                                                        linewidth=0))
            if gid:
                text.set_gid(gid)
    ax.add_patch(Rectangle((cell[1] - .5, cell[0] - .5), 1, 1, fill=False,
                           edgecolor=CENTRE_COLOR, linewidth=1.8))
    if ticks:
        ax.set_xticks(range(K1), [f"{b - cell[1]:+d}" if b != cell[1] else "0"
                                  for b in range(K1)], fontsize=7)
        ax.set_yticks(range(K0), [f"{a - cell[0]:+d}" if a != cell[0] else "0"
                                  for a in range(K0)], fontsize=7)
        ax.tick_params(length=0, pad=1.5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(_titled(title, fmt), fontsize=TITLE_SIZE - 1)
    return image


def _outside_mode(padding: str) -> str:
    return "hide" if padding == "mask" else "hatch"


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
                               fill=False, edgecolor=CENTRE_COLOR, linewidth=1.5))
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
    if px.counterfactual is None:
        return ""
    return f"HYPOTHETICAL, not what the model computed: {px.counterfactual.description}\n"


# --- the figures --------------------------------------------------------------------------

def weights_figure(px: PixelTrace, heads: Optional[Sequence[int]] = None,
                   layer_name: Optional[str] = None) -> Figure:
    """Each head's K x K softmax weights at one pixel, side by side, then their mean.

    Numbers in the cells are the weights, in one format; one colour scale stretched to
    the weights in the softmax. Panels: one per head in `heads` (default all) plus the
    mean; at most 5 per row; one colour bar. The title of each head gives its entropy H
    in nats. Axes: panels + 1 colour bar."""
    padding = px.padding
    n_heads = px.weights.shape[0]
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        _check_head(h, n_heads)
    weights = px.weights[heads]
    mean = weights.mean(dim=0)
    entropy = explain.entropy_of(px.weights, px.valid, padding)
    nats = number_format(entropy[heads], significant=3)
    panels = [(weights[n], f"head {h}  (H={nats.text(entropy[h])})")
              for n, h in enumerate(heads)]
    label = "mean over heads" if len(heads) == n_heads else "mean of these heads"
    panels.append((mean, label))
    used = explain.in_softmax(px).numpy()

    n = len(panels)
    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * PANEL + 0.9, nrows * (PANEL + 0.25) + 0.6),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    norm = _stretched(_np(weights)[:, used], _np(mean)[used])
    outside = _outside_mode(padding)
    image = None
    for ax, (values, title) in zip(axes, panels):
        image = _window_panel(ax, values, px.valid, WEIGHTS_CMAP, norm, True,
                              outside, title, cell=px.cell, gid="weight")
    for ax in axes[n:]:
        ax.remove()
    _colour_bar(fig, image, "softmax weight", ax=list(axes[:n]), shrink=0.85, aspect=25,
                pad=0.01)
    K = px.weights.shape[-1]
    outside_note = {"mask": "out-of-image neighbours: x, left out of the softmax",
                    "zeros": "out-of-image neighbours: hatched, zero key and value "
                             "but still in the softmax"}
    fig.suptitle(f"{_hypothesis(px)}Attention weights at {_pixel_title(px, layer_name)}, "
                 f"{K}x{K} window\nrows dy, columns dx from the pixel (red); "
                 f"{outside_note[padding]}", fontsize=TITLE_SIZE)
    return fig


def _colour_bar(fig, image, label: str, **options):
    """fig.colorbar(image, **options), its two ends ticked so that the range is printed,
    every tick in the format of that range (its power of ten in the label)."""
    low, high = image.norm.vmin, image.norm.vmax
    fmt = number_format([low, high])
    bar = fig.colorbar(image, label=_titled(label, fmt), **options)
    margin = 0.15 * (high - low)                     # no tick label over an end's
    ticks = [t for t in bar.get_ticks() if low + margin < t < high - margin]
    bar.set_ticks([low, *ticks, high], labels=[fmt(t) for t in [low, *ticks, high]])
    bar.ax.tick_params(labelsize=TITLE_SIZE - 2)
    return bar


def _check_head(head: int, n_heads: int) -> None:
    if not 0 <= head < n_heads:
        raise ValueError(f"head {head} does not exist; this layer has heads 0..{n_heads - 1}.")


def logits_figure(px: PixelTrace, head: int = 0, layer_name: Optional[str] = None) -> Figure:
    """Where one head's weights come from.

    Top row, one diverging scale: content q.k, row part q_row.r_row(dy), column part
    q_col.r_col(dx), their sum (the logit). Bottom row: softmax of content alone, of
    position alone (row + column) and the real weights = softmax(sum), on one scale, and
    a note with entropies and what dropping the position term does to this head's output.
    Axes: 8 panels (the note is one) + 2 colour bars."""
    padding = px.padding
    _check_head(head, px.weights.shape[0])
    content = _np(px.logits_content[head])
    row, col = _np(px.logits_row[head]), _np(px.logits_col[head])
    total = content + row + col
    has_position = bool(np.any(row != 0) or np.any(col != 0))
    w_content = explain.content_only_weights(px)
    w_position = explain.position_only_weights(px)
    y_without = explain.without_position(px).output

    fig = Figure(figsize=(4 * PANEL + 0.9, 2 * (PANEL + 0.3) + 0.7), layout="constrained")
    axes = fig.subplots(2, 5, width_ratios=[1, 1, 1, 1, 0.07])
    valid, used = _np(px.valid).astype(bool), explain.in_softmax(px).numpy()
    logit_norm = _sym_norm(*[a[used] for a in (content, row, col, total)])
    outside = _outside_mode(padding)
    hypothetical = px.counterfactual is not None
    none = "\n(dropped)" if hypothetical else "" if has_position else "\n(no position term)"
    top = [(content, "content  q.k"), (row, "row part  q_row.r_row(dy)" + none),
           (col, "column part  q_col.r_col(dx)" + none), (total, "sum = logit")]
    for ax, (values, title) in zip(axes[0], top):
        image = _window_panel(ax, values, valid, LOGITS_CMAP, logit_norm, True, outside, title,
                              cell=px.cell)
    _colour_bar(fig, image, "logit", cax=axes[0, 4])

    bottom = [(w_content[head], "softmax(content only)"),
              (w_position[head], "softmax(position only)"),
              (px.weights[head], "hypothetical: softmax(sum)" if hypothetical
               else "real: softmax(sum)")]
    weight_norm = _stretched(*[_np(b)[used] for b, _ in bottom])
    for ax, (values, title) in zip(axes[1], bottom):
        image = _window_panel(ax, values, valid, WEIGHTS_CMAP, weight_norm, True,
                              outside, title, cell=px.cell)
    _colour_bar(fig, image, "softmax weight", cax=axes[1, 4])

    entropy = [float(explain.entropy_of(w[head][None], px.valid, padding)[0])
               for w in (w_content, w_position, px.weights)]
    d = px.values.shape[1]
    block = slice(head * d, (head + 1) * d)
    change = float((y_without[block] - px.output[block]).norm())
    size = float(px.output[block].norm())
    n_in, K = int(valid.sum()), valid.shape[0]
    if n_in == K * K:
        borders = "all inside the map"
    elif padding == "mask":
        borders = f"{K * K - n_in} outside, left out"
    else:
        borders = f"{K * K - n_in} outside, zero value"
    n_used = int(used.sum())
    nats = number_format(entropy + [math.log(n_used)], significant=3)
    note = (f"head {head}: {n_used} of {K * K}\nneighbours in the softmax\n({borders})\n\n"
            f"entropy (nats)\n  content only  {nats.text(entropy[0])}\n"
            f"  position only {nats.text(entropy[1])}\n"
            f"  {'hypothetical' if hypothetical else 'real        '}  {nats.text(entropy[2])}\n"
            f"  uniform       {nats.text(math.log(n_used))}\n\n"
            + (f"drop q.r: head output\nmoves by {change:.3g}\n(its norm: {size:.3g})"
               if has_position else "no q.r term here:\nnothing to drop"))
    _note_panel(axes[1, 3], note, family="monospace", fontsize=TITLE_SIZE - 2.5)
    fig.suptitle(f"{_hypothesis(px)}Logits of head {head} at {_pixel_title(px, layer_name)}",
                 fontsize=TITLE_SIZE)
    return fig


def head_maps_figure(layer: LayerTrace, image, heads: Optional[Sequence[int]] = None,
                     normalize: bool = False) -> Figure:
    """Whole-map summaries, up to HEADS_PER_ROW heads a row: the attention entropy at
    every pixel (dark = picks few neighbours), and below, the mean attended offset
    (colour: its length in feature pixels; arrows: its direction). Both colour scales
    are stretched to the maps, their ranges on the colour bars and in the note. The
    input image sits on the left, the note below it. Axes: 2 * (heads + 1) + 2 colour
    bars."""
    n_heads = layer.heads
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        _check_head(h, n_heads)
    entropy = _np(explain.attention_entropy(layer, normalize))[heads]          # (n, H, W)
    offset = _np(explain.mean_offset(layer))[heads]                           # (n, 2, H, W)
    length = np.hypot(offset[:, 0], offset[:, 1])                               # (n, H, W)
    H, W = layer.size
    K = layer.kernel_size

    groups = math.ceil(len(heads) / HEADS_PER_ROW)
    ncols = min(len(heads), HEADS_PER_ROW) + 1
    fig = Figure(figsize=(ncols * 1.75 + 1.3, 2 * groups * 1.9 + 0.5), layout="constrained")
    axes = fig.subplots(2 * groups, ncols, squeeze=False)
    entropy_axes, offset_axes = axes[:groups, 1:].ravel(), axes[groups:, 1:].ravel()
    e_norm, e_fmt = _stretched(entropy), number_format(entropy, significant=3)
    o_norm = _stretched(length)
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
    for ax in [*entropy_axes, *offset_axes]:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in [*entropy_axes[len(heads):], *offset_axes[len(heads):], *axes[1:groups, 0],
               *axes[groups + 1:, 0]]:
        ax.remove()
    uniform = "1" if normalize else e_fmt.text(math.log(K * K))
    _colour_bar(fig, e_image, "entropy / log n" if normalize else "entropy (nats)",
                ax=list(axes[:groups, 1:].ravel()), shrink=0.9, aspect=15, pad=0.01)
    _colour_bar(fig, o_image, "mean offset (feature px)",
                ax=list(axes[groups:, 1:].ravel()), shrink=0.9, aspect=15, pad=0.01)
    _image_panel(axes[0, 0], image, title=f"input {layer.image_size[0]}x{layer.image_size[1]}")
    _note_panel(axes[groups, 0],
                f"maps {H}x{W}; 1 px =\n  {layer.stride}x{layer.stride} image px\n"
                f"window {K}x{K}\n\nentropy here:\n  {e_fmt.span(e_norm.vmin, e_norm.vmax)}\n"
                f"  (0: one neighbour,\n  {uniform}: uniform)\n\narrows: where the\n"
                f"  weights lean\n  (longest {longest:.2f} px)", fontsize=TITLE_SIZE - 1)
    fig.suptitle(f"{layer.name}: attention entropy and mean attended offset per head",
                 fontsize=TITLE_SIZE + 1)
    return fig


def _on_grid(kernel: np.ndarray, size: int) -> Tuple[np.ndarray, int]:
    """(C, k, k) -> (C, size, size), centred, NaN around; and where the k x k starts."""
    k = kernel.shape[-1]
    grid = np.full((kernel.shape[0], size, size), np.nan)
    start = (size - k) // 2
    grid[:, start:start + k, start:start + k] = kernel
    return grid, start


def _channel_norm(grid: np.ndarray) -> np.ndarray:
    """(C, K, K) -> (K, K): the L2 norm over channels; NaN where every channel is NaN."""
    norm = np.sqrt(np.nansum(grid ** 2, axis=0))
    norm[np.all(np.isnan(grid), axis=0)] = np.nan
    return norm


def _norm_panel(ax, grid: np.ndarray, valid, title: str, cell: Tuple[int, int],
                panel: float = PANEL):
    """The L2 norm over input channels of a (C, K, K) kernel, relative to its largest
    cell (so kernels of different scale compare by shape); the largest in the title.
    `cell`: the pixel's own cell."""
    norm = _channel_norm(grid)
    peak = float(np.nanmax(norm)) if np.isfinite(norm).any() else 0.0
    relative = norm / peak if peak > 0 else norm
    shown = relative if valid is None else np.where(_np(valid).astype(bool), relative, np.nan)
    _window_panel(ax, relative, valid, NORM_CMAP, _stretched(shown), True, "hide",
                  f"{title}\n(L2 norm over in-channels, / {peak:.2g})", panel, cell=cell,
                  bad="white")


def _frame(ax, start: int, k: int) -> None:
    ax.add_patch(Rectangle((start - .5, start - .5), k, k, fill=False, edgecolor="black",
                           linewidth=1.2, linestyle="--"))


def kernels_figure(effective, conv=None, channel: int = 0, channels: int = 3,
                   pixel: Optional[Tuple[int, int]] = None, valid=None,
                   layer_name: Optional[str] = None,
                   cell: Optional[Tuple[int, int]] = None) -> Figure:
    """Attention's effective kernel at one pixel (C_in, K, K) beside the conv twin's
    kernel (C_in, k, k) for the same output channel, summarised the same way.

    Per row: the L2 norm over input channels relative to its largest cell (values in the
    cells, the largest in the title), then the `channels`
    input channels with the largest norm (signed, one diverging scale per row). The conv
    kernel is drawn on the same K x K grid so the extents compare (its k x k dashed).
    `valid` (K, K) greys the attention's out-of-image cells; `cell` is the pixel's own
    window cell (px.cell; default the centre, as in a sliding window). conv=None leaves a note
    instead (no twin, e.g. the attention stem). For an ordinary layer the attention
    kernel is w[h(c)] (x) W_V[c]: its norm map is the head's weights times |W_V[c]|.
    Axes: 2 * (channels + 1) + 2 colour bars (conv None: channels + 2 + 1)."""
    eff = _np(effective)
    C_in, K, _ = eff.shape
    channels = max(0, min(channels, C_in))
    ncols = channels + 1
    rows = [1.0, 1.0] if conv is not None else [1.0, 0.25]
    fig = Figure(figsize=(ncols * PANEL + 1.0, sum(rows) * (PANEL + 0.35) + 0.6),
                 layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False, height_ratios=rows)
    where = f"pixel ({pixel[0]}, {pixel[1]})" if pixel is not None else "this pixel"

    def draw_row(row_axes, kernel: np.ndarray, mask, label: str, cell: Tuple[int, int]):
        k = kernel.shape[-1]
        size = max(K, k)
        grid, start = _on_grid(kernel, size)
        cell = (cell[0] + start, cell[1] + start)
        _norm_panel(row_axes[0], grid, mask, "all in-channels", cell)
        order = np.argsort(-np.sqrt((kernel ** 2).sum(axis=(1, 2))), kind="stable")[:channels]
        signed = _sym_norm(*[grid[i] for i in order])
        image = None
        for ax, i in zip(row_axes[1:], order):
            image = _window_panel(ax, grid[i], mask, KERNEL_CMAP, signed, False,
                                  "hide", f"in-channel {i}", cell=cell, bad="white")
        if k < size:
            for ax in row_axes:
                _frame(ax, start, k)
        row_axes[0].set_ylabel(label, fontsize=TITLE_SIZE - 1)
        if image is not None:
            _colour_bar(fig, image, "kernel weight", ax=list(row_axes[1:]), shrink=0.85,
                        aspect=18, pad=0.01)

    draw_row(axes[0], eff, valid, f"attention\n{where} only",
             (K // 2, K // 2) if cell is None else cell)
    if conv is None:
        for ax in axes[1, 1:]:
            ax.remove()
        _note_panel(axes[1, 0], "No convolution to compare: the conv twin has no layer here "
                    "(e.g. the attention stem), or none was given.", in_layout=False)
    else:
        k = conv.shape[-1]
        draw_row(axes[1], _np(conv), None, "conv twin\nevery pixel", (k // 2, k // 2))
    fig.suptitle(f"{layer_name + ': ' if layer_name else ''}output channel {channel}. "
                 f"Attention's effective {K}x{K} kernel changes from pixel to pixel;\n"
                 f"the convolution's kernel is the same at every pixel "
                 f"(two different networks: compare shapes, not values)", fontsize=TITLE_SIZE)
    return fig


def pixel_figure(layer: LayerTrace, pixel: Union[PixelTrace, Tuple[int, int]],
                 head: int = 0, channel: int = 0, image=None, conv=None) -> Figure:
    """One slide about one pixel: the input with the window, the mean weights over heads,
    head `head`'s content and position logits and its weights, attention's effective
    kernel (L2 norm over input channels, relative to its largest) for output `channel`
    beside the conv twin's (`conv`: (C_in, k, k) or None), and y_ij[channel] written
    out as an equation."""
    px = pixel if isinstance(pixel, PixelTrace) else layer.pixel(*pixel)
    padding = px.padding
    n_heads = layer.heads
    _check_head(head, n_heads)
    K = layer.kernel_size
    fig = Figure(figsize=(13.3, 6.4), layout="constrained")
    axes = fig.subplot_mosaic([["image", "mean", "content", "position", "weights"],
                               ["eff", "conv", "eq", "eq", "eq"]])
    valid = _np(px.valid).astype(bool)
    outside = _outside_mode(padding)
    panel = 2.3                                       # inches per window panel here

    if image is not None:
        _image_panel(axes["image"], image, px, "input: window (yellow),\npixel (red)")
    else:
        _note_panel(axes["image"], "(no image given)")
    hypothetical = "\n(hypothetical)" if px.counterfactual is not None else ""
    used = explain.in_softmax(px).numpy()
    mean = _np(px.weights.mean(0))
    w_norm = _stretched(mean[used], _np(px.weights[head])[used])
    _window_panel(axes["mean"], mean, valid, WEIGHTS_CMAP, w_norm, True, outside,
                  "weights, mean over heads" + hypothetical, panel, cell=px.cell)
    content = _np(px.logits_content[head])
    position = _np(px.logits_row[head] + px.logits_col[head])
    l_norm = _sym_norm(content[used], position[used])
    _window_panel(axes["content"], content, valid, LOGITS_CMAP, l_norm, True, outside,
                  f"head {head}: content q.k", panel, cell=px.cell)
    _window_panel(axes["position"], position, valid, LOGITS_CMAP, l_norm, True, outside,
                  f"head {head}: position q.r\n(row + col)"
                  + (", dropped" if hypothetical else ""), panel, cell=px.cell)
    _window_panel(axes["weights"], px.weights[head], valid, WEIGHTS_CMAP, w_norm, True,
                  outside, f"head {head}: weights\n= softmax(sum)" + hypothetical, panel,
                  cell=px.cell)

    _norm_panel(axes["eff"], _np(explain.effective_kernel(layer, px, channel)), valid,
                f"attention kernel, out-ch {channel}\n(this pixel){hypothetical}", px.cell,
                panel)
    if conv is None:
        _note_panel(axes["conv"], "no conv twin\nat this layer")
    else:
        kernel = _np(conv)
        k = kernel.shape[-1]
        grid, start = _on_grid(kernel, max(K, k))
        middle = grid.shape[-1] // 2                  # the convolution's centre
        _norm_panel(axes["conv"], grid, None,
                    f"conv twin {k}x{k}, out-ch {channel}\n(every pixel)", (middle, middle),
                    panel)
        if k < grid.shape[-1]:
            _frame(axes["conv"], start, k)

    equation = explain.output_terms(px, channel)
    text = explain.format_equation(equation, max_terms=5)
    d = px.values.shape[1]
    _note_panel(axes["eq"],
                f"Output channel c = {channel}, from head {equation.head} = {channel} // {d}:\n"
                f"y_ij[c] = sum_ab w_ab * v_ab[c] over the window, largest terms first\n\n"
                + textwrap.fill(text, 76, subsequent_indent="    ")
                + "\n\n" + textwrap.fill(explain.output_sentence(equation), 76)
                + f"\n{len(equation.terms)} neighbours in the softmax"
                + "\nkernel panels: L2 norm over input channels, relative to the largest",
                fontsize=TITLE_SIZE - 1.5, family="monospace")
    fig.suptitle(f"{_hypothesis(px)}{layer.name}: feature pixel (row {px.row}, col {px.col}) "
                 f"of {layer.size[0]}x{layer.size[1]}, {K}x{K} window, {n_heads} heads, "
                 f"{padding} padding, {layer.position} position", fontsize=TITLE_SIZE + 1)
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


def maps_figure(maps: Sequence[tuple]) -> Figure:
    """Feature maps side by side: (array (H, W), title, colour map[, (vmin, vmax)]) each,
    with a colour bar under each, its ends printed; without limits a map's scale is
    stretched to its own numbers. Maps given the same limits are directly comparable."""
    fig = Figure(figsize=(3.0 * len(maps), 3.3), layout="constrained")
    for ax, (values, title, cmap, *limits) in zip(np.atleast_1d(fig.subplots(1, len(maps))),
                                                  maps):
        norm = Normalize(*limits[0]) if limits else _stretched(values)
        shown = ax.imshow(_np(values), cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=TITLE_SIZE)
        ax.set_xticks([])
        ax.set_yticks([])
        _colour_bar(fig, shown, "", ax=ax, orientation="horizontal", shrink=0.8,
                    pad=0.02)
    return fig
