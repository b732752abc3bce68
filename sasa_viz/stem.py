"""The spatially-aware attention stem of the paper's "full attention" models.

At the input, single pixels carry little content, so the stem makes the values depend on
where a neighbour sits inside the window: a mixture of m value matrices

    v_ab = ( sum_m p(a,b,m) W_V^m ) x_ab,    p(a,b,m) = softmax_m( (emb_row(a) + emb_col(b)) . nu_m )

with (a, b) the position inside the k x k window (k = 4 in the paper), p shared by all
heads. Batch norm, ReLU and a max pool follow, as in ResNet's stem.
"""
import torch
import torch.nn as nn
from torch import Tensor

from .attention import LocalSelfAttention
from .local_ops import local_sum


class SpatiallyAwareAttention(LocalSelfAttention):
    """Local self-attention whose values are a position-dependent mixture (see module doc)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, padding: str = "mask",
                 position: str = "relative"):
        if not isinstance(mixtures, int) or mixtures < 1:
            raise ValueError(f"mixtures must be a positive integer, got {mixtures!r}.")
        super().__init__(in_channels, out_channels, kernel_size, heads, padding, position,
                         stride=1, scaled=False, max_size=64)
        self.mixtures = mixtures
        self.value = nn.Conv2d(in_channels, out_channels * mixtures, 1, bias=False)  # W_V^1..m
        self.emb_row = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.emb_col = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.nu = nn.Parameter(torch.randn(mixtures, out_channels) * out_channels ** -0.5)

    def value_mixture(self) -> Tensor:
        """p(a, b, m): (K, K, m), sums to 1 over m."""
        emb = self.emb_row[:, None, :] + self.emb_col[None, :, :]  # (K, K, C)
        return (emb @ self.nu.T).softmax(dim=-1)                   # (K, K, m)

    def _values(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        return self.value(x).view(B, self.mixtures, self.heads, self.head_dim, H, W)

    def _weighted_sum(self, weights: Tensor, v: Tensor) -> Tensor:
        # sum_ab w_ab sum_m p(a,b,m) W_V^m x_ab = sum_m sum_ab (w_ab p(a,b,m)) (W_V^m x)_ab
        p = self.value_mixture()                                   # (K, K, m)
        return sum(local_sum(weights * p[:, :, m, None, None], v[:, m])
                   for m in range(self.mixtures))


class AttentionStem(nn.Module):
    """Spatially-aware attention, then batch norm, ReLU and a `pool` x `pool` max pool."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, pool: int = 4):
        super().__init__()
        self.attention = SpatiallyAwareAttention(in_channels, out_channels, kernel_size,
                                                 heads, mixtures)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()

    def value_mixture(self) -> Tensor:
        return self.attention.value_mixture()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.attention(x))))
