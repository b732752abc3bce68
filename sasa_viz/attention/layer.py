"""Local self-attention (Ramachandran et al., 2019), the paper's equation in its notation:

    y_ij = sum_{(a,b) in N_k(i,j)} softmax_ab( q_ij . k_ab + q_ij . r_{a-i,b-j} ) v_ab

with q = W_Q x, k = W_K x, v = W_V x (1x1 projections, no bias), split into heads, one
softmax per head over the k x k block. The relative embedding r_{a-i,b-j} is a row part
and a column part, so q . r = q_row . r_row(a-i) + q_col . r_col(b-j).

The fast path never unfolds keys or values k^2 times (see `local_ops`): the largest
tensors it makes are the logits and weights, (B, heads, k, k, H, W), heads/channels the
size of an unfold. `sasa_viz.attention.reference` holds the plain unfold version it is tested
against.

Notation in shape comments: B batch, h heads, d head_dim, K kernel_size, H x W the
feature map, C channels.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sasa_viz.attention.local_ops import window_attention
from sasa_viz.attention.recording import active_recorder
from sasa_viz.attention.window import check_padding, neighbour_validity, window_padding

POSITIONS = ("relative", "absolute", "none")


@dataclass
class AttentionTensors:
    """What one forward pass computed, for the whole batch. Only `output` unless the
    layer was asked to record everything (`attend(x, record=True)`, as it is while
    `recording`). Window cell [a, b] of pixel (i, j) is the pixel (top + a, left + b),
    (top, left) = layer.window_origin(i, j)."""
    output: Tensor                           # (B, C, H, W), before pooling
    input: Optional[Tensor] = None           # (B, C_in, H, W), the layer's x
    q: Optional[Tensor] = None               # (B, h, d, H, W)
    k: Optional[Tensor] = None               # (B, h, d, H, W)
    v: Optional[Tensor] = None               # (B, h, d, H, W); the stem: (B, m, h, d, H, W)
    logits_content: Optional[Tensor] = None  # (B, h, K, K, H, W)  q_ij . k_ab
    logits_row: Optional[Tensor] = None      # (B, h, K, H, W)  q_row . r_row; None without
    logits_col: Optional[Tensor] = None      # (B, h, K, H, W)  q_col . r_col  position
    valid: Optional[Tensor] = None           # (K, K, H, W) bool, neighbour inside the map
    weights: Optional[Tensor] = None         # (B, h, K, K, H, W), the softmax (0 if masked)
    value_mixture: Optional[Tensor] = None   # (K, K, m) p(a,b,m), the stem only


class LocalSelfAttention(nn.Module):
    """The shared machinery of `SelfAttention2d` and the attention stem.

    Use `SelfAttention2d`; this base also accepts an even kernel for the stem.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, heads: int,
                 padding: str, position: str, stride: int, scaled: bool, max_size: int):
        super().__init__()
        _check_arguments(in_channels, out_channels, kernel_size, heads, padding, position,
                         stride, max_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.heads = kernel_size, heads
        self.padding, self.position, self.stride = padding, position, stride
        self.scaled, self.max_size = scaled, max_size
        self.head_dim = out_channels // heads
        self.row_dim = self.head_dim // 2   # a head's first row_dim query channels meet r_row

        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        col_dim = self.head_dim - self.row_dim
        table = {"relative": kernel_size, "absolute": max_size}.get(position)
        if table is None:
            self.rel_row = self.rel_col = None
        else:   # relative: indexed by offset + K//2; absolute: by the neighbour's row/column
            std = self.head_dim ** -0.5
            self.rel_row = nn.Parameter(torch.randn(heads, self.row_dim, table) * std)
            self.rel_col = nn.Parameter(torch.randn(heads, col_dim, table) * std)
        # ceil_mode: an odd side keeps its last row/column, as a strided conv would
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride == 2 else nn.Identity()

    window = "sliding"      # a K x K window around every pixel; the stem's: "blocks"

    @property
    def logit_scale(self) -> float:
        """What the logits are multiplied by before the softmax: head_dim ** -0.5 for a
        layer built with scaled=True, 1 (the paper's) otherwise."""
        return self.head_dim ** -0.5 if self.scaled else 1.0

    def window_origin(self, row, col):
        """Where pixel (row, col)'s window starts: the feature-map (row, column) of its
        window cell [0, 0] (ints, or tensors of rows and columns). A sliding window starts
        K//2 before the pixel, so the pixel is cell [K//2, K//2]."""
        before, _ = window_padding(self.kernel_size)
        return row - before, col - before

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"heads={self.heads}, padding={self.padding!r}, position={self.position!r}, "
                f"stride={self.stride}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        recorder = active_recorder()
        tensors = self.attend(x, record=recorder is not None)
        if recorder is not None:
            recorder(self, tensors)
        return self.pool(tensors.output)

    def attend(self, x: Tensor, record: bool = False) -> AttentionTensors:
        """The attention of every pixel, by the fused fast path where the layer allows it
        (`local_ops.window_attention`). With record=False only `output` is filled in."""
        B, _, H, W = x.shape
        K, h, d = self.kernel_size, self.heads, self.head_dim
        q = self.query(x).reshape(B, h, d, H, W)   # a copy only for channels-last input
        k = self.key(x).reshape(B, h, d, H, W)
        v = self.value(x).reshape(B, h, d, H, W)
        row, col = self._position_logits(q, H, W)                 # (B, h, K, H, W) or None
        scale = self.logit_scale
        result = window_attention(q, k, v, row, col, K, self.padding, scale, record=record)
        output, weights, content = result if record else (result, None, None)
        output = output.reshape(B, h * d, H, W)
        if not record:
            return AttentionTensors(output)
        valid = neighbour_validity(K, H, W, device=x.device)      # (K, K, H, W)
        return AttentionTensors(output, x, q, k, v, content, row, col, valid, weights)

    # --- the pieces of the equation -------------------------------------------------

    def _position_logits(self, q: Tensor, H: int, W: int):
        """q_row . r_row and q_col . r_col: (B, h, K, H, W) each, or (None, None)."""
        if self.position == "none":
            return None, None
        q_row, q_col = q[:, :, :self.row_dim], q[:, :, self.row_dim:]
        if self.position == "relative":                       # r depends on the offset only
            row = torch.einsum("nhcij,hca->nhaij", q_row, self.rel_row)
            col = torch.einsum("nhcij,hcb->nhbij", q_col, self.rel_col)
        else:                                                 # r depends on where the key is
            row = torch.einsum("nhcij,hcia->nhaij", q_row, self._absolute_table(self.rel_row, H))
            col = torch.einsum("nhcij,hcjb->nhbij", q_col, self._absolute_table(self.rel_col, W))
        return row, col

    def _absolute_table(self, embedding: Tensor, n: int) -> Tensor:
        """(h, c, n, K): the embedding of neighbour n + a - K//2, zero outside the map."""
        padded = F.pad(embedding[..., :n], window_padding(self.kernel_size))
        return padded.unfold(-1, self.kernel_size, 1)

    def value_mixture(self) -> Optional[Tensor]:
        """p(a, b, m) for layers whose values depend on window position (the stem)."""
        return None

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects a 4-D tensor (batch, channels, "
                             f"height, width), got {shape}; add a batch dimension with "
                             f"x.unsqueeze(0) for a single image.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} was built for {self.in_channels} input "
                             f"channels but got {x.shape[1]}; build it with "
                             f"in_channels={x.shape[1]} or fix the input.")
        if self.position == "absolute" and max(x.shape[-2:]) > self.max_size:
            raise ValueError(f"absolute position embeddings cover {self.max_size} rows and "
                             f"columns, but the input is {tuple(x.shape[-2:])}; build the "
                             f"layer with a larger max_size or use position='relative'.")


class SelfAttention2d(LocalSelfAttention):
    """Stand-alone local self-attention, a drop-in for a k x k convolution.

    Args:
        in_channels, out_channels: d_in and d_out; out_channels must divide into `heads`.
        kernel_size: k, the odd side of the k x k memory block (paper default 7).
        heads: number of heads, each with its own softmax over the block (default 8).
        padding: "mask" (default) leaves out-of-image neighbours out of the softmax.
            "zeros" does what public re-implementations do: zero keys and values outside
            the image that still take part in the softmax with logit q . r, which pulls
            border outputs towards 0.
        position: "relative" (default) adds q . r_{a-i,b-j} with a row and a column
            embedding per head; "absolute" uses embeddings of the neighbour's own row and
            column (up to `max_size`); "none" keeps only the content term q . k.
        stride: 1, or 2 for a 2x2 average pool after the attention (as in the paper).
        scaled: divide the logits by sqrt(head_dim). The paper does not (default False).
        max_size: rows and columns the absolute embeddings cover (position="absolute").
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7,
                 heads: int = 8, padding: str = "mask", position: str = "relative",
                 stride: int = 1, scaled: bool = False, max_size: int = 64):
        if isinstance(kernel_size, int) and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the window is centred on its "
                             f"pixel, got {kernel_size}; use {kernel_size + 1} or "
                             f"{kernel_size - 1}.")
        super().__init__(in_channels, out_channels, kernel_size, heads, padding, position,
                         stride, scaled, max_size)


def _check_arguments(in_channels, out_channels, kernel_size, heads, padding, position,
                     stride, max_size) -> None:
    for name, value in [("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("heads", heads),
                        ("max_size", max_size)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if out_channels % heads:
        divisors = [n for n in range(1, out_channels + 1) if out_channels % n == 0]
        raise ValueError(f"heads={heads} does not divide out_channels={out_channels}; "
                         f"choose heads from {divisors}.")
    check_padding(padding)
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}.")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2 (2 = a 2x2 average pool after the "
                         f"attention), got {stride!r}.")
