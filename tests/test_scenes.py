"""The scenes drawn by code (drawing.scenes), their place in the gallery, and how much
weight a head puts on their objects (inspection.objects), checked against loops over
window cells and image pixels."""
import re

import numpy as np
import pytest
import torch

import sasa_viz
from sasa_viz.drawing import images, scenes
from sasa_viz.drawing.images import to_tensor, to_working_size
from sasa_viz.inspection import objects
from sasa_viz.numbers import WEIGHT

LABELS = ["Scene: red disc on a sky", "Scene: vertical bars", "Scene: checkerboard",
          "Scene: yellow square on noise"]


# ------------------------------------------------------------------------- scenes

@pytest.mark.parametrize("label", LABELS)
def test_a_scene_is_the_same_picture_every_time_at_its_size(label):
    first, second = scenes.scenes()[label](), scenes.scene(label)
    assert first.label == label and first.description and first.object_name
    assert first.image.mode == "RGB" and first.image.size == (scenes.SIZE, scenes.SIZE)
    assert first.mask.shape == (scenes.SIZE, scenes.SIZE) and first.mask.dtype == bool
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert np.array_equal(first.mask, second.mask)


@pytest.mark.parametrize("label", LABELS)
def test_the_mask_is_exactly_the_pixels_of_the_objects_colour(label):
    scene = scenes.scene(label)
    pixels = np.asarray(scene.image)                                   # (S, S, 3)
    on = np.unique(pixels[scene.mask], axis=0)
    assert len(on) == 1                                                 # one colour
    assert not (pixels[~scene.mask] == on[0]).all(axis=-1).any()       # only there
    assert 0.02 < scene.mask.mean() < 0.6


def test_nothing_is_drawn_until_a_loader_is_called(monkeypatch):
    drawn = []
    draw = scenes._with_object
    monkeypatch.setattr(scenes, "_with_object", lambda *args: drawn.append(1) or draw(*args))
    loaders, items = scenes.scenes(), images.gallery()
    assert drawn == []
    assert np.array_equal(np.asarray(items[LABELS[2]]()),
                          np.asarray(loaders[LABELS[2]]().image))
    assert len(drawn) == 2


def test_the_gallery_lists_photos_then_scenes_then_cifar10():
    labels = list(images.gallery())
    photos = len(images.PHOTOS)
    assert labels[:photos] == list(images.PHOTOS.values())
    assert labels[photos:photos + len(LABELS)] == LABELS == list(scenes.scenes())
    assert labels[photos + len(LABELS)].startswith("CIFAR-10 #0: ")


# ------------------------------------------------------------ weight on the object

def brute_coverage(layer, mask: np.ndarray) -> np.ndarray:
    """(H, W): the mean of the mask over the image pixels `feature_pixel` maps to each
    feature pixel, one mask pixel at a time; a mask at a multiple of the image's size
    is read at image pixel (y // scale, x // scale)."""
    H, W = layer.size
    scale = mask.shape[0] // layer.image_size[0]
    area, count = np.zeros((H, W)), np.zeros((H, W))
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            i, j = layer.feature_pixel(y // scale, x // scale)
            area[i, j] += mask[y, x]
            count[i, j] += 1
    return area / count


def brute_weight_and_share(layer, cover: np.ndarray, row: int, col: int):
    """The pixel's weight on the object per head and the object's share of its window,
    one window cell at a time."""
    px = layer.pixel(row, col)
    K, (H, W) = layer.kernel_size, layer.size
    weight, share, cells = np.zeros(layer.heads), 0.0, 0
    for a in range(K):
        for b in range(K):
            i, j = px.origin[0] + a, px.origin[1] + b
            inside = 0 <= i < H and 0 <= j < W
            c = cover[i, j] if inside else 0.0
            weight += px.weights[:, a, b].numpy() * c
            if inside or layer.padding == "zeros":
                share, cells = share + c, cells + 1
    return weight, share / cells


@pytest.fixture(scope="module", params=["mask", "zeros"])
def fresh_trace(request):
    """A freshly initialised sasa-cifar10 (either padding) traced on the disc scene."""
    torch.manual_seed(0)
    model = sasa_viz.create("sasa-cifar10", padding=request.param).eval()
    picture = to_working_size(scenes.scene(LABELS[0]).image, 32)
    return sasa_viz.trace(model, to_tensor(picture))


@pytest.mark.parametrize("name", ["stages.0.0.spatial", "stages.1.1.spatial",
                                  "stages.2.1.spatial"])
@pytest.mark.parametrize("resolution", ["scene", "image", "feature"])
def test_weight_on_the_object_matches_a_loop_over_window_cells(fresh_trace, name,
                                                               resolution):
    layer = fresh_trace.layers[name]
    rng = np.random.default_rng(1)
    mask = rng.random((128, 128)) < 0.3                  # every feature pixel partly on
    if resolution != "scene":
        mask = rng.random(layer.image_size if resolution == "image" else layer.size) < 0.3
    cover = brute_coverage(layer, mask) if resolution != "feature" else mask.astype(float)
    assert np.allclose(objects.coverage(layer, mask).numpy(), cover, atol=1e-6)
    H, W = layer.size
    for row, col in [(0, 0), (H // 2, W // 3), (H - 1, W - 1)]:
        weight, share = brute_weight_and_share(layer, cover, row, col)
        assert np.allclose(objects.weight_on(layer, mask, row, col).numpy(), weight,
                           atol=1e-6)
        assert objects.window_share(layer, mask, row, col) == pytest.approx(share, abs=1e-6)


def test_a_mask_of_another_size_or_a_pixel_off_the_map_is_refused(fresh_trace):
    layer = fresh_trace.layers["stages.1.1.spatial"]
    with pytest.raises(ValueError, match="the traced image's 32x32"):
        objects.coverage(layer, np.zeros((48, 48), bool))
    with pytest.raises(ValueError, match="outside the map"):
        objects.weight_on(layer, np.zeros((32, 32), bool), 8, 0)


def test_object_seeking_needs_pixels_on_the_object_and_wholly_off_it(fresh_trace):
    layer = fresh_trace.layers["stages.1.1.spatial"]
    with pytest.raises(ValueError, match="no pixel of stages.1.1.spatial's map"):
        objects.object_seeking(layer, np.zeros((32, 32), bool))
    stripes = np.zeros((32, 32), bool)
    stripes[:, ::4] = True                                # a column of every feature pixel
    with pytest.raises(ValueError, match="none is wholly outside"):
        objects.object_seeking(layer, stripes)


def test_the_sentence_gives_the_numbers_of_the_head_that_most_beats_its_window_share(
        fresh_trace):
    scene = scenes.scene(LABELS[0])
    layer = fresh_trace.layers["stages.1.1.spatial"]
    found = objects.object_seeking(layer, scene.mask, scene.object_name)
    cover = brute_coverage(layer, scene.mask)
    H, W = layer.size
    excess = {}
    for row in range(H):
        for col in range(W):
            if cover[row, col] == 0:
                weight, share = brute_weight_and_share(layer, cover, row, col)
                excess.update({(head, row, col): w - share for head, w in enumerate(weight)})
    best = max(excess, key=excess.get)
    assert excess[best] == pytest.approx(excess[found.head, found.row, found.col], abs=1e-6)
    weight, share = brute_weight_and_share(layer, cover, found.row, found.col)
    assert found.weight == pytest.approx(weight[found.head], abs=1e-6)
    assert found.window_share == pytest.approx(share, abs=1e-6)
    on = np.argwhere(cover > 0)
    assert found.distance == np.abs(on - [found.row, found.col]).max(axis=1).min()
    numbers = re.fullmatch(r"Head (\d+) at pixel \((\d+), (\d+)\), outside the disc, (\d+) "
                           r"feature pixels? from it, puts (\S+) of its weight on the disc, "
                           r"which covers (\S+) of its window\.", found.sentence).groups()
    assert numbers == (str(found.head), str(found.row), str(found.col), str(found.distance),
                       WEIGHT(found.weight), WEIGHT(found.window_share))


# ------------------------------------------------------------- the shipped model

def test_report_the_most_object_seeking_head_of_the_shipped_model_on_every_scene():
    """Prints, per scene at 32 pixels, the (layer, head) whose weight on the object most
    beats its window share; asserts only what holds by a wide margin."""
    model = sasa_viz.create("sasa-cifar10", pretrained=True)
    for label in LABELS:
        scene = scenes.scene(label)
        layers = sasa_viz.trace(model, to_tensor(to_working_size(scene.image, 32))).layers
        found = {name: objects.object_seeking(layer, scene.mask, scene.object_name)
                 for name, layer in layers.items()}
        name = max(found, key=lambda n: found[n].weight - found[n].window_share)
        print(f"\n{label}: {name}: {found[name].sentence}")
        if label == LABELS[0]:
            assert found[name].weight > 2 * found[name].window_share
