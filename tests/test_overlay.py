"""sasa_viz.drawing.overlay: the heat drawn on the picture is the trace's weights, cell by cell,
on the display pixels that show each cell (at any size of picture), on the stated colour
scale, the rest of the picture untouched; strips, bars and sweeps are laid out as
documented and readable."""
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib import colormaps
from PIL import Image

from sasa_viz import SelfAttention2d
from sasa_viz.attention.stem import AttentionStem
from sasa_viz.drawing import images
from sasa_viz.drawing.grids import WEIGHTS_CMAP
from sasa_viz.drawing.overlay import (GAP, OPACITY, STRIP_PANEL, STRIP_WIDTH, SWEEP_WIDTH,
                                      Drawing, attention_overlay, colour_bar, head_strip,
                                      range_labels, sweep_frames, sweep_gif)
from sasa_viz.inspection.trace import trace
from sasa_viz.models.pretrained import create

YELLOW, RED = (255, 255, 0), (255, 0, 0)


def noise(height, width, seed=0):
    """A random picture (height, width, 3) uint8 without pure red or yellow (the boxes'
    colours): red and green stay below 250."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[..., :2] = np.minimum(pixels[..., :2], 249)
    return pixels


def narrow_cifar():
    torch.manual_seed(0)
    return create("sasa-cifar10", widths=(16, 32, 64), head_dim=4).eval()


@pytest.fixture(scope="module")
def cifar():
    """The first attention layer of a narrow sasa-cifar10: 16x16 map, K=7, stride 2,
    4 heads, from a 32x32 working image."""
    image = noise(32, 32)
    layer = trace(narrow_cifar(), images.to_tensor(Image.fromarray(image))) \
        .layers["stages.0.0.spatial"]
    assert (layer.size, layer.kernel_size, layer.stride, layer.heads) == ((16, 16), 7, 2, 4)
    return image, layer


@pytest.fixture(scope="module")
def photo():
    """A 500x375 picture (width x height), its 48x36 working image and the narrow
    sasa-cifar10's first attention layer on it: an 18x24 map, stride 2, shown at a
    ratio of 500/48 = 10.42 display pixels per working pixel, not a whole number."""
    picture = Image.fromarray(noise(375, 500, seed=1))
    working = images.to_working_size(picture, 48)
    assert working.size == (48, 36)
    layer = trace(narrow_cifar(), images.to_tensor(working)).layers["stages.0.0.spatial"]
    assert layer.size == (18, 24) and layer.stride == 2
    return picture, layer


def colour(value):
    """The weight colour map at a normalised value, as 0..255 floats."""
    return np.asarray(colormaps[WEIGHTS_CMAP](value, bytes=True)[:3], dtype=float)


def shown_rows(count, shown):
    """(shown,) the working row (of count) under each display row, as a click maps it."""
    return np.array([images.display_to_image(0, y, 1, shown, 1, count)[0]
                     for y in range(shown)])


def covered(box, image_size, shown):
    """(Hd, Wd) bool: the display pixels whose click lands in `box` (working pixels)."""
    (H, W), (Hd, Wd) = image_size, shown
    top, left, bottom, right = box
    rows, cols = shown_rows(H, Hd), shown_rows(W, Wd)
    return ((top <= rows) & (rows < bottom))[:, None] & ((left <= cols) & (cols < right))


def outline(mask, width=2):
    """(Hd, Wd) bool: the pixels of `mask` (a rectangle) within `width` of its edge."""
    ys, xs = np.nonzero(mask)
    band = np.zeros_like(mask)
    band[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    band[ys.min() + width:ys.max() + 1 - width, xs.min() + width:xs.max() + 1 - width] = False
    return band


def expected_picture(backdrop, layer, px, weights, vmax, opacity):
    """The overlay worked out pixel by pixel from the click mapping: each display pixel
    shows a working pixel, in a feature pixel, in a window cell (or not): (Hd, Wd, 3)."""
    pixels = np.asarray(backdrop, dtype=float)
    (H, W), (Hd, Wd) = layer.image_size, pixels.shape[:2]
    feature_rows = np.array([layer.feature_pixel(r, 0)[0] for r in shown_rows(H, Hd)])
    feature_cols = np.array([layer.feature_pixel(0, c)[1] for c in shown_rows(W, Wd)])
    a, b = feature_rows - px.origin[0], feature_cols - px.origin[1]     # (Hd,), (Wd,)
    K = layer.kernel_size
    in_window = ((0 <= a) & (a < K))[:, None] & ((0 <= b) & (b < K))     # (Hd, Wd)
    a, b = np.clip(a, 0, K - 1), np.clip(b, 0, K - 1)
    drawn = in_window & px.valid.numpy()[a[:, None], b]
    tints = np.stack([colour(v) for v in np.clip(weights / vmax, 0, 1).ravel()])
    tint = tints.reshape(K, K, 3)[a[:, None], b]                        # (Hd, Wd, 3)
    blended = (1 - opacity) * pixels + opacity * tint
    return np.where(drawn[..., None], blended, pixels), in_window


# --- the picture ------------------------------------------------------------------------

@pytest.mark.parametrize("opacity", [0.0, OPACITY, 0.8, 1.0])
@pytest.mark.parametrize("pixel", [(9, 12), (0, 22)])       # inside; a clipped corner
def test_cells_land_on_the_display_pixels_that_show_them(photo, opacity, pixel):
    picture, layer = photo
    px = layer.pixel(*pixel)
    ov = attention_overlay(picture, layer, px, head=1, drawing=Drawing(opacity=opacity))
    assert ov.image.size == picture.size                          # drawn at its own size
    weights = px.weights[1].double().numpy()
    expected, in_window = expected_picture(picture, layer, px, weights, ov.vmax, opacity)
    shown = np.asarray(ov.image).astype(float)
    boxes = [covered(box, layer.image_size, shown.shape[:2]) for box in (px.window, px.centre)]
    lines = outline(boxes[0]) | outline(boxes[1])
    np.testing.assert_allclose(shown[~lines], expected[~lines], atol=0.5 + 1e-9)
    # no dimming: outside the window every pixel is the picture's own, exactly
    np.testing.assert_array_equal(shown[~boxes[0]], np.asarray(picture)[~boxes[0]])
    assert in_window.sum() == boxes[0].sum()                      # the window box is the window
    # the outlines: yellow along the window, red around the pixel, on their pixels
    assert (shown[outline(boxes[0]) & ~boxes[1]] == YELLOW).all()
    assert (shown[outline(boxes[1])] == RED).all()


def test_a_click_inside_the_red_box_selects_its_pixel(photo):
    picture, layer = photo
    for row, col in [(9, 12), (0, 0), (17, 23), (5, 13)]:
        px = layer.pixel(row, col)
        shown = np.asarray(attention_overlay(picture, layer, px, head=0).image)
        ys, xs = np.nonzero((shown == RED).all(axis=-1))            # the red box's pixels
        top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
        H, W = layer.image_size
        Hd, Wd = shown.shape[:2]

        def selects(x, y):
            r, c = images.display_to_image(x, y, Wd, Hd, W, H)
            return layer.feature_pixel(r, c) == (row, col)
        assert all(selects(x, y) for y in range(top, bottom + 1)
                   for x in range(left, right + 1))
        # and the box is all of it: one pixel further out is another pixel (or off)
        assert not any(selects(x, y) for x, y in [(left - 1, top), (right + 1, top),
                                                   (left, top - 1), (left, bottom + 1)]
                       if 0 <= x < Wd and 0 <= y < Hd)


def test_the_working_image_is_enlarged_to_the_display(cifar):
    image, layer = cifar
    px = layer.pixel(8, 8)
    ov = attention_overlay(image, layer, px, head=0)
    assert ov.image.size == (images.DISPLAY, images.DISPLAY)
    same = attention_overlay(images.to_display(image), layer, px, head=0)
    np.testing.assert_array_equal(np.asarray(ov.image), np.asarray(same.image))
    assert ov.image.size != attention_overlay(images.to_display(image, 512), layer, px,
                                              head=0).image.size


def test_cells_take_the_colour_of_their_weight(cifar):
    image, layer = cifar
    backdrop = images.to_display(image, 320)                      # 10 display px a pixel
    px = layer.pixel(8, 8)                                        # whole window in the map
    for head in [*range(layer.heads), None]:
        ov = attention_overlay(backdrop, layer, px, head=head)
        w = px.weights.double().numpy()
        w = w.mean(0) if head is None else w[head]
        assert ov.head == head
        np.testing.assert_allclose(ov.weights, w)
        assert ov.vmin == 0 and ov.vmax == pytest.approx(w.max())
        for a, b in [np.unravel_index(w.argmax(), w.shape), np.unravel_index(w.argmin(),
                                                                            w.shape)]:
            y, x = (((px.origin[0] + a) * 2, (px.origin[1] + b) * 2))   # the cell's pixel
            shown = np.asarray(ov.image)[y * 10 + 5, x * 10 + 5]
            expected = (1 - OPACITY) * image[y, x] + OPACITY * colour(w[a, b] / w.max())
            np.testing.assert_allclose(shown, expected, atol=0.5 + 1e-9)


def test_a_given_vmax_sets_the_scale(cifar):
    image, layer = cifar
    backdrop = images.to_display(image, 320)
    px = layer.pixel(8, 8)
    w = px.weights[2].double().numpy()
    ov = attention_overlay(backdrop, layer, px, head=2, vmax=0.5, drawing=Drawing(opacity=1.0))
    assert ov.vmax == 0.5
    a, b = np.unravel_index(w.argmax(), w.shape)
    y, x = (px.origin[0] + a) * 2 * 10 + 5, (px.origin[1] + b) * 2 * 10 + 5
    np.testing.assert_allclose(np.asarray(ov.image)[y, x], colour(w.max() / 0.5), atol=0.5)


def test_outline_mode_frames_the_cells_and_leaves_the_picture_inside(cifar):
    image, layer = cifar
    backdrop = images.to_display(image, 512)                      # a cell: 32 x 32 pixels
    px = layer.pixel(8, 8)
    ov = attention_overlay(backdrop, layer, px, head=3, drawing=Drawing("outline"))
    shown, picture = np.asarray(ov.image), np.asarray(backdrop)
    w = px.weights[3].double().numpy()
    K, cell = layer.kernel_size, 32
    edges = 0
    for a in range(K):
        for b in range(K):
            top, left = (px.origin[0] + a) * cell, (px.origin[1] + b) * cell
            inner = np.s_[top + cell // 4:top + 3 * cell // 4,
                          left + cell // 4:left + 3 * cell // 4]
            if (a, b) != px.cell:                                 # the red box is inside that one
                np.testing.assert_array_equal(shown[inner], picture[inner])
            if 0 < a < K - 1 and 0 < b < K - 1 and (a, b) != px.cell:   # not under a box
                frame = shown[top, left + cell // 2]              # its top edge
                np.testing.assert_allclose(frame, colour(w[a, b] / w.max()), atol=0.5)
                edges += 1
    assert edges == 24
    # outside the window the picture is untouched too
    window = covered(px.window, layer.image_size, shown.shape[:2])
    np.testing.assert_array_equal(shown[~window], picture[~window])


@pytest.mark.parametrize("padding", ["zeros", "mask"])
def test_weight_outside_the_picture_is_reported_not_drawn(padding):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2, padding=padding)).eval()
    image = noise(8, 8)
    layer = trace(model, images.to_tensor(Image.fromarray(image))).layers["0"]
    px = layer.pixel(0, 0)                                       # a corner: 16 of 25 cells out
    backdrop = images.to_display(image, 80)                      # 10 pixels a pixel
    ov = attention_overlay(backdrop, layer, px, head=1)
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
    strip = head_strip(image, layer, px)
    assert (strip.height > head_strip(image, layer, layer.pixel(4, 4)).height) \
        == (padding == "zeros")


def test_block_stem_window_starts_at_the_block_corner():
    torch.manual_seed(0)
    model = nn.Sequential(AttentionStem(3, 8, kernel_size=2, heads=2, pool=2)).eval()
    image = noise(8, 8)
    layer = trace(model, images.to_tensor(Image.fromarray(image))).layers["0.attention"]
    px = layer.pixel(2, 5)                        # block rows 2..3, columns 4..5
    assert layer.window == "blocks" and px.origin == (2, 4)
    s = 6
    ov = attention_overlay(images.to_display(image, 8 * s), layer, px, head=0)
    shown = np.asarray(ov.image)
    assert tuple(shown[2 * s, 4 * s]) == YELLOW                   # the block's corner
    assert tuple(shown[2 * s, 5 * s]) == RED                      # the pixel itself
    w = px.weights[0].double().numpy()
    for a in range(2):
        for b in range(2):
            y, x = 2 + a, 4 + b
            expected = (1 - OPACITY) * image[y, x] + OPACITY * colour(w[a, b] / w.max())
            np.testing.assert_allclose(shown[y * s + 3, x * s + 3], expected, atol=0.5)
    # the sliding window's extra row and column (row 1, column 3) are the picture's own
    np.testing.assert_array_equal(shown[1 * s + 3, 4 * s + 3], image[1, 4])
    np.testing.assert_array_equal(shown[3 * s + 3, 3 * s + 3], image[3, 3])


# --- the strip --------------------------------------------------------------------------

def ink_rows(block):
    """The rows of an (h, w, 3) block with dark (text) pixels."""
    return np.flatnonzero((block < 100).any(axis=(1, 2)))


def last_line_height(block):
    """The height of the last line of text in an (h, w, 3) block: the last run of
    consecutive rows with ink; 0 without any."""
    rows = ink_rows(block)
    if not len(rows):
        return 0
    breaks = np.flatnonzero(np.diff(rows) > 1)
    first = rows[breaks[-1] + 1] if len(breaks) else rows[0]
    return rows[-1] - first + 1


def find_colour_bar(picture):
    """(row, length) of the first row that is a colour bar of the weights' map: a pixel
    of the map's 0, then one of its 1 (the ramp's ends); None if none."""
    pixels = np.asarray(picture)
    low, high = ((pixels == colour(end)).all(axis=-1) for end in (0.0, 1.0))   # (h, w)
    for y in np.flatnonzero(low.any(axis=1) & high.any(axis=1)):
        start, end = np.flatnonzero(low[y])[0], np.flatnonzero(high[y])[-1]
        if end > start:
            return y, end - start + 1
    return None


@pytest.mark.parametrize("heads, rows, per_row", [(16, 5, 4), (4, 2, 3), (2, 1, 3)])
def test_strip_wraps_into_rows_of_readable_panels(heads, rows, per_row):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 2 * heads, kernel_size=3, heads=heads)).eval()
    image = noise(8, 8)
    layer = trace(model, images.to_tensor(Image.fromarray(image))).layers["0"]
    px = layer.pixel(4, 4)
    strip = head_strip(image, layer, px)
    shown = np.asarray(strip)
    width = STRIP_PANEL
    assert width >= 180 and strip.width == per_row * (width + GAP) - GAP <= STRIP_WIDTH
    shared = px.weights.double().amax(dim=(1, 2)).max().item()
    backdrop = images.to_display(image, STRIP_PANEL)
    tops = []
    for k, head in enumerate([*range(layer.heads), None]):
        panel = np.asarray(attention_overlay(backdrop, layer, px, head, vmax=shared).image)
        x = (k % per_row) * (width + GAP)
        found = [y for y in range(strip.height - width)
                 if np.array_equal(shown[y:y + width, x:x + width], panel)]
        assert len(found) == 1, f"panel {k} not found in the strip"
        above = shown[max(0, found[0] - 40):found[0], x:x + width]    # its label
        assert last_line_height(above) >= 14, f"panel {k}'s label is under 14 px"
        tops.append(found[0])
    assert len(set(tops)) == rows
    bar = find_colour_bar(strip)
    assert bar is not None and bar[0] > max(tops) + width          # one bar, below them all


# --- colour bars ------------------------------------------------------------------------

def test_colour_bar_and_its_range_labels():
    bar = np.asarray(colour_bar(0.0, 0.02, length=200, thickness=10))
    assert bar.shape[1] == 200
    rows = [y for y in range(bar.shape[0]) if np.array_equal(bar[y, 0], colour(0.0))]
    assert len(rows) == 10                                        # the bar, 10 pixels thick
    np.testing.assert_array_equal(bar[rows[0], -1], colour(1.0))
    assert range_labels(0.0, 0.355) == ("0.000", "0.355")        # as the grids write weights
    assert range_labels(0.0, 0.0004) == ("0.000", "<0.001")      # never 0 for a weight
    assert range_labels(-1e-9, 0.35) == ("0.000", "0.350")       # never "-0.000"
    close = [np.asarray(colour_bar(0.0204, v)) for v in (0.028, 0.029)]
    assert not np.array_equal(*close)                             # the numbers printed differ
    small, large = (colour_bar(0.0, 0.5, font=size) for size in (13, 20))
    assert large.height > small.height
    assert len(ink_rows(np.asarray(large)[:24])) > len(ink_rows(np.asarray(small)[:17]))


# --- the sweep --------------------------------------------------------------------------

def test_sweep_moves_along_a_row_with_its_colour_bar(cifar):
    image, layer = cifar
    frames = sweep_frames(image, layer, head=3, along="row", index=8)
    assert len(frames) == layer.size[1] == 16
    assert all(frame.width >= 768 and frame.width == SWEEP_WIDTH for frame in frames)
    shared = max(layer.pixel(8, j).weights[3].max().item() for j in range(16))
    expected = attention_overlay(images.to_display(image, SWEEP_WIDTH), layer,
                                 layer.pixel(8, 5), 3, vmax=shared).image
    np.testing.assert_array_equal(np.asarray(frames[5])[:SWEEP_WIDTH], np.asarray(expected))
    bars = [find_colour_bar(frame) for frame in frames]
    assert bars[0] is not None and bars[0][0] > SWEEP_WIDTH and bars[0][1] >= 256
    assert all(bar == bars[0] for bar in bars)                    # in every frame, the same
    below = [np.asarray(frame)[SWEEP_WIDTH:bars[0][0]] for frame in (frames[0], frames[5])]
    assert len(ink_rows(below[0])) and not np.array_equal(*below)  # each frame's caption
    assert len(sweep_frames(image, layer, None, along="col", index=0)) == 16


def test_a_tall_pictures_sweep_is_as_wide(photo):
    picture, layer = photo
    tall = picture.transpose(Image.Transpose.ROTATE_90)            # 375 x 500
    rotated = trace(narrow_cifar(), images.to_tensor(images.to_working_size(tall, 48))) \
        .layers["stages.0.0.spatial"]
    frames = sweep_frames(tall, rotated, head=0, along="col", index=3, drawing=Drawing("outline"))
    assert len(frames) == rotated.size[0] and frames[0].width == SWEEP_WIDTH
    assert find_colour_bar(frames[0]) is not None


def test_the_gif_keeps_size_colour_bar_and_loop(cifar):
    image, layer = cifar
    frames = sweep_frames(image, layer, head=1, along="col", index=4)
    data = sweep_gif(frames, ms_per_frame=200)
    gif = Image.open(io.BytesIO(data))
    assert gif.n_frames == 16 and gif.info["loop"] == 0 and gif.info["duration"] == 200
    assert gif.size == frames[0].size and gif.width >= 768
    for k in (0, 9):
        gif.seek(k)
        assert find_colour_bar(gif.convert("RGB")) is not None     # its ends exact
    # one palette: the frames after the first store only what changed
    assert len(data) < 4 * len(sweep_gif(frames[:1]))


# --- mistakes ---------------------------------------------------------------------------

def test_mistakes_get_clear_errors(cifar, photo):
    image, layer = cifar
    px = layer.pixel(0, 0)
    with pytest.raises(ValueError, match="32x32"):
        attention_overlay(image[:16], layer, px)
    with pytest.raises(ValueError, match="heads 0..3"):
        attention_overlay(image, layer, px, head=4)
    with pytest.raises(ValueError, match="mode"):
        Drawing("contour")
    with pytest.raises(ValueError, match="opacity"):
        Drawing(opacity=1.5)
    picture, wide = photo
    with pytest.raises(ValueError, match="not the shape"):
        attention_overlay(picture, layer, px)                   # 4:3 on a square image
    with pytest.raises(ValueError, match="not the shape"):
        head_strip(images.to_display(image), wide, wide.pixel(0, 0))
    with pytest.raises(ValueError, match="along"):
        sweep_frames(image, layer, along="diagonal")
    with pytest.raises(ValueError, match="outside"):
        sweep_frames(image, layer, index=16)
    with pytest.raises(ValueError, match="frame"):
        sweep_gif([])
    with pytest.raises(TypeError):
        attention_overlay(image, layer, px, 0, 12)                # the old integer scale
