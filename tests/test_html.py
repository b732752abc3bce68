"""The explorer's HTML panels write the trace's own numbers and mark what is outside."""
import numpy as np
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, html, trace


def corner_pixel():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2)).eval()
    return trace(model, torch.rand(1, 3, 9, 9)).layers["0"].pixel(0, 1)


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


def test_logits_panel_shows_the_parts_and_their_sum():
    px = corner_pixel()
    page = html.logits_panel(px, 1, px.weights.numpy(), px.weights.numpy())
    for title in ["content q·k", "row part q·r_row", "column part q·r_col", "sum = logit",
                  "softmax(content only)", "softmax(position only)", "real weights"]:
        assert title in page
    assert f"{float(px.logits[1, 2, 2]):.6g}" in page


def test_kernels_panel_without_a_twin_shows_attention_only():
    kernel = np.ones((4, 5, 5))
    assert "convolution, every pixel" not in html.kernels_panel(kernel, None)
    assert "convolution, every pixel" in html.kernels_panel(kernel, np.ones((4, 3, 3)))


def test_predictions_table_lists_classes_with_percentages():
    page = html.predictions_table([("cat", 0.5), ("dog<", 0.25)])
    assert "50.0%" in page and "dog&lt;" in page
