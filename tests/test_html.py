"""The explorer's HTML panels write the trace's own numbers, in one format per scale,
print every colour scale's range, mark what is outside and what is hypothetical."""
import re

import numpy as np
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, explain, html, trace
from sasa_viz.numbers import number_format


def corner_pixel(padding="mask"):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2, padding=padding)).eval()
    return trace(model, torch.rand(1, 3, 9, 9)).layers["0"].pixel(0, 1)


def cell_texts(page):
    """The numbers written in the cells of every grid of `page`."""
    return re.findall(r'title="(?!outside the map")[^"]*">([^<]*)</td>', page)


def test_weights_panel_writes_every_weight_and_crosses_outside_cells():
    px = corner_pixel()
    page = html.weights_panel(px, [0, 1], np.array([1.0, 2.0]))
    outside = int((~px.valid).sum())
    assert page.count('title="outside the map"') == 3 * outside      # 2 heads + the mean
    for h in range(2):
        for a, b in zip(*np.nonzero(px.valid.numpy())):
            value = float(px.weights[h, a, b])
            assert f'dy={a - 2}, dx={b - 2}: {value:.6g}"' in page
    assert "mean over heads" in page and "head 1 (entropy 2.00)" in page
    assert "Hypothetical" not in page


def test_each_grid_writes_its_numbers_so_that_they_differ():
    px = corner_pixel()
    px.weights[0] = torch.where(px.valid, 0.02 + 1e-4 * torch.rand(5, 5), 0.0)  # near-uniform
    page = html.weights_panel(px, [0], np.array([1.0, 2.0]))
    inside = px.weights[0][px.valid].numpy()
    fmt = number_format(inside)
    assert cell_texts(page) == [fmt(w) for w in inside]
    assert len(set(cell_texts(page))) > 1 and fmt.unit in page


def test_every_colour_scale_is_stretched_to_its_numbers_and_printed():
    px = corner_pixel()
    page = html.weights_panel(px, [0, 1], np.array([1.0, 2.0]))
    shown = np.concatenate([px.weights[:, px.valid].numpy().ravel(),
                            px.weights.mean(0)[px.valid].numpy()])
    fmt = number_format([shown.min(), shown.max()])
    assert page.count("linear-gradient") == 1
    assert f"<span>{fmt(shown.min())}</span><span>{fmt(shown.max())}</span>" in page
    logits = html.logits_panel(px, 1, px.weights.numpy(), px.weights.numpy())
    assert logits.count("linear-gradient") == 2                     # logits, weights


def test_zero_padding_shows_the_weight_outside_the_image():
    px = corner_pixel("zeros")
    page = html.weights_panel(px, [0], np.array([1.0, 2.0]))
    assert 'title="outside the map"' not in page
    assert page.count("outside the map, in the softmax") == int((~px.valid).sum())
    assert len(cell_texts(page)) == 25


def test_logits_panel_shows_the_parts_and_their_sum():
    px = corner_pixel()
    page = html.logits_panel(px, 1, px.weights.numpy(), px.weights.numpy())
    for title in ["content q·k", "row part q·r_row", "column part q·r_col", "sum = logit",
                  "softmax(content only)", "softmax(position only)", "real weights"]:
        assert title in page
    assert f"{float(px.logits[1, 2, 2]):.6g}" in page


def test_a_counterfactual_says_so_above_and_in_every_title():
    px = explain.without_position(corner_pixel())
    page = html.weights_panel(px, [0, 1], np.array([1.0, 2.0]))
    assert "Hypothetical: position term dropped: softmax(q·k) only" in page
    assert page.count(", hypothetical") == 3 + 1                    # 2 heads, mean, bar
    logits = html.logits_panel(px, 0, px.weights.numpy(), px.weights.numpy())
    assert "weights without position, hypothetical" in logits and "real weights" not in logits
    assert "row part q·r_row (dropped)" in logits


def test_kernels_panel_without_a_twin_shows_attention_only():
    kernel = np.ones((4, 5, 5))
    assert "convolution, every pixel" not in html.kernels_panel(kernel, None)
    assert "convolution, every pixel" in html.kernels_panel(kernel, np.ones((4, 3, 3)))
    assert "attention at this pixel, hypothetical" in html.kernels_panel(kernel, None, None,
                                                                          ", hypothetical")


def test_predictions_table_lists_classes_with_percentages():
    page = html.predictions_table([("cat", 0.5), ("dog<", 0.25)])
    assert "50.0%" in page and "dog&lt;" in page
