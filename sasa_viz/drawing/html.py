"""Small HTML tables for the explorer's per-pixel panels.

A click must redraw in well under a second; matplotlib needs about a second per figure
here, an HTML table a millisecond. These draw the same panels as `figures` (which makes
the PNGs for download and slides): `grids` decides what each panel shows (numbers,
colours, formats, titles), this module only writes it as tables: coloured k x k grids
with the numbers written in, out-of-image neighbours crossed out (or, with "zeros"
padding, where they take part in the softmax, dashed with their number), the pixel's
own cell outlined, each cell's exact value and offset in its tooltip, and beside the
grids their colour scale with its two ends written. A counterfactual pixel
(px.counterfactual) says so above its grids and in every title.
"""
from html import escape
from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import to_hex

from sasa_viz.drawing import grids
from sasa_viz.drawing.grids import Grid, Panel, colormap
from sasa_viz.inspection.trace import PixelTrace

_CELL = "width:{s}px;height:{s}px;text-align:center;font-size:{f}px;padding:0;"
_CROSSED = f"background:{grids.OUTSIDE_COLOUR};color:{grids.OUTSIDE_TEXT_COLOUR};"
_OUTSIDE_SHOWN = "outline:2px dashed #555;outline-offset:-3px;"
_OWN_CELL = f"outline:2px solid {grids.OWN_CELL_COLOUR};outline-offset:-2px;"


def grid_table(panel: Panel, grid: Grid, cell: int = 36) -> str:
    """One grid of a panel as a table, `cell` CSS pixels a side: each cell in its
    value's colour with the panel's text for it; for a pixel's window (grid.cell set)
    the offsets dy (rows) and dx (columns) from the pixel along the edges; the tooltip
    gives the exact value and the offset."""
    style = _CELL.format(s=cell, f=max(10, cell // 3))
    crossed, outside_shown = panel.crossed(grid), panel.outside_shown(grid)
    coloured = panel.coloured(grid)
    colours = panel.scale.colours(grid.values)                      # (K, K, 4)
    K, L = grid.values.shape
    rows = []
    if grid.cell is not None:                                      # dx along the top
        rows.append("<tr>" + _tick("dy\\dx") + "".join(_tick(_signed(b - grid.cell[1]))
                                                      for b in range(L)) + "</tr>")
    for a in range(K):
        cells = [] if grid.cell is None else [_tick(_signed(a - grid.cell[0]))]
        for b in range(L):
            own = _OWN_CELL if (a, b) == grid.cell else ""
            text = escape(panel.text(grid, a, b))
            if crossed[a, b]:
                cells.append(f'<td style="{style}{_CROSSED}{own}" title="outside the map">'
                             f'{text}</td>')
            elif not coloured[a, b]:                               # no value: blank
                cells.append(f'<td style="{style}{own}"></td>')
            else:
                value = grid.values[a, b]
                where = "" if grid.cell is None else \
                    f"dy={a - grid.cell[0]}, dx={b - grid.cell[1]}: "
                if outside_shown[a, b]:
                    where = "outside the map, in the softmax: " + where
                dashed = _OUTSIDE_SHOWN if outside_shown[a, b] and not own else ""
                cells.append(f'<td style="{style}background:{to_hex(colours[a, b])};'
                             f'color:{grids.text_colour(colours[a, b])};{own}{dashed}" '
                             f'title="{where}{value:.6g}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = ('<caption style="caption-side:top;font-size:14px;white-space:pre-line">'
               f'{escape(panel.title(grid))}</caption>')
    return ('<table style="border-collapse:collapse;margin:4px 10px 10px 0;display:inline-table">'
            + caption + "".join(rows) + "</table>")


def _signed(offset: int) -> str:
    """An offset as a tick label: "-2", "0", "+1"."""
    return f"{offset:+d}" if offset else "0"


def _tick(text: str) -> str:
    """A small grey header cell: an offset along the edge of a grid."""
    return (f'<th style="font-size:10px;font-weight:normal;color:#666;padding:0 2px">'
            f'{escape(text)}</th>')


def colour_bar(panel: Panel) -> str:
    """The panel's colour scale: a gradient from its low end to its high end, both
    written in the panel's format, what it colours, and the power of ten if any."""
    scale, fmt = panel.scale, panel.fmt
    stops = ", ".join(to_hex(c) for c in colormap(scale.cmap)(np.linspace(0, 1, 11)))
    return ('<div style="display:inline-block;margin:22px 10px 10px 0;font-size:13px">'
            f'<div>{escape(scale.label)}</div>'
            f'<div style="width:150px;height:12px;background:linear-gradient(to right, {stops})">'
            '</div><div style="display:flex;justify-content:space-between;width:150px">'
            f'<span>{fmt(scale.norm.vmin)}</span><span>{fmt(scale.norm.vmax)}</span></div>'
            f'<div>{escape(fmt.unit)}</div></div>')


def row_of(parts: Sequence[str]) -> str:
    return '<div style="display:flex;flex-wrap:wrap;align-items:flex-start">' + "".join(parts) + "</div>"


def panel_row(panel: Panel) -> str:
    """A panel's grids side by side, then its colour bar."""
    return row_of([grid_table(panel, g) for g in panel.grids] + [colour_bar(panel)])


def _banner(px: PixelTrace) -> str:
    """A line saying the numbers below are a counterfactual; "" for recorded ones."""
    if px.counterfactual is None:
        return ""
    return ('<div style="font-weight:bold;color:#9a5b00;margin:4px 0">'
            f'{escape(grids.hypothesis(px))}</div>')


def weights_panel(px: PixelTrace, heads: Sequence[int], stretch: bool = False) -> str:
    """Each chosen head's softmax weights, then their mean, on one colour scale
    (`grids.weights_panel`: from 0, or stretched)."""
    return _banner(px) + panel_row(grids.weights_panel(px, heads, stretch))


def mean_weights_panel(px: PixelTrace, stretch: bool = False) -> str:
    """The mean over heads of the weights alone (`grids.mean_weights_panel`)."""
    return _banner(px) + panel_row(grids.mean_weights_panel(px, stretch))


def logits_panel(px: PixelTrace, head: int, stretch: bool = False) -> str:
    """One head: content, row part, column part and their sum on one diverging scale;
    then the softmax of content alone, of position alone, and the weights the pixel
    used (the recorded ones, or a counterfactual's), on one scale
    (`grids.logits_panels`)."""
    logits, softmaxes = grids.logits_panels(px, head, stretch)
    return _banner(px) + panel_row(logits) + panel_row(softmaxes)


def kernels_panel(effective: np.ndarray, conv: Optional[np.ndarray],
                  pixel: Optional[Tuple[int, int]] = None, title_extra: str = "",
                  valid: Optional[np.ndarray] = None) -> str:
    """The size (L2 norm over input channels) of attention's effective kernel at this
    pixel (C_in, K, K), with the pixel's own cell `pixel` (px.cell; default the centre)
    outlined and the cells outside the map (`valid`) crossed out, and of the conv twin's
    kernel (C_in, k, k), centred on the same K x K grid; each on its own scale.
    title_extra: added to the attention grid's title (e.g. ", hypothetical")."""
    K = effective.shape[-1]
    parts: List[str] = [panel_row(grids.kernel_panel(
        effective, "attention at this pixel" + title_extra,
        (K // 2, K // 2) if pixel is None else pixel, valid))]
    if conv is not None:
        k = conv.shape[-1]
        parts.append(panel_row(grids.kernel_panel(conv, "convolution, every pixel",
                                                  (k // 2, k // 2), size=max(K, k))))
    return row_of(parts)


def mixture_panel(p: np.ndarray) -> str:
    """The stem's p(a, b, m), (K, K, m): one K x K grid per value matrix m, on one scale
    from 0 to the largest p, and the scale."""
    return panel_row(grids.mixture_panel(p))


def predictions_table(top: List[Tuple[str, float]]) -> str:
    """Class names with a bar and a percentage each."""
    rows = "".join(
        f'<tr><td style="padding:2px 8px 2px 0">{escape(name)}</td>'
        f'<td style="width:160px;padding:2px 0"><div style="background:#1f77b4;height:12px;'
        f'width:{max(p * 100, 0.5):.1f}%"></div></td>'
        f'<td style="padding:2px 0 2px 8px;text-align:right">{p:.1%}</td></tr>'
        for name, p in top)
    return f'<table style="border-collapse:collapse;font-size:14px">{rows}</table>'
