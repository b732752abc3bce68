"""Each experiment shows the property it is there to demonstrate."""
import re

import pytest
import torch
import torch.nn as nn

from sasa_viz import SelfAttention2d, trace
from sasa_viz.drawing import figures
from sasa_viz.inspection.experiments import (UNCHANGED, ShiftResult, absolute_twin,
                                             border_comparison, image_shift_sentence,
                                             layer_shift_sentence, permutation_changes,
                                             permutation_sentence, permute_neighbourhood,
                                             roll_layer_input, shift_equivariance,
                                             view_extent)
from sasa_viz.models.pretrained import create, load_pretrained
from sasa_viz.numbers import relative, significant


def smooth_image(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")


@pytest.fixture(scope="module")
def trained():
    """The shipped sasa-cifar10, a 32 x 32 image and its trace."""
    model = load_pretrained("sasa-cifar10", device="cpu")
    x = smooth_image(32, seed=1)
    return model, x, trace(model, x)


def clear_along(n, shift, before, after):
    """(n,) bool: the rows whose window, `before` rows up to `after` down, lies wholly
    inside a map of n rows rolled by `shift` and on one side of the seam: rows
    [shift, n) hold the original's [0, n - shift), rows [0, shift) its last ones."""
    rows = torch.arange(n)
    top, bottom = rows - before, rows + after
    if shift == 0:
        return torch.ones(n, dtype=torch.bool)
    return ((top >= shift) & (bottom < n)) | ((top >= 0) & (bottom < shift))


def clear_pixels(size, shift, before, after):
    """(H, W) bool: clear_along in both directions."""
    rows = clear_along(size[0], shift[0], before, after)
    cols = clear_along(size[1], shift[1], before, after)
    return rows[:, None] & cols[None, :]


# --- the layer on its own input, rolled -------------------------------------------------------

def test_a_trained_layer_on_its_rolled_input_is_unchanged_away_from_border_and_seam(
        trained):
    model, _, traced = trained
    layer = traced.layers["stages.0.0.spatial"]                      # 16 x 16, K = 7
    rolled = roll_layer_input(model, layer, 2, 4)                    # stride 2
    result = rolled.layer
    assert result.feature_shift == (1, 2)
    clear = clear_pixels(layer.size, (1, 2), 3, 3)
    assert torch.equal(~result.reach, clear) and clear.sum() == 9 * 8
    assert torch.all(result.difference[clear] <= UNCHANGED)
    assert torch.all(result.difference[~clear] > 100 * UNCHANGED)   # the reach: no wider
    twin = rolled.twin                                              # than it must be
    assert torch.equal(twin.reach, result.reach)
    assert torch.all(twin.difference[clear] > 100 * UNCHANGED)      # absolute: all change
    assert twin.difference[clear].median() > 0.05


def test_at_a_deeper_layer_a_small_map_leaves_fewer_windows_clear(trained):
    model, _, traced = trained
    layer = traced.layers["stages.1.1.spatial"]                      # 8 x 8, stride 4
    for (dy, dx), clear_count in [((4, 0), 8), ((4, 4), 1), ((8, 8), 0)]:
        result = roll_layer_input(model, layer, dy, dx).layer
        assert int((~result.reach).sum()) == clear_count
        assert torch.equal(result.unchanged, ~result.reach)


@pytest.mark.parametrize("shift", [(2, 3), (9, 0), (0, 10)])
def test_a_random_layer_on_its_rolled_input_is_unchanged_away_from_border_and_seam(
        window_path, shift):
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention2d(4, 8, kernel_size=5, heads=2)).eval()
    layer = trace(model, torch.randn(1, 4, 11, 12)).layers["0"]
    rolled = roll_layer_input(model, layer, *shift)
    clear = clear_pixels(layer.size, shift, 2, 2)
    assert torch.equal(~rolled.layer.reach, clear) and clear.any()
    assert torch.all(rolled.layer.difference[clear] <= UNCHANGED)   # float rounding at most
    assert torch.all(rolled.twin.difference[clear] > 100 * UNCHANGED)


def test_the_absolute_twin_has_the_layers_projections_and_its_embeddings_at_new_places():
    torch.manual_seed(0)
    layer = SelfAttention2d(4, 8, kernel_size=5, heads=2)
    twin = absolute_twin(layer, 11)
    assert twin.position == "absolute" and twin.max_size == 11
    for name in ("query", "key", "value"):
        torch.testing.assert_close(getattr(twin, name).weight, getattr(layer, name).weight)
    for name in ("rel_row", "rel_col"):
        relative, absolute = getattr(layer, name), getattr(twin, name)   # (h, c, 5), (h, c, 11)
        assert absolute.shape[-1] == 11
        for row in range(11):                      # each row's embedding is one of the layer's
            assert any(torch.equal(absolute[..., row], relative[..., a]) for a in range(5))
    assert layer.position == "relative"            # the layer itself is left alone
    with pytest.raises(ValueError, match="relative embeddings"):
        absolute_twin(SelfAttention2d(4, 8, kernel_size=5, heads=2, position="none"), 11)


def test_block_windows_rolled_by_part_of_a_block_leave_nothing_in_place():
    model = create("sasa-full-cifar10", widths=(16, 16, 16), blocks=(1, 1, 1)).eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))   # no flat
    layer = trace(model, x).layers["stem.attention"]                  # parts; 2 x 2 blocks
    whole, part = (roll_layer_input(model, layer, dy, 2) for dy in (2, 1))
    assert whole.twin is None                                            # position "none"
    assert torch.equal(whole.layer.unchanged, ~whole.layer.reach)
    assert whole.layer.unchanged.any()
    assert part.layer.reach.all() and not part.layer.unchanged.any()
    text = layer_shift_sentence(part)
    assert "0 of 256 pixels are unchanged (to within 1×10⁻⁶)" in text
    assert "2x2 blocks" in text
    assert "equivariance)" not in text and "no absolute twin" in text


# --- the whole image, rolled ------------------------------------------------------------------

def test_the_view_of_a_layers_input_is_what_the_layers_before_it_see(trained):
    model, _, _ = trained
    # two 3x3 convolutions, the second of stride 2: an input pixel sees image rows
    # 2u - 2 .. 2u + 2, so the feature pixels (blocks of 2) u - 1 .. u + 1
    assert view_extent(model, "stages.0.0.spatial", 32) == (1, 1, 1, 1)
    # the next layer's input adds that layer's 7 x 7 window: 3 more
    assert view_extent(model, "stages.0.1.spatial", 32) == (4, 4, 4, 4)
    # measured, not assumed: untrained, every residual branch starts at 0 (its last batch
    # norm's scale is 0), so the window adds nothing yet
    assert view_extent(create("sasa-cifar10").eval(), "stages.0.1.spatial", 32) == \
        (1, 1, 1, 1)
    full = create("sasa-full-cifar10", widths=(16, 16, 16), blocks=(1, 1, 1)).eval()
    assert view_extent(full, "stem.attention", 16) == (0, 0, 0, 0)     # the image itself


def test_rolling_the_image_leaves_just_the_pixels_whose_view_stays_clear_unchanged(
        trained):
    model, x, traced = trained
    name = "stages.0.0.spatial"
    extent = view_extent(model, name, 32)
    result = shift_equivariance(model, x, name, 4, 2, extent)
    assert result.feature_shift == (2, 1)
    clear = clear_pixels(traced.layers[name].size, (2, 1), 3 + 1, 3 + 1)   # window + view
    assert torch.equal(~result.reach, clear) and clear.any()
    assert torch.equal(result.unchanged, clear)


def test_at_depth_the_whole_image_roll_reaches_every_pixel_and_says_so(trained):
    model, x, _ = trained
    name = "stages.1.1.spatial"
    extent = view_extent(model, name, 32)
    result = shift_equivariance(model, x, name, 4, 4, extent)
    assert result.reach.all() and not result.unchanged.any()
    text = image_shift_sentence(result, extent)
    assert text.endswith("0 of 64 pixels are unchanged (to within 1×10⁻⁶): every pixel's "
                         "view meets "
                         "the border or the seam through its window or the layers before "
                         "it (the stem's zero padding, earlier windows), so none can show "
                         "equivariance here.")
    assert "(all of them" not in text


def test_shifts_are_whole_feature_pixels_down_and_right_within_the_image(trained):
    model, x, traced = trained
    layer = traced.layers["stages.0.0.spatial"]                      # stride 2
    with pytest.raises(ValueError, match="multiples of 2 pixels"):
        roll_layer_input(model, layer, 3, 0)
    for dy, dx in [(-2, 0), (0, 32)]:
        with pytest.raises(ValueError, match="shift by 0 to 31 pixels down"):
            shift_equivariance(model, x, "stages.0.0.spatial", dy, dx)


def test_relative_attention_maps_shift_with_the_image_away_from_borders():
    torch.manual_seed(0)
    model = create("sasa-cifar10").eval()
    result = shift_equivariance(model, smooth_image(), "stages.0.0.spatial", 4, 6)
    assert result.feature_shift == (2, 3)
    assert (~result.reach).any() and result.difference[~result.reach].max() <= UNCHANGED
    assert result.difference.max() > 1e-3          # near the borders and the seam it breaks


def test_absolute_position_breaks_equivariance():
    torch.manual_seed(0)
    model = create("sasa-cifar10", position="absolute").eval()
    result = shift_equivariance(model, smooth_image(), "stages.0.0.spatial", 4, 6)
    assert (~result.reach).any() and not result.unchanged[~result.reach].any()


# --- the sentences say what the arrays hold ---------------------------------------------------

def counts(result, where):
    """(pixels whose weights moved by at most UNCHANGED, pixels) where `where` is True."""
    return int(((result.difference <= UNCHANGED) & where).sum()), int(where.sum())


def numbers(pattern, text):
    return tuple(int(n) for n in re.search(pattern, text).groups())


def test_the_layer_sentence_counts_what_its_maps_show(trained):
    model, _, traced = trained
    rolled = roll_layer_input(model, traced.layers["stages.0.0.spatial"], 2, 2)
    text = layer_shift_sentence(rolled)
    result, twin = rolled.layer, rolled.twin
    clear = ~result.reach
    assert numbers(r"unchanged \(to within 1×10⁻⁶\) at (\d+) of the (\d+) pixels "
                   r"whose 7x7 window", text) == counts(result, clear)
    assert numbers(r"at (\d+) of the (\d+) hatched pixels", text) == counts(result, ~clear)
    assert numbers(r"twin .* is unchanged at (\d+) of those (\d+) pixels", text) == \
        counts(twin, clear)
    median = significant(float(twin.difference[clear].median()), 2)
    assert f"its median change there is {median}." in text
    assert "(all of them: translation equivariance)" in text
    assert "rolled 1 feature pixel down and 1 right" in text


def synthetic(unchanged, reach, shift=(1, 1)):
    """A ShiftResult whose pixels are unchanged (difference 0) where `unchanged` says."""
    difference = (~torch.tensor(unchanged)).float()
    reach = torch.tensor(reach)
    return ShiftResult(difference, reach, difference, difference, shift, 3, "sliding")


def test_the_sentences_never_claim_equivariance_the_numbers_do_not_show():
    broken = synthetic([[True, False], [True, True]], [[False, False], [False, True]])
    text = image_shift_sentence(broken, (1, 1, 1, 1))
    assert "unchanged (to within 1×10⁻⁶) at 2 of the 3 pixels whose view" in text
    assert "at 1 of the 1 hatched pixels" in text
    assert "equivariance" not in text
    nothing_clear = synthetic([[True, False], [False, False]], [[True, True], [True, True]])
    text = image_shift_sentence(nothing_clear, (1, 1, 1, 1))
    assert "1 of 4 pixels are unchanged" in text and "none can show" in text
    unrolled = synthetic([[True, True], [True, True]], [[False, False], [False, False]],
                         shift=(0, 0))
    assert "equivariance" not in image_shift_sentence(unrolled, (1, 1, 1, 1))


def test_the_hatching_drawn_is_the_reach(trained):
    model, _, traced = trained
    result = roll_layer_input(model, traced.layers["stages.0.0.spatial"], 2, 4).layer
    fig = figures.maps_figure([(result.difference, "", "magma", (0, 1))],
                              hatched=result.reach)
    drawn = torch.zeros_like(result.reach)
    for patch in fig.axes[0].patches:
        if patch.get_gid() == "hatched":
            (left, top), width = patch.get_xy(), int(patch.get_width())
            drawn[int(top + .5), int(left + .5):int(left + .5) + width] = True
    assert torch.equal(drawn, result.reach)


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


def test_the_permutation_sentence_says_what_the_numbers_did():
    _, _, _, px = layer_and_pixel("relative")
    result = permute_neighbourhood(px)
    changes = permutation_changes(result)
    said = permutation_sentence(result)
    assert changes["without position"] <= 1e-6 < changes["with position"]
    assert "did not move" in said.split(".")[0]
    assert f"moved by {relative(changes['with position'])} (relative L2)" in said
    # no position term: the output cannot move either way, and the sentence says so
    _, _, _, px = layer_and_pixel("none")
    said = permutation_sentence(permute_neighbourhood(px))
    assert "did not move either" in said and "moved by" not in said
    # a pixel whose window holds only itself: nothing to shuffle
    corner = layer_and_pixel("relative")[2].pixel(0, 0)
    corner.valid[:] = False
    corner.valid[corner.cell] = True
    assert permutation_sentence(permute_neighbourhood(corner)).startswith("No neighbour moved")
