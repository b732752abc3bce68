"""The spatially-aware attention stem of the paper's "full attention" models.

At the input, single pixels carry little content, so the stem makes the values depend on
where a pixel sits inside its window: a mixture of m value matrices

    v_ab = ( sum_m p(a,b,m) W_V^m ) x_ab,    p(a,b,m) = softmax_m( (emb_row(a) + emb_col(b)) . nu_m )

with (a, b) the position inside the K x K window, p shared by all heads. Batch norm, ReLU
and a K x K max pool follow, as in ResNet's stem. Two kinds of window:

- "blocks" (default, the paper's): the map is cut into non-overlapping K x K blocks, the
  very blocks the max pool takes its maxima over, and each pixel attends over the K^2
  pixels of its own block with content logits only, softmax_ab(q_ij . k_ab); position
  enters through the values alone. (a, b) is a pixel's position inside its block, so
  v_ab belongs to the pixel, whichever pixel of the block asks. A map whose side is not a
  multiple of K is zero-padded up to one, and the padded pixels are left out of the
  softmax (padding="mask") or take part as zero keys and values ("zeros").
- "sliding": an ordinary K x K window around every pixel (offsets -(K//2) .. K - 1 - K//2,
  the `LocalSelfAttention` machinery) with relative position logits q . r as well.

Blocks are cheap: `pixel_unshuffle` ("space to depth") puts each block's K^2 pixels
side by side as (P, nH, nW), so every key cell meets every query cell of its block in
elementwise products over the blocks, and `pixel_shuffle` puts the output back on the map.
Both products work on the C_in = 3 input channels rather than on d-dimensional queries,
keys and values: q_p . k_a = x_p^T (W_Q^T W_K) x_a, and sum_a w_ap V_a x_a weighs the
pixels before one matrix product with the mixed value matrices V_a = sum_m p(a,b,m) W_V^m
(twice as fast as products of q, k and v; `sasa_viz.cost.stem_madds` still counts the
stem the paper's way, with m value maps and m weighted sums).

Shapes: B batch, h heads, d head_dim, K window side, m mixtures, H x W the map,
nH x nW the blocks (H / K x W / K, rounded up), P = K * K pixels per block.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import AttentionTensors, LocalSelfAttention
from .local_ops import local_sum
from .window import window_validity

WINDOWS = ("blocks", "sliding")


class SpatiallyAwareAttention(LocalSelfAttention):
    """Local self-attention whose values are a position-dependent mixture (see module doc).

    window: "blocks" (position "none", the only choice) or "sliding" (position "relative"
    unless given). padding: what happens to cells past the map's edge, as in
    `SelfAttention2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, padding: str = "mask",
                 position: Optional[str] = None, window: str = "blocks"):
        if not isinstance(mixtures, int) or mixtures < 1:
            raise ValueError(f"mixtures must be a positive integer, got {mixtures!r}.")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}.")
        if position is None:
            position = "none" if window == "blocks" else "relative"
        if window == "blocks" and position != "none":
            raise ValueError(f"block windows use content logits only (position='none'), "
                             f"got position={position!r}; use window='sliding' for "
                             f"position logits.")
        super().__init__(in_channels, out_channels, kernel_size, heads, padding, position,
                         stride=1, scaled=False, max_size=64)
        self.mixtures, self.window = mixtures, window
        self.value = nn.Conv2d(in_channels, out_channels * mixtures, 1, bias=False)  # W_V^1..m
        self.emb_row = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.emb_col = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.nu = nn.Parameter(torch.randn(mixtures, out_channels) * out_channels ** -0.5)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixtures={self.mixtures}, window={self.window!r}"

    def value_mixture(self) -> Tensor:
        """p(a, b, m): (K, K, m), sums to 1 over m."""
        emb = self.emb_row[:, None, :] + self.emb_col[None, :, :]  # (K, K, C)
        return (emb @ self.nu.T).softmax(dim=-1)                   # (K, K, m)

    def window_origin(self, row, col):
        """Blocks: the top-left pixel of the pixel's block (ints or tensors)."""
        if self.window == "sliding":
            return super().window_origin(row, col)
        K = self.kernel_size
        return row - row % K, col - col % K

    def attend(self, x: Tensor, keep: bool = False) -> AttentionTensors:
        if self.window == "sliding":
            return super().attend(x, keep)
        B, C_in, H, W = x.shape
        K, h, d, m = self.kernel_size, self.heads, self.head_dim, self.mixtures
        P, nH, nW = K * K, -(-H // K), -(-W // K)
        padded = F.pad(x, (0, nW * K - W, 0, nH * K - H))          # zero pixels to whole blocks
        pixels = F.pixel_unshuffle(padded, K).view(B, C_in, P, nH, nW)   # cell c of block (I, J)
        # q_p . k_a = x_p^T (W_Q^T W_K) x_a: a C_in x C_in form per head, cheaper than d-dim
        # queries and keys while C_in (3 at the input) is smaller than d.
        w_q, w_k = (conv.weight.view(h, d, C_in) for conv in (self.query, self.key))
        form = torch.einsum("hdi,hdj->hij", w_q, w_k)               # (h, C_in, C_in)
        keys = torch.einsum("hij,bjaIJ->bhiaIJ", form, pixels)     # (B, h, C_in, a, nH, nW)
        queries = pixels[:, None, :, None]                          # (B, 1, C_in, 1, p, nH, nW)
        content = (queries * keys[:, :, :, :, None]).sum(2)         # (B, h, a, p, nH, nW)
        logits = content
        if self.padding == "mask" and (H % K or W % K):             # padding to leave out
            on_map = torch.zeros(1, 1, nH * K, nW * K, device=x.device)
            on_map[..., :H, :W] = 1
            inside = F.pixel_unshuffle(on_map, K).view(P, 1, nH, nW) > 0   # (a, 1, nH, nW)
            logits = logits.masked_fill(~inside, float("-inf"))
        weights = logits.softmax(dim=2)                             # over the key cells a
        # sum_a w_ap V_a x_a with V_a = sum_m p(a,b,m) W_V^m: weigh the pixels, then one
        # matrix product over (a, input channel)
        weighted = weights[:, :, None] * pixels[:, None, :, :, None]    # (B, h, C_in, a, p, nH, nW)
        out = torch.einsum("ahdi,bhiapIJ->bhdpIJ", self._cell_value_matrices(), weighted)

        def to_map(t: Tensor) -> Tensor:                            # (B, X, p, nH, nW) ->
            return F.pixel_shuffle(t.reshape(B, -1, nH, nW), K)[..., :H, :W]   # (B, X, H, W)

        output = to_map(out)                                        # (B, h d, H, W)
        if not keep:
            return AttentionTensors(output)
        return AttentionTensors(
            output, x, self.query(x).view(B, h, d, H, W), self.key(x).view(B, h, d, H, W),
            self.value(x).view(B, m, h, d, H, W),                   # the m value maps W_V^m x
            to_map(content).view(B, h, K, K, H, W), None, None,     # q.k even past the edge
            block_validity(K, H, W, x.device), to_map(weights).view(B, h, K, K, H, W),
            self.value_mixture())

    def _cell_value_matrices(self) -> Tensor:
        """sum_m p(a,b,m) W_V^m for every cell of a block: (P, h, d, C_in)."""
        h, d, m = self.heads, self.head_dim, self.mixtures
        matrices = self.value.weight.view(m, h, d, -1)              # (m, h, d, C_in)
        return torch.einsum("abm,mhdi->abhdi", self.value_mixture(), matrices).flatten(0, 1)

    # --- the sliding window: LocalSelfAttention's path with mixed values ------------------

    def _values(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        return self.value(x).view(B, self.mixtures, self.heads, self.head_dim, H, W)

    def _weighted_sum(self, weights: Tensor, v: Tensor) -> Tensor:
        # sum_ab w_ab sum_m p(a,b,m) W_V^m x_ab = sum_m sum_ab (w_ab p(a,b,m)) (W_V^m x)_ab
        p = self.value_mixture()                                   # (K, K, m)
        return sum(local_sum(weights * p[:, :, m, None, None], v[:, m])
                   for m in range(self.mixtures))


def block_validity(kernel_size: int, height: int, width: int, device=None) -> Tensor:
    """(K, K, H, W) bool: is cell [a, b] of pixel (i, j)'s block, the pixel
    (i - i % K + a, j - j % K + b), inside the map (not padding)?"""
    K = kernel_size
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    return window_validity(K, rows - rows % K, cols - cols % K)     # windows: the blocks


class AttentionStem(nn.Module):
    """Spatially-aware attention, then batch norm, ReLU and a `pool` x `pool` max pool.

    window "blocks" needs pool == kernel_size (its blocks are the pool's) or pool = 1 (no
    pool). The pool keeps a partial block at the bottom or right edge (ceil_mode), the
    same partial block the attention used.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, pool: int = 4, window: str = "blocks"):
        super().__init__()
        if window == "blocks" and pool not in (1, kernel_size):
            raise ValueError(f"block windows are the max pool's blocks: pool must equal "
                             f"kernel_size={kernel_size} (or be 1 for no pool), got {pool}.")
        self.attention = SpatiallyAwareAttention(in_channels, out_channels, kernel_size,
                                                 heads, mixtures, window=window)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(pool, ceil_mode=True) if pool > 1 else nn.Identity()

    def value_mixture(self) -> Tensor:
        return self.attention.value_mixture()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.attention(x))))
