"""sasa_viz.inspection.explain: each derived quantity means what its docstring says, checked against
the trace's own numbers, against the layer's real input, against `sasa_viz.attention.reference`
and against loops over one pixel's window written out here, never against a copy of the
code under test."""
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sasa_viz import SelfAttention2d, trace
from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.attention.reference import reference_attention
from sasa_viz.attention.stem import AttentionStem
from sasa_viz.attention.window import window_offsets, window_softmax
from sasa_viz.inspection import explain

LAYERS = ["0.attention", "1", "2", "3"]


def small_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        AttentionStem(3, 16, kernel_size=4, heads=2, pool=1),           # stem, mixture values
        SelfAttention2d(16, 16, kernel_size=5, heads=4),                 # relative, mask
        SelfAttention2d(16, 12, kernel_size=3, heads=3, padding="zeros", position="none"),
        SelfAttention2d(12, 12, kernel_size=3, heads=2, padding="zeros"),  # relative, zeros
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5),
    ).eval()
    with torch.no_grad():                       # sharper attention than at initialisation
        for m in model.modules():
            if isinstance(m, LocalSelfAttention):
                m.query.weight.mul_(4)
    return model


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def traced(model):
    """(trace, {layer name: the layer's input features (C_in, H, W)})."""
    inputs = {}
    names = {m: n for n, m in model.named_modules()}
    for m in model.modules():
        if isinstance(m, LocalSelfAttention):
            m.register_forward_pre_hook(
                lambda mod, args: inputs.__setitem__(names[mod], args[0][0].detach().clone()))
    x = torch.rand(1, 3, 9, 8)
    return trace(model, x), inputs


def pixels(layer):
    H, W = layer.size
    return [(0, 0), (H // 2, W // 2), (H - 1, W - 1), (0, W - 1)]


def twin_without_position(layer: SelfAttention2d) -> SelfAttention2d:
    """The same layer (same W_Q, W_K, W_V) with position="none": its softmax is q . k's."""
    twin = SelfAttention2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                           layer.heads, layer.padding, position="none").eval()
    twin.load_state_dict({n: t for n, t in layer.state_dict().items()
                          if not n.startswith("rel_")})
    return twin


# --- padding --------------------------------------------------------------------------------

def test_a_pixel_carries_its_layers_padding(traced):
    t, _ = traced
    assert t.layers["1"].pixel(0, 0).padding == "mask"
    assert t.layers["2"].pixel(0, 0).padding == "zeros"


# --- entropy and mean offset --------------------------------------------------------------

def test_entropy_of_one_hot_is_zero_and_of_uniform_is_log_n():
    K = 5
    valid = torch.ones(K, K, dtype=torch.bool)
    one_hot = torch.zeros(1, K, K)
    one_hot[0, 1, 3] = 1
    assert explain.entropy_of(one_hot, valid).item() == 0.0
    uniform = torch.full((1, K, K), 1 / K ** 2)
    assert explain.entropy_of(uniform, valid).item() == pytest.approx(math.log(K * K))
    # uniform over the 6 in-image neighbours of a corner, masked
    valid = torch.zeros(K, K, dtype=torch.bool)
    valid[2:, 3:] = True
    w = valid.float()[None] / valid.sum()
    assert explain.entropy_of(w, valid, "mask").item() == pytest.approx(math.log(6))
    assert explain.entropy_of(w, valid, "mask", normalize=True).item() == pytest.approx(1.0)
    # with zeros padding all K*K take part: the same weights are not uniform over them
    assert explain.entropy_of(w, valid, "zeros", normalize=True).item() == pytest.approx(
        math.log(6) / math.log(K * K))


def test_layer_entropy_shape_bounds_and_pixels(traced):
    t, _ = traced
    for name in LAYERS:
        layer = t.layers[name]
        H, W = layer.size
        e = explain.attention_entropy(layer)
        assert e.shape == (layer.heads, H, W)
        n = layer.valid.sum(dim=(0, 1)) if layer.padding == "mask" else \
            torch.full((H, W), layer.kernel_size ** 2)
        assert torch.all(e >= -1e-6) and torch.all(e <= torch.log(n.float()) + 1e-5)
        normalised = explain.attention_entropy(layer, normalize=True)
        assert torch.all(normalised <= 1 + 1e-5)
        i, j = pixels(layer)[1]
        px = layer.pixel(i, j)
        w = px.weights
        torch.testing.assert_close(e[:, i, j], -(w * torch.log(w.clamp_min(1e-30))).sum((1, 2)))


@pytest.mark.parametrize("K", [3, 4, 7])
def test_mean_offset_of_one_hot_is_its_offset(K):
    for a in range(K):
        for b in range(K):
            w = torch.zeros(2, K, K, 1, 1)
            w[:, a, b] = 1
            off = explain.expected_offset(w, window_offsets(K))
            assert off.shape == (2, 2, 1, 1)
            assert off[0, :, 0, 0].tolist() == [a - K // 2, b - K // 2]


def hand_mean_offset(px, head, top, left):
    """sum_ab w_ab (dy, dx) of one pixel's window, a loop over its cells, with (top, left)
    where the window starts on the map."""
    K = px.weights.shape[-1]
    dy = sum(float(px.weights[head, a, b]) * (top + a - px.row)
             for a in range(K) for b in range(K))
    dx = sum(float(px.weights[head, a, b]) * (left + b - px.col)
             for a in range(K) for b in range(K))
    return [dy, dx]


def test_layer_mean_offset_is_the_weighted_offset(traced):
    t, _ = traced
    layer = t.layers["1"]                   # a sliding 5 x 5 window: it starts 2 before
    off = explain.mean_offset(layer)
    assert off.shape == (layer.heads, 2, *layer.size)
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        for h in range(layer.heads):
            assert off[h, :, i, j].tolist() == pytest.approx(
                hand_mean_offset(px, h, i - 2, j - 2), abs=1e-6)
    assert torch.all(off[:, :, 0, 0] >= 0)  # a corner: every neighbour is below/right
    stem = t.layers["0.attention"]          # 4 x 4 blocks: the window starts at the block's
    off = explain.mean_offset(stem)         # corner, wherever the pixel is in it
    for i, j in pixels(stem):
        px = stem.pixel(i, j)
        for h in range(stem.heads):
            assert off[h, :, i, j].tolist() == pytest.approx(
                hand_mean_offset(px, h, i - i % 4, j - j % 4), abs=1e-6)
    assert torch.all(off[:, :, 3, 3] <= 0)  # the last cell of its 4x4 block looks up and left


# --- softmaxes and dropping the position term -----------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_softmax_of_the_recorded_logits_is_the_recorded_weights(traced, name):
    layer = traced[0].layers[name]
    torch.testing.assert_close(window_softmax(layer.logits, layer.valid, layer.padding),
                               layer.weights)
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        torch.testing.assert_close(window_softmax(px.logits, px.valid, layer.padding),
                                   px.weights)


@pytest.mark.parametrize("name", ["1", "3"])
def test_content_and_position_only_softmaxes(traced, name):
    """Each is the softmax of its own part of the logit over the neighbours that take
    part: the valid ones ("mask", layer 1) or all ("zeros", layer 3)."""
    layer = traced[0].layers[name]
    px = layer.pixel(0, 0)                                   # a corner: cells outside
    taking_part = px.valid if layer.padding == "mask" else torch.ones_like(px.valid)
    content = explain.content_only_weights(px)
    position = explain.position_only_weights(px)
    for weights, part in [(content, px.logits_content), (position, px.logits - px.logits_content)]:
        for h in range(layer.heads):
            torch.testing.assert_close(weights[h][taking_part], part[h][taking_part].softmax(0))
            assert torch.all(weights[h][~taking_part] == 0)
    assert (content - position).abs().max() > 1e-3          # they are different softmaxes
    # a layer without position: position-only is uniform over the window
    px = traced[0].layers["2"].pixel(0, 0)
    uniform = explain.position_only_weights(px)
    torch.testing.assert_close(uniform, torch.full_like(uniform, 1 / 9))


def test_without_position_is_the_output_for_a_layer_without_position(traced):
    layer = traced[0].layers["2"]
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        without = explain.without_position(px)
        torch.testing.assert_close(without.weights, px.weights)
        torch.testing.assert_close(without.output, px.output)


@pytest.mark.parametrize("name", ["1", "3"])
def test_without_position_is_the_same_layer_built_without_position(traced, model, name):
    """Dropping q . r from a relative layer's pixel gives what the same layer without
    position embeddings computes (the unfold reference), and changes the pixel."""
    t, inputs = traced
    layer = t.layers[name]
    twin = twin_without_position(model[int(name)])
    with torch.no_grad():
        output, weights = reference_attention(twin, inputs[name][None])
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        without = explain.without_position(px)
        torch.testing.assert_close(without.weights, weights[0, ..., i, j])
        torch.testing.assert_close(without.output, output[0, :, i, j], atol=1e-5, rtol=1e-4)
        assert torch.all(without.logits_row == 0) and torch.all(without.logits_col == 0)
        assert (without.weights - px.weights).abs().max() > 1e-3
        assert (without.output - px.output).abs().max() > 1e-6 * (1 + px.output.abs().max())


def test_without_position_is_labelled_a_counterfactual_and_keeps_the_recorded_pixel(traced):
    px = traced[0].layers["1"].pixel(2, 3)
    assert px.counterfactual is None and px.recorded is px
    without = explain.without_position(px)
    assert without.counterfactual.name == "without_position"
    assert "softmax(q·k) only" in without.counterfactual.description
    assert without.recorded is px
    eq = explain.output_terms(without, 5)
    assert eq.output == float(without.output[5]) and eq.recorded == float(px.output[5])
    assert eq.output != eq.recorded and eq.counterfactual == explain.WITHOUT_POSITION
    sentence = explain.output_sentence(eq)
    assert sentence.startswith("hypothetical output") and "recorded (traced) output" in sentence
    numbers = [float(n) for n in re.findall(r"-?\d+\.\d+", sentence)]
    assert numbers[0] != numbers[-1]              # the two outputs differ as written
    recorded = explain.output_terms(px, 5)
    assert recorded.counterfactual is None and recorded.recorded == recorded.output
    assert explain.output_sentence(recorded).startswith("recorded output")


def test_outside_weight_is_the_weight_beyond_the_border(traced):
    masked = traced[0].layers["1"].pixel(0, 0)
    torch.testing.assert_close(explain.outside_weight(masked), torch.zeros(4))
    zeros = traced[0].layers["3"].pixel(0, 0)
    expected = zeros.weights[:, ~zeros.valid].sum(1)
    torch.testing.assert_close(explain.outside_weight(zeros), expected)
    assert torch.all(expected > 0)


# --- attention as a kernel -------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_effective_kernel_reproduces_the_output_from_the_layer_input(traced, name):
    t, inputs = traced
    layer, x = t.layers[name], inputs[name]                # x: (C_in, H, W)
    K = layer.kernel_size
    x_pad = F.pad(x, (K, K, K, K))
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        top, left = px.origin                              # window cell [0, 0]
        for c in range(px.output.shape[0]):
            kernel = explain.effective_kernel(layer, px, c)
            assert kernel.shape == (x.shape[0], K, K)
            y = (kernel * x_pad[:, top + K:top + 2 * K, left + K:left + 2 * K]).sum()
            torch.testing.assert_close(y, px.output[c], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(explain.apply_kernel(kernel, x, px.origin), y)


def test_effective_kernel_of_an_ordinary_layer_is_weights_times_a_row_of_w_v(traced, model):
    """Every cell's kernel is the value conv's row for the channel, scaled by the cell's
    weight in the channel's head (4 heads of 4 channels: channel 5 is head 1's)."""
    layer = traced[0].layers["1"]
    w_v = model[1].value.weight[:, :, 0, 0].detach()              # (C, C_in), the module's
    kernel = explain.effective_kernel(layer, (3, 2), 5)         # (row, col) works as well
    px = layer.pixel(3, 2)
    for a in range(5):
        for b in range(5):
            torch.testing.assert_close(kernel[:, a, b], px.weights[1, a, b] * w_v[5])
    with pytest.raises(ValueError, match="output channel"):
        explain.effective_kernel(layer, px, 16)


def test_conv_kernel_and_the_twin_layer():
    conv = nn.Conv2d(6, 4, 3, padding=1, bias=False)
    torch.testing.assert_close(explain.conv_kernel(conv, 2), conv.weight[2].detach())
    from sasa_viz.models.pretrained import create
    twin = create("conv-cifar10", widths=(8, 8, 8), blocks=(1, 1, 1))
    found = explain.twin_conv(twin, "stages.0.0.spatial")
    assert isinstance(found, nn.Conv2d) and found.kernel_size == (3, 3)
    assert explain.twin_conv(twin, "stem.attention") is None
    assert explain.twin_conv(None, "stages.0.0.spatial") is None


# --- the output as an equation ---------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_output_terms_sum_to_the_output(traced, name):
    layer = traced[0].layers[name]
    for i, j in pixels(layer):
        px = layer.pixel(i, j)
        for c in range(0, px.output.shape[0], 3):
            eq = explain.output_terms(px, c)
            assert eq.total == pytest.approx(float(px.output[c]), abs=1e-5)
            assert eq.output == float(px.output[c])
            assert eq.head == c // layer.q.shape[1]
            expected = int(px.valid.sum()) if layer.padding == "mask" else layer.kernel_size ** 2
            assert len(eq.terms) == expected
            for term in eq.terms:
                assert term.product == pytest.approx(term.weight * term.value)
                assert (term.dy, term.dx) == (term.a - px.cell[0], term.b - px.cell[1])
                if not term.valid:
                    assert term.value == 0.0


def test_format_equation_largest_terms_first_then_the_rest_then_the_total(traced):
    px = traced[0].layers["1"].pixel(4, 4)
    eq = explain.output_terms(px, 6)
    text = explain.format_equation(eq, max_terms=3)
    weight, value = explain.equation_formats(eq)
    biggest = max(eq.terms, key=lambda t: abs(t.product))
    lhs, body, total = text.split(" = ")
    assert lhs == "y[4,4][c=6]"
    assert body.startswith(f"{weight.text(biggest.weight)}*")
    assert f"({len(eq.terms) - 3} more:" in body and body.count("*") == 3
    assert total == value.text(eq.total)
    everything = explain.format_equation(eq, max_terms=100)
    assert "more" not in everything and everything.count("*") == len(eq.terms)
    latex = explain.format_equation(eq, latex=True, per_line=2)
    assert latex.startswith(r"\begin{aligned} y_{4,4}^{[6]} &= ") and r"\cdot" in latex
    assert "more" in latex and latex.endswith(r"\end{aligned}")
    assert latex.count(r"\\") == 3 + 1           # 6 terms and the rest: 4 lines, then "="


def test_format_equation_shows_how_nearly_equal_weights_differ(traced):
    px = traced[0].layers["1"].pixel(4, 4)
    eq = explain.output_terms(px, 6)            # weights like an untrained layer's:
    eq.terms = [t._replace(weight=0.0204 + 1e-5 * n) for n, t in enumerate(eq.terms)]
    weight, _ = explain.equation_formats(eq)
    written = [weight.text(t.weight) for t in eq.terms]
    assert len(set(written)) == len(written)


# --- predictions -----------------------------------------------------------------------------

def test_top_k_is_sorted_and_a_part_of_the_softmax():
    logits = torch.tensor([0.5, 2.0, -1.0, 1.0, 0.0, 3.0, -2.0])
    classes = list("abcdefg")
    top = explain.top_k(logits, classes, k=5)
    assert [c for c, _ in top] == ["f", "b", "d", "a", "e"]
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert probs[0] == pytest.approx(float(logits.softmax(0)[5]))
    assert len(explain.top_k(logits[None], classes, k=20)) == 7            # (1, classes) too
    with pytest.raises(ValueError, match="class names"):
        explain.top_k(logits, classes[:3])
