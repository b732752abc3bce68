"""The cost formulas of sasa_viz.inspection.cost against real modules."""
import re

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from sasa_viz.attention.layer import SelfAttention2d
from sasa_viz.inspection.cost import (PAPER_TABLE1_FLOPS, StemConvention, attention_madds,
                                      attention_params, conv_madds, conv_params,
                                      count_parameters, crossover_k, mixed_stem_madds,
                                      model_madds, parameter_breakdown, stem_convention,
                                      stem_madds, table1)
from sasa_viz.models.catalogue import IMAGENET_SIZE, attention_layers
from sasa_viz.models.pretrained import create
from tests.helpers import PAPER_TABLE_1

SHAPES = [(3, 16, 32), (5, 8, 8), (1, 4, 12)]          # (k, d_in, d_out)


class ElementwiseProducts(TorchDispatchMode):
    """Counts the products made elementwise (mul, addcmul), which FlopCounterMode skips:
    the local attention computes q . k and sum w v this way."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mul, torch.ops.aten.addcmul,
                                   torch.ops.aten.addcmul_):
            self.count += out.numel()
        return out


TABLE_1_FLOPS = {name: flops for name, (flops, _) in PAPER_TABLE_1.items()}   # billions


def test_the_code_carries_the_papers_table1_flops():
    assert PAPER_TABLE1_FLOPS == TABLE_1_FLOPS


def measured_madds(module, x):
    """Multiply-adds of one forward pass: matmul/conv FLOPs / 2 + elementwise products."""
    with torch.no_grad(), FlopCounterMode(display=False) as flops, \
            ElementwiseProducts() as products:
        module(x)
    return flops.get_flop_counts()["Global"], products.count


@pytest.mark.parametrize("k, d_in, d_out", SHAPES)
def test_conv_formulas_against_conv2d(k, d_in, d_out):
    conv = nn.Conv2d(d_in, d_out, k, padding=k // 2, bias=False)
    assert count_parameters(conv) == conv_params(k, d_in, d_out)
    H, W = 6, 5
    by_op, _ = measured_madds(conv, torch.randn(1, d_in, H, W))
    assert by_op[torch.ops.aten.convolution] / 2 == conv_madds(k, d_in, d_out) * H * W


@pytest.mark.parametrize("k, d_in, d_out", [(3, 16, 32), (7, 8, 8), (5, 12, 24)])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("position", ["relative", "absolute", "none"])
def test_attention_params_against_module(k, d_in, d_out, heads, position):
    layer = SelfAttention2d(d_in, d_out, k, heads, position=position, max_size=20)
    assert count_parameters(layer) == attention_params(k, d_in, d_out, heads, position,
                                                       max_size=20)


def test_attention_params_grow_only_with_the_position_table():
    small, large = SelfAttention2d(64, 64, 3), SelfAttention2d(64, 64, 11)
    assert count_parameters(large) - count_parameters(small) == (11 - 3) * 64
    assert attention_params(11, 64, 64) - attention_params(3, 64, 64) == (11 - 3) * 64


@pytest.mark.parametrize("k, d_in, d_out", [(3, 16, 32), (7, 8, 16), (5, 12, 24)])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("position", ["relative", "absolute", "none"])
def test_attention_madds_against_module(k, d_in, d_out, heads, position, plain_window_path):
    torch.manual_seed(0)
    layer = SelfAttention2d(d_in, d_out, k, heads, position=position)
    H, W = 9, 10
    by_op, products = measured_madds(layer, torch.randn(1, d_in, H, W))
    # the projections are exactly the layer's three 1x1 convolutions
    assert by_op[torch.ops.aten.convolution] / 2 == 3 * d_in * d_out * H * W
    total = sum(by_op.values()) / 2 + products
    assert total == attention_madds(k, d_in, d_out, heads, position) * H * W


def test_crossover_k_matches_the_paper():
    assert crossover_k(128, 128, conv_k=3) == 19


@pytest.mark.parametrize("d_in, d_out, conv_k", [(128, 128, 3), (64, 256, 3), (256, 64, 3),
                                                 (32, 32, 5), (512, 512, 3), (8, 8, 3)])
def test_crossover_k_is_the_largest_affordable_odd_window(d_in, d_out, conv_k):
    k = crossover_k(d_in, d_out, conv_k)
    budget = conv_madds(conv_k, d_in, d_out)
    assert k % 2 == 1
    assert attention_madds(k, d_in, d_out) <= budget
    assert attention_madds(k + 2, d_in, d_out) > budget


def test_crossover_k_without_an_affordable_window():
    with pytest.raises(ValueError):
        crossover_k(64, 64, conv_k=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="heads"):
        attention_madds(7, 64, 60, heads=8)
    with pytest.raises(ValueError, match="position"):
        attention_params(7, 64, 64, position="rotary")
    with pytest.raises(ValueError, match="position"):
        attention_madds(7, 64, 64, position="rotary")


@pytest.mark.parametrize("name", ["sasa-resnet26", "sasa-full-resnet26", "conv-resnet26",
                                  "sasa-cifar10", "sasa-full-cifar10", "conv-cifar10"])
def test_parameter_breakdown_adds_up(name):
    with torch.device("meta"):
        model = create(name)
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["classifier"] == count_parameters(model.head)
    assert parts["stem"] == count_parameters(model.stem)
    layers = [m for n, m in attention_layers(model).items() if not n.startswith("stem")]
    assert parts["position embeddings"] == sum(m.rel_row.numel() + m.rel_col.numel()
                                               for m in layers)
    expected = sum(attention_params(m.kernel_size, m.in_channels, m.out_channels)
                   for m in layers)
    assert parts["attention projections"] + parts["position embeddings"] == expected
    if name.startswith("conv"):
        assert parts["attention projections"] == 0 and parts["spatial convolutions"] > 0
    else:
        assert parts["spatial convolutions"] == 0 and parts["attention projections"] > 0


def test_model_madds_counts_the_attention_stem_once_per_value_matrix():
    """sasa-full-resnet26 is sasa-resnet26 with the spatially-aware stem in place of the
    7x7 conv stem: the difference of their counts is the difference of the two stems,
    counted here by hand from the layers' shapes at 224 x 224."""
    with torch.device("meta"):
        full, conv_stem = create("sasa-full-resnet26").eval(), create("sasa-resnet26").eval()
    rest = count_parameters(full) - count_parameters(full.stem)
    assert rest == count_parameters(conv_stem) - count_parameters(conv_stem.stem)
    stem = full.stem.attention
    K, m, d_out = stem.kernel_size, stem.mixtures, stem.out_channels
    projections = sum(c.weight.numel() for c in (stem.query, stem.key, stem.value))
    assert projections == (2 + m) * stem.in_channels * d_out      # W_Q, W_K, W_V^1..m
    logits = K * K * d_out                                         # q . k over the block
    weighted_sums = m * K * K * d_out                              # one per value matrix
    attention_stem = 224 * 224 * (projections + logits + weighted_sums)
    conv = conv_stem.stem.conv                                     # 7x7, stride 2
    side = (224 + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    conv_7x7 = side * side * conv.weight.numel()
    assert model_madds(full) - model_madds(conv_stem) == attention_stem - conv_7x7


# --- how the attention stem is counted --------------------------------------------------

def test_mixing_first_saves_the_other_value_maps_and_weighted_sums():
    """Per matrix the stem has m value maps and m weighted sums; mixed, one of each."""
    k, d_in, d_out, m = 4, 3, 64, 4
    value_map, weighted_sum = d_in * d_out, k * k * d_out
    assert stem_madds(k, d_in, d_out, mixtures=m) - mixed_stem_madds(k, d_in, d_out) == \
        (m - 1) * (value_map + weighted_sum)
    assert mixed_stem_madds(k, d_in, d_out) == 2 * d_in * d_out + k * k * d_out + \
        value_map + weighted_sum                                   # q, k, logits + one each


def test_model_madds_counts_the_stem_either_way():
    with torch.device("meta"):
        full = create("sasa-full-resnet26").eval()
    stem = full.stem.attention
    shape = (stem.kernel_size, stem.in_channels, stem.out_channels)
    saved = stem_madds(*shape, mixtures=stem.mixtures) - mixed_stem_madds(*shape)
    per_matrix, mixed = (model_madds(full, stem_count=c) for c in ("per matrix", "mixed"))
    assert per_matrix - mixed == IMAGENET_SIZE ** 2 * saved      # the stem sees every pixel
    with pytest.raises(ValueError, match="stem_count"):
        model_madds(full, stem_count="once")


@pytest.fixture(scope="module")
def convention():
    return stem_convention()


def test_the_stem_convention_is_table1s_and_the_one_that_matches(convention):
    """Table 1 here counts the stem per matrix (its FLOPS are the convention's), and that
    count is closer to the paper's in every row than the mixed count in any."""
    rows = {row["model"]: row for row in table1()}
    for name, flops in zip(convention.models, convention.flops_per_matrix):
        assert rows[name]["FLOPS (B)"] == round(flops, 2)
        assert rows[name]["FLOPS, paper (B)"] == TABLE_1_FLOPS[name]
    assert all(mixed < flops for mixed, flops in zip(convention.flops_mixed,
                                                     convention.flops_per_matrix))
    assert convention.per_matrix_matches()
    assert convention.sentences()[-1].startswith("So Table 1 here counts the stem per matrix")


def test_the_stem_convention_sentences_give_its_numbers(convention):
    with torch.device("meta"):
        stem = create("sasa-full-resnet50").stem.attention
    shape = (stem.kernel_size, stem.in_channels, stem.out_channels)
    first, second, third, _ = convention.sentences()
    assert f"{stem.kernel_size}×{stem.kernel_size} blocks" in first
    assert f"m = {stem.mixtures} value matrices" in first
    assert f"{stem_madds(*shape, mixtures=stem.mixtures):,} multiply-adds" in first
    assert f"{mixed_stem_madds(*shape):,} per pixel" in second
    numbers = [float(n) for n in re.findall(r"\d+\.\d+", third)]
    per_matrix, paper, mixed = numbers[:3], numbers[3:6], numbers[7:10]
    assert per_matrix == pytest.approx(convention.flops_per_matrix, abs=0.005)
    assert paper == [TABLE_1_FLOPS[n] for n in convention.models]
    assert mixed == pytest.approx(convention.flops_mixed, abs=0.005)
    worst = max(abs(f - p) / p for f, p in zip(convention.flops_per_matrix, paper))
    assert f"within {100 * worst:.2g}% of the paper's" in third
    mixed_gaps = sorted((p - f) / p for f, p in zip(convention.flops_mixed, paper))
    assert (f"({100 * mixed_gaps[0]:.2g}% to {100 * mixed_gaps[-1]:.2g}% below the "
            f"paper's)") in third


def test_no_match_is_claimed_where_the_mixed_count_is_as_close():
    made_up = StemConvention(4, 3, 64, 4, 6272, 2624, ("a", "b"), (4.0, 6.0),
                             (4.2, 6.0), (4.1, 5.9))
    assert not made_up.per_matrix_matches()
    said = made_up.sentences()
    assert len(said) == 3                                      # no "So Table 1 ..."
    assert "(within 5% of the paper's); counted mixed" in said[2]     # 4.2 against 4.0
    assert said[2].endswith("(within 2.5% of the paper's).")          # 4.1 and 5.9
