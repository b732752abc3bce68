"""Small HTML tables for the explorer's per-pixel panels.

A click must redraw in well under a second; matplotlib needs about a second per figure
here, an HTML table a millisecond. These render the same numbers as `figures` (which
makes the PNGs for download and slides): coloured k x k grids with the values written
in, out-of-image neighbours greyed and crossed (or, with "zeros" padding, where they
take part in the softmax, dashed with their number), the pixel's own cell outlined.

Every colour scale is stretched to the numbers it colours and printed beside its grids
(a colour bar with its two ends); each grid writes its numbers in its own
`numbers.number_format`, so that they differ where they differ. A counterfactual pixel
(px.counterfactual) says so above its grids and in every title.
"""
from html import escape
from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm, to_hex

from .explain import in_softmax
from .figures import LOGITS_CMAP, NORM_CMAP, WEIGHTS_CMAP
from .numbers import number_format
from .trace import PixelTrace

_CELL = "width:{s}px;height:{s}px;text-align:center;font-size:{f}px;padding:0;"
_OUTSIDE = "background:#e5e5e5;color:#888;"
_IN_SOFTMAX = "outline:2px dashed #555;outline-offset:-3px;"


def _text_colour(rgba) -> str:
    r, g, b, _ = rgba
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#fff"


def grid(values: np.ndarray, valid: Optional[np.ndarray], cmap: str, norm,
         title: str = "", cell: int = 36, pixel: Optional[Tuple[int, int]] = None,
         padding: str = "mask") -> str:
    """One K x K table: each cell coloured by its value and labelled with it, in the
    `number_format` of the numbers the grid writes.

    values: (K, K); valid: (K, K) bool or None (all valid). Outside cells are greyed and
    marked x with "mask" padding; with "zeros" they take part in the softmax, so they
    keep their colour and number, dashed. pixel: the window cell [a, b] of the pixel
    itself (px.cell), outlined, and the offsets dy, dx in each cell's tooltip are counted
    from it; None: neither (a grid that is not a pixel's window). cell: the side of a
    table cell in CSS pixels. A shared power of ten (fmt.unit) is added to the title."""
    K = values.shape[0]
    hidden = np.zeros(values.shape, bool) if valid is None or padding == "zeros" else ~valid
    fmt = number_format(values[~hidden])
    colours = colormaps[cmap](norm(values))
    style = _CELL.format(s=cell, f=max(10, cell // 3))
    rows = []
    for a in range(K):
        cells = []
        for b in range(K):
            border = "outline:2px solid red;outline-offset:-2px;" if (a, b) == pixel else ""
            outside = valid is not None and not valid[a, b]
            if hidden[a, b]:
                cells.append(f'<td style="{style}{_OUTSIDE}{border}" title="outside the map">x</td>')
                continue
            rgba = colours[a, b]
            where = "" if pixel is None else f"dy={a - pixel[0]}, dx={b - pixel[1]}: "
            where = "outside the map, in the softmax: " + where if outside else where
            dashed = _IN_SOFTMAX if outside and not border else ""
            cells.append(f'<td style="{style}background:{to_hex(rgba)};color:{_text_colour(rgba)};'
                         f'{border}{dashed}" title="{where}{values[a, b]:.6g}">'
                         f'{fmt(values[a, b])}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"{title}  [{fmt.unit}]" if fmt.unit else title
    caption = f'<caption style="caption-side:top;font-size:14px">{escape(title)}</caption>'
    return ('<table style="border-collapse:collapse;margin:4px 10px 10px 0;display:inline-table">'
            + caption + "".join(rows) + "</table>")


def colour_bar(cmap: str, norm, label: str) -> str:
    """The colour scale of the grids beside it: a gradient from norm.vmin to norm.vmax,
    both ends written, and what it colours."""
    fmt = number_format([norm.vmin, norm.vmax])
    stops = ", ".join(to_hex(colormaps[cmap](x)) for x in np.linspace(0, 1, 11))
    return ('<div style="display:inline-block;margin:22px 10px 10px 0;font-size:13px">'
            f'<div>{escape(label)}</div>'
            f'<div style="width:150px;height:12px;background:linear-gradient(to right, {stops})">'
            '</div><div style="display:flex;justify-content:space-between;width:150px">'
            f'<span>{fmt(norm.vmin)}</span><span>{fmt(norm.vmax)}</span></div>'
            f'<div>{escape(fmt.unit)}</div></div>')


def row_of(grids: Sequence[str]) -> str:
    return '<div style="display:flex;flex-wrap:wrap;align-items:flex-start">' + "".join(grids) + "</div>"


def _stretched(shown: np.ndarray) -> Normalize:
    """A sequential scale from the smallest to the largest of `shown`."""
    low, high = float(shown.min()), float(shown.max())
    return Normalize(low, high if high > low else low + 1e-12)


def _symmetric(shown: np.ndarray) -> TwoSlopeNorm:
    """A diverging scale centred on 0, as far out as the largest |value| of `shown`."""
    limit = max(float(np.abs(shown).max()), 1e-12)
    return TwoSlopeNorm(0, -limit, limit)


def _banner(px: PixelTrace) -> str:
    """A line saying the numbers below are a counterfactual; "" for recorded ones."""
    if px.counterfactual is None:
        return ""
    return ('<div style="font-weight:bold;color:#9a5b00;margin:4px 0">Hypothetical: '
            f'{escape(px.counterfactual.description)}. Not what the model computed.</div>')


def _hypothetical(px: PixelTrace) -> str:
    return "" if px.counterfactual is None else ", hypothetical"


def weights_panel(px: PixelTrace, heads: Sequence[int], entropy: np.ndarray) -> str:
    """Each chosen head's softmax weights, then their mean, on one colour scale stretched
    to them, and the scale."""
    weights, valid, used = px.weights.numpy(), px.valid.numpy(), in_softmax(px).numpy()
    chosen = weights[list(heads)]
    shown = np.concatenate([chosen[:, used].ravel(), chosen.mean(0)[used]])
    norm = _stretched(shown)
    nats = number_format(np.asarray(entropy)[list(heads)], significant=3)
    extra = _hypothetical(px)
    grids = [grid(weights[h], valid, WEIGHTS_CMAP, norm,
                  f"head {h} (entropy {nats.text(entropy[h])}){extra}", pixel=px.cell,
                  padding=px.padding) for h in heads]
    if len(heads) > 1:
        grids.append(grid(chosen.mean(0), valid, WEIGHTS_CMAP, norm,
                          f"mean over heads{extra}", pixel=px.cell, padding=px.padding))
    bar = colour_bar(WEIGHTS_CMAP, norm, "softmax weight" + extra)
    return _banner(px) + row_of(grids + [bar])


def logits_panel(px: PixelTrace, head: int, content_only: np.ndarray,
                 position_only: np.ndarray) -> str:
    """One head: content, row part, column part and their sum on one diverging scale;
    then the softmax of content alone, of position alone, and the weights the pixel
    used (the recorded ones, or a counterfactual's), on one scale."""
    valid, used = px.valid.numpy(), in_softmax(px).numpy()
    dropped = "" if px.counterfactual is None else " (dropped)"
    parts = [(px.logits_content[head].numpy(), "content q·k"),
             (px.logits_row[head].numpy(), "row part q·r_row" + dropped),
             (px.logits_col[head].numpy(), "column part q·r_col" + dropped),
             (px.logits[head].numpy(), "sum = logit" + _hypothetical(px))]
    diverging = _symmetric(np.concatenate([p[used] for p, _ in parts]))
    used_weights = "real weights" if px.counterfactual is None else \
        "weights without position, hypothetical"
    softmaxes = [(content_only[head], "softmax(content only)"),
                 (position_only[head], "softmax(position only)"),
                 (px.weights[head].numpy(), used_weights)]
    sequential = _stretched(np.concatenate([s[used] for s, _ in softmaxes]))

    def scaled_row(items, cmap, norm, label):
        return row_of([grid(v, valid, cmap, norm, t, pixel=px.cell, padding=px.padding)
                       for v, t in items] + [colour_bar(cmap, norm, label)])

    return (_banner(px) + scaled_row(parts, LOGITS_CMAP, diverging, "logit")
            + scaled_row(softmaxes, WEIGHTS_CMAP, sequential, "softmax weight"))


def kernels_panel(effective: np.ndarray, conv: Optional[np.ndarray],
                  pixel: Optional[Tuple[int, int]] = None, title_extra: str = "") -> str:
    """L2 norm over input channels of attention's effective kernel (K x K), with the
    pixel's own cell `pixel` (px.cell) outlined, and of the conv twin's kernel (k x k,
    centred on the pixel), each on its own scale. title_extra: added to the attention
    grid's title (e.g. ", hypothetical")."""
    def norm_grid(norms: np.ndarray, title: str, cell: Tuple[int, int]) -> List[str]:
        scale = _stretched(norms)
        return [grid(norms, None, NORM_CMAP, scale, title, pixel=cell),
                colour_bar(NORM_CMAP, scale, "L2 norm over in-channels")]

    grids = norm_grid(np.sqrt((effective ** 2).sum(0)), "attention at this pixel" + title_extra,
                      pixel)
    if conv is not None:
        k = conv.shape[-1]
        grids += norm_grid(np.sqrt((conv ** 2).sum(0)), "convolution, every pixel",
                           (k // 2, k // 2))
    return row_of(grids)


def mixture_panel(p: np.ndarray) -> str:
    """The stem's p(a, b, m), (K, K, m): one K x K grid per value matrix m, on one scale
    stretched to p, and the scale."""
    norm = _stretched(p)
    grids = [grid(p[:, :, m], None, NORM_CMAP, norm, f"m = {m}") for m in range(p.shape[-1])]
    return row_of(grids + [colour_bar(NORM_CMAP, norm, "p(a, b, m)")])


def predictions_table(top: List[Tuple[str, float]]) -> str:
    """Class names with a bar and a percentage each."""
    rows = "".join(
        f'<tr><td style="padding:2px 8px 2px 0">{escape(name)}</td>'
        f'<td style="width:160px;padding:2px 0"><div style="background:#1f77b4;height:12px;'
        f'width:{max(p * 100, 0.5):.1f}%"></div></td>'
        f'<td style="padding:2px 0 2px 8px;text-align:right">{p:.1%}</td></tr>'
        for name, p in top)
    return f'<table style="border-collapse:collapse;font-size:14px">{rows}</table>'
