"""The spatially-aware stem: block windows against a plain per-pixel implementation,
what a pixel can see, padding of odd sizes, the pool's alignment,
its trace, its config, its cost, and the stem and its mixture said in words."""
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.attention.stem import (AttentionStem, SpatiallyAwareAttention, block_validity,
                                     compare_with_paper, describe_mixture, name_cells,
                                     stem_steps)
from sasa_viz.drawing import figures, grids, html
from sasa_viz.inspection import explain
from sasa_viz.inspection.cost import model_madds, stem_madds
from sasa_viz.inspection.experiments import permute_neighbourhood, shift_equivariance
from sasa_viz.models.catalogue import IMAGENET_SIZE, ResNetConfig, config_for
from sasa_viz.models.pretrained import create, load_pretrained

SIZES = [(8, 8, 2), (7, 9, 2), (10, 13, 4)]          # H, W, K: whole blocks and partial ones


def make_stem(K=2, seed=0, **kw):
    torch.manual_seed(seed)
    return SpatiallyAwareAttention(3, 16, kernel_size=K, heads=4, mixtures=3, **kw)


def plain_block_stem(layer, x, padding="mask"):
    """The paper's stem written out pixel by pixel: softmax over the pixels of the
    pixel's own K x K block of q . k, times v_ab = (sum_m p(a,b,m) W_V^m) x_ab.
    Cells of the block past the map's edge are left out ("mask") or are zero pixels
    that take part ("zeros")."""
    B, C_in, H, W = x.shape
    K, h, m = layer.kernel_size, layer.heads, layer.mixtures
    emb = layer.emb_row[:, None] + layer.emb_col[None, :]                  # (K, K, C)
    p = torch.softmax(emb @ layer.nu.T, dim=-1)                            # (K, K, m)
    w_q, w_k = layer.query.weight[:, :, 0, 0], layer.key.weight[:, :, 0, 0]  # (C, C_in)
    w_v = layer.value.weight[:, :, 0, 0].view(m, -1, C_in)                 # (m, C, C_in)
    pixels = []
    for i in range(H):
        for j in range(W):
            top, left = i - i % K, j - j % K
            q = (x[:, :, i, j] @ w_q.T).view(B, h, -1)                     # (B, h, d)
            logits, values = [], []
            for a in range(K):
                for b in range(K):
                    inside = top + a < H and left + b < W
                    if not inside and padding == "mask":
                        continue
                    x_ab = x[:, :, top + a, left + b] if inside else x.new_zeros(B, C_in)
                    k = (x_ab @ w_k.T).view(B, h, -1)
                    mixed = torch.einsum("m,mci->ci", p[a, b], w_v)        # (C, C_in)
                    logits.append((q * k).sum(-1))                         # (B, h)
                    values.append((x_ab @ mixed.T).view(B, h, -1))         # (B, h, d)
            weights = torch.stack(logits, -1).softmax(-1)                  # (B, h, n)
            y = (weights[..., None] * torch.stack(values, 2)).sum(2)       # (B, h, d)
            pixels.append(y.flatten(1))
    return torch.stack(pixels, -1).view(B, -1, H, W)


def outputs_and_grads(fn, layer, x, grad_out):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    return y, torch.autograd.grad((y * grad_out).sum(), [x, *layer.parameters()])


# --- the block attention itself ---------------------------------------------------------

@pytest.mark.slow                                 # a Python loop over every pixel
@pytest.mark.parametrize("H, W, K", SIZES)
@pytest.mark.parametrize("padding", ["mask", "zeros"])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 0), (torch.float32, 1e-5)])
def test_blocks_match_the_plain_implementation_forward_and_backward(H, W, K, padding, dtype,
                                                                    rtol):
    layer = make_stem(K, padding=padding).to(dtype)
    x = torch.randn(2, 3, H, W, dtype=dtype)
    grad_out = torch.randn(2, 16, H, W, dtype=dtype)
    fast, fast_grads = outputs_and_grads(layer, layer, x, grad_out)
    plain, plain_grads = outputs_and_grads(lambda t: plain_block_stem(layer, t, padding),
                                           layer, x, grad_out)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    names = ["input"] + [n for n, _ in layer.named_parameters()]
    assert {"query.weight", "key.weight", "value.weight", "emb_row", "emb_col", "nu"} <= set(names)
    for name, g_fast, g_plain in zip(names, fast_grads, plain_grads):   # float32: sums of
        torch.testing.assert_close(g_fast, g_plain, atol=1e-5, rtol=rtol,  # ~100 terms of ~1
                                   msg=f"gradient of {name}")


@pytest.mark.parametrize("H, W, K", SIZES)
def test_recorded_tensors_have_the_contracts_shapes_and_the_same_output(H, W, K):
    layer = make_stem(K)
    x = torch.randn(2, 3, H, W)
    t = layer.attend(x, record=True)
    assert t.output.shape == (2, 16, H, W)
    torch.testing.assert_close(t.output, layer(x))
    assert t.q.shape == t.k.shape == (2, 4, 4, H, W)
    assert t.v.shape == (2, 3, 4, 4, H, W)                     # (B, m, h, d, H, W)
    assert t.logits_content.shape == t.weights.shape == (2, 4, K, K, H, W)
    assert t.logits_row is None and t.logits_col is None
    assert t.value_mixture.shape == (K, K, 3)
    torch.testing.assert_close(t.v, layer.value(x).view(2, 3, 4, 4, H, W))
    # content logits: q of the pixel . k of cell [a, b] of its block
    for i, j, a, b in [(0, 0, 1, 1), (H - 1, W - 1, 0, 0), (3, 5, 1, 0)]:
        top, left = i - i % K, j - j % K
        expected = (t.q[:, :, :, i, j] * t.k[:, :, :, top + a, left + b]).sum(2)
        torch.testing.assert_close(t.logits_content[:, :, a, b, i, j], expected)


@pytest.mark.parametrize("H, W, K", SIZES)
def test_weights_sum_to_one_over_the_blocks_pixels_and_leave_padding_out(H, W, K):
    t = make_stem(K).attend(torch.randn(1, 3, H, W), record=True)
    valid = t.valid.expand_as(t.weights)
    torch.testing.assert_close(t.weights.sum(dim=(2, 3)), torch.ones(1, 4, H, W))
    assert torch.all(t.weights[~valid] == 0) and torch.all(t.weights[valid] > 0)
    for i in range(H):                     # valid: the block's cells that are real pixels
        for j in range(W):
            top, left = i - i % K, j - j % K
            expected = torch.zeros(K, K, dtype=torch.bool)
            expected[:H - top, :W - left] = True
            assert torch.equal(t.valid[..., i, j], expected)
    assert bool(H % K or W % K) == (not t.valid.all())


def test_zero_padding_lets_the_padded_pixels_take_part():
    t = make_stem(2, padding="zeros").attend(torch.randn(1, 3, 7, 9), record=True)
    outside = ~t.valid.expand_as(t.weights)
    assert outside.any() and torch.all(t.weights[outside] > 0)
    torch.testing.assert_close(t.weights.sum(dim=(2, 3)), torch.ones(1, 4, 7, 9))


@pytest.mark.parametrize("H, W, K", SIZES)
def test_a_pixel_sees_exactly_the_pixels_of_its_block(H, W, K):
    layer = make_stem(K)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        y = layer(x)
        for r, c in [(0, 0), (H - 1, W - 1), (H // 2, 1), (1, W // 2)]:
            changed = x.clone()
            changed[..., r, c] += 1.0
            moved = (layer(changed) - y).abs().amax(dim=1)[0] > 1e-6        # (H, W)
            block = torch.zeros(H, W, dtype=torch.bool)
            block[r - r % K:r - r % K + K, c - c % K:c - c % K + K] = True
            assert torch.equal(moved, block), (r, c)


@pytest.mark.parametrize("H, W, K", SIZES)
def test_a_pooled_pixel_depends_on_its_own_block_only(H, W, K):
    torch.manual_seed(0)
    stem = AttentionStem(3, 16, kernel_size=K, heads=4, mixtures=3, pool=K).eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        y = stem(x)
        assert y.shape == (1, 16, -(-H // K), -(-W // K))      # a partial block still pools
        for r in range(H):
            for c in range(W):
                changed = x.clone()
                changed[..., r, c] += 3.0
                moved = (stem(changed) - y).abs().amax(dim=1)[0] > 1e-6
                assert moved.nonzero().tolist() in ([], [[r // K, c // K]]), (r, c)


def test_block_validity_marks_the_cells_past_the_edge():
    valid = block_validity(2, 3, 5)
    assert valid.shape == (2, 2, 3, 5)
    assert valid[..., 0, 0].all()
    assert valid[..., 2, 4].tolist() == [[True, False], [False, False]]
    assert valid[..., 2, 1].tolist() == [[True, True], [False, False]]


def test_mixture_is_a_distribution_over_value_matrices():
    p = make_stem(4).value_mixture()
    assert p.shape == (4, 4, 3)
    torch.testing.assert_close(p.sum(-1), torch.ones(4, 4))
    assert AttentionStem(3, 16, heads=2)(torch.rand(1, 3, 16, 16)).shape == (1, 16, 4, 4)


# --- where a window is -----------------------------------------------------------------

def test_window_origin_of_blocks_and_of_sliding_windows():
    rows, cols = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 4, 7, 8])
    top, left = make_stem(2).window_origin(rows, cols)
    assert top.tolist() == [0, 0, 2, 4] and left.tolist() == [2, 4, 6, 8]
    assert make_stem(4).window_origin(6, 3) == (4, 0)
    assert SelfAttention2d(3, 4, 5, heads=2).window_origin(6, 3) == (4, 1)


@pytest.mark.parametrize("H, W, K", SIZES)
def test_trace_gives_every_pixel_its_block_as_window(H, W, K):
    torch.manual_seed(0)
    model = nn.Sequential(AttentionStem(3, 8, kernel_size=K, heads=2, mixtures=3, pool=K)).eval()
    layer = trace(model, torch.rand(1, 3, H, W)).layers["0.attention"]
    assert layer.window == "blocks" and layer.stride == 1 and layer.size == (H, W)
    padded_k = torch.zeros(2, 4, H + K, W + K)
    padded_k[..., :H, :W] = layer.k
    padded_v = torch.zeros(3, 2, 4, H + K, W + K)
    padded_v[..., :H, :W] = layer.v
    for i in range(H):
        for j in range(W):
            top, left = i - i % K, j - j % K
            px = layer.pixel(i, j)
            assert px.origin == (top, left) and px.cell == (i % K, j % K)
            assert px.window == (top, left, min(top + K, H), min(left + K, W))
            assert px.offsets[:, 0, 0].tolist() == [-(i % K), -(j % K)]
            block = (..., slice(top, top + K), slice(left, left + K))
            torch.testing.assert_close(px.keys, padded_k[block])
            mixed = torch.einsum("abm,mhdab->hdab", layer.value_mixture, padded_v[block])
            torch.testing.assert_close(px.values, mixed)
            output = (px.weights[:, None] * px.values).sum(dim=(2, 3)).flatten()
            torch.testing.assert_close(px.output, output, atol=1e-6, rtol=1e-5)


def block_stem_trace(H=7, W=9, K=2):
    torch.manual_seed(0)
    model = nn.Sequential(AttentionStem(3, 8, kernel_size=K, heads=2, mixtures=3, pool=K)).eval()
    return model, trace(model, torch.rand(1, 3, H, W)).layers["0.attention"]


def test_explain_counts_offsets_from_the_pixels_place_in_its_block():
    _, layer = block_stem_trace()
    px = layer.pixel(3, 4)                                  # cell [1, 0] of block (1, 2)
    assert px.cell == (1, 0)
    assert px.offsets.tolist() == [[[-1, -1], [0, 0]], [[0, 1], [0, 1]]]
    eq = explain.output_terms(px, 5)
    assert [(t.dy, t.dx) for t in eq.terms] == [(-1, 0), (-1, 1), (0, 0), (0, 1)]
    assert eq.total == pytest.approx(eq.output, abs=1e-6)
    assert [row["dy"] for row in explain.neighbour_table(px, 0)] == [-1, -1, 0, 0]
    torch.testing.assert_close(explain.self_weight(layer)[:, 3, 4], px.weights[:, 1, 0])
    kernel = explain.effective_kernel(layer, px, 5)
    torch.testing.assert_close(explain.apply_kernel(kernel, layer.input, px.origin),
                               px.output[5], atol=1e-6, rtol=1e-5)
    result = permute_neighbourhood(px)                      # the pixel itself stays put
    assert result.source[1 * 2 + 0] == 1 * 2 + 0


def test_figures_and_html_outline_the_pixels_own_cell():
    _, layer = block_stem_trace(K=4, H=10, W=13)
    px = layer.pixel(5, 11)                                 # cell [1, 3] of its block
    page = html.weights_panel(px, [0])
    assert page.count(f"outline:2px solid {grids.OWN_CELL_COLOUR}") == 1
    assert f'dy=-1, dx=-3: {float(px.weights[0, 0, 0]):.6g}"' in page
    fig = figures.weights_figure(px)
    outlines = [patch.get_xy() for patch in fig.axes[0].patches
                if patch.get_edgecolor()[:3] == (232 / 255, 0.0, 11 / 255)]
    assert outlines == [(3 - .5, 1 - .5)]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["-1", "0", "+1", "+2"]


def test_block_attention_shifts_with_the_image_by_whole_blocks():
    model = create("sasa-full-cifar10", widths=(16, 16, 16), blocks=(1, 1, 1)).eval()
    g = torch.Generator().manual_seed(0)
    x = nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(16, 16),
                                  mode="bilinear")
    result = shift_equivariance(model, x, "stem.attention", 2, 4)
    assert result.difference[2:, 4:].max() < 1e-5           # away from the roll's seam
    torch.testing.assert_close(result.shifted[2:, 4:], result.original[:-2, :-4])


@pytest.mark.parametrize("make, message", [
    (lambda: SpatiallyAwareAttention(3, 16, kernel_size=2, heads=4, mixtures=0),
     "mixtures must be a positive integer"),
    (lambda: AttentionStem(3, 16, kernel_size=4, pool=2), "pool must equal"),
])
def test_bad_arguments_say_what_to_change(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- in the models -----------------------------------------------------------------------

def test_full_attention_models_use_blocks_the_size_of_the_stem_pool():
    for name, K in [("sasa-full-cifar10", 2), ("sasa-full-resnet26", 4)]:
        config = config_for(name)
        assert (config.stem_kernel_size, config.stem_pool) == (K, K)
    stem = create("sasa-full-cifar10", widths=(16, 16, 16), blocks=(1, 1, 1)).stem
    assert stem.attention.window == "blocks" and stem.attention.kernel_size == 2
    with pytest.raises(ValueError, match="must equal stem_pool"):
        config_for("sasa-full-cifar10", stem_kernel_size=4)


def test_cards_saved_with_the_stem_window_field_still_load():
    """The shipped cards were written while the stem could also slide: their
    stem_window="blocks" is the only kind there is now; another would be refused."""
    folder = Path(__file__).resolve().parent.parent / "pretrained"
    for path in sorted(folder.glob("*.json")):
        stored = json.loads(path.read_text())["config"]
        assert stored.get("stem_window", "blocks") == "blocks"
        assert ResNetConfig.from_dict(stored) == config_for(path.stem)
    sliding = {**asdict(config_for("sasa-full-cifar10")), "stem_window": "sliding"}
    with pytest.raises(ValueError, match="sliding windows, which sasa_viz no longer builds"):
        ResNetConfig.from_dict(sliding)


def test_model_madds_counts_the_stem_as_the_paper():
    with torch.device("meta"):
        stem = AttentionStem(3, 64, kernel_size=4, heads=8, mixtures=4, pool=4)
    per_pixel = 6 * 3 * 64 + 16 * 64 + 4 * 16 * 64
    assert stem_madds(4, 3, 64, 8, 4) == per_pixel
    assert model_madds(stem, 16, 12) == per_pixel * 16 * 12


# --- the stem in words -------------------------------------------------------------------

CARD = Path(__file__).resolve().parent.parent / "pretrained" / "README.md"


def test_stem_steps_are_read_from_the_modules():
    stem = AttentionStem(3, 8, kernel_size=2, heads=2, pool=2)
    assert stem_steps(stem) == ["attention in 2×2 blocks", "batch norm", "a ReLU",
                                "a 2×2 max pool"]
    assert stem_steps(AttentionStem(3, 8, kernel_size=4, heads=2, pool=1)) == [
        "attention in 4×4 blocks", "batch norm", "a ReLU"]
    stem.act = nn.GELU()
    with pytest.raises(ValueError, match="GELU"):
        stem_steps(stem)


def test_the_cifar_stem_beside_the_papers():
    """The paper's numbers come from the ImageNet full-attention configs, this stem's
    from its modules: 2x2 blocks and pool, a ReLU the paper does not name."""
    paper = config_for("sasa-full-resnet50")
    stem = create("sasa-full-cifar10", widths=(16, 16, 16), blocks=(1, 1, 1)).stem
    said = compare_with_paper(stem, 32, paper.stem_kernel_size, paper.stem_pool,
                              IMAGENET_SIZE)
    assert said[0] == ("The paper's stem, for 224×224 images: attention in 4×4 blocks, "
                       "then batch norm and a 4×4 max pool.")
    assert said[1] == ("This one, for 32×32 images: attention in 2×2 blocks, then batch "
                       "norm, a ReLU and a 2×2 max pool.")
    assert stem(torch.rand(1, 3, 32, 32)).shape[-2:] == (16, 16)       # what said[2] says
    assert nn.MaxPool2d(4, ceil_mode=True)(torch.rand(1, 1, 32, 32)).shape[-2:] == (8, 8)
    assert said[2] == ("On a 32×32 image the paper's 4×4 pool would make the map 8×8; "
                       "2×2 makes it 16×16.")
    assert "ReLU is this project's" in said[3] and len(said) == 4


def test_a_stem_like_the_papers_gets_no_pool_or_relu_remark():
    stem = AttentionStem(3, 8, kernel_size=4, heads=2, pool=4)
    stem.act = nn.Identity()
    said = compare_with_paper(stem, 224, 4, 4, 224)
    assert said[1] == ("This one, for 224×224 images: attention in 4×4 blocks, then batch "
                       "norm and a 4×4 max pool.")
    assert len(said) == 2


@pytest.mark.parametrize("cells, K, words", [
    ([(0, 0), (0, 1)], 2, "the top row"),
    ([(1, 0), (1, 1)], 2, "the bottom row"),
    ([(0, 1), (1, 1)], 2, "the right column"),
    ([(1, 0)], 2, "the bottom-left cell"),
    ([(0, 1)], 2, "the top-right cell"),
    ([(0, 0), (1, 1)], 2, "the top-left cell and the bottom-right cell"),
    ([(0, 0), (0, 1), (1, 1)], 2, "every cell but the bottom-left cell"),
    ([(0, 0), (0, 1), (1, 0), (1, 1)], 2, "every cell"),
    ([(a, b) for a in (0, 1) for b in (2, 3)], 4, "rows 0–1 of columns 2–3"),
    ([(a, b) for a in (0, 1) for b in range(4)], 4, "rows 0–1"),
    ([(a, 0) for a in range(4)], 4, "the left column"),
    ([(2, 1)], 4, "the cell in row 2, column 1"),
    ([(3, 3)], 4, "the bottom-right cell"),
])
def test_cells_are_named_by_their_place_in_the_block(cells, K, words):
    assert name_cells(cells, K) == words


def mixture(*grids):
    """p(a, b, m) from one K x K grid per value matrix: (K, K, m)."""
    p = np.stack(grids, axis=-1)
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-12)           # a hand-made distribution
    return p


def test_each_matrix_is_said_from_its_own_grid():
    p = mixture([[0.80, 0.70], [0.05, 0.01]],     # the top row
                [[0.15, 0.05], [0.90, 0.20]],     # the bottom-left cell
                [[0.02, 0.20], [0.03, 0.75]],     # the bottom-right cell
                [[0.03, 0.05], [0.02, 0.04]])     # under 0.1 everywhere
    uses = describe_mixture(torch.tensor(p))
    assert [u.kind for u in uses] == ["takes", "takes", "takes", "unused"]
    assert [u.cells for u in uses[:3]] == [((0, 0), (0, 1)), ((1, 0),), ((1, 1),)]
    assert [u.sentence for u in uses] == [
        "m = 0 takes the top row of each block (p = 0.700–0.800), and at most 0.050 "
        "elsewhere.",
        "m = 1 takes the bottom-left cell of each block (p = 0.900), and at most 0.200 "
        "elsewhere.",
        "m = 2 takes the bottom-right cell of each block (p = 0.750), and at most 0.200 "
        "elsewhere.",
        "m = 3 is unused: p is at most 0.050 in every cell."]


def test_even_shares_minor_shares_and_the_thresholds():
    even = describe_mixture(np.full((3, 3, 4), 0.25))
    assert {u.kind for u in even} == {"even"}
    assert even[0].sentence == "m = 0 weighs every cell about equally (p = 0.250)."
    p = mixture([[0.45, 0.30], [0.20, 0.35]],
                [[0.46, 0.40], [0.51, 0.35]],
                [[0.09, 0.30], [0.29, 0.30]])
    share, takes, _ = describe_mixture(p)
    assert share.kind == "share" and share.sentence == (
        "m = 0 takes no cell: p = 0.200–0.450, most in the top-left cell.")
    assert takes.sentence == ("m = 1 takes the bottom-left cell of each block "
                              "(p = 0.510), and at most 0.460 elsewhere.")
    assert describe_mixture(np.full((1, 1, 2), [0.099, 0.901]))[0].kind == "unused"
    assert describe_mixture(np.full((1, 1, 2), [0.1, 0.9]))[0].kind == "even"
    tiny = describe_mixture(mixture([[0.0004, 0.0002]], [[0.9996, 0.9998]]))[0]
    assert tiny.sentence == "m = 0 is unused: p is under 0.001 in every cell."


def written_as(text: str, value: float) -> bool:
    """Is `text` ("0.794") `value` rounded to the decimals it shows?"""
    return f"{value:.{len(text.split('.')[1])}f}" == text


def shipped_mixture():
    """p(a, b, m) as the Stem page draws it: from the trace of the shipped model."""
    model = load_pretrained("sasa-full-cifar10", device="cpu")
    return trace(model, torch.rand(1, 3, 32, 32)).layers["stem.attention"].value_mixture


def test_the_shipped_stems_words_are_its_drawn_p():
    """Every number in the sentences is the p drawn, over the cells each matrix takes
    (p > 0.5, found here without describe_mixture) and elsewhere, and is written as
    the mixture grids write their cells."""
    p = shipped_mixture().numpy()                                  # (K, K, m)
    for m, use in enumerate(describe_mixture(p)):
        grid = p[:, :, m]
        taken = grid > 0.5
        numbers = re.findall(r"\d+\.\d+", use.sentence)
        if not taken.any():
            assert grid.max() < 0.1 and "unused" in use.sentence
            assert written_as(numbers[0], grid.max()) and len(numbers) == 1
            continue
        assert set(use.cells) == {tuple(c) for c in np.argwhere(taken)}
        low, high = grid[taken].min(), grid[taken].max()
        *in_cells, elsewhere = numbers
        assert written_as(in_cells[0], low) and written_as(in_cells[-1], high)
        assert written_as(elsewhere, grid[~taken].max())
    cells = re.findall(r">(\d\.\d+)<", html.mixture_panel(p))      # the grids' numbers
    for use in describe_mixture(p):
        assert set(re.findall(r"\d+\.\d+", use.sentence)) <= set(cells), use.sentence


def test_the_model_card_says_what_the_shipped_stem_is_and_learned():
    card = " ".join(CARD.read_text().split())                      # lines joined
    for use in describe_mixture(shipped_mixture()):
        assert use.sentence in card
    steps = stem_steps(load_pretrained("sasa-full-cifar10", device="cpu").stem)
    assert f"{steps[0]}, then {steps[1]}, {steps[2]} and {steps[3]}" in card
    paper = config_for("sasa-full-resnet50")
    K, pool = paper.stem_kernel_size, paper.stem_pool
    assert (f"for {IMAGENET_SIZE}×{IMAGENET_SIZE} images: attention in {K}×{K} blocks, "
            f"then batch norm and a {pool}×{pool} max pool") in card
