"""sasa_viz.inspection.trace: every recorded tensor is what the definitions and the plain oracle
(`sasa_viz.attention.reference`) say, and agrees with the model's real output; tracing changes
nothing; traces print short, and a wrong input, layer name or pixel says what to fix."""
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.attention.reference import reference_attention
from sasa_viz.attention.stem import AttentionStem
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import known_strides, layer_strides, takes_images
from sasa_viz.models.catalogue import Normalize
from sasa_viz.models.pretrained import create

trace_module = sys.modules["sasa_viz.inspection.trace"]   # sasa_viz.inspection.trace is also the function


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


def neighbours(layer, i, j):
    """The window cells [a, b] of pixel (i, j) and the feature pixel (r, c) each one is,
    from the window's definition: cell [a, b] is (top + a, left + b), (top, left) the
    pixel's window origin."""
    top, left = layer.window_origin(i, j)
    K = layer.kernel_size
    return [(a, b, top + a, left + b) for a in range(K) for b in range(K)]


def inside(layer, r, c):
    H, W = layer.size
    return 0 <= r < H and 0 <= c < W


@pytest.mark.parametrize("name", ["0.attention", "1", "3", "4"])
def test_content_logits_are_q_dot_k_of_each_neighbour(traced, name):
    """Pixel by pixel, cell by cell: q_ij . k_rc for the neighbour (r, c) the cell is;
    the cell is valid exactly when that neighbour is on the map."""
    layer = traced[2].layers[name]
    H, W = layer.size
    for i in range(H):
        for j in range(W):
            for a, b, r, c in neighbours(layer, i, j):
                assert bool(layer.valid[a, b, i, j]) == inside(layer, r, c)
                if inside(layer, r, c):
                    torch.testing.assert_close(layer.logits_content[:, a, b, i, j],
                                               (layer.q[:, :, i, j] * layer.k[:, :, r, c]).sum(1))


@pytest.mark.parametrize("name", ["0.attention", "1", "3", "4"])
def test_content_logits_past_the_edge_are_those_of_a_zero_key(traced, name):
    layer = traced[2].layers[name]
    assert torch.all(layer.logits_content.masked_select(~layer.valid) == 0)


@pytest.mark.parametrize("name", ["0.attention", "1", "3", "4"])
def test_weights_are_the_softmax_over_the_cells_that_take_part(traced, name):
    """One softmax per head and pixel, torch.softmax over the cells that take part
    (inside the map, or all with zero padding): the rest get weight 0."""
    layer = traced[2].layers[name]
    H, W = layer.size
    for i in range(H):
        for j in range(W):
            logits = layer.logits[..., i, j] * layer.scale                  # (h, K, K)
            taking_part = (layer.valid[..., i, j] if layer.padding == "mask"
                           else torch.ones_like(layer.valid[..., i, j]))
            expected = torch.zeros_like(logits)
            expected[:, taking_part] = torch.softmax(logits[:, taking_part], dim=-1)
            torch.testing.assert_close(layer.weights[..., i, j], expected)


@pytest.mark.parametrize("name", ["0.attention", "1", "3", "4"])
def test_output_is_the_weighted_sum_of_the_values_the_pixel_saw(traced, name):
    layer = traced[2].layers[name]
    H, W = layer.size
    for i, j in [(0, 0), (H // 2, W // 2), (H - 1, W - 1)]:
        px = layer.pixel(i, j)
        weighted = sum(px.weights[:, a, b, None] * px.values[:, :, a, b]
                       for a in range(layer.kernel_size) for b in range(layer.kernel_size))
        torch.testing.assert_close(px.output, weighted.flatten())


@pytest.mark.parametrize("name", ["1", "3", "4"])
def test_sliding_layers_record_what_the_unfold_reference_computes(traced, name):
    """The plain oracle (`sasa_viz.attention.reference`), run on the recorded input: the same
    weights everywhere (relative, absolute and no position; masking and zero padding)
    and the same output."""
    model, _, t = traced
    layer, module = t.layers[name], model[int(name)]
    with torch.no_grad():
        output, weights = reference_attention(module, layer.input[None])
    torch.testing.assert_close(layer.weights, weights[0])
    torch.testing.assert_close(module.pool(layer.output[None]), output)


def q_dot_r(q, r):
    """(h, d, H, W) queries and (h, d, K, K) embeddings -> (h, K, K, H, W): q . r."""
    return (q[:, :, None, None] * r[:, :, :, :, None, None]).sum(1)


def test_position_logits_come_from_the_row_and_column_embeddings(traced):
    """r_{a-i, b-j} = [r_row(a); r_col(b)]: the row part meets the first row_dim channels
    of q, the column part the others."""
    layer = traced[2].layers["1"]
    K = layer.kernel_size
    row = layer.rel_row[:, :, :, None].expand(-1, -1, K, K)             # (h, rd, K, K)
    col = layer.rel_col[:, :, None, :].expand(-1, -1, K, K)             # (h, cd, K, K)
    torch.testing.assert_close(layer.logits_row,
                               q_dot_r(layer.q, torch.cat([row, torch.zeros_like(col)], 1)))
    torch.testing.assert_close(layer.logits_col,
                               q_dot_r(layer.q, torch.cat([torch.zeros_like(row), col], 1)))
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


def test_strides_are_probed_once_per_model_and_again_when_its_layers_change(monkeypatch):
    model = small_model()
    probes = []
    probe = trace_module.layer_strides
    monkeypatch.setattr(trace_module, "layer_strides",
                        lambda *arguments: probes.append(1) or probe(*arguments))
    first = trace(model, torch.rand(1, 3, 12, 10)).layers["4"].stride
    assert trace(model, torch.rand(1, 3, 8, 8)).layers["4"].stride == first == 2
    assert len(probes) == 1
    known_strides(model)["4"] = 99                         # a copy: the cache is not touched
    assert known_strides(model)["4"] == 2 and len(probes) == 1
    model[3] = SelfAttention2d(16, 24, kernel_size=3, heads=2, stride=1)   # no pool now
    assert known_strides(model)["4"] == 1 and len(probes) == 2


# --- a notebook-friendly surface ------------------------------------------------------

def test_a_trace_prints_as_a_few_lines_of_shapes_and_names(traced):
    _, _, t = traced
    text = repr(t)
    assert len(text.splitlines()) == 1 + len(t.layers)           # a header, one line a layer
    assert "Sequential" in text and "(2, 3, 12, 10)" in text and "(2, 5)" in text
    for name, layer in t.layers.items():
        H, W = layer.size
        K = layer.kernel_size
        line = next(line for line in text.splitlines() if line.split()[0] == name)
        assert f"{H}x{W} map" in line and f"stride {layer.stride}" in line
        assert f"{K}x{K} {layer.window} window" in line and f"{layer.heads} heads" in line
    assert "tensor(" not in text


def test_a_layer_prints_its_name_window_and_largest_weight(traced):
    layer = traced[2].layers["3"]
    text = repr(layer)
    assert len(text.splitlines()) <= 4 and "tensor(" not in text
    assert "'3'" in text and "3x3 sliding window" in text
    assert "2 heads of 12" in text and "16 -> 24 channels" in text and "'absolute'" in text
    head, _, _, i, j = torch.unravel_index(layer.weights.argmax(), layer.weights.shape)
    assert f"largest {float(layer.weights.max()):.3g}" in text
    assert f"(head {int(head)} at pixel ({int(i)}, {int(j)}))" in text


def test_a_pixel_prints_its_place_window_and_largest_weight(traced):
    layer = traced[2].layers["4"]                 # stride 2, 3x3 window, zero padding
    px = layer.pixel(0, 2)
    text = repr(px)
    assert len(text.splitlines()) <= 5 and "tensor(" not in text
    assert "feature pixel (0, 2)" in text and "3 heads" in text
    assert "6 of 9 neighbours inside the map (padding 'zeros')" in text
    assert "the pixel rows 0..1, columns 4..5" in text           # px.centre, end excluded
    assert "its window rows 0..3, columns 2..7" in text          # px.window
    head, a, b = (int(n) for n in torch.unravel_index(px.weights.argmax(), px.weights.shape))
    dy, dx = a - 1, b - 1                                        # from the centre cell [1, 1]
    assert (f"largest weight {float(px.weights.max()):.3g}: head {head}, cell [{a}, {b}], "
            f"offset (dy, dx) = ({dy}, {dx})") in text
    assert "counterfactual" not in text
    assert "counterfactual" in repr(explain.without_position(px))


def test_a_trace_of_the_shipped_architecture_prints_in_a_few_lines():
    text = repr(trace(create("sasa-cifar10").eval(), torch.rand(1, 3, 32, 32)))
    assert len(text.splitlines()) == 7 and len(text) < 1000       # once 3.4 MB
    assert "ResNet" in text and "stages.2.1.spatial  4x4 map (stride 8" in text


def test_an_unknown_layer_name_lists_the_names_there_are(traced):
    layers = traced[2].layers
    with pytest.raises(KeyError) as caught:
        layers["layer1"]
    assert str(caught.value) == ("no attention layer 'layer1' in this trace; its layers are "
                                 "'0.attention', '1', '3', '4'.")
    assert "layer1" not in layers and layers.get("layer1") is None      # still a dict
    assert layers["1"] is dict(layers)["1"]


def test_a_bare_layer_is_named_by_its_class():
    layer = SelfAttention2d(3, 8, kernel_size=3, heads=2).eval()
    t = trace(layer, torch.rand(1, 3, 6, 6))
    assert list(t.layers) == ["SelfAttention2d"]
    assert t.layers["SelfAttention2d"].name == "SelfAttention2d"
    assert "SelfAttention2d  6x6 map" in repr(t)
    assert layer_strides(layer) == {"SelfAttention2d": 1}


@pytest.mark.parametrize("row, col, error, words", [
    (2.5, 3, TypeError, "row must be a whole number, got 2.5"),
    (2, "3", TypeError, "column must be a whole number, got '3'"),
    (-1, 3, ValueError, "pixel (-1, 3) is outside the map"),
    (2, 10, ValueError, "pixel (2, 10) is outside the map"),
    (12, 0, ValueError, "pixel (12, 0) is outside the map"),
])
def test_pixel_arguments_are_checked_against_the_map(traced, row, col, error, words):
    layer = traced[2].layers["1"]                                       # a 12x10 map
    with pytest.raises(error) as caught:
        layer.pixel(row, col)
    assert words in str(caught.value)
    assert "map is 12x10 (rows 0..11, columns 0..9" in str(caught.value)


def test_pixel_takes_any_whole_number(traced):
    layer = traced[2].layers["1"]
    expected = layer.pixel(4, 7)
    for row, col in [(np.int64(4), np.int64(7)), (torch.tensor(4), torch.tensor(7))]:
        px = layer.pixel(row, col)
        assert (px.row, px.col) == (4, 7) and type(px.row) is int
        assert torch.equal(px.weights, expected.weights)


# --- what trace accepts ---------------------------------------------------------------

def image_model():
    """The smallest model that takes images: it normalises its RGB input itself."""
    torch.manual_seed(0)
    return nn.Sequential(Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                         SelfAttention2d(3, 8, kernel_size=3, heads=2)).eval()


def refusal(x, error=ValueError) -> str:
    with pytest.raises(error) as caught:
        trace(image_model(), x)
    return str(caught.value)


@pytest.mark.parametrize("shape, fix, fixed", [
    ((1, 8, 8, 3), "for channels-last (B, H, W, 3) use x.permute(0, 3, 1, 2)",
     lambda x: x.permute(0, 3, 1, 2)),
    ((8, 8, 3), "for one (H, W, C) image use x.permute(2, 0, 1).unsqueeze(0)",
     lambda x: x.permute(2, 0, 1).unsqueeze(0)),
    ((3, 8, 8), "for one (C, H, W) image use x.unsqueeze(0)", lambda x: x.unsqueeze(0)),
    ((8, 8), "for one greyscale (H, W) image use x.expand(1, 3, -1, -1)",
     lambda x: x.expand(1, 3, -1, -1)),
    ((1, 4, 8, 8), "for RGBA use x[:, :3]", lambda x: x[:, :3]),
    ((1, 1, 8, 8), "for greyscale use x.expand(-1, 3, -1, -1)",
     lambda x: x.expand(-1, 3, -1, -1)),
])
def test_an_image_of_the_wrong_shape_is_refused_with_its_fix(shape, fix, fixed):
    x = torch.rand(shape)
    message = refusal(x)
    assert message.startswith("Sequential takes RGB images (B, 3, H, W) in [0, 1]; got ")
    assert str(shape) in message and fix in message
    assert list(trace(image_model(), fixed(x)).layers) == ["1"]         # the fix works


@pytest.mark.parametrize("x, fix, fixed", [
    (torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8),
     "got torch.uint8: use x.float() / 255", lambda x: x.float() / 255),
    (torch.rand(1, 3, 8, 8) * 255, "8-bit pixels (0..255) need x / 255", lambda x: x / 255),
    (torch.rand(1, 3, 8, 8) * 1.05, "x.clamp(0, 1)", lambda x: x.clamp(0, 1)),
    ((torch.rand(1, 3, 8, 8) - 0.5) / 0.25, "the model normalises its input itself", None),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN", None),
])
def test_an_image_of_the_wrong_kind_of_numbers_is_refused_with_its_fix(x, fix, fixed):
    assert fix in refusal(x)
    if fixed is not None:
        assert list(trace(image_model(), fixed(x)).layers) == ["1"]     # the fix works


def test_only_a_tensor_is_traced():
    assert "images.to_tensor(image)" in refusal(np.zeros((1, 3, 8, 8)), TypeError)


def test_which_models_take_images():
    assert takes_images(create("sasa-cifar10")) and takes_images(image_model())
    assert not takes_images(small_model()) and not takes_images(SelfAttention2d(4, 8))


def test_feature_maps_of_any_channels_and_range_are_traced():
    """A model that does not take images (a layer, a stack of them) takes any feature
    maps: no RGB, no [0, 1]; the stride probe uses the input's channels."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(5, 8, 1), SelfAttention2d(8, 8, kernel_size=3, heads=2))
    x = torch.randn(1, 5, 6, 7) * 10
    t = trace(model.eval(), x)
    assert list(t.layers) == ["1"] and t.layers["1"].stride == 1
    with torch.no_grad():
        assert torch.equal(t.logits, model(x))
    assert "use x.float()" in str(pytest.raises(ValueError, trace, model, x.long()).value)


def test_a_double_image_runs_in_the_models_dtype():
    model, x = image_model(), torch.rand(1, 3, 8, 8)
    t = trace(model, x.double())
    assert t.logits.dtype == torch.float32
    assert torch.equal(t.logits, trace(model, x).logits)
