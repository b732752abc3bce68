"""Two plain implementations of local self-attention the fast path is checked against.

- `reference_attention`: unfold (im2col). Short and obviously correct, and slow and
  memory-hungry: it copies every key and value k^2 times, as public re-implementations do.
- `dense_attention`: attention over all H*W pixels through
  `F.scaled_dot_product_attention`, the k x k window imposed by an additive -inf mask.
  Memory grows with (H*W)^2.

Both compute the logits and the output their own way, independently of the layer's fast
paths (`local_ops`, `native`); they share with the layer only the window's small
primitives of `sasa_viz.attention.window` (its padding, validity, masked softmax and weighted sum),
which tests/test_window.py checks on their own.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.attention.window import (neighbour_validity, weighted_sum, window_padding,
                                       window_softmax)


def unfold_windows(t: Tensor, kernel_size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, K, K, H, W): [.., a, b, i, j] = t[.., i + a - K//2, j + b - K//2],
    zero outside the map."""
    B, C, H, W = t.shape
    before, after = window_padding(kernel_size)
    columns = F.unfold(F.pad(t, (before, after, before, after)), kernel_size)  # (B, C*K*K, H*W)
    return columns.view(B, C, kernel_size, kernel_size, H, W)


def reference_attention(layer: LocalSelfAttention, x: Tensor) -> Tuple[Tensor, Tensor]:
    """The layer's output (after pooling) and softmax weights (B, h, K, K, H, W): a
    sliding-window layer (`SelfAttention2d`); the block stem has its own per-pixel oracle
    in its tests."""
    if layer.window != "sliding":
        raise ValueError(f"reference_attention covers sliding windows; {type(layer).__name__} "
                         f"attends over {layer.window}.")
    B, _, H, W = x.shape
    h, d, K = layer.heads, layer.head_dim, layer.kernel_size
    q = layer.query(x).view(B, h, d, 1, 1, H, W)
    k = unfold_windows(layer.key(x), K).view(B, h, d, K, K, H, W)
    v = unfold_windows(layer.value(x), K).view(B, h, d, K, K, H, W)

    logits = (q * (k + _position_embeddings(layer, H, W))).sum(dim=2)  # (B, h, K, K, H, W)
    valid = neighbour_validity(K, H, W, device=x.device)                # (K, K, H, W)
    weights = window_softmax(logits, valid, layer.padding, d ** -0.5 if layer.scaled else 1.0)
    out = weighted_sum(weights, v, dim=2).reshape(B, h * d, H, W)       # (B, h*d, H, W)
    return layer.pool(out), weights


def _position_embeddings(layer: LocalSelfAttention, H: int, W: int):
    """r for every neighbour, (h, d, K, K, [H, W]) broadcastable to the keys, or 0."""
    K = layer.kernel_size
    if layer.position == "none":
        return 0
    if layer.position == "relative":              # r_{a-i,b-j} = [r_row(a-i); r_col(b-j)]
        row = layer.rel_row[:, :, :, None].expand(-1, -1, K, K)   # (h, row_dim, K, K)
        col = layer.rel_col[:, :, None, :].expand(-1, -1, K, K)   # (h, col_dim, K, K)
        return torch.cat([row, col], dim=1)[..., None, None]      # (h, d, K, K, 1, 1)
    # absolute: r of the key's own row and column, each zero outside the map on its own axis
    before, after = window_padding(K)
    rows = F.pad(layer.rel_row[:, :, :H], (before, after))        # (h, row_dim, H+K-1)
    cols = F.pad(layer.rel_col[:, :, :W], (before, after))        # (h, col_dim, W+K-1)
    table = torch.cat([rows[:, :, :, None].expand(-1, -1, -1, W + K - 1),
                       cols[:, :, None, :].expand(-1, -1, H + K - 1, -1)], dim=1)
    windows = F.unfold(table.flatten(0, 1)[None], K)              # (1, h*d*K*K, H*W)
    return windows.view(layer.heads, layer.head_dim, K, K, H, W)


def dense_attention(layer: LocalSelfAttention, x: Tensor) -> Tensor:
    """The layer's output (after pooling), as masked dense attention (padding="mask")."""
    if layer.padding != "mask" or layer.window != "sliding":
        raise ValueError("dense_attention covers sliding windows with padding='mask'.")
    B, _, H, W = x.shape
    h, d, K = layer.heads, layer.head_dim, layer.kernel_size
    q = layer.query(x).view(B, h, d, H, W)

    def as_sequence(t: Tensor) -> Tensor:                             # -> (B, h, HW, d)
        return t.reshape(B, h, d, H * W).transpose(-1, -2)

    # additive mask: q . r for the k x k neighbours of each query (r from the layer's
    # embeddings, as `reference_attention` builds it), -inf for every other key
    a, b, i, j = neighbour_validity(K, H, W, device=x.device).nonzero(as_tuple=True)
    before, _ = window_padding(K)
    query, key = i * W + j, (i + a - before) * W + (j + b - before)
    bias = x.new_full((B, h, H * W, H * W), float("-inf"))
    r = _position_embeddings(layer, H, W)                             # (h, d, K, K, ..) or 0
    position = (q[:, :, :, None, None] * r).sum(dim=2) if torch.is_tensor(r) else None
    bias[:, :, query, key] = 0 if position is None else \
        position.expand(B, h, K, K, H, W)[:, :, a, b, i, j]            # q . r, the layer's own

    out = F.scaled_dot_product_attention(
        as_sequence(q), as_sequence(layer.key(x).view(B, h, d, H, W)),
        as_sequence(layer.value(x).view(B, h, d, H, W)), attn_mask=bias,
        scale=d ** -0.5 if layer.scaled else 1.0)                      # (B, h, HW, d)
    return layer.pool(out.transpose(-1, -2).reshape(B, h * d, H, W))
