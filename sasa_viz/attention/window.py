"""The window of local attention, written once: where a pixel's neighbours are, which of
them are inside the map, and how their logits become weights and their values an output.

The layer (`attention`, `local_ops`), its oracle (`reference`), the stem (`stem`) and
what the recorded numbers mean (`explain`) all use these.

A window is K x K cells; cell [a, b] is the neighbour (top + a, left + b), where
(top, left) is the window's origin. A sliding window starts `before` = K // 2 rows and
columns before its pixel, so the pixel is cell [before, before] and the offsets run from
-before to +after = K - 1 - before (odd K: centred; the stem's even K = 4: -2..+1). The
stem's block windows start at the corner of the pixel's block instead.

Tensors over windows keep the window in two dimensions, (..., K, K, *S) with S the pixel
dimensions (none for one pixel, (H, W) for a map), and their validity is (K, K, *S):

    before, after = window_padding(5)                    # (2, 2): offsets -2..+2
    offsets = window_offsets(5)                          # (2, 5, 5): dy, dx of every cell
    valid = neighbour_validity(5, H, W)                  # (5, 5, H, W) bool
    weights = window_softmax(logits, valid, "mask")      # 0 outside, sums to 1 inside
    output = weighted_sum(weights, values, dim=1)        # sum_ab w_ab v_ab

Padding: "mask" leaves the neighbours outside the map out of the softmax; "zeros" lets
them take part as zero keys and values (logit q . r), as public re-implementations do.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

PADDINGS = ("mask", "zeros")


def check_padding(padding: str) -> str:
    """padding, if it is one of PADDINGS; a ValueError that lists them otherwise."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
    return padding


# --- where the neighbours are ----------------------------------------------------------

def window_padding(kernel_size: int) -> Tuple[int, int]:
    """(before, after): a sliding window's offsets run from -before to +after. Odd K is
    centred; the stem's even K (4) reaches one pixel further back than forward."""
    before = kernel_size // 2
    return before, kernel_size - 1 - before


def cell_offsets(kernel_size: int, cell_row, cell_col) -> Tensor:
    """(2, K, K, *S) int64: [0, a, b] = dy = a - cell_row and [1, a, b] = dx = b - cell_col,
    the offset of window cell [a, b] from a pixel that is itself cell [cell_row, cell_col]
    (ints, or tensors of one shape S)."""
    steps = torch.arange(kernel_size)
    cell_row, cell_col = torch.as_tensor(cell_row), torch.as_tensor(cell_col)
    extra = [1] * cell_row.dim()
    dy = steps.view(-1, 1, *extra) - cell_row                      # (K, 1, *S)
    dx = steps.view(1, -1, *extra) - cell_col                      # (1, K, *S)
    return torch.stack(torch.broadcast_tensors(dy, dx))


def window_offsets(kernel_size: int) -> Tensor:
    """(2, K, K) int64: the (dy, dx) of cell [a, b] of a sliding window from its pixel,
    (a - K//2, b - K//2). Block windows: `PixelTrace.offsets`."""
    before, _ = window_padding(kernel_size)
    return cell_offsets(kernel_size, before, before)


# --- which neighbours are inside the map ------------------------------------------------

def window_validity(kernel_size: int, tops: Tensor, lefts: Tensor) -> Tensor:
    """(K, K, H, W) bool: is cell [a, b] of pixel (i, j)'s window, the pixel
    (tops[i] + a, lefts[j] + b), inside the H x W map?

    tops: (H,) the first row of the windows of row i's pixels; lefts: (W,) the first
    column of column j's. (A window's first row depends only on its pixel's row, its
    first column only on the column, for sliding and block windows alike.)"""
    cells = torch.arange(kernel_size, device=tops.device)[:, None]          # (K, 1)
    rows, cols = cells + tops, cells + lefts                                # (K, H), (K, W)
    row_ok = (rows >= 0) & (rows < len(tops))
    col_ok = (cols >= 0) & (cols < len(lefts))
    return row_ok[:, None, :, None] & col_ok[None, :, None, :]


def neighbour_validity(kernel_size: int, height: int, width: int, device=None) -> Tensor:
    """(K, K, H, W) bool: is neighbour (i + a - K//2, j + b - K//2) of pixel (i, j), cell
    [a, b] of its sliding window, inside the H x W map?"""
    before, _ = window_padding(kernel_size)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    return window_validity(kernel_size, rows - before, cols - before)


def participating(valid: Tensor, padding: str) -> Tensor:
    """(K, K, *S) bool: the neighbours that take part in the softmax: those inside the
    map with "mask" padding, all K*K with "zeros"."""
    check_padding(padding)
    return valid if padding == "mask" else torch.ones_like(valid)


# --- padding ---------------------------------------------------------------------------

def pad_for_windows(t: Tensor, kernel_size: int) -> Tensor:
    """(..., H, W) -> (..., H+K-1, W+K-1): zero-padded so that every sliding K x K
    window is a plain slice, [..., i:i+K, j:j+K] for pixel (i, j)."""
    before, after = window_padding(kernel_size)
    return F.pad(t, (before, after, before, after))


def window_at(t: Tensor, top: int, left: int, kernel_size: int) -> Tensor:
    """(..., H, W) -> (..., K, K): the window whose cell [0, 0] is (top, left) (e.g.
    px.origin), zero outside the map. Any window that overlaps the map, sliding or block."""
    K = kernel_size
    return F.pad(t, (K, K, K, K))[..., top + K:top + 2 * K, left + K:left + 2 * K]


# --- from logits to weights to an output ------------------------------------------------

def window_softmax(logits: Tensor, valid: Tensor, padding: str = "mask", scale: float = 1.0,
                   in_place: bool = False) -> Tensor:
    """softmax over each pixel's window of scale * logits: (..., K, K, *S) -> the same,
    summing to 1 over every window.

    valid: (K, K, *S) bool, the validity of the same pixels' windows (its shape says
    where the window is: the two dimensions before the last len(S)). padding "mask":
    the neighbours outside the map get weight 0; "zeros": they take part with the logit
    given. scale: what the logits are multiplied by first (head_dim ** -0.5 for a layer
    built with scaled=True; 1 in the paper). in_place: overwrite `logits` (contiguous,
    no autograd) with the weights, so that a layer's logits and weights, its two largest
    tensors, never exist at once.
    """
    check_padding(padding)
    first = logits.dim() - valid.dim()               # the window's dimensions: first, first+1
    if not in_place:
        if scale != 1:
            logits = logits * scale
        if padding == "mask":
            logits = logits.masked_fill(~valid, float("-inf"))
        return logits.flatten(first, first + 1).softmax(dim=first).reshape(logits.shape)
    if scale != 1:
        logits.mul_(scale)
    if padding == "mask":
        logits.masked_fill_(~valid, float("-inf"))
    flat = logits.view(*logits.shape[:first], -1, *logits.shape[first + 2:])  # (.., K*K, *S)
    flat.sub_(flat.amax(dim=first, keepdim=True)).exp_()   # outside: exp(-inf) = 0
    flat.div_(flat.sum(dim=first, keepdim=True))
    return logits


def weighted_sum(weights: Tensor, values: Tensor, dim: int) -> Tensor:
    """sum_ab w_ab v_ab: every window's values weighed by its weights.

    weights: (..., K, K, ...) with the window at dimensions dim and dim + 1 (dim >= 0);
    values: the same with the channels inserted before the window, (..., d, K, K, ...).
    Returns (..., d, ...)."""
    return (weights.unsqueeze(dim) * values).sum(dim=(dim + 1, dim + 2))
