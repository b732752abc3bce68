"""sasa_viz.drawing.export: the take-away files keep the recorded numbers under their names; a
counterfactual adds its own under names that say what it is."""
import csv
import io

import numpy as np
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.drawing import export
from sasa_viz.inspection import explain


def pixel(row=2, col=3):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=3, heads=2)).eval()
    return trace(model, torch.rand(1, 3, 6, 6)).layers["0"].pixel(row, col)


def read_csv(text: str) -> dict:
    """pixel_csv's rows -> {column: (heads, K, K) float array}, each (head, a, b) once."""
    rows = list(csv.DictReader(io.StringIO(text)))
    heads, K = 1 + max(int(r["head"]) for r in rows), 1 + max(int(r["a"]) for r in rows)
    assert len(rows) == heads * K * K
    assert {(int(r["head"]), int(r["a"]), int(r["b"])) for r in rows} == \
        {(h, a, b) for h in range(heads) for a in range(K) for b in range(K)}
    columns = {}
    for name in rows[0]:
        if name not in ("head", "a", "b"):
            columns[name] = np.zeros((heads, K, K))
            for r in rows:
                columns[name][int(r["head"]), int(r["a"]), int(r["b"])] = float(r[name])
    return columns


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


def test_the_npz_holds_every_number_of_the_pixel():
    px = pixel(0, 5)                              # a corner: neighbours off the map
    arrays = np.load(io.BytesIO(export.pixel_npz(px)), allow_pickle=False)
    for name in ["q", "keys", "values", "logits_content", "logits_row", "logits_col",
                 "logits", "valid", "weights", "output"]:
        np.testing.assert_array_equal(arrays[name], getattr(px, name).numpy(), err_msg=name)
    assert arrays["feature_pixel"].tolist() == [0, 5]
    assert arrays["window_origin"].tolist() == [-1, 4]
    assert arrays["window_in_image"].tolist() == list(px.window) == [0, 4, 2, 6]
    assert arrays["valid"].dtype == bool and not arrays["valid"].all()


def test_the_csv_holds_every_neighbours_offset_validity_logits_and_weight():
    px = pixel(0, 5)
    columns = read_csv(export.pixel_csv(px))
    heads = px.weights.shape[0]
    for column, name in [("dy", 0), ("dx", 1)]:
        np.testing.assert_array_equal(columns[column], np.broadcast_to(
            px.offsets[name].numpy(), (heads, 3, 3)))
    np.testing.assert_array_equal(columns["valid"], np.broadcast_to(px.valid.numpy(),
                                                                    (heads, 3, 3)))
    for column, name in [("logit_content", "logits_content"), ("logit_row", "logits_row"),
                         ("logit_col", "logits_col"), ("logit", "logits"),
                         ("weight", "weights")]:
        np.testing.assert_allclose(columns[column], getattr(px, name).numpy(), rtol=1e-5,
                                   atol=1e-12, err_msg=column)              # 6 digits
    assert columns["weight"][:, 0].sum() == 0 and not columns["valid"][:, 0].any()   # row -1


def test_a_counterfactual_csv_adds_its_logits_and_weights_beside_the_recorded_ones():
    px = pixel()
    without = explain.without_position(px)
    columns = read_csv(export.pixel_csv(without))
    np.testing.assert_allclose(columns["weight"], px.weights.numpy(), rtol=1e-5)
    np.testing.assert_allclose(columns["logit"], px.logits.numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(columns["weight_without_position"], without.weights.numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(columns["logit_without_position"], without.logits.numpy(),
                               rtol=1e-5, atol=1e-12)
