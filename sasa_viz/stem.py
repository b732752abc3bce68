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

Blocks are cheap: reshaped so that a block's pixels sit side by side, the attention is
two small matrix products per block and head (`torch.einsum` over the K^2 pixels). The
values apply the mixed matrices sum_m p(a,b,m) W_V^m, one per block position, rather than
mixing m value maps; `sasa_viz.cost.stem_madds` counts the stem the paper's way (m value
maps, m weighted sums).

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
        B, _, H, W = x.shape
        K, h, d, m = self.kernel_size, self.heads, self.head_dim, self.mixtures
        nH, nW = -(-H // K), -(-W // K)
        padded = F.pad(x, (0, nW * K - W, 0, nH * K - H))          # zero pixels to whole blocks
        # (B, nH, nW, P, C_in): block (I, J)'s pixels in [a, b] order, a block's side by side
        blocks = padded.view(B, -1, nH, K, nW, K).permute(0, 2, 4, 3, 5, 1).flatten(3, 4)
        # letters: n I J blocks, h head, d channel, i input channel, p a pixel's position
        # in its block (the query), a a key's position
        q = torch.einsum("nIJpi,hdi->nIJhpd", blocks, self.query.weight.view(h, d, -1))
        k = torch.einsum("nIJai,hdi->nIJhad", blocks, self.key.weight.view(h, d, -1))
        v = torch.einsum("nIJai,ahdi->nIJhad", blocks, self._block_value_matrices())
        logits = torch.einsum("nIJhad,nIJhpd->nIJhap", k, q)       # (B, nH, nW, h, P, P)
        content = logits if keep else None
        if self.padding == "mask" and (H % K or W % K):             # padding to leave out
            corners = block_validity(K, H, W, x.device)[:, :, ::K, ::K]     # (K, K, nH, nW)
            inside = corners.flatten(0, 1).permute(1, 2, 0)         # (nH, nW, P)
            logits = logits.masked_fill(~inside[:, :, None, :, None], float("-inf"))
        weights = logits.softmax(dim=-2)                            # over the keys a
        out = torch.einsum("nIJhap,nIJhad->nIJhdp", weights, v)     # (B, nH, nW, h, d, P)
        output = _to_map(out, H, W).reshape(B, h * d, H, W)
        if not keep:
            return AttentionTensors(output)
        return AttentionTensors(
            output, x, _to_map(q.transpose(-1, -2), H, W), _to_map(k.transpose(-1, -2), H, W),
            self.value(x).view(B, m, h, d, H, W),                   # the m value maps W_V^m x
            _to_map(content, H, W).view(B, h, K, K, H, W), None, None,
            block_validity(K, H, W, x.device), _to_map(weights, H, W).view(B, h, K, K, H, W),
            self.value_mixture())

    def _block_value_matrices(self) -> Tensor:
        """sum_m p(a,b,m) W_V^m for every block position: (P, h, d, C_in)."""
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
    cells = torch.arange(K, device=device)[:, None]                             # (K, 1)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_ok = rows - rows % K + cells < height                                   # (K, H)
    col_ok = cols - cols % K + cells < width                                    # (K, W)
    return row_ok[:, None, :, None] & col_ok[None, :, None, :]


def _to_map(t: Tensor, H: int, W: int) -> Tensor:
    """(B, nH, nW, h, X, P), one entry per pixel of each block -> (B, h, X, H, W) on the
    map, padding cropped."""
    B, nH, nW, h, X, P = t.shape
    K = round(P ** 0.5)
    t = t.reshape(B, nH, nW, h, X, K, K).permute(0, 3, 4, 1, 5, 2, 6)  # (B, h, X, nH, K, nW, K)
    return t.reshape(B, h, X, nH * K, nW * K)[..., :H, :W]


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
