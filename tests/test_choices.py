"""The view the explorer opens on: the most telling head of the model, at the pixel of
the image where that head is most selective."""
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.explain import attention_entropy
from sasa_viz.choices import opening_view, telling_head
from sasa_viz.statistics import head_statistics, most_telling


def two_layer_model():
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(3, 8, kernel_size=3, heads=2, stride=2),
                          SelfAttention2d(8, 8, kernel_size=3, heads=2)).eval()
    with torch.no_grad():
        model[1].query.weight.mul_(20)                 # a sharp second layer
    return model


def test_telling_head_is_most_telling_over_the_images():
    model, images = two_layer_model(), torch.rand(4, 3, 12, 12)
    assert telling_head(model, images) == most_telling(head_statistics(model, images))


def test_opening_view_is_the_most_selective_pixel_against_a_uniform_spread():
    model = two_layer_model()
    traced = trace(model, torch.rand(1, 3, 12, 10))
    layer = traced.layers["0"]
    view = opening_view(traced, "0", 1)
    entropy = attention_entropy(layer, normalize=True)[1]              # (12, 10)
    assert (view.layer, view.head) == ("0", 1)
    inner = entropy[1:-1, 1:-1]                                        # a whole 3x3 window
    assert entropy[view.row, view.col] == inner.min()                  # stride 1: same pixel
    assert 1 <= view.row < 11 and 1 <= view.col < 9
    # after the stride-2 layer's pool a feature pixel is 2x2 image pixels: one is named
    strided = traced.layers["1"]
    assert strided.stride == 2
    view = opening_view(traced, "1", 0)
    i, j = strided.feature_pixel(view.row, view.col)
    entropy = attention_entropy(strided, normalize=True)[0]            # (6, 5)
    assert entropy[i, j] == entropy[1:-1, 1:-1].min()
    assert (view.row // 2, view.col // 2) == (i, j)


def test_opening_view_takes_any_pixel_when_no_window_fits_the_map():
    model = two_layer_model()
    traced = trace(model, torch.rand(1, 3, 4, 4))                      # 2x2 map after layer 0
    strided = traced.layers["1"]
    assert not strided.valid.all(0).all(0).any()                       # 3x3 windows on 2x2
    view = opening_view(traced, "1", 1)
    entropy = attention_entropy(strided, normalize=True)[1]
    assert entropy[strided.feature_pixel(view.row, view.col)] == entropy.min()


def test_opening_view_prefers_a_full_window_to_a_sharper_corner():
    model = two_layer_model()
    traced = trace(model, torch.rand(1, 3, 12, 10))
    layer = traced.layers["0"]
    with torch.no_grad():                          # make the corner the sharpest pixel
        layer.weights[1, :, :, 0, 0] = 0
        layer.weights[1, 1, 1, 0, 0] = 1
    assert attention_entropy(layer, normalize=True)[1].argmin() == 0
    view = opening_view(traced, "0", 1)
    assert (view.row, view.col) != (0, 0) and layer.valid[:, :, view.row, view.col].all()
