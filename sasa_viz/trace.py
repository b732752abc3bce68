"""Record every attention layer of a model in one forward pass.

    t = sasa_viz.trace(model, images)       # images: (B, 3, H, W) in [0, 1]
    t.logits                                # (B, classes), what model(images) returns
    layer = t.layers["stages.0.0.spatial"]  # a LayerTrace, for the first image
    px = layer.pixel(5, 7)                  # everything about one feature pixel

Window cell [a, b] of pixel (i, j) is the feature pixel (top + a, left + b), where
(top, left) = layer.window_origin(i, j) is where the layer puts that pixel's window:
(i - K//2, j - K//2) for a sliding window, the corner (i - i % K, j - j % K) of the
pixel's block for the block stem. `cell` is the pixel's own cell, `offsets` every
cell's (dy, dx) from the pixel.

All tensors are the ones the layers computed in that pass (copied to the CPU), not a
re-computation. Recording is per call (see `recording`), so tracing is re-entrant.
"""
import copy
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import AttentionTensors, LocalSelfAttention
from .recording import recording


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


@dataclass(frozen=True)
class Counterfactual:
    """Marks a PixelTrace whose numbers the model did not compute (see
    `explain.without_position`), and keeps the ones it did beside them."""
    name: str                   # for file and array names, e.g. "without_position"
    description: str            # for people, e.g. "position term dropped: softmax(q·k) only"
    recorded: "PixelTrace"      # the pixel as the model computed it


@dataclass
class PixelTrace:
    """One feature pixel (row, col) of one layer. Window index [a, b] is the neighbour
    (origin[0] + a, origin[1] + b); heads first in every array. Recorded numbers, unless
    `counterfactual` says otherwise."""
    row: int
    col: int
    origin: Tuple[int, int]     # feature-map (row, col) of window cell [0, 0]
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
    counterfactual: Optional[Counterfactual] = None   # None: what the model computed

    @property
    def logits(self) -> Tensor:
        """(heads, K, K): content + row + column, before masking."""
        return self.logits_content + self.logits_row + self.logits_col

    @property
    def recorded(self) -> "PixelTrace":
        """The pixel as the model computed it: itself, or the one its counterfactual keeps."""
        return self if self.counterfactual is None else self.counterfactual.recorded

    @property
    def cell(self) -> Tuple[int, int]:
        """The pixel's own window cell [a, b]: the centre [K//2, K//2] of a sliding
        window, the pixel's position inside its block for block windows."""
        return self.row - self.origin[0], self.col - self.origin[1]

    @property
    def offsets(self) -> Tensor:
        """(2, K, K) int64: (dy, dx) of window cell [a, b] from the pixel."""
        return cell_offsets(self.weights.shape[-1], *self.cell)


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
    stride: int                 # input-image pixels per feature pixel of this layer's map,
                                # a property of the model (see `layer_strides`)
    image_size: Tuple[int, int]
    window: str                 # "sliding" (around each pixel) or "blocks" (the stem's)
    origins: Tensor             # (2, H, W) int64: every pixel's window_origin (top, left)
    value_mixture: Optional[Tensor] = None  # (K, K, m) p(a, b, m), the stem only

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W) of the feature map the attention runs on."""
        return tuple(self.q.shape[-2:])

    @property
    def logits(self) -> Tensor:
        """(heads, K, K, H, W): content + row + column, before masking."""
        return self.logits_content + self.logits_row + self.logits_col

    def window_origin(self, row: int, col: int) -> Tuple[int, int]:
        """Feature-map (row, col) of window cell [0, 0] of pixel (row, col)."""
        return int(self.origins[0, row, col]), int(self.origins[1, row, col])

    @property
    def cells(self) -> Tensor:
        """(2, H, W) int64: every pixel's own window cell (see PixelTrace.cell)."""
        return own_cells(self.origins)

    @property
    def offsets(self) -> Tensor:
        """(2, K, K, H, W) int64: (dy, dx) of window cell [a, b] from each pixel."""
        return cell_offsets(self.kernel_size, *self.cells)

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
        top, left = self.window_origin(row, col)
        return PixelTrace(
            row=row, col=col, origin=(top, left),
            q=self.q[:, :, row, col],
            keys=_window(self.k, top, left, K),
            values=self._values_at(top, left),
            logits_content=self.logits_content[..., row, col],
            logits_row=self.logits_row[..., row, col],
            logits_col=self.logits_col[..., row, col],
            valid=self.valid[..., row, col],
            weights=self.weights[..., row, col],
            output=self.output[:, row, col],
            window=self._box(top, left, top + K, left + K),
            centre=self._box(row, col, row + 1, col + 1),
            padding=self.padding, scale=self.scale,
        )

    def _values_at(self, top: int, left: int) -> Tensor:
        """(heads, head_dim, K, K): what each cell of the window starting at (top, left)
        contributes, v_ab (mixed by window cell for the stem)."""
        window = _window(self.v, top, left, self.kernel_size)
        if self.value_mixture is None:
            return window
        return torch.einsum("abm,mhdab->hdab", self.value_mixture, window)

    def _box(self, top: int, left: int, bottom: int, right: int) -> Tuple[int, int, int, int]:
        """Feature-map rows/columns -> input-image pixels, clipped to the image."""
        s, (height, width) = self.stride, self.image_size
        return (max(top * s, 0), max(left * s, 0), min(bottom * s, height), min(right * s, width))


def window_origins(layer: LocalSelfAttention, height: int, width: int) -> Tensor:
    """(2, H, W) int64: layer.window_origin of every pixel of an H x W map."""
    rows, cols = _pixel_grid(height, width)
    return torch.stack(layer.window_origin(rows, cols))


def own_cells(origins: Tensor) -> Tensor:
    """(2, H, W) window origins -> (2, H, W) the cell [a, b] each pixel is in its window."""
    return torch.stack(_pixel_grid(*origins.shape[1:])) - origins


def _pixel_grid(height: int, width: int) -> Tuple[Tensor, Tensor]:
    """Two (H, W) int64 tensors: every pixel's row and column."""
    return torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")


def _window(t: Tensor, top: int, left: int, K: int) -> Tensor:
    """(..., H, W) -> (..., K, K): rows top..top+K-1, columns left..left+K-1, 0 outside."""
    return F.pad(t, (K, K, K, K))[..., top + K:top + 2 * K, left + K:left + 2 * K]


@dataclass
class Trace:
    logits: Tensor                          # (B, classes), the model's output
    layers: "OrderedDict[str, LayerTrace]"  # every attention layer, in forward order


def trace(model: nn.Module, x: Tensor) -> Trace:
    """Run `model` on `x` once (no gradients) and record every attention layer.

    The model runs exactly as it would without tracing: Trace.logits == model(x).
    Call model.eval() first for inference behaviour (batch norm statistics). `x` is
    moved to the model's device (CUDA or CPU); everything recorded comes back on the CPU.
    Every attention layer the pass runs must be a submodule of `model`.
    """
    x = x.to(next(model.parameters()).device)
    names: Dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
    strides = layer_strides(model)
    layers: "OrderedDict[str, LayerTrace]" = OrderedDict()

    def record(layer: LocalSelfAttention, tensors: AttentionTensors) -> None:
        name = names[layer]
        layers[name] = _layer_trace(name, layer, tensors, tuple(x.shape[-2:]), strides[name])

    with torch.no_grad(), recording(record):
        logits = model(x)
    return Trace(logits=logits.detach().cpu(), layers=layers)


# A probe side every stride divides: 2 ** 7 pixels (the ImageNet models' largest stride
# is 32). On the CPU: the meta device would do without arithmetic, but its first use in
# a process costs about two seconds of set-up, while a 128 x 128 pass of the convolutions
# alone takes milliseconds.
PROBE_SIZE = 2 ** 7


def layer_strides(model: nn.Module) -> Dict[str, int]:
    """{attention layer name: input-image pixels per feature pixel of its map}.

    The product of the strides and pools before each layer: a property of the model, not
    of an image (rounding image size / map size is wrong for sides the strides do not
    divide: a 21-pixel side is 3 feature pixels at stride 8, and 21 / 3 = 7). Measured by
    running a copy of the model with uninitialised weights on the CPU (only shapes
    matter) on a PROBE_SIZE x PROBE_SIZE input; in the copy each attention layer only
    notes its map's height and returns an empty output of the right shape. Exact for
    downsampling by powers of two (every model here) up to PROBE_SIZE.
    """
    probe = _shape_copy(model)
    heights: Dict[str, int] = {}
    for name, module in probe.named_modules():
        if isinstance(module, LocalSelfAttention):
            module.forward = _shape_only(module, name, heights)
    with torch.no_grad():
        probe(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
    return {name: PROBE_SIZE // height for name, height in heights.items()}


def _shape_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters and buffers are uninitialised CPU tensors of the
    same shapes: nothing shared with the model other sessions use, and none of the
    forward hooks someone put on it (they are not for this probe)."""
    memo = {id(t): torch.empty_like(t, device="cpu")
            for t in chain(model.parameters(), model.buffers())}
    probe = copy.deepcopy(model, memo)
    for module in probe.modules():
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
    return probe


def _shape_only(layer: LocalSelfAttention, name: str, heights: Dict[str, int]):
    """A forward for `layer` that notes its map's height in `heights` and returns an
    empty output of the shape the real layer returns."""
    def forward(x: Tensor) -> Tensor:
        heights[name] = x.shape[-2]
        return layer.pool(x.new_empty(x.shape[0], layer.out_channels, *x.shape[-2:]))
    return forward


def _layer_trace(name: str, layer: LocalSelfAttention, t: AttentionTensors,
                 image_size: Tuple[int, int], stride: int) -> LayerTrace:
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
        stride=stride, image_size=image_size,
        window=layer.window, origins=window_origins(layer, H, W),
        value_mixture=None if t.value_mixture is None else t.value_mixture.detach().cpu(),
    )


def _value_weight(layer: LocalSelfAttention) -> Tensor:
    """W_V of the layer's 1x1 value conv as a matrix: (C_out, C_in), or (m, C_out, C_in)."""
    weight = layer.value.weight.detach().cpu().flatten(1)                  # (m * C_out, C_in)
    if layer.value_mixture() is None:
        return weight
    return weight.view(-1, layer.out_channels, layer.in_channels)
