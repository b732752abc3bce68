"""sasa_viz.trace: every recorded tensor is consistent with the others and with the
model's real output, and tracing changes nothing."""
import threading

import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.models import create
from sasa_viz.stem import AttentionStem
from sasa_viz.trace import layer_strides


def windows(t, layer):
    """(C, H, W) -> (C, K, K, H, W): t at window cell [a, b] of every pixel, the feature
    pixel (top + a, left + b) with (top, left) the layer's recorded origin; 0 outside."""
    K = layer.kernel_size
    padded = torch.nn.functional.pad(t, (K, K, K, K))
    steps = torch.arange(K)
    rows = layer.origins[0] + steps[:, None, None, None] + K          # (K, 1, H, W)
    cols = layer.origins[1] + steps[None, :, None, None] + K          # (1, K, H, W)
    return padded[:, rows, cols]


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        AttentionStem(3, 16, kernel_size=4, heads=2, pool=1),
        SelfAttention2d(16, 16, kernel_size=5, heads=4),
        nn.ReLU(),
        SelfAttention2d(16, 24, kernel_size=3, heads=2, stride=2, position="absolute"),
        SelfAttention2d(24, 24, kernel_size=3, heads=3, padding="zeros", position="none"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 5),
    ).eval()


@pytest.fixture(scope="module")
def traced():
    model = small_model()
    x = torch.rand(2, 3, 12, 10)
    return model, x, trace(model, x)


def test_trace_leaves_the_output_unchanged(traced):
    model, x, t = traced
    with torch.no_grad():
        assert torch.equal(t.logits, model(x))


def test_every_attention_layer_is_recorded_in_forward_order(traced):
    _, _, t = traced
    assert list(t.layers) == ["0.attention", "1", "3", "4"]
    assert [layer.stride for layer in t.layers.values()] == [1, 1, 1, 2]


def test_field_shapes(traced):
    layer = traced[2].layers["1"]
    h, d, K, H, W = 4, 4, 5, 12, 10
    for name in ["q", "k", "v"]:
        assert getattr(layer, name).shape == (h, d, H, W)
    assert layer.rel_row.shape == (h, 2, K) and layer.rel_col.shape == (h, 2, K)
    for name in ["logits_content", "logits_row", "logits_col", "weights"]:
        assert getattr(layer, name).shape == (h, K, K, H, W)
    assert layer.valid.shape == (K, K, H, W) and layer.valid.dtype == torch.bool
    assert layer.output.shape == (h * d, H, W)
    assert traced[2].layers["4"].rel_row is None


@pytest.mark.parametrize("name", ["0.attention", "1", "3", "4"])
def test_logits_weights_and_output_agree_with_each_other(traced, name):
    layer = traced[2].layers[name]
    h, K = layer.heads, layer.kernel_size
    H, W = layer.size
    # content logits are q . k of the neighbour in the layer's window
    k_windows = windows(layer.k.flatten(0, 1), layer).view(h, -1, K, K, H, W)
    torch.testing.assert_close(layer.logits_content,
                               (layer.q[:, :, None, None] * k_windows).sum(1))
    # the softmax the layer used, from the recorded logits
    logits = layer.logits.clone()
    if layer.padding == "mask":
        logits = logits.masked_fill(~layer.valid, float("-inf"))
    expected = logits.flatten(1, 2).softmax(1).view_as(logits)
    torch.testing.assert_close(layer.weights, expected)
    # weights sum to 1; over valid neighbours only when masking
    total = layer.weights.sum(dim=(1, 2))
    torch.testing.assert_close(total, torch.ones(h, H, W))
    # the output is the weighted sum of the values every pixel saw
    for i, j in [(0, 0), (H // 2, W // 2), (H - 1, W - 1)]:
        px = layer.pixel(i, j)
        out = (px.weights[:, None] * px.values).sum(dim=(2, 3)).flatten()
        torch.testing.assert_close(px.output, out)


def test_position_logits_come_from_the_row_and_column_embeddings(traced):
    layer = traced[2].layers["1"]
    rd = layer.rel_row.shape[1]
    row = torch.einsum("hcij,hca->haij", layer.q[:, :rd], layer.rel_row)
    col = torch.einsum("hcij,hcb->hbij", layer.q[:, rd:], layer.rel_col)
    torch.testing.assert_close(layer.logits_row, row[:, :, None].expand_as(layer.logits_row))
    torch.testing.assert_close(layer.logits_col, col[:, None, :].expand_as(layer.logits_col))
    assert torch.all(traced[2].layers["4"].logits_row == 0)


def test_recorded_output_is_what_the_module_returned(traced):
    model, x, t = traced
    seen = {}
    model[3].register_forward_hook(lambda m, i, o: seen.update(out=o[0]))
    with torch.no_grad():
        model(x)
    pooled = torch.nn.functional.avg_pool2d(t.layers["3"].output[None], 2)[0]
    torch.testing.assert_close(pooled, seen["out"])


def test_pixel_view_and_image_coordinates(traced):
    layer = traced[2].layers["4"]            # stride 2 in the image, 3x3 window
    assert layer.size == (6, 5)
    px = layer.pixel(0, 2)
    assert (px.row, px.col) == (0, 2)
    assert px.centre == (0, 4, 2, 6)
    assert px.window == (0, 2, 4, 8)         # rows -1..1 clipped at the top
    assert not px.valid[0].any() and px.valid[1:].all()
    assert layer.feature_pixel(5, 9) == (2, 4)
    assert layer.feature_pixel(100, -3) == (5, 0)
    with pytest.raises(ValueError, match="outside"):
        layer.pixel(6, 0)


def test_window_origins_are_the_layers(traced):
    stem, sliding = traced[2].layers["0.attention"], traced[2].layers["1"]
    assert (stem.window, sliding.window) == ("blocks", "sliding")
    assert stem.window_origin(7, 6) == (4, 4) and stem.pixel(7, 6).cell == (3, 2)
    assert sliding.window_origin(7, 6) == (5, 4) and sliding.pixel(7, 6).cell == (2, 2)
    assert torch.equal(sliding.offsets[:, :, :, 7, 6], sliding.pixel(7, 6).offsets)
    assert torch.equal(stem.offsets[:, :, :, 7, 6], stem.pixel(7, 6).offsets)
    assert stem.offsets[:, 0, 0, 7, 6].tolist() == [-3, -2]


def test_stem_trace_exposes_the_mixture(traced):
    stem = traced[2].layers["0.attention"]
    assert stem.value_mixture.shape == (4, 4, 4)
    assert stem.v.shape == (4, 2, 8, 12, 10)           # one value map per mixture component
    assert stem.value_weight.shape == (4, 16, 3)


def test_values_are_the_value_projection_of_the_input(traced):
    model, x, t = traced
    layer = t.layers["1"]
    with torch.no_grad():
        features = model[0](x[:1])[0]                 # the input of layer "1"
    torch.testing.assert_close(layer.input, features)
    v = torch.einsum("oc,chw->ohw", layer.value_weight, features)
    torch.testing.assert_close(layer.v.flatten(0, 1), v)


def test_tracing_is_reentrant_across_threads():
    model = small_model()
    inputs = [torch.rand(1, 3, 12, 10) for _ in range(4)]
    expected = [trace(model, x).layers["1"].weights for x in inputs]
    results, barrier = [None] * 4, threading.Barrier(4)

    def work(n):
        barrier.wait()
        results[n] = trace(model, inputs[n]).layers["1"].weights

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


def test_stride_is_a_property_of_the_model_not_of_a_rounding():
    model = create("sasa-cifar10").eval()
    strides = layer_strides(model)
    assert strides == {"stages.0.0.spatial": 2, "stages.0.1.spatial": 2,
                       "stages.1.0.spatial": 2, "stages.1.1.spatial": 4,
                       "stages.2.0.spatial": 4, "stages.2.1.spatial": 8}
    layer = trace(model, torch.rand(1, 3, 21, 32)).layers["stages.2.1.spatial"]
    assert layer.size == (3, 4)              # 21 / 8 rounded up; 21 / 3 would say 7
    assert layer.stride == 8
    assert layer.feature_pixel(14, 28) == (1, 3)
    assert layer.pixel(1, 3).centre == (8, 24, 16, 32)
    assert next(model.parameters()).device.type == "cpu"    # the probe ran on a copy


def test_the_stride_probe_runs_no_hooks_of_the_model():
    model = small_model()
    calls = []
    model[1].register_forward_hook(lambda *args: calls.append(1))
    assert layer_strides(model) == {"0.attention": 1, "1": 1, "3": 1, "4": 2}
    assert calls == []
