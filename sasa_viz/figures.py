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


# --- small helpers ----------------------------------------------------------------------

def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, Tensor) else np.asarray(t)


def _cmap(name: str, bad: str = OUTSIDE_COLOR):
    return colormaps[name].with_extremes(bad=bad)


def _text_colour(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _cell_fontsize(K: int, panel: float = PANEL) -> float:
    return float(np.clip(panel * 72 / K * 0.34, 4.0, 9.0))


def _fmt_weight(v: float) -> str:
    return f"{v:.2f}"


def _fixed(v: float, decimals: int) -> str:
    text = f"{v:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text   # no "-0.0"


def _signed_formatter(norm: Normalize):
    """Decimals for signed numbers on this scale: 2 below 1, 1 below 10, else 0."""
    vmax = max(abs(norm.vmin), abs(norm.vmax))
    decimals = 2 if vmax < 1 else 1 if vmax < 10 else 0
    return lambda v: _fixed(v, decimals)


def _sym_norm(*arrays: np.ndarray) -> Normalize:
    """A diverging scale centred on 0, symmetric, shared by all `arrays` (finite cells)."""
    values = np.concatenate([np.ravel(a[np.isfinite(a)]) for a in arrays] or [np.zeros(1)])
    vmax = float(np.abs(values).max()) if values.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    return TwoSlopeNorm(0.0, -vmax, vmax)


def _window_panel(ax, values, valid, cmap: str, norm: Normalize, fmt=_fmt_weight,
                  outside: str = "hide", title: Optional[str] = None,
                  fontsize: Optional[float] = None, *, cell: Tuple[int, int],
                  ticks: bool = True, gid: Optional[str] = None, bad: str = OUTSIDE_COLOR):
    """Draw one K x K window: colour, the number in every cell (fmt=None: none), out-of-image cells
    ("hide": grey with an x; "hatch": hatched over their number) and the pixel's own
    `cell` [a, b], outlined, from which the ticks count the offsets dy and dx.
    NaN cells (no value at all, e.g. outside a smaller kernel) are drawn in `bad`.
    Returns the AxesImage (for a colour bar)."""
    values = _np(values).astype(float)
    valid = _np(valid).astype(bool) if valid is not None else np.ones(values.shape, bool)
    K0, K1 = values.shape
    hidden = ~np.isfinite(values) | (~valid if outside == "hide" else False)
    colormap = _cmap(cmap, bad)
    image = ax.imshow(np.ma.masked_where(hidden, values), cmap=colormap, norm=norm,
                      interpolation="nearest")
    size = fontsize or _cell_fontsize(max(K0, K1))
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
                                  for b in range(K1)], fontsize=6)
        ax.set_yticks(range(K0), [f"{a - cell[0]:+d}" if a != cell[0] else "0"
                                  for a in range(K0)], fontsize=6)
        ax.tick_params(length=0, pad=1.5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
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
    ax.set_title(title, fontsize=8)


def _note_panel(ax, text: str, fontsize: float = 7.5, family: Optional[str] = None,
                in_layout: bool = True):
    """Text in an axes without frame; in_layout=False lets it run past the axes."""
    ax.axis("off")
    ax.text(0.0, 1.0, text, ha="left", va="top", fontsize=fontsize, family=family,
            transform=ax.transAxes, wrap=False).set_in_layout(in_layout)


def _pixel_title(px: PixelTrace, name: Optional[str]) -> str:
    where = f"feature pixel (row {px.row}, col {px.col})"
    return f"{name}: {where}" if name else where


# --- the figures --------------------------------------------------------------------------

def weights_figure(px: PixelTrace, heads: Optional[Sequence[int]] = None,
                   layer_name: Optional[str] = None) -> Figure:
    """Each head's K x K softmax weights at one pixel, side by side, then their mean.

    Numbers in the cells are the weights (2 decimals); one shared colour scale. Panels:
    one per head in `heads` (default all) plus the mean; at most 5 per row; one colour
    bar. The title of each head gives its entropy H in nats. Axes: panels + 1 colour bar."""
    padding = px.padding
    n_heads = px.weights.shape[0]
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        _check_head(h, n_heads)
    weights = px.weights[heads]
    mean = weights.mean(dim=0)
    entropy = explain.entropy_of(px.weights, px.valid, padding)
    panels = [(weights[n], f"head {h}  (H={float(entropy[h]):.2f})") for n, h in enumerate(heads)]
    label = "mean over heads" if len(heads) == n_heads else "mean of these heads"
    panels.append((mean, label))

    n = len(panels)
    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(ncols * PANEL + 0.9, nrows * (PANEL + 0.25) + 0.6),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    norm = Normalize(0.0, max(float(weights.max()), 1e-6))
    outside = _outside_mode(padding)
    image = None
    for ax, (values, title) in zip(axes, panels):
        image = _window_panel(ax, values, px.valid, WEIGHTS_CMAP, norm, _fmt_weight,
                              outside, title, cell=px.cell, gid="weight")
    for ax in axes[n:]:
        ax.remove()
    fig.colorbar(image, ax=list(axes[:n]), shrink=0.85, aspect=25, pad=0.01,
                 label="softmax weight")
    K = px.weights.shape[-1]
    outside_note = {"mask": "out-of-image neighbours: x, left out of the softmax",
                    "zeros": "out-of-image neighbours: hatched, zero key and value "
                             "but still in the softmax"}
    fig.suptitle(f"Attention weights at {_pixel_title(px, layer_name)}, {K}x{K} window\n"
                 f"rows dy, columns dx from the pixel (red); {outside_note[padding]}",
                 fontsize=9)
    return fig


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
    _, y_without = explain.without_position(px)

    fig = Figure(figsize=(4 * PANEL + 0.9, 2 * (PANEL + 0.3) + 0.55), layout="constrained")
    axes = fig.subplots(2, 5, width_ratios=[1, 1, 1, 1, 0.07])
    valid = _np(px.valid).astype(bool)
    logit_norm = _sym_norm(*[a[valid] if padding == "mask" else a
                             for a in (content, row, col, total)])
    fmt = _signed_formatter(logit_norm)
    outside = _outside_mode(padding)
    none = "" if has_position else "\n(no position term)"
    top = [(content, "content  q.k"), (row, "row part  q_row.r_row(dy)" + none),
           (col, "column part  q_col.r_col(dx)" + none), (total, "sum = logit")]
    for ax, (values, title) in zip(axes[0], top):
        image = _window_panel(ax, values, valid, LOGITS_CMAP, logit_norm, fmt, outside, title,
                              cell=px.cell)
    fig.colorbar(image, cax=axes[0, 4], label="logit")

    bottom = [(w_content[head], "softmax(content only)"),
              (w_position[head], "softmax(position only)"),
              (px.weights[head], "real: softmax(sum)")]
    weight_norm = Normalize(0.0, max(float(max(b[0].max() for b in bottom)), 1e-6))
    for ax, (values, title) in zip(axes[1], bottom):
        image = _window_panel(ax, values, valid, WEIGHTS_CMAP, weight_norm, _fmt_weight,
                              outside, title, cell=px.cell)
    fig.colorbar(image, cax=axes[1, 4], label="softmax weight")

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
    used = n_in if padding == "mask" else K * K
    note = (f"head {head}: {used} of {K * K}\nneighbours in the softmax\n({borders})\n\n"
            f"entropy (nats)\n  content only  {entropy[0]:.2f}\n"
            f"  position only {entropy[1]:.2f}\n  real          {entropy[2]:.2f}\n"
            f"  uniform       {math.log(used):.2f}\n\n"
            + (f"drop q.r: head output\nmoves by {change:.3g}\n(its norm: {size:.3g})"
               if has_position else "no q.r term here:\nnothing to drop"))
    _note_panel(axes[1, 3], note, family="monospace", fontsize=6.5)
    fig.suptitle(f"Logits of head {head} at {_pixel_title(px, layer_name)}", fontsize=9)
    return fig


def head_maps_figure(layer: LayerTrace, image, heads: Optional[Sequence[int]] = None,
                     normalize: bool = False) -> Figure:
    """Whole-map summaries, one column per head: top the attention entropy at every
    pixel (dark = picks few neighbours), bottom the mean attended offset (colour: its
    length in feature pixels; arrows: its direction). The input image sits on the left,
    a key below it. Axes: 2 * (heads + 1) + 2 colour bars."""
    n_heads = layer.heads
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    for h in heads:
        _check_head(h, n_heads)
    entropy = _np(explain.attention_entropy(layer, normalize))         # (h, H, W)
    offset = _np(explain.mean_offset(layer))                            # (h, 2, H, W)
    length = np.hypot(offset[:, 0], offset[:, 1])                       # (h, H, W)
    H, W = layer.size
    K = layer.kernel_size

    ncols = len(heads) + 1
    fig = Figure(figsize=(ncols * 1.45 + 1.0, 2 * 1.55 + 0.6), layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False)
    _image_panel(axes[0, 0], image, title=f"input {layer.image_size[0]}x{layer.image_size[1]}")
    emax = 1.0 if normalize else math.log(K * K)
    e_norm = Normalize(0.0, emax)
    o_norm = Normalize(0.0, max(float(length[heads].max()), 0.25))
    step = max(1, round(max(H, W) / 8))
    ys, xs = np.mgrid[step // 2:H:step, step // 2:W:step]
    longest = max(float(length[heads][:, ys, xs].max()), 1e-9)
    arrow_scale = longest / (0.9 * step)           # data units per arrow length
    for n, h in enumerate(heads, start=1):
        e_image = axes[0, n].imshow(entropy[h], cmap=ENTROPY_CMAP, norm=e_norm,
                                    interpolation="nearest")
        axes[0, n].set_title(f"head {h}", fontsize=8)
        o_image = axes[1, n].imshow(length[h], cmap=OFFSET_CMAP, norm=o_norm,
                                    interpolation="nearest")
        axes[1, n].quiver(xs, ys, offset[h, 1][ys, xs], offset[h, 0][ys, xs], angles="xy",
                          scale_units="xy", scale=arrow_scale, color="black", width=0.012,
                          headwidth=3.5, headlength=4, minlength=0.3, pivot="tail")
        for ax in axes[:, n]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(e_image, ax=list(axes[0, 1:]), shrink=0.9, aspect=12, pad=0.01,
                 label="entropy / log n" if normalize else "entropy (nats)")
    fig.colorbar(o_image, ax=list(axes[1, 1:]), shrink=0.9, aspect=12, pad=0.01,
                 label="offset (px)")
    axes[0, 1].set_ylabel("entropy", fontsize=8)
    axes[1, 1].set_ylabel("mean offset", fontsize=8)
    uniform = "1" if normalize else f"{math.log(K * K):.2f}"
    _note_panel(axes[1, 0],
                f"maps {H}x{W}, 1 px =\n  {layer.stride}x{layer.stride} image px\n"
                f"window {K}x{K}\n\nentropy: 0 = one\n  neighbour, {uniform} =\n"
                f"  uniform\n\narrows: where the\n  weights lean\n"
                f"  (longest {longest:.2f} px)", fontsize=6.5)
    fig.suptitle(f"{layer.name}: attention entropy and mean attended offset per head",
                 fontsize=9)
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
                fontsize: Optional[float] = None):
    """The L2 norm over input channels of a (C, K, K) kernel, relative to its largest
    cell (so kernels of different scale compare by shape); the largest in the title.
    `cell`: the pixel's own cell."""
    norm = _channel_norm(grid)
    peak = float(np.nanmax(norm)) if np.isfinite(norm).any() else 0.0
    relative = norm / peak if peak > 0 else norm
    _window_panel(ax, relative, valid, NORM_CMAP, Normalize(0.0, 1.0), _fmt_weight, "hide",
                  f"{title}\n(L2 norm over in-channels, / {peak:.2g})", fontsize, cell=cell,
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
            image = _window_panel(ax, grid[i], mask, KERNEL_CMAP, signed, None,
                                  "hide", f"in-channel {i}", cell=cell, bad="white")
        if k < size:
            for ax in row_axes:
                _frame(ax, start, k)
        row_axes[0].set_ylabel(label, fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=list(row_axes[1:]), shrink=0.85, aspect=18, pad=0.01,
                         label="kernel weight")

    draw_row(axes[0], eff, valid, f"attention\n{where} only",
             (K // 2, K // 2) if cell is None else cell)
    if conv is None:
        for ax in axes[1, 1:]:
            ax.remove()
        _note_panel(axes[1, 0], "No convolution to compare: the conv twin has no layer here "
                    "(e.g. the attention stem), or none was given.", fontsize=8, in_layout=False)
    else:
        k = conv.shape[-1]
        draw_row(axes[1], _np(conv), None, "conv twin\nevery pixel", (k // 2, k // 2))
    fig.suptitle(f"{layer_name + ': ' if layer_name else ''}output channel {channel}. "
                 f"Attention's effective {K}x{K} kernel changes from pixel to pixel;\n"
                 f"the convolution's kernel is the same at every pixel "
                 f"(two different networks: compare shapes, not values)", fontsize=9)
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
    size = _cell_fontsize(K, 2.3)

    if image is not None:
        _image_panel(axes["image"], image, px, "input: window (yellow), pixel (red)")
    else:
        _note_panel(axes["image"], "(no image given)")
    w_norm = Normalize(0.0, max(float(px.weights.max()), 1e-6))
    _window_panel(axes["mean"], px.weights.mean(0), valid, WEIGHTS_CMAP, w_norm,
                  _fmt_weight, outside, "weights, mean over heads", size, cell=px.cell)
    content = _np(px.logits_content[head])
    position = _np(px.logits_row[head] + px.logits_col[head])
    l_norm = _sym_norm(*[a[valid] if padding == "mask" else a for a in (content, position)])
    fmt = _signed_formatter(l_norm)
    _window_panel(axes["content"], content, valid, LOGITS_CMAP, l_norm, fmt, outside,
                  f"head {head}: content q.k", size, cell=px.cell)
    _window_panel(axes["position"], position, valid, LOGITS_CMAP, l_norm, fmt,
                  outside, f"head {head}: position q.r (row + col)", size, cell=px.cell)
    _window_panel(axes["weights"], px.weights[head], valid, WEIGHTS_CMAP, w_norm,
                  _fmt_weight, outside, f"head {head}: weights = softmax(sum)", size,
                  cell=px.cell)

    _norm_panel(axes["eff"], _np(explain.effective_kernel(layer, px, channel)), valid,
                f"attention kernel, out-ch {channel} (this pixel)", px.cell, size)
    if conv is None:
        _note_panel(axes["conv"], "no conv twin\nat this layer", fontsize=8)
    else:
        kernel = _np(conv)
        k = kernel.shape[-1]
        grid, start = _on_grid(kernel, max(K, k))
        middle = grid.shape[-1] // 2                  # the convolution's centre
        _norm_panel(axes["conv"], grid, None,
                    f"conv twin {k}x{k}, out-ch {channel} (every pixel)", (middle, middle), size)
        if k < grid.shape[-1]:
            _frame(axes["conv"], start, k)

    equation = explain.output_terms(px, channel)
    text = explain.format_equation(equation, max_terms=5)
    d = px.values.shape[1]
    _note_panel(axes["eq"],
                f"Output channel c = {channel}, from head {equation.head} = {channel} // {d}:\n"
                f"y_ij[c] = sum_ab w_ab * v_ab[c] over the window, largest terms first\n\n"
                + textwrap.fill(text, 76, subsequent_indent="    ")
                + f"\n\nrecorded output y_ij[c] = {equation.output:.6g}"
                + f"\n{len(equation.terms)} neighbours in the softmax"
                + "\nkernel panels: L2 norm over input channels, relative to the largest",
                fontsize=8.5, family="monospace")
    fig.suptitle(f"{layer.name}: feature pixel (row {px.row}, col {px.col}) of "
                 f"{layer.size[0]}x{layer.size[1]}, {K}x{K} window, {n_heads} heads, "
                 f"{padding} padding, {layer.position} position", fontsize=10)
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
    with a colour bar under each; maps given the same limits are directly comparable."""
    fig = Figure(figsize=(3.0 * len(maps), 3.3), layout="constrained")
    for ax, (values, title, cmap, *limits) in zip(np.atleast_1d(fig.subplots(1, len(maps))),
                                                  maps):
        vmin, vmax = limits[0] if limits else (None, None)
        shown = ax.imshow(_np(values), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, orientation="horizontal", shrink=0.8, pad=0.02)
    return fig
