"""Each experiment shows the property it is there to demonstrate."""
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.experiments import border_comparison, permute_neighbourhood, shift_equivariance
from sasa_viz.models import create


def smooth_image(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")


def interior(result, margin=5):
    """Feature pixels whose inputs never meet a border or the roll's seam."""
    fy, fx = result.feature_shift
    H, W = result.difference.shape
    return result.difference[fy + margin:H - margin, fx + margin:W - margin]


def test_relative_attention_maps_shift_with_the_image_away_from_borders():
    torch.manual_seed(0)
    model = create("sasa-cifar10").eval()
    result = shift_equivariance(model, smooth_image(), "stages.0.0.spatial", 4, 6)
    assert result.feature_shift == (2, 3)
    assert interior(result).max() < 1e-4
    assert result.difference.max() > 1e-3          # near the borders and the seam it breaks


def test_absolute_position_breaks_equivariance():
    torch.manual_seed(0)
    model = create("sasa-cifar10", position="absolute").eval()
    result = shift_equivariance(model, smooth_image(), "stages.0.0.spatial", 4, 6)
    assert interior(result).max() > 1e-3


def layer_and_pixel(position, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(SelfAttention2d(4, 8, kernel_size=5, heads=2, position=position)).eval()
    x = torch.randn(1, 4, 11, 11)
    layer = trace(model, x).layers["0"]
    return model, x, layer, layer.pixel(5, 5)


def test_without_position_a_shuffled_neighbourhood_gives_the_same_output():
    _, _, _, px = layer_and_pixel("relative")
    out = permute_neighbourhood(px).outputs
    torch.testing.assert_close(out["without position permuted"], out["without position"])
    assert (out["with position permuted"] - out["with position"]).abs().max() > 1e-4
    torch.testing.assert_close(out["with position"], px.output)


def test_the_shuffle_is_what_the_layer_computes_on_shuffled_pixels():
    model, x, _, px = layer_and_pixel("relative", seed=1)
    result = permute_neighbourhood(px, seed=3)
    moved = x.clone()
    for cell, source in enumerate(result.source.tolist()):
        (a, b), (c, d) = divmod(cell, 5), divmod(source, 5)
        moved[..., 5 + a - 2, 5 + b - 2] = x[..., 5 + c - 2, 5 + d - 2]
    real = trace(model, moved).layers["0"].pixel(5, 5).output
    torch.testing.assert_close(real, result.outputs["with position permuted"])


def test_border_comparison_differs_at_the_corner_only():
    model, _, layer, _ = layer_and_pixel("relative")
    corner = border_comparison(model, layer, 0, 0)
    outside = ~corner["mask"].valid
    assert torch.all(corner["mask"].weights[:, outside] == 0)
    assert torch.all(corner["zeros"].weights[:, outside] > 0)
    assert (corner["mask"].output - corner["zeros"].output).abs().max() > 1e-4
    torch.testing.assert_close(corner["mask"].output, layer.pixel(0, 0).output)
    centre = border_comparison(model, layer, 5, 5)
    torch.testing.assert_close(centre["mask"].output, centre["zeros"].output)


def test_border_comparison_finds_a_bare_layer_by_its_trace_name():
    torch.manual_seed(0)
    layer = SelfAttention2d(4, 8, kernel_size=3, heads=2)
    traced = trace(layer, torch.randn(1, 4, 6, 6)).layers["SelfAttention2d"]
    corner = border_comparison(layer, traced, 0, 0)
    torch.testing.assert_close(corner["mask"].output, traced.pixel(0, 0).output)
