"""sasa_viz.overlay: the heat drawn on the picture is the trace's weights, cell by cell,
in the right place, on the stated colour scale; strips, bars and sweeps are laid out
as documented."""
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib import colormaps
from PIL import Image

from sasa_viz import SelfAttention2d, images, overlay
from sasa_viz.grids import WEIGHTS_CMAP
from sasa_viz.models import create
from sasa_viz.overlay import (ALPHA, DIM, GAP, attention_overlay, colour_bar, head_strip,
                              range_labels, sweep_frames, sweep_gif)
from sasa_viz.stem import AttentionStem
from sasa_viz.trace import trace

YELLOW, RED = (255, 255, 0), (255, 0, 0)


def traced(model, height, width, seed=0):
    """A random working image (H, W, 3) uint8 and the model's trace of it."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, trace(model, images.to_tensor(Image.fromarray(image)))


@pytest.fixture(scope="module")
def cifar():
    """The first attention layer of a narrow sasa-cifar10: 16x16 map, K=7, stride 2,
    4 heads, from a 32x32 image."""
    torch.manual_seed(0)
    model = create("sasa-cifar10", widths=(16, 32, 64), head_dim=4).eval()
    image, t = traced(model, 32, 32)
    layer = t.layers["stages.0.0.spatial"]
    assert (layer.size, layer.kernel_size, layer.stride, layer.heads) == ((16, 16), 7, 2, 4)
    return image, layer


def colour(value):
    """The weight colour map at a normalised value, as 0..255 floats."""
    return np.asarray(colormaps[WEIGHTS_CMAP](value, bytes=True)[:3], dtype=float)


def shown_at(ov, layer, px, a, b):
    """(display colour, working-image colour) at the centre of window cell [a, b]."""
    s = layer.stride
    y = ((px.origin[0] + a) * s + s // 2) * ov.scale + ov.scale // 2
    x = ((px.origin[1] + b) * s + s // 2) * ov.scale + ov.scale // 2
    shown = np.asarray(ov.image)[y, x].astype(float)
    return shown, y // ov.scale, x // ov.scale


def assert_cell_colour(ov, image, layer, px, a, b, weight_colour):
    shown, row, col = shown_at(ov, layer, px, a, b)
    expected = (1 - ALPHA) * image[row, col] + ALPHA * weight_colour
    np.testing.assert_allclose(shown, expected, atol=1)


def test_overlay_has_the_clickable_pictures_geometry(cifar):
    image, layer = cifar
    ov = attention_overlay(image, layer, layer.pixel(8, 8), head=0)
    assert ov.scale == 384 // 32 == 12                          # the explorer's scale
    assert ov.image.mode == "RGB" and ov.image.size == (32 * 12, 32 * 12)
    assert ov.image.size == images.enlarge(Image.fromarray(image), 12).size
    # a click at the centre of the pixel's cell maps back onto that feature pixel
    y, x = (8 * 2 + 1) * 12 + 6, (8 * 2 + 1) * 12 + 6
    row, col = images.display_to_image(x, y, *ov.image.size, 32, 32)
    assert layer.feature_pixel(row, col) == (8, 8)


def test_cells_take_the_colour_of_their_weight(cifar):
    image, layer = cifar
    px = layer.pixel(8, 8)                                     # whole window in the map
    for head in range(layer.heads):
        ov = attention_overlay(image, layer, px, head=head)
        w = px.weights[head].double().numpy()
        np.testing.assert_allclose(ov.weights, w)
        assert ov.vmin == 0 and ov.vmax == pytest.approx(w.max())
        top = np.unravel_index(w.argmax(), w.shape)
        low = np.unravel_index(w.argmin(), w.shape)
        assert_cell_colour(ov, image, layer, px, *top, colour(1.0))
        assert_cell_colour(ov, image, layer, px, *low, colour(w.min() / w.max()))


def test_the_picture_outside_the_window_is_dimmed(cifar):
    image, layer = cifar
    px = layer.pixel(14, 14)                                   # window: image rows 22..31
    ov = attention_overlay(image, layer, px, head=1)
    assert px.window == (22, 22, 32, 32)
    dimmed = np.asarray(images.enlarge(
        Image.fromarray(np.round(image * DIM).astype(np.uint8)), 12))
    shown = np.asarray(ov.image)
    np.testing.assert_array_equal(shown[:20 * 12, :20 * 12], dimmed[:20 * 12, :20 * 12])
    window = np.s_[22 * 12 + 4:, 22 * 12 + 4:]                  # inside the yellow outline
    assert not np.array_equal(shown[window], dimmed[window])
    # the window outline in yellow at its corner, the pixel's own cell in red
    assert tuple(shown[22 * 12, 22 * 12]) == YELLOW
    assert tuple(shown[28 * 12, 28 * 12]) == RED                 # pixel 14 -> image row 28


def test_mean_over_heads_draws_the_mean_weights(cifar):
    image, layer = cifar
    px = layer.pixel(5, 9)
    ov = attention_overlay(image, layer, px)                     # head=None
    mean = px.weights.double().mean(0).numpy()
    assert ov.head is None
    np.testing.assert_allclose(ov.weights, mean)
    assert ov.vmax == pytest.approx(mean.max())
    assert_cell_colour(ov, image, layer, px, *np.unravel_index(mean.argmax(), mean.shape),
                       colour(1.0))


def test_a_given_vmax_sets_the_scale(cifar):
    image, layer = cifar
    px = layer.pixel(8, 8)
    w = px.weights[2].double().numpy()
    ov = attention_overlay(image, layer, px, head=2, vmax=0.5)
    assert ov.vmax == 0.5
    top = np.unravel_index(w.argmax(), w.shape)
    assert_cell_colour(ov, image, layer, px, *top, colour(w.max() / 0.5))


@pytest.mark.parametrize("padding", ["zeros", "mask"])
def test_weight_outside_the_picture_is_reported_not_drawn(padding):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2, padding=padding)).eval()
    image, t = traced(model, 8, 8)
    layer = t.layers["0"]
    px = layer.pixel(0, 0)                                       # a corner: 16 of 25 cells out
    ov = attention_overlay(image, layer, px, head=1, scale=10)
    w = px.weights[1].double().numpy()
    off = w[~px.valid.numpy()].sum()
    if padding == "zeros":
        assert off > 0.01 and ov.outside == pytest.approx(off)
    else:
        assert ov.outside == 0
    assert ov.vmax == pytest.approx(w[px.valid.numpy()].max())  # the scale of what is drawn
    # nothing is drawn above or left of the image: the window box starts at (0, 0)
    assert px.window == (0, 0, 3, 3)
    assert tuple(np.asarray(ov.image)[0, 25]) == YELLOW         # its top edge, right of
    assert tuple(np.asarray(ov.image)[0, 5]) == RED             # the pixel's red box
    # a strip gives the off-picture weight a second label line only when there is some
    strip = head_strip(image, layer, px, scale=10)
    assert strip.width == 3 * 80 + 2 * GAP
    assert (strip.height > head_strip(image, layer, layer.pixel(4, 4), scale=10).height) \
        == (padding == "zeros")


def test_block_stem_window_starts_at_the_block_corner():
    torch.manual_seed(0)
    model = nn.Sequential(AttentionStem(3, 8, kernel_size=2, heads=2, pool=2)).eval()
    image, t = traced(model, 8, 8)
    layer = t.layers["0.attention"]
    px = layer.pixel(2, 5)                        # block rows 2..3, columns 4..5
    assert layer.window == "blocks" and px.origin == (2, 4)
    s = 6
    ov = attention_overlay(image, layer, px, head=0, scale=s)
    shown = np.asarray(ov.image)
    assert tuple(shown[2 * s, 4 * s]) == YELLOW                   # the block's corner
    assert tuple(shown[2 * s, 5 * s]) == RED                      # the pixel itself
    w = px.weights[0].double().numpy()
    for a in range(2):
        for b in range(2):
            assert_cell_colour(ov, image, layer, px, a, b, colour(w[a, b] / w.max()))
    # the sliding window's extra row and column (row 1, column 3) stay dimmed
    dimmed = np.round(image * DIM)
    np.testing.assert_allclose(shown[1 * s + 3, 4 * s + 3], dimmed[1, 4], atol=0)
    np.testing.assert_allclose(shown[3 * s + 3, 3 * s + 3], dimmed[3, 3], atol=0)


def test_strip_has_every_head_and_the_mean_on_one_scale(cifar):
    image, layer = cifar
    px = layer.pixel(8, 8)
    strip = head_strip(image, layer, px, scale=4)
    width = 32 * 4
    assert strip.width == (layer.heads + 1) * width + layer.heads * GAP
    shared = px.weights.double().amax(dim=(1, 2)).max().item()
    shown = np.asarray(strip)
    for k, head in enumerate([*range(layer.heads), None]):
        panel = np.asarray(attention_overlay(image, layer, px, head, 4, vmax=shared).image)
        x = k * (width + GAP)
        found = [y for y in range(strip.height - width)
                 if np.array_equal(shown[y:y + width, x:x + width], panel)]
        assert len(found) == 1, f"panel {k} not found in the strip"
        assert shown[:found[0], x:x + width].min() < 100          # a label is written above


def test_colour_bar_and_its_range_labels():
    bar = np.asarray(colour_bar(0.0, 0.02, length=200, thickness=10))
    assert bar.shape[1] == 200
    rows = [y for y in range(bar.shape[0]) if np.array_equal(bar[y, 0], colour(0.0))]
    assert len(rows) == 10                                        # the bar, 10 pixels thick
    np.testing.assert_array_equal(bar[rows[0], -1], colour(1.0))
    assert range_labels(0.0204, 0.0208) == ("0.02040", "0.02080")  # the difference shows
    assert range_labels(0.0204, 0.0209) != range_labels(0.0204, 0.0208)
    assert range_labels(0.0, 0.004) == ("0.0000", "0.0040")       # never "0.0" for 0.004
    assert range_labels(0.0, 0.35) == ("0.00", "0.35")
    assert range_labels(-1e-9, 0.35) == ("0.00", "0.35")         # never "-0.00"
    close = [np.asarray(colour_bar(0.0204, v)) for v in (0.0208, 0.0209)]
    assert not np.array_equal(*close)                             # the numbers printed differ


def test_sweep_moves_along_a_row_and_makes_a_looping_gif(cifar):
    image, layer = cifar
    frames = sweep_frames(image, layer, head=3, along="row", index=8, scale=4)
    assert len(frames) == layer.size[1] == 16
    shared = max(layer.pixel(8, j).weights[3].max().item() for j in range(16))
    expected = attention_overlay(image, layer, layer.pixel(8, 5), 3, 4, vmax=shared).image
    np.testing.assert_array_equal(np.asarray(frames[5])[:128], np.asarray(expected))
    assert frames[5].height > 128                                 # the caption below
    gif = Image.open(io.BytesIO(sweep_gif(frames, ms_per_frame=200)))
    assert gif.n_frames == 16 and gif.info["loop"] == 0 and gif.info["duration"] == 200
    assert len(sweep_frames(image, layer, None, along="col", index=0, scale=2)) == 16


def test_mistakes_get_clear_errors(cifar):
    image, layer = cifar
    px = layer.pixel(0, 0)
    with pytest.raises(ValueError, match="32x32"):
        attention_overlay(image[:16], layer, px)
    with pytest.raises(ValueError, match="heads 0..3"):
        attention_overlay(image, layer, px, head=4)
    with pytest.raises(ValueError, match="along"):
        sweep_frames(image, layer, along="diagonal")
    with pytest.raises(ValueError, match="outside"):
        sweep_frames(image, layer, index=16)
    with pytest.raises(ValueError, match="frame"):
        sweep_gif([])
    assert overlay.default_scale(layer) == 12
