"""sasa_viz.attention.window, the window's core: each primitive against a plain loop over cells and
pixels written out here, at the borders, for odd and even windows and both paddings."""
import math

import pytest
import torch

from sasa_viz.attention.window import (PADDINGS, cell_offsets, check_padding,
                                       neighbour_validity, pad_for_windows, participating,
                                       weighted_sum, window_at, window_offsets,
                                       window_padding, window_softmax, window_validity)

SIZES = [(5, 3, 4), (3, 6, 5), (4, 5, 7), (7, 3, 2), (1, 2, 3)]    # K, H, W: K > map too


def inside(K, H, W, i, j, a, b):
    """Is cell [a, b] of pixel (i, j)'s sliding window inside the H x W map?"""
    return 0 <= i + a - K // 2 < H and 0 <= j + b - K // 2 < W


# --- where the neighbours are ----------------------------------------------------------------

@pytest.mark.parametrize("K, before, after", [(1, 0, 0), (3, 1, 1), (7, 3, 3), (4, 2, 1)])
def test_window_padding_centres_odd_windows_and_reaches_back_with_even_ones(K, before, after):
    assert window_padding(K) == (before, after)


@pytest.mark.parametrize("K", [3, 4, 5])
def test_window_offsets_are_rows_then_columns_from_the_pixel(K):
    offsets = window_offsets(K)
    assert offsets.shape == (2, K, K) and offsets.dtype == torch.int64
    for a in range(K):
        for b in range(K):
            assert offsets[:, a, b].tolist() == [a - K // 2, b - K // 2]
    assert offsets[:, K // 2, K // 2].tolist() == [0, 0]              # the pixel itself
    assert window_offsets(4)[0, :, 0].tolist() == [-2, -1, 0, 1]      # the stem's window


def test_cell_offsets_count_from_any_cell_and_for_many_pixels_at_once():
    assert cell_offsets(3, 0, 2)[:, 2, 0].tolist() == [2, -2]
    rows, cols = torch.tensor([[0, 1]]), torch.tensor([[2, 0]])         # S = (1, 2)
    offsets = cell_offsets(3, rows, cols)
    assert offsets.shape == (2, 3, 3, 1, 2)
    for n in range(2):
        torch.testing.assert_close(offsets[..., 0, n], cell_offsets(3, int(rows[0, n]),
                                                                    int(cols[0, n])))


# --- which neighbours are inside the map -----------------------------------------------------

@pytest.mark.parametrize("K, H, W", SIZES)
def test_neighbour_validity_marks_exactly_the_cells_inside_the_map(K, H, W):
    valid = neighbour_validity(K, H, W)
    assert valid.shape == (K, K, H, W) and valid.dtype == torch.bool
    for i in range(H):
        for j in range(W):
            for a in range(K):
                for b in range(K):
                    assert bool(valid[a, b, i, j]) == inside(K, H, W, i, j, a, b)


def test_window_validity_of_blocks():
    """Blocks of 2 on a 3 x 5 map: row 2 and column 4 start blocks cut by the edge."""
    rows, cols = torch.arange(3), torch.arange(5)
    valid = window_validity(2, rows - rows % 2, cols - cols % 2)        # (2, 2, 3, 5)
    for i in range(3):
        for j in range(5):
            for a in range(2):
                for b in range(2):
                    expected = i - i % 2 + a < 3 and j - j % 2 + b < 5
                    assert bool(valid[a, b, i, j]) == expected


@pytest.mark.parametrize("padding", PADDINGS)
def test_participating_neighbours_are_the_valid_ones_or_all(padding):
    valid = neighbour_validity(5, 3, 4)
    taking_part = participating(valid, padding)
    expected = valid if padding == "mask" else torch.ones_like(valid)
    assert torch.equal(taking_part, expected)
    assert int(taking_part[..., 0, 0].sum()) == (9 if padding == "mask" else 25)   # a corner


def test_an_unknown_padding_lists_the_known_ones():
    with pytest.raises(ValueError, match="'mask', 'zeros'"):
        check_padding("reflect")
    with pytest.raises(ValueError, match="padding must be one of"):
        window_softmax(torch.zeros(1, 3, 3), torch.ones(3, 3, dtype=torch.bool), "same")


# --- padding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("K, H, W", SIZES)
def test_a_padded_map_holds_every_window_as_a_slice(K, H, W):
    t = torch.randn(2, H, W)
    padded = pad_for_windows(t, K)
    assert padded.shape == (2, H + K - 1, W + K - 1)
    for i in range(H):
        for j in range(W):
            for a in range(K):
                for b in range(K):
                    y, x = i + a - K // 2, j + b - K // 2
                    expected = t[:, y, x] if inside(K, H, W, i, j, a, b) else torch.zeros(2)
                    torch.testing.assert_close(padded[:, i + a, j + b], expected)


@pytest.mark.parametrize("top, left", [(-2, -2), (0, 3), (2, 1), (3, 4), (-1, 4)])
def test_window_at_reads_the_window_from_its_origin_with_zeros_outside(top, left):
    t = torch.randn(3, 4, 6)
    window = window_at(t, top, left, 3)
    assert window.shape == (3, 3, 3)
    for a in range(3):
        for b in range(3):
            y, x = top + a, left + b
            expected = t[:, y, x] if 0 <= y < 4 and 0 <= x < 6 else torch.zeros(3)
            torch.testing.assert_close(window[:, a, b], expected)


# --- from logits to weights to an output ----------------------------------------------------

def hand_softmax(logits, taking_part, scale):
    """{(a, b): weight} of one pixel's window, a plain loop over the cells that take part."""
    cells = [(a, b) for a in range(logits.shape[0]) for b in range(logits.shape[1])
             if taking_part[a, b]]
    total = sum(math.exp(scale * float(logits[a, b])) for a, b in cells)
    return {(a, b): math.exp(scale * float(logits[a, b])) / total for a, b in cells}


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_the_softmax_of_every_pixel_is_the_hand_written_one(padding, scale):
    K, H, W = 3, 4, 5
    logits = torch.randn(2, K, K, H, W, dtype=torch.float64)            # (h, K, K, H, W)
    valid = neighbour_validity(K, H, W)
    weights = window_softmax(logits, valid, padding, scale)
    assert weights.shape == logits.shape
    for h in range(2):
        for i in range(H):
            for j in range(W):
                window = weights[h, :, :, i, j]
                expected = hand_softmax(logits[h, :, :, i, j],
                                        participating(valid, padding)[..., i, j], scale)
                for a in range(K):
                    for b in range(K):
                        assert float(window[a, b]) == pytest.approx(expected.get((a, b), 0.0))


@pytest.mark.parametrize("padding", PADDINGS)
def test_weights_sum_to_one_and_masked_neighbours_get_none(padding):
    K, H, W = 5, 3, 4                                   # every pixel has cells outside
    logits = 3 * torch.randn(2, 4, K, K, H, W)          # (B, h, K, K, H, W), as the layer's
    valid = neighbour_validity(K, H, W)
    weights = window_softmax(logits, valid, padding)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(2, 4, H, W))
    outside = ~valid.expand_as(weights)
    if padding == "mask":
        assert torch.all(weights[outside] == 0) and torch.all(weights[~outside] > 0)
    else:
        assert torch.all(weights > 0)


def test_one_pixels_window_works_as_well_as_a_map():
    """(h, K, K) logits with (K, K) validity: the window is the last two dimensions."""
    logits = torch.randn(3, 3, 3)
    valid = torch.tensor([[False, True, True]] * 3)
    weights = window_softmax(logits, valid, "mask")
    assert torch.all(weights[:, :, 0] == 0)
    expected = logits[:, :, 1:].flatten(1).softmax(1).view(3, 3, 2)
    torch.testing.assert_close(weights[:, :, 1:], expected)


def test_scale_multiplies_the_logits_before_the_softmax():
    logits, valid = torch.randn(2, 3, 3, 4, 4), neighbour_validity(3, 4, 4)
    scaled = window_softmax(logits, valid, "mask", scale=0.25)
    torch.testing.assert_close(scaled, window_softmax(logits * 0.25, valid, "mask"))
    assert (scaled - window_softmax(logits, valid, "mask")).abs().max() > 1e-3


@pytest.mark.parametrize("padding", PADDINGS)
def test_in_place_gives_the_same_weights_in_the_logits_memory(padding):
    logits, valid = torch.randn(2, 3, 5, 5, 4, 6), neighbour_validity(5, 4, 6)
    expected = window_softmax(logits, valid, padding, 0.5)
    weights = window_softmax(logits, valid, padding, 0.5, in_place=True)
    assert weights.data_ptr() == logits.data_ptr()
    torch.testing.assert_close(weights, expected)


def test_the_softmax_passes_gradients():
    logits = torch.randn(1, 3, 3, 2, 2, requires_grad=True)
    valid = neighbour_validity(3, 2, 2)
    weights = window_softmax(logits, valid, "mask")
    (weights * torch.randn_like(weights)).sum().backward()
    assert torch.all(logits.grad[:, ~valid] == 0)                   # no weight, no gradient
    assert logits.grad[:, valid].abs().sum() > 0


def test_weighted_sum_is_the_hand_written_sum_over_the_window():
    h, d, K, H, W = 2, 3, 3, 2, 4
    weights = torch.randn(h, K, K, H, W, dtype=torch.float64)
    values = torch.randn(h, d, K, K, H, W, dtype=torch.float64)
    out = weighted_sum(weights, values, dim=1)
    assert out.shape == (h, d, H, W)
    for n in range(h):
        for c in range(d):
            for i in range(H):
                for j in range(W):
                    expected = sum(float(weights[n, a, b, i, j] * values[n, c, a, b, i, j])
                                   for a in range(K) for b in range(K))
                    assert float(out[n, c, i, j]) == pytest.approx(expected)
    one_pixel = weighted_sum(weights[..., 1, 2], values[..., 1, 2], dim=1)   # (h, d)
    torch.testing.assert_close(one_pixel, out[..., 1, 2])
