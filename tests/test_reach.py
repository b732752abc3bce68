"""sasa_viz.inspection.reach and sasa_viz.drawing.reach: the rollout is the product of
every op's dense mixing matrix, built here pixel by pixel from the trace; the gradient is
what finite differences measure; the theoretical box holds every pixel the gradient
touches and grows as worked out by hand; the sentence says what the arrays say; the
drawing puts the shares, the box and the cell where they belong."""
import re
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib import colormaps

import sasa_viz
from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.drawing import images
from sasa_viz.drawing.grids import WEIGHTS_CMAP
from sasa_viz.drawing.overlay import GAP, OPACITY
from sasa_viz.drawing.reach import PANEL, reach_overlay, reach_panels
from sasa_viz.inspection.reach import (attention_rollout, describe, feature_pixel,
                                       input_gradient, reach, theoretical_box,
                                       theoretical_sides)
from sasa_viz.inspection.trace import trace
from sasa_viz.models.catalogue import build, cifar_config, resnet_config

SMALL = dict(widths=(8, 16, 16), blocks=(1, 2, 1), head_dim=4, stem_width=8, heads=2,
             zero_init_residual=False)      # every branch takes part in the gradient
IMAGE = (15, 13)                            # odd sides: ceil-mode pools, partial blocks


def small(spatial="attention", stem="conv", seed=0, **overrides):
    torch.manual_seed(seed)
    return build(cifar_config(spatial, stem, **{**SMALL, **overrides})).eval()


def picture(size=IMAGE, seed=0, dtype=torch.float32):
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed),
                      dtype=dtype)


@pytest.fixture(scope="module", params=[("conv", "mask"), ("attention", "mask"),
                                        ("conv", "zeros")])
def traced(request):
    """A conv-stem or attention-stem model (padding "zeros": weights on cells past the
    map's edge), an odd-sided image and its trace."""
    stem, padding = request.param
    model = small(stem=stem, padding=padding)
    image = picture()
    return model, image, trace(model, image)


# --- the rollout, brute force ----------------------------------------------------------

def shapes(model, image):
    """{module name: ((h, w) in, (h, w) out)} from hooks on a real forward pass."""
    seen, handles = {}, []
    for name, module in model.named_modules():
        def hook(_, inputs, output, name=name):
            seen[name] = (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))
        handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(image)
    for handle in handles:
        handle.remove()
    return seen


def window_matrix(size_in, size_out, k, s, p):
    """(out pixels, in pixels): each output pixel the plain mean of its window's cells on
    the map."""
    (H, W), (Ho, Wo) = size_in, size_out
    matrix = np.zeros((Ho * Wo, H * W))
    for i in range(Ho):
        for j in range(Wo):
            cells = [(i * s - p + a, j * s - p + b) for a in range(k) for b in range(k)
                     if 0 <= i * s - p + a < H and 0 <= j * s - p + b < W]
            for r, c in cells:
                matrix[i * Wo + j, r * W + c] += 1 / len(cells)
    return matrix


def attention_matrix(layer):
    """(pixels, pixels): each pixel's head-mean weights on its window cells on the map,
    rescaled to sum to 1."""
    K, (H, W) = layer.kernel_size, layer.size
    weights = layer.weights.double().mean(0).numpy()
    matrix = np.zeros((H * W, H * W))
    for i in range(H):
        for j in range(W):
            top, left = layer.window_origin(i, j)
            for a in range(K):
                for b in range(K):
                    if layer.valid[a, b, i, j]:
                        matrix[i * W + j, (top + a) * W + left + b] += weights[a, b, i, j]
    return matrix / matrix.sum(1, keepdims=True)


def module_window(module, size_in, size_out):
    k, s, p = (v if isinstance(v, int) else v[0]
               for v in (module.kernel_size, module.stride, module.padding))
    return window_matrix(size_in, size_out, k, s, p)


def brute_rollout(model, image, t, layer):
    """(layer's pixels, image pixels): the rollout as a product of dense matrices, one
    per op from the image up to the layer's attention."""
    seen, chain = shapes(model, image), []                  # (out, in) each, image first
    for name, module in model.stem.named_children():
        if isinstance(module, LocalSelfAttention):
            chain.append(attention_matrix(t.layers[f"stem.{name}"]))
            if f"stem.{name}" == layer:
                return product(chain)
        elif isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            chain.append(module_window(module, *seen[f"stem.{name}"]))
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            spatial = f"stages.{s}.{b}.spatial"
            branch = attention_matrix(t.layers[spatial])
            if spatial == layer:
                return product(chain + [branch])
            if isinstance(block.spatial.pool, nn.AvgPool2d):
                branch = window_matrix(*seen[f"{spatial}.pool"], 2, 2, 0) @ branch
            if isinstance(block.shortcut, nn.Identity):
                shortcut = np.eye(branch.shape[1])
            else:
                shortcut = module_window(block.shortcut[0], *seen[f"stages.{s}.{b}.shortcut.0"])
            chain.append(0.5 * branch + 0.5 * shortcut)


def product(chain):
    """The product of `chain`'s matrices, the first applied first."""
    total = np.eye(chain[0].shape[1])
    for matrix in chain:
        total = matrix @ total
    return total


def test_window_rule_is_pytorchs_average_pool():
    """The uniform rule over cells on the map is what the strided attention's ceil-mode
    2x2 average pool computes, odd sides and all: the brute force below rests on it."""
    x = torch.rand(7, 5, dtype=torch.float64)
    pooled = F.avg_pool2d(x[None, None], 2, ceil_mode=True)[0, 0]      # (4, 3)
    assert np.allclose(window_matrix((7, 5), (4, 3), 2, 2, 0) @ x.flatten().numpy(),
                       pooled.flatten().numpy())


def test_rollout_is_the_product_of_every_ops_matrix(traced):
    model, image, t = traced
    for name, layer in t.layers.items():
        expected = brute_rollout(model, image, t, name)         # (h w, H W)
        for row, col in np.ndindex(*layer.size):
            ours = attention_rollout(model, t, name, row, col).flatten().numpy()
            assert np.allclose(ours, expected[row * layer.size[1] + col], atol=1e-12), \
                (name, row, col)


def test_rollout_is_a_distribution_over_the_image(traced):
    model, image, t = traced
    for name, layer in t.layers.items():
        share = attention_rollout(model, t, name, *layer.feature_pixel(7, 6))
        assert share.shape == IMAGE and share.dtype == torch.float64
        assert share.min() >= 0 and abs(float(share.sum()) - 1) < 1e-12


# --- the gradient against finite differences -------------------------------------------

def layer_output(model, name, image):
    """The layer's output before any pooling, on its own path: an attention layer's
    `attend` on the input it is given, the twin's conv's output."""
    module = dict(model.named_modules())[name]
    seen = []
    handle = module.register_forward_hook(lambda _, inputs, output: seen.append(
        module.attend(inputs[0]).output if isinstance(module, LocalSelfAttention)
        else output))
    with torch.no_grad():
        model(image)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("spatial,stem,name", [
    ("attention", "conv", "stages.0.0.spatial"), ("attention", "conv", "stages.1.0.spatial"),
    ("attention", "attention", "stem.attention"),
    ("attention", "attention", "stages.1.0.spatial"),
    ("conv", "conv", "stages.1.0.spatial"), ("conv", "conv", "stages.1.1.spatial")])
def test_gradient_is_the_finite_difference(spatial, stem, name):
    model = small(spatial, stem, widths=(8, 8), blocks=(1, 2)).double()
    image = picture((7, 6), dtype=torch.float64) * 0.8 + 0.1    # room to move both ways
    h, w = layer_output(model, name, image).shape[-2:]
    row, col = h // 2, w - 1
    ours = input_gradient(model, image, name, row, col)
    eps, measured = 1e-6, torch.zeros_like(ours)
    for index in np.ndindex(*ours.shape):
        step = torch.zeros_like(image)
        step[(0, *index)] = eps
        up, down = (layer_output(model, name, image + sign * step)[0, :, row, col].sum()
                    for sign in (1, -1))
        measured[index] = (up - down) / (2 * eps)
    assert measured.abs().max() > 1e-3                          # something to compare
    assert torch.allclose(ours, measured, atol=1e-7, rtol=1e-5)


def test_gradient_leaves_the_model_as_it_was():
    model = small()
    input_gradient(model, picture(), "stages.1.1.spatial", 1, 1)
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="eval"):
        input_gradient(model.train(), picture(), "stages.1.1.spatial", 1, 1)


# --- the theoretical reach -------------------------------------------------------------

def test_sides_grow_as_worked_out_by_hand():
    cifar = dict(widths=(16, 16, 16), head_dim=8)
    # cifar-conv stem: 3x3 (side 3), 3x3 stride 2 (5, jump 2); 7x7 attention adds 6 jumps,
    # a stride-2 block's pool one more jump before the jump doubles
    assert theoretical_sides(build(cifar_config("attention", "conv", **cifar))) == [
        ("stages.0.0.spatial", 17), ("stages.0.1.spatial", 29), ("stages.1.0.spatial", 41),
        ("stages.1.1.spatial", 67), ("stages.2.0.spatial", 91), ("stages.2.1.spatial", 143)]
    # attention stem: 2x2 blocks, which its 2x2 max pool keeps (side 2, jump 2)
    assert theoretical_sides(build(cifar_config("attention", "attention", stem_width=16,
                                                **cifar))) == [
        ("stem.attention", 2), ("stages.0.0.spatial", 14), ("stages.0.1.spatial", 26),
        ("stages.1.0.spatial", 38), ("stages.1.1.spatial", 64), ("stages.2.0.spatial", 88),
        ("stages.2.1.spatial", 140)]
    # the twin: 3x3 convs, the strided ones stride themselves
    assert [s for _, s in theoretical_sides(build(cifar_config("conv", "conv", **cifar)))] \
        == [9, 13, 17, 25, 33, 49]
    # ImageNet: 7x7 stride 2 (7), 3x3 stride-2 max pool (11, jump 4), then 7x7 attention
    imagenet = build(replace(resnet_config(26), widths=(16, 16, 16, 16), stem_width=16))
    assert theoretical_sides(imagenet)[:3] == [
        ("stages.0.0.spatial", 35), ("stages.1.0.spatial", 59), ("stages.1.1.spatial", 111)]


def test_boxes_worked_out_by_hand():
    conv_stem, attention_stem = small(), small(stem="attention")
    # stem pixel i sees image rows 2i-2..2i+2; window rows 2..8, columns -3..3
    assert theoretical_box(conv_stem, "stages.0.0.spatial", 5, 0, (32, 32)) == (2, 0, 19, 9)
    # the stem attends in its own 2x2 block; after the pool pixel i sees rows 2i..2i+1
    assert theoretical_box(attention_stem, "stem.attention", 5, 9, (32, 32)) == (4, 8, 6, 10)
    assert theoretical_box(attention_stem, "stages.0.0.spatial", 2, 4, (16, 16)) \
        == (0, 2, 12, 16)


@pytest.mark.parametrize("spatial,stem", [("attention", "conv"), ("attention", "attention"),
                                          ("conv", "conv")])
def test_the_gradient_stays_inside_the_theoretical_box(spatial, stem):
    model, image = small(spatial, stem), picture((40, 36))
    sides = theoretical_sides(model)
    for name, _ in sides[:3]:
        for y, x in [(0, 0), (20, 17), (39, 35)]:
            result = reach(model, image, name, y, x)
            top, left, bottom, right = result.theoretical_box
            touched = (result.raw_gradient.abs().sum(0) > 0).nonzero()
            assert len(touched) > 0
            assert touched[:, 0].min() >= top and touched[:, 0].max() < bottom, (name, y, x)
            assert touched[:, 1].min() >= left and touched[:, 1].max() < right, (name, y, x)
            assert result.theoretical_box[2] - result.theoretical_box[0] <= result.side


# --- image pixels and feature pixels ---------------------------------------------------

def test_an_image_pixel_maps_to_the_traces_feature_pixel(traced):
    model, _, t = traced
    for name, layer in t.layers.items():
        for y, x in [(0, 0), (14, 12), (7, 3), (9, 12)]:
            assert feature_pixel(model, name, y, x, IMAGE) == layer.feature_pixel(y, x)


def test_the_twins_strided_conv_has_its_own_stride():
    """The attention at stages.1.0 runs on the 2x map (its pool follows); the twin's 3x3
    stride-2 conv outputs the 4x map."""
    assert feature_pixel(small(), "stages.1.0.spatial", 13, 6, (32, 32)) == (6, 3)
    twin = small("conv")
    assert feature_pixel(twin, "stages.1.0.spatial", 13, 6, (32, 32)) == (3, 1)
    h, w = shapes(twin, picture())["stages.1.0.spatial"][1]           # (4, 4) on 15x13
    assert feature_pixel(twin, "stages.1.0.spatial", 14, 12, IMAGE) == (h - 1, w - 1)


def test_reach_puts_the_pieces_together():
    model, image = small(), picture()
    result = reach(model, image, "stages.1.0.spatial", 9, 4)
    t = trace(model, image)
    assert result.feature_pixel == t.layers["stages.1.0.spatial"].feature_pixel(9, 4) == (4, 2)
    assert result.cell == (8, 4, 10, 6)
    assert torch.equal(result.rollout, attention_rollout(model, t, "stages.1.0.spatial", 4, 2))
    raw = input_gradient(model, image, "stages.1.0.spatial", 4, 2)
    assert torch.equal(result.raw_gradient, raw)
    assert torch.allclose(result.gradient, raw.abs().sum(0).double() / raw.abs().sum())
    assert reach(small("conv"), image, "stages.1.0.spatial", 9, 4).rollout is None
    with pytest.raises(ValueError, match="stages.0.0.spatial"):
        reach(model, image, "stages.9.spatial", 0, 0)


# --- the sentence ----------------------------------------------------------------------

def nearest_half(share, y, x):
    """The smallest r whose square of side 2r + 1 around (y, x) holds half the share."""
    share = share.numpy()
    for r in range(max(share.shape)):
        if share[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1].sum() >= 0.5 * share.sum():
            return r


@pytest.mark.parametrize("name,y,x,size", [("stages.0.0.spatial", 20, 11, (40, 36)),
                                           ("stages.1.1.spatial", 3, 30, (40, 36)),
                                           ("stages.2.0.spatial", 8, 8, (16, 16))])
def test_the_sentence_says_what_the_arrays_say(name, y, x, size):
    result = reach(small(), picture(size), name, y, x)
    sentence = describe(result)
    numbers = [int(n) for n in re.findall(r"within (\d+) pixels?", sentence)]
    assert numbers == [nearest_half(result.gradient, y, x), nearest_half(result.rollout, y, x)]
    assert f"{2 * numbers[0] + 1}×{2 * numbers[0] + 1} pixels" in sentence
    assert f"window is {result.side} pixels wide" in sentence
    assert ("more than the whole" in sentence) == (result.side > max(size))


# --- drawing ---------------------------------------------------------------------------

def test_the_overlay_draws_the_shares_the_box_and_the_cell():
    model = small()
    working = (np.random.default_rng(0).integers(0, 200, (40, 36, 3))).astype(np.uint8)
    result = reach(model, torch.from_numpy(working).permute(2, 0, 1)[None] / 255.0,
                   "stages.0.0.spatial", 20, 11)
    shown = np.asarray(reach_overlay(working, result, "rollout"))
    scale = images.DISPLAY // 40                    # 19 or 20 display pixels per pixel
    assert shown.shape == (images.DISPLAY, round(36 * images.DISPLAY / 40), 3)
    share = result.rollout.numpy()
    top, left, bottom, right = result.theoretical_box
    rows, cols = images.display_index(40, shown.shape[0]), images.display_index(36, shown.shape[1])
    inner = [(i, j) for i in range(top + 1, bottom - 1) for j in range(left + 1, right - 1)
             if (i, j) != (20, 11)]
    for i, j in inner[::7]:                                         # the heat, pixel by pixel
        y, x = np.flatnonzero(rows == i)[scale // 2], np.flatnonzero(cols == j)[scale // 2]
        assert share[i, j] > 0
        colour = np.asarray(colormaps[WEIGHTS_CMAP](share[i, j] / share.max(), bytes=True)[:3])
        expected = np.round((1 - OPACITY) * working[i, j] + OPACITY * colour)
        assert np.abs(shown[y, x].astype(float) - expected).max() <= 1, (i, j)
    outside = ~(((top <= rows) & (rows < bottom))[:, None]
                & ((left <= cols) & (cols < right))[None, :])       # (Hd, Wd) off the box
    assert outside.mean() > 0.3 and (share[rows][:, cols][outside] == 0).all()
    assert np.array_equal(shown[outside], working[rows][:, cols][outside])
    y0, x0 = np.flatnonzero(rows == top)[0], np.flatnonzero(cols == left)[0]
    assert tuple(shown[y0, x0 + scale]) == (255, 255, 0)           # the box, yellow
    cy, cx = np.flatnonzero(rows == 20)[0], np.flatnonzero(cols == 10)[0]
    assert tuple(shown[cy, cx + scale // 2]) == (255, 0, 0)        # the cell, red


def test_the_panels_stand_side_by_side():
    image = picture((32, 32))
    working = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    attention = reach(small(), image, "stages.1.1.spatial", 10, 20)
    twin = reach(small("conv"), image, "stages.1.1.spatial", 10, 20)
    sheet = reach_panels(working, attention, twin)
    assert sheet.width == 3 * PANEL + 2 * GAP and sheet.height > PANEL
    with pytest.raises(ValueError, match="one image pixel"):
        reach_panels(working, attention, reach(small("conv"), image, "stages.1.1.spatial", 0, 0))
    with pytest.raises(ValueError, match="no rollout"):
        reach_overlay(working, twin, "rollout")


# --- how long it takes -----------------------------------------------------------------

def test_time_on_the_shipped_model():
    """Printed, not asserted (run with -s): reach() on sasa-cifar10's first and last
    layers, the median of 5 runs."""
    model = sasa_viz.create("sasa-cifar10", pretrained=True)
    for side in (32, 128):
        image = torch.rand(1, 3, side, side)
        for name in ("stages.0.0.spatial", "stages.2.1.spatial"):
            reach(model, image, name, side // 2, side // 2)
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                reach(model, image, name, side // 2, side // 2)
                runs.append(time.perf_counter() - start)
            print(f"reach() sasa-cifar10 {side}x{side} {name}: "
                  f"{1000 * sorted(runs)[2]:.0f} ms")
