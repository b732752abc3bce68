"""The explorer's HTML panels write the trace's own numbers where they belong, in one
format per panel, print every colour scale's range, cross out what is outside the map,
and say what is hypothetical. The tables are read back with html.parser."""
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.drawing import figures, html
from sasa_viz.inspection import explain
from sasa_viz.numbers import NATS, WEIGHT


def corner_pixel(padding="mask"):
    """Pixel (0, 1) of a 9x9 map, 5x5 window: 2 rows and 1 column outside the map."""
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2, padding=padding)).eval()
    with torch.no_grad():
        model[0].query.weight.mul_(4)                  # sharper than at initialisation
    return trace(model, torch.rand(1, 3, 9, 9)).layers["0"].pixel(0, 1)


class Tables(HTMLParser):
    """Every table of a page: its caption and, row by row, each cell's
    {"text", "title", "style"}; and the colour bars' end labels, in order."""

    def __init__(self, page: str):
        super().__init__()
        self.tables, self.bar_ends, self._cell, self._in = [], [], None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"caption": "", "rows": []})
        elif tag == "caption":
            self._in = "caption"
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag == "td" and self.tables:
            self._cell = {"text": "", "title": attrs.get("title"), "style": attrs["style"]}
            self.tables[-1]["rows"][-1].append(self._cell)
        elif tag == "span":
            self._in = "span"
            self.bar_ends.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self.tables and not self.tables[-1]["rows"][-1]:
            self.tables[-1]["rows"].pop()                # the dx ticks: header cells only
        if tag in ("caption", "span"):
            self._in = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._in == "caption":
            self.tables[-1]["caption"] += data
        elif self._in == "span":
            self.bar_ends[-1] += data
        elif self._cell is not None:
            self._cell["text"] += data

    def table(self, caption_start: str):
        """The one table whose caption starts with caption_start."""
        found = [t for t in self.tables if t["caption"].startswith(caption_start)]
        assert len(found) == 1, [t["caption"] for t in self.tables]
        return found[0]


def tooltip_values(table) -> np.ndarray:
    """(K, K) the exact values in the cells' tooltips, NaN where a cell has none."""
    return np.array([[float(c["title"].rsplit(": ", 1)[-1]) if c["title"] and
                      c["title"] != "outside the map" else np.nan for c in row]
                     for row in table["rows"]])


def texts(table):
    return [[c["text"] for c in row] for row in table["rows"]]


def test_weights_panel_writes_every_weight_in_one_format_and_crosses_outside_cells():
    px = corner_pixel()
    valid, weights = px.valid.numpy(), px.weights.numpy()
    page = html.weights_panel(px, [0, 1])
    tables = Tables(page)
    mean = weights.mean(0)
    for caption, expected in [("head 0 (entropy", weights[0]), ("head 1 (entropy", weights[1]),
                              ("mean over heads", mean)]:
        table = tables.table(caption)
        assert "×10" not in table["caption"]                       # plain decimals
        for a in range(5):
            for b in range(5):
                cell = table["rows"][a][b]
                if valid[a, b]:
                    assert cell["title"] == f"dy={a - 2}, dx={b - 2}: {expected[a, b]:.6g}"
                    assert cell["text"] == WEIGHT(expected[a, b])
                    assert float(cell["text"].lstrip("<")) <= 1
                else:
                    assert (cell["title"], cell["text"]) == ("outside the map", "x")
    own = [(a, b) for a, row in enumerate(tables.table("head 1")["rows"])
           for b, c in enumerate(row) if "solid" in c["style"]]
    assert own == [px.cell] == [(2, 2)]                           # the pixel, outlined
    # the offsets from the pixel along the edges: dx on top, dy down the side
    assert page.count(">dy\\dx</th>") == 3 and page.count(">+2</th>") == 2 * 3
    assert page.count(">-2</th>") == 2 * 3


def test_entropy_in_the_titles_is_each_heads():
    px = corner_pixel()
    tables = Tables(html.weights_panel(px, [0, 1]))
    for h in range(2):
        w = px.weights[h][px.valid].double()
        entropy = float(-(w * w.log()).sum())
        title = tables.table(f"head {h} (entropy\n")["caption"]
        written = title.split("(entropy\n")[1].split(" nats")[0]
        assert written == NATS(entropy)


def test_a_nearly_uniform_head_looks_uniform_from_zero_and_differs_when_stretched():
    """Weights are written in one precision everywhere; a head spread almost evenly
    (0.0455 to 0.0456) is one colour on the scale from 0 and spans the colour map on the
    stretched one."""
    px = corner_pixel()
    near_uniform = torch.where(px.valid, 0.0455 + 1e-4 * torch.rand(5, 5), 0.0)
    px.weights[0] = near_uniform / near_uniform.sum()
    for stretch in (False, True):
        tables = Tables(html.weights_panel(px, [0], stretch))
        grid = tables.table("head 0")
        written = {t for row in texts(grid) for t in row if t != "x"}
        assert {len(t.split(".")[1]) for t in written} == {3}
        colours = {c["style"].split("background:")[1][:7] for row in grid["rows"] for c in row
                   if "background:#" in c["style"]}
        assert (len(colours) <= 2) != stretch, colours
        low, high = (float(x) for x in tables.bar_ends)
        drawn = tooltip_values(grid)
        assert high == pytest.approx(np.nanmax(drawn), abs=5e-4)
        assert low == (pytest.approx(np.nanmin(drawn), abs=5e-4) if stretch else 0.0)


def test_a_weight_too_small_to_write_is_not_written_as_zero():
    px = corner_pixel()
    px.weights[0] = torch.where(px.valid, 1e-5, 0.0)
    px.weights[0, 2, 2] += 1 - px.weights[0].sum()
    table = Tables(html.weights_panel(px, [0])).table("head 0")
    written = {t for row in texts(table) for t in row}
    assert written == {"<0.001", "x", WEIGHT(float(px.weights[0, 2, 2]))}


def test_every_colour_scale_is_printed_with_its_numbers():
    px = corner_pixel()
    page = html.weights_panel(px, [0, 1])
    tables = Tables(page)
    drawn = np.concatenate([v[np.isfinite(v)] for v in map(tooltip_values, tables.tables)])
    assert page.count("linear-gradient") == 1
    assert [float(end) for end in tables.bar_ends] == [0.0, pytest.approx(drawn.max(),
                                                                          abs=5e-4)]
    logits = Tables(html.logits_panel(px, 1))
    assert len(logits.bar_ends) == 2 * 2                          # logits, weights


def test_text_on_a_cell_reads_black_on_bright_colours_and_white_on_dark_ones():
    """viridis runs from dark purple (the smallest weight) to bright yellow."""
    px = corner_pixel()
    table = Tables(html.weights_panel(px, [0])).table("head 0")
    values = tooltip_values(table)
    darkest = np.unravel_index(np.nanargmin(values), values.shape)
    brightest = np.unravel_index(np.nanargmax(values), values.shape)
    assert "color:white" in table["rows"][darkest[0]][darkest[1]]["style"]
    assert "color:black" in table["rows"][brightest[0]][brightest[1]]["style"]


def test_zero_padding_shows_the_weight_outside_the_image():
    px = corner_pixel("zeros")
    table = Tables(html.weights_panel(px, [0])).table("head 0")
    outside = ~px.valid.numpy()
    for a in range(5):
        for b in range(5):
            cell = table["rows"][a][b]
            assert cell["text"] not in ("", "x")
            assert cell["title"].startswith("outside the map, in the softmax") == outside[a, b]
            assert ("dashed" in cell["style"]) == (outside[a, b] and (a, b) != px.cell)
    np.testing.assert_allclose(tooltip_values(table), px.weights[0].numpy(), rtol=1e-5)


def test_logits_panel_draws_each_part_and_each_softmax_under_its_title():
    px = corner_pixel()
    tables = Tables(html.logits_panel(px, 1))
    valid = px.valid.numpy()
    expected = {
        "content q·k": px.logits_content[1],
        "row part q_row·r_row(dy)": px.logits_row[1],
        "column part q_col·r_col(dx)": px.logits_col[1],
        "sum = logit": px.logits[1],
        "softmax(content only)": explain.content_only_weights(px)[1],
        "softmax(position only)": explain.position_only_weights(px)[1],
        "real weights = softmax(sum)": px.weights[1],
    }
    assert len(tables.tables) == len(expected)
    for caption, values in expected.items():
        shown = tooltip_values(tables.table(caption))
        np.testing.assert_allclose(shown[valid], values.numpy()[valid], rtol=1e-5, atol=1e-7)
        assert np.all(np.isnan(shown[~valid]))                   # crossed out
    content_only = tooltip_values(tables.table("softmax(content only)"))
    position_only = tooltip_values(tables.table("softmax(position only)"))
    assert np.nanmax(np.abs(content_only - position_only)) > 1e-3
    low, high = (float(x) for x in tables.bar_ends[:2])          # the logits' scale:
    assert low == -high and high > 0                              # symmetric around 0


def test_a_counterfactual_says_so_above_and_in_every_title():
    px = explain.without_position(corner_pixel())
    page = html.weights_panel(px, [0, 1])
    assert ("Hypothetical, not what the model computed: position term dropped: "
            "softmax(q·k) only") in page
    assert page.count(", hypothetical") == 3 + 1                    # 2 heads, mean, bar
    tables = Tables(html.logits_panel(px, 0))
    captions = [t["caption"] for t in tables.tables]
    assert any(c.startswith("weights without position, hypothetical") for c in captions)
    assert not any(c.startswith("real weights") for c in captions)
    assert any(c.startswith("row part q_row·r_row(dy)\n(dropped)") for c in captions)


def test_kernels_panel_draws_each_kernels_size_and_the_convolution_centred():
    g = torch.Generator().manual_seed(0)
    effective, conv = torch.randn(4, 5, 5, generator=g), torch.randn(4, 3, 3, generator=g)
    valid = np.ones((5, 5), bool)
    valid[0] = False
    tables = Tables(html.kernels_panel(effective.numpy(), conv.numpy(), (2, 1), ", hypothetical",
                                       valid))
    attention = tables.table("attention at this pixel, hypothetical")
    norms = effective.pow(2).sum(0).sqrt().numpy()
    shown = tooltip_values(attention)
    np.testing.assert_allclose(shown[1:], norms[1:], rtol=1e-5)
    assert texts(attention)[0] == ["x"] * 5
    assert "solid" in attention["rows"][2][1]["style"]
    convolution = tables.table("convolution, every pixel")
    shown = tooltip_values(convolution)                           # on the 5 x 5 grid
    np.testing.assert_allclose(shown[1:4, 1:4], conv.pow(2).sum(0).sqrt().numpy(), rtol=1e-5)
    assert np.isnan(shown[0]).all() and texts(convolution)[0] == [""] * 5
    assert "solid" in convolution["rows"][2][2]["style"]           # centred on the pixel
    only = Tables(html.kernels_panel(effective.numpy(), None))
    assert [t["caption"].split("\n")[0] for t in only.tables] == ["attention at this pixel"]


def test_mixture_panel_one_grid_per_value_matrix():
    p = torch.rand(4, 4, 3).softmax(-1).numpy()
    tables = Tables(html.mixture_panel(p))
    assert [t["caption"].split("\n")[0] for t in tables.tables] == ["m = 0", "m = 1", "m = 2"]
    for m, table in enumerate(tables.tables):
        np.testing.assert_allclose(tooltip_values(table), p[:, :, m], rtol=1e-5)


def test_the_html_and_the_figure_write_the_same_cells():
    """One description, two renderers: the same text in every cell of every grid."""
    px = corner_pixel()
    tables = Tables(html.weights_panel(px, [0, 1])).tables
    fig = figures.weights_figure(px, [0, 1])
    for table, ax in zip(tables, fig.axes):
        drawn = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
                 for t in ax.texts}
        assert drawn == {(a, b): c["text"] for a, row in enumerate(table["rows"])
                         for b, c in enumerate(row) if c["text"]}
        assert ax.get_title() == table["caption"]


def test_predictions_table_lists_classes_with_percentages():
    page = html.predictions_table([("cat", 0.5), ("dog<", 0.25)])
    assert "50.0%" in page and "dog&lt;" in page
