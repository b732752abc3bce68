"""Record every attention layer of a model in one forward pass.

    t = sasa_viz.trace(model, images)       # images: (B, 3, H, W) in [0, 1]
    t.logits                                # (B, classes), what model(images) returns
    layer = t.layers["stages.0.0.spatial"]  # a LayerTrace, for the first image
    px = layer.pixel(5, 7)                  # everything about one feature pixel

All tensors are the ones the layers computed in that pass (copied to the CPU), not a
re-computation. Recording is per call (see `recording`), so tracing is re-entrant.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .attention import AttentionTensors, LocalSelfAttention
from .local_ops import pad_for_windows, window_padding
from .recording import recording


@dataclass
class PixelTrace:
    """One feature pixel (row, col) of one layer. Window index [a, b] is the neighbour
    (row + a - K//2, col + b - K//2); heads first in every array."""
    row: int
    col: int
    q: Tensor                   # (heads, head_dim)
    keys: Tensor                # (heads, head_dim, K, K), 0 outside the map
    values: Tensor              # (heads, head_dim, K, K), the value each neighbour gives
    logits_content: Tensor      # (heads, K, K)  q . k
    logits_row: Tensor          # (heads, K, K)  q_row . r_row, constant along b
    logits_col: Tensor          # (heads, K, K)  q_col . r_col, constant along a
    valid: Tensor               # (K, K) bool
    weights: Tensor             # (heads, K, K), sums to 1 over valid neighbours
    output: Tensor              # (heads * head_dim,)
    window: Tuple[int, int, int, int]  # (top, left, bottom, right) in input-image pixels,
    centre: Tuple[int, int, int, int]  # end-exclusive, clipped to the image
    padding: str                # the layer's: "mask" or "zeros"
    scale: float                # what the logits are multiplied by before the softmax

    @property
    def logits(self) -> Tensor:
        """(heads, K, K): content + row + column, before masking."""
        return self.logits_content + self.logits_row + self.logits_col


@dataclass
class LayerTrace:
    """One attention layer, first image of the batch. See the module doc for indexing."""
    name: str
    input: Tensor               # (C_in, H, W), the layer's input x
    q: Tensor                   # (heads, head_dim, H, W)
    k: Tensor                   # (heads, head_dim, H, W)
    v: Tensor                   # (heads, head_dim, H, W); stem: (m, heads, head_dim, H, W)
    rel_row: Optional[Tensor]   # (heads, row_dim, K) by offset + K//2, None unless relative
    rel_col: Optional[Tensor]   # (heads, head_dim - row_dim, K)
    logits_content: Tensor      # (heads, K, K, H, W)
    logits_row: Tensor          # (heads, K, K, H, W), zeros without position embeddings
    logits_col: Tensor          # (heads, K, K, H, W)
    valid: Tensor               # (K, K, H, W) bool
    weights: Tensor             # (heads, K, K, H, W), 0 where masked
    output: Tensor              # (heads * head_dim, H, W), before any pooling
    value_weight: Tensor        # W_V: (C_out, C_in); stem: (m, C_out, C_in), one per mixture
    kernel_size: int
    heads: int
    padding: str
    position: str
    scale: float                # logit multiplier: 1, or head_dim ** -0.5 if scaled
    stride: int                 # input-image pixels per feature pixel (this layer's map)
    image_size: Tuple[int, int]
    value_mixture: Optional[Tensor] = None  # (K, K, m) p(a, b, m), the stem only

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W) of the feature map the attention runs on."""
        return tuple(self.q.shape[-2:])

    @property
    def logits(self) -> Tensor:
        """(heads, K, K, H, W): content + row + column, before masking."""
        return self.logits_content + self.logits_row + self.logits_col

    def feature_pixel(self, y: int, x: int) -> Tuple[int, int]:
        """The feature pixel covering input-image pixel (y, x), clipped to the map."""
        H, W = self.size
        return min(max(y // self.stride, 0), H - 1), min(max(x // self.stride, 0), W - 1)

    def pixel(self, row: int, col: int) -> PixelTrace:
        H, W = self.size
        if not (0 <= row < H and 0 <= col < W):
            raise ValueError(f"pixel ({row}, {col}) is outside this layer's {H}x{W} map; "
                             f"rows run 0..{H - 1} and columns 0..{W - 1}.")
        K = self.kernel_size
        before, after = window_padding(K)
        rows = slice(row, row + K)   # the window, in a map padded by pad_for_windows
        cols = slice(col, col + K)
        return PixelTrace(
            row=row, col=col,
            q=self.q[:, :, row, col],
            keys=pad_for_windows(self.k, K)[..., rows, cols],
            values=self._values_at(row, col),
            logits_content=self.logits_content[..., row, col],
            logits_row=self.logits_row[..., row, col],
            logits_col=self.logits_col[..., row, col],
            valid=self.valid[..., row, col],
            weights=self.weights[..., row, col],
            output=self.output[:, row, col],
            window=self._box(row - before, col - before, row + after + 1, col + after + 1),
            centre=self._box(row, col, row + 1, col + 1),
            padding=self.padding, scale=self.scale,
        )

    def _values_at(self, row: int, col: int) -> Tensor:
        """(heads, head_dim, K, K): what each neighbour contributes, v_ab (mixed for the stem)."""
        K = self.kernel_size
        window = pad_for_windows(self.v, K)[..., row:row + K, col:col + K]
        if self.value_mixture is None:
            return window
        return torch.einsum("abm,mhdab->hdab", self.value_mixture, window)

    def _box(self, top: int, left: int, bottom: int, right: int) -> Tuple[int, int, int, int]:
        """Feature-map rows/columns -> input-image pixels, clipped to the image."""
        s, (height, width) = self.stride, self.image_size
        return (max(top * s, 0), max(left * s, 0), min(bottom * s, height), min(right * s, width))


@dataclass
class Trace:
    logits: Tensor                          # (B, classes), the model's output
    layers: "OrderedDict[str, LayerTrace]"  # every attention layer, in forward order


def trace(model: nn.Module, x: Tensor) -> Trace:
    """Run `model` on `x` once (no gradients) and record every attention layer.

    The model runs exactly as it would without tracing: Trace.logits == model(x).
    Call model.eval() first for inference behaviour (batch norm statistics). `x` is
    moved to the model's device (CUDA or CPU); everything recorded comes back on the CPU.
    """
    x = x.to(next(model.parameters()).device)
    names: Dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
    layers: "OrderedDict[str, LayerTrace]" = OrderedDict()

    def record(layer: LocalSelfAttention, tensors: AttentionTensors) -> None:
        name = names.get(layer, type(layer).__name__)
        layers[name] = _layer_trace(name, layer, tensors, tuple(x.shape[-2:]))

    with torch.no_grad(), recording(record):
        logits = model(x)
    return Trace(logits=logits.detach().cpu(), layers=layers)


def _layer_trace(name: str, layer: LocalSelfAttention, t: AttentionTensors,
                 image_size: Tuple[int, int]) -> LayerTrace:
    h, K = layer.heads, layer.kernel_size
    H, W = t.q.shape[-2:]

    def first(tensor: Tensor) -> Tensor:                 # the first image, on the CPU
        return tensor[0].detach().cpu()

    if t.logits_row is None:
        row = col = torch.zeros(()).expand(h, K, K, H, W)
    else:
        row = first(t.logits_row)[:, :, None].expand(h, K, K, H, W)   # same for every b
        col = first(t.logits_col)[:, None, :].expand(h, K, K, H, W)   # same for every a
    relative = layer.position == "relative"
    return LayerTrace(
        name=name, input=first(t.input), q=first(t.q), k=first(t.k), v=first(t.v),
        rel_row=layer.rel_row.detach().cpu() if relative else None,
        rel_col=layer.rel_col.detach().cpu() if relative else None,
        logits_content=first(t.logits_content), logits_row=row, logits_col=col,
        valid=t.valid.cpu(), weights=first(t.weights), output=first(t.output),
        value_weight=_value_weight(layer),
        kernel_size=K, heads=h, padding=layer.padding, position=layer.position,
        scale=layer.head_dim ** -0.5 if layer.scaled else 1.0,
        stride=max(1, round(image_size[0] / H)), image_size=image_size,
        value_mixture=None if t.value_mixture is None else t.value_mixture.detach().cpu(),
    )


def _value_weight(layer: LocalSelfAttention) -> Tensor:
    """W_V of the layer's 1x1 value conv as a matrix: (C_out, C_in), or (m, C_out, C_in)."""
    weight = layer.value.weight.detach().cpu().flatten(1)                  # (m * C_out, C_in)
    if layer.value_mixture() is None:
        return weight
    return weight.view(-1, layer.out_channels, layer.in_channels)
