"""The view the explorer opens on: the most selective head on the image, at the pixel
where that head is most selective, and the layer's sentence naming that head; a model's
convolutional twin."""
import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.choices import (ModelChoice, conv_twin, keep_pixel, load_model, model_choices,
                              opening_view)
from sasa_viz.inspection.explain import attention_entropy
from sasa_viz.inspection.statistics import describe_layer, layer_statistics, most_telling
from sasa_viz.models.data import SAMPLE_PATH, load_sample, to_float


def two_layer_model():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=3, heads=2, stride=2),
                          SelfAttention2d(8, 8, kernel_size=3, heads=2)).eval()
    with torch.no_grad():
        model[1].query.weight.mul_(20)                 # a sharp second layer
    return model


def test_opening_view_is_the_most_selective_head_of_this_image_at_its_sharpest_pixel():
    model = two_layer_model()
    traced = trace(model, torch.rand(1, 3, 12, 10))
    stats = [row for layer in traced.layers.values() for row in layer_statistics(layer)]
    view = opening_view(traced)
    assert (view.layer, view.head) == most_telling(stats) == ("1", 0)   # the sharp layer
    # after the stride-2 layer's pool a feature pixel is 2x2 image pixels: one is named
    strided = traced.layers["1"]
    assert strided.stride == 2
    i, j = strided.feature_pixel(view.row, view.col)
    entropy = attention_entropy(strided, normalize=True)[0]            # (6, 5)
    assert entropy[i, j] == entropy[1:-1, 1:-1].min()                  # a whole window
    assert (view.row // 2, view.col // 2) == (i, j)


def test_the_layer_sentence_names_the_head_the_explorer_opens_on():
    """On every shipped model and two kinds of image the sentence of the layer opened on
    calls the opened head the most selective (the old opening view took the head of 32
    other images and contradicted it)."""
    for choice in [c for c in model_choices() if c.trained]:
        model = load_model(choice, "cpu")
        for image in (to_float(load_sample(SAMPLE_PATH).images[3:4]),
                      torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))):
            traced = trace(model, image)
            view = opening_view(traced)
            said = describe_layer(layer_statistics(traced.layers[view.layer]))
            if not said.startswith("Nearly uniform"):
                assert said.startswith(f"Head {view.head} is the most selective"), (choice.name, said)


def test_opening_view_takes_any_pixel_when_no_window_fits_the_map():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=5, heads=2)).eval()
    traced = trace(model, torch.rand(1, 3, 4, 4))                      # 5x5 windows on 4x4
    layer = traced.layers["0"]
    assert not layer.valid.all(0).all(0).any()
    view = opening_view(traced)
    entropy = attention_entropy(layer, normalize=True)[view.head]
    assert entropy[view.row, view.col] == entropy.min()


def test_opening_view_prefers_a_full_window_to_a_sharper_corner():
    model = two_layer_model()
    traced = trace(model, torch.rand(1, 3, 12, 10))
    view = opening_view(traced)
    layer = traced.layers[view.layer]
    with torch.no_grad():                          # make the corner the sharpest pixel
        layer.weights[view.head, :, :, 0, 0] = 0
        layer.weights[view.head, 1, 1, 0, 0] = 1
    assert attention_entropy(layer, normalize=True)[view.head].argmin() == 0
    assert opening_view(traced).layer == view.layer
    view = opening_view(traced)
    i, j = layer.feature_pixel(view.row, view.col)
    assert (i, j) != (0, 0) and layer.valid[:, :, i, j].all()


def test_a_pixel_keeps_its_place_in_the_picture_across_resolutions():
    assert keep_pixel(13, 17, (32, 32), (128, 128)) == (54, 70)
    for size in (16, 24, 48, 64, 96, 128):
        for row, col in [(0, 0), (13, 17), (31, 31), (5, 30)]:
            there = keep_pixel(row, col, (32, 32), (size, size))
            # the new pixel lies inside the old pixel's square of the picture
            assert row / 32 <= (there[0] + 0.5) / size <= (row + 1) / 32 or size < 32
            if size >= 32:
                assert keep_pixel(*there, (size, size), (32, 32)) == (row, col)
    assert keep_pixel(23, 31, (24, 32), (96, 128)) == (94, 126)       # not square
    assert keep_pixel(95, 124, (96, 128), (24, 32)) == (23, 31)


def test_conv_twin_takes_a_choice_or_a_catalogue_name():
    assert conv_twin("sasa-cifar10") == ModelChoice("conv-cifar10", True)     # shipped
    assert conv_twin(ModelChoice("sasa-cifar10", False)) == ModelChoice("conv-cifar10", False)
    assert conv_twin("sasa-resnet26") == ModelChoice("conv-resnet26", False)  # not shipped
    assert conv_twin("conv-cifar10") is None
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        conv_twin("nope")


def test_an_untrained_model_is_the_same_every_time_and_leaves_the_random_state_alone():
    untrained = ModelChoice("sasa-cifar10", False)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, second = load_model(untrained, "cpu"), load_model(untrained, "cpu")
    assert torch.equal(torch.random.get_rng_state(), before)       # the caller's, untouched
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
