"""Small HTML tables for the explorer's per-pixel panels.

A click must redraw in well under a second; matplotlib needs about a second per figure
here, an HTML table a millisecond. These render the same numbers as `figures` (which
makes the PNGs for download and slides): coloured k x k grids with the values written
in, out-of-image neighbours greyed and crossed, the pixel's own cell outlined.
"""
from html import escape
from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm, to_hex

from .figures import LOGITS_CMAP, NORM_CMAP, WEIGHTS_CMAP
from .trace import PixelTrace

_CELL = "width:{s}px;height:{s}px;text-align:center;font-size:{f}px;padding:0;"
_OUTSIDE = "background:#e5e5e5;color:#888;"


def _text_colour(rgba) -> str:
    r, g, b, _ = rgba
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#fff"


def grid(values: np.ndarray, valid: Optional[np.ndarray], cmap: str, norm,
         title: str = "", digits: int = 2, cell: int = 34,
         pixel: Optional[Tuple[int, int]] = None) -> str:
    """One K x K table: each cell coloured by its value and labelled with it.

    values: (K, K); valid: (K, K) bool or None (all valid); outside cells are greyed and
    marked x. pixel: the window cell [a, b] of the pixel itself (px.cell), outlined, and
    the offsets dy, dx in each cell's tooltip are counted from it; None: neither (a grid
    that is not a pixel's window). cell: the side of a table cell in CSS pixels."""
    K = values.shape[0]
    colours = colormaps[cmap](norm(values))
    style = _CELL.format(s=cell, f=max(8, cell // 3))
    rows = []
    for a in range(K):
        cells = []
        for b in range(K):
            border = "outline:2px solid red;outline-offset:-2px;" if (a, b) == pixel else ""
            if valid is not None and not valid[a, b]:
                cells.append(f'<td style="{style}{_OUTSIDE}{border}" title="outside the map">x</td>')
                continue
            rgba = colours[a, b]
            text = f"{values[a, b]:.{digits}f}"
            where = "" if pixel is None else f"dy={a - pixel[0]}, dx={b - pixel[1]}: "
            cells.append(f'<td style="{style}background:{to_hex(rgba)};color:{_text_colour(rgba)};'
                         f'{border}" title="{where}{values[a, b]:.6g}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<caption style="caption-side:top;font-size:13px">{escape(title)}</caption>'
    return ('<table style="border-collapse:collapse;margin:4px 10px 10px 0;display:inline-table">'
            + caption + "".join(rows) + "</table>")


def row_of(grids: Sequence[str]) -> str:
    return '<div style="display:flex;flex-wrap:wrap;align-items:flex-start">' + "".join(grids) + "</div>"


def weights_panel(px: PixelTrace, heads: Sequence[int], entropy: np.ndarray) -> str:
    """Each chosen head's softmax weights, then their mean, on one colour scale."""
    weights = px.weights.numpy()
    valid = px.valid.numpy()
    chosen = weights[list(heads)]
    norm = Normalize(0, max(float(chosen.max()), 1e-6))
    grids = [grid(weights[h], valid, WEIGHTS_CMAP, norm, f"head {h} (entropy {entropy[h]:.2f})",
                  pixel=px.cell) for h in heads]
    if len(heads) > 1:
        grids.append(grid(chosen.mean(0), valid, WEIGHTS_CMAP, norm, "mean over heads",
                          pixel=px.cell))
    return row_of(grids)


def logits_panel(px: PixelTrace, head: int, content_only: np.ndarray,
                 position_only: np.ndarray) -> str:
    """One head: content, row part, column part and their sum on one diverging scale;
    then the softmax of content alone, of position alone, and the real weights."""
    valid = px.valid.numpy()
    parts = [(px.logits_content[head].numpy(), "content q·k"),
             (px.logits_row[head].numpy(), "row part q·r_row"),
             (px.logits_col[head].numpy(), "column part q·r_col"),
             (px.logits[head].numpy(), "sum = logit")]
    shown = np.concatenate([p[valid] for p, _ in parts])
    limit = max(float(np.abs(shown).max()), 1e-6)
    diverging = TwoSlopeNorm(0, -limit, limit)
    softmaxes = [(content_only[head], "softmax(content only)"),
                 (position_only[head], "softmax(position only)"),
                 (px.weights[head].numpy(), "real weights")]
    top = max(float(max(s.max() for s, _ in softmaxes)), 1e-6)
    return (row_of([grid(p, valid, LOGITS_CMAP, diverging, t, digits=1, pixel=px.cell)
                    for p, t in parts])
            + row_of([grid(s, valid, WEIGHTS_CMAP, Normalize(0, top), t, pixel=px.cell)
                      for s, t in softmaxes]))


def kernels_panel(effective: np.ndarray, conv: Optional[np.ndarray],
                  pixel: Optional[Tuple[int, int]] = None) -> str:
    """L2 norm over input channels of attention's effective kernel (K x K), with the
    pixel's own cell `pixel` (px.cell) outlined, and of the conv twin's kernel (k x k,
    centred on the pixel), each on its own scale."""
    attention = np.sqrt((effective ** 2).sum(0))
    grids = [grid(attention, None, NORM_CMAP, Normalize(0, max(attention.max(), 1e-12)),
                  "attention at this pixel", digits=3, pixel=pixel)]
    if conv is not None:
        norm = np.sqrt((conv ** 2).sum(0))
        k = norm.shape[0]
        grids.append(grid(norm, None, NORM_CMAP, Normalize(0, max(norm.max(), 1e-12)),
                          "convolution, every pixel", digits=3, pixel=(k // 2, k // 2)))
    return row_of(grids)


def predictions_table(top: List[Tuple[str, float]]) -> str:
    """Class names with a bar and a percentage each."""
    rows = "".join(
        f'<tr><td style="padding:2px 8px 2px 0">{escape(name)}</td>'
        f'<td style="width:160px;padding:2px 0"><div style="background:#1f77b4;height:12px;'
        f'width:{max(p * 100, 0.5):.1f}%"></div></td>'
        f'<td style="padding:2px 0 2px 8px;text-align:right">{p:.1%}</td></tr>'
        for name, p in top)
    return f'<table style="border-collapse:collapse;font-size:14px">{rows}</table>'
