"""sasa_viz.export: the take-away files keep the recorded numbers under their names; a
counterfactual adds its own under names that say what it is."""
import csv
import io

import numpy as np
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, explain, export, trace


def pixel():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=3, heads=2)).eval()
    return trace(model, torch.rand(1, 3, 6, 6)).layers["0"].pixel(2, 3)


def test_recorded_pixel_files():
    px = pixel()
    assert export.file_stem("0", px) == "0-pixel-2-3"
    arrays = np.load(io.BytesIO(export.pixel_npz(px)), allow_pickle=False)
    np.testing.assert_array_equal(arrays["weights"], px.weights.numpy())
    assert not any(name.endswith("without_position") for name in arrays.files)


def test_a_counterfactual_keeps_the_recorded_numbers_and_names_its_own():
    px = pixel()
    without = explain.without_position(px)
    assert export.file_stem("0", without) == "0-pixel-2-3-without-position"
    arrays = np.load(io.BytesIO(export.pixel_npz(without)), allow_pickle=False)
    np.testing.assert_array_equal(arrays["weights"], px.weights.numpy())
    np.testing.assert_array_equal(arrays["output"], px.output.numpy())
    np.testing.assert_array_equal(arrays["weights_without_position"], without.weights.numpy())
    np.testing.assert_array_equal(arrays["output_without_position"], without.output.numpy())
    assert "q_without_position" not in arrays.files          # unchanged: stored once
    rows = list(csv.DictReader(io.StringIO(export.pixel_csv(without))))
    assert len(rows) == 2 * 9
    first = rows[0]
    assert float(first["weight"]) == float(f"{float(px.weights[0, 0, 0]):.6g}")
    assert float(first["weight_without_position"]) == \
        float(f"{float(without.weights[0, 0, 0]):.6g}")
