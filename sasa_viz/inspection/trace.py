"""Record every attention layer of a model in one forward pass.

    t = sasa_viz.inspection.trace(model, images)       # images: (B, 3, H, W) in [0, 1]
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

Made for a notebook: every trace prints as a few lines (shapes and the key numbers,
never whole tensors), a layer name that is not there lists the ones that are, and
`trace` refuses an input the model cannot mean (wrong shape, channels, dtype or range)
with a message that says how to fix it (see `trace`).
"""
import copy
import operator
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.layer import AttentionTensors, LocalSelfAttention
from sasa_viz.attention.recording import recording
from sasa_viz.attention.window import cell_offsets, window_at
from sasa_viz.models.catalogue import Normalize, attention_layers


@dataclass(frozen=True)
class Counterfactual:
    """Marks a PixelTrace whose numbers the model did not compute (see
    `explain.without_position`), and keeps the ones it did beside them."""
    name: str                   # for file and array names, e.g. "without_position"
    description: str            # for people, e.g. "position term dropped: softmax(q·k) only"
    recorded: "PixelTrace"      # the pixel as the model computed it


@dataclass(repr=False)
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

    def __repr__(self) -> str:
        heads, K, _ = self.weights.shape
        head, a, b = _unravel(self.weights.argmax(), self.weights.shape)
        dy, dx = self.offsets[:, a, b].tolist()
        inside = int(self.valid.sum())
        lines = [
            f"PixelTrace at feature pixel ({self.row}, {self.col}): {heads} heads, "
            f"{K}x{K} window from ({self.origin[0]}, {self.origin[1]}), {inside} of {K * K} "
            f"neighbours inside the map (padding {self.padding!r})",
            f"  in the image: the pixel {_box_text(self.centre)}, "
            f"its window {_box_text(self.window)}",
            f"  largest weight {float(self.weights.max()):.3g}: head {head}, cell [{a}, {b}], "
            f"offset (dy, dx) = ({dy}, {dx}); logits {_range_text(self.logits)}",
            f"  output {tuple(self.output.shape)}, {_range_text(self.output)}",
        ]
        if self.counterfactual is not None:
            lines.append(f"  counterfactual, not what the model computed: "
                         f"{self.counterfactual.description}")
        return "\n".join(lines)


@dataclass(repr=False)
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

    def image_pixel(self, row: int, col: int) -> Tuple[int, int]:
        """The input-image pixel at the centre of feature pixel (row, col): the one
        `feature_pixel` maps back to (row, col)."""
        top, left, bottom, right = self.box(row, col, row + 1, col + 1)
        return (top + bottom - 1) // 2, (left + right - 1) // 2

    def pixel(self, row: int, col: int) -> PixelTrace:
        """Everything about feature pixel (row, col) of this layer's map (not an image
        pixel: `feature_pixel(y, x)` finds the one under image pixel (y, x)).

        Rows and columns are whole numbers inside the map (negative ones do not count
        from the end); anything else is a TypeError or ValueError naming the map's size.
        """
        row, col = self._checked_pixel(row, col)
        K = self.kernel_size
        top, left = self.window_origin(row, col)
        return PixelTrace(
            row=row, col=col, origin=(top, left),
            q=self.q[:, :, row, col],
            keys=window_at(self.k, top, left, K),
            values=self._values_at(top, left),
            logits_content=self.logits_content[..., row, col],
            logits_row=self.logits_row[..., row, col],
            logits_col=self.logits_col[..., row, col],
            valid=self.valid[..., row, col],
            weights=self.weights[..., row, col],
            output=self.output[:, row, col],
            window=self.box(top, left, top + K, left + K),
            centre=self.box(row, col, row + 1, col + 1),
            padding=self.padding, scale=self.scale,
        )

    def _checked_pixel(self, row, col) -> Tuple[int, int]:
        """(row, col) as ints, or an error that says where the map's pixels are."""
        H, W = self.size
        where = (f"this layer's map is {H}x{W} (rows 0..{H - 1}, columns 0..{W - 1}; "
                 f"feature_pixel(y, x) gives the one under image pixel (y, x))")
        checked = []
        for label, value in (("row", row), ("column", col)):
            try:
                checked.append(operator.index(value))
            except TypeError:
                raise TypeError(f"the pixel's {label} must be a whole number, got "
                                f"{value!r}; {where}.") from None
        row, col = checked
        if not (0 <= row < H and 0 <= col < W):
            raise ValueError(f"pixel ({row}, {col}) is outside the map; {where}.")
        return row, col

    def __repr__(self) -> str:
        head, *_, i, j = _unravel(self.weights.argmax(), self.weights.shape)
        return "\n".join([
            f"LayerTrace {self.name!r}: {_layer_line(self)}",
            f"  {self.input.shape[0]} -> {self.output.shape[0]} channels, "
            f"{self.heads} heads of {self.output.shape[0] // self.heads}, padding "
            f"{self.padding!r}, position {self.position!r}, logit scale {self.scale:.3g}",
            f"  weights {tuple(self.weights.shape)}: largest {float(self.weights.max()):.3g} "
            f"(head {head} at pixel ({i}, {j})); .pixel(row, col) for one pixel",
        ])

    def _values_at(self, top: int, left: int) -> Tensor:
        """(heads, head_dim, K, K): what each cell of the window starting at (top, left)
        contributes, v_ab (mixed by window cell for the stem)."""
        window = window_at(self.v, top, left, self.kernel_size)
        if self.value_mixture is None:
            return window
        return torch.einsum("abm,mhdab->hdab", self.value_mixture, window)

    def box(self, top: int, left: int, bottom: int, right: int) -> Tuple[int, int, int, int]:
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


class UnknownLayer(KeyError):
    """A layer name a trace does not have; the message lists the names it has."""

    def __str__(self) -> str:                     # KeyError would print it in quotes
        return self.args[0]


class LayerTraces(OrderedDict):
    """Layer name -> LayerTrace, in forward order: a dict whose missing names raise
    UnknownLayer (a KeyError) listing the names there are."""

    def __missing__(self, name):
        raise UnknownLayer(f"no attention layer {name!r} in this trace; its layers are "
                           f"{', '.join(map(repr, self))}.")

    def __repr__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{name:<{width}}  {_layer_line(layer)}" for name, layer in self.items())


@dataclass(repr=False)
class Trace:
    """What `trace` recorded: the model's output and every attention layer."""
    logits: Tensor                          # (B, classes), the model's output
    layers: LayerTraces                     # every attention layer, in forward order
    model: str                              # the model's class name, e.g. "ResNet"
    input_shape: Tuple[int, ...]            # (B, C, H, W) of the traced input

    def __repr__(self) -> str:
        header = (f"Trace of {self.model} on a {tuple(self.input_shape)} input: logits "
                  f"{tuple(self.logits.shape)}, {_count(len(self.layers), 'attention layer')} "
                  f"(recorded for the first image):")
        return "\n".join([header, *("  " + line for line in repr(self.layers).splitlines())])


def trace(model: nn.Module, x: Tensor) -> Trace:
    """Run `model` on `x` once (no gradients) and record every attention layer.

    The model runs exactly as it would without tracing: Trace.logits == model(x).
    Call model.eval() first for inference behaviour (batch norm statistics). `x` is
    moved to the model's device (CUDA or CPU) and float dtype; everything recorded comes
    back on the CPU. Every attention layer the pass runs must be a submodule of `model`;
    a layer is named by its module name, the model itself by its class name
    ("SelfAttention2d").

    `x` is a batch (B, C, H, W) of finite floats; a model that takes images
    (`takes_images`: every model of `sasa_viz.models`) needs RGB in [0, 1], as
    `images.to_tensor` makes it. Anything else is refused with a ValueError (TypeError
    for a non-tensor) that says how to fix it: a single image is not turned into a batch
    of one on its own, since (3, H, W) could as well be three greyscale images.

        layer = SelfAttention2d(3, 8, kernel_size=3, heads=2)
        t = trace(layer, torch.rand(1, 3, 6, 6))
        t.layers["SelfAttention2d"].pixel(2, 3)         # prints as a few lines
        trace(create("sasa-cifar10"), torch.rand(1, 32, 32, 3))   # ValueError: ...
    """
    x = _checked_input(model, x)
    names = traced_names(model)
    strides = known_strides(model, channels=x.shape[1])
    layers = LayerTraces()

    def record(layer: LocalSelfAttention, tensors: AttentionTensors) -> None:
        name = names[layer]
        layers[name] = _layer_trace(name, layer, tensors, tuple(x.shape[-2:]), strides[name])

    with torch.no_grad(), recording(record):
        logits = model(x)
    return Trace(logits=logits.detach().cpu(), layers=layers, model=type(model).__name__,
                 input_shape=tuple(x.shape))


def traced_names(model: nn.Module) -> Dict[nn.Module, str]:
    """{attention layer of `model`: its name in a trace}: its module name
    (`models.attention_layers`: "stages.0.0.spatial"), or for a bare layer, whose module
    name is "", its class name ("SelfAttention2d")."""
    return {module: name or type(module).__name__
            for name, module in attention_layers(model).items()}


# ---------------------------------------------------------------- checking the input

def takes_images(model: nn.Module) -> bool:
    """Whether `model` takes RGB images in [0, 1]: it normalises its input itself (it has a
    `models.Normalize`), as every model of `sasa_viz.models` does. Anything else, e.g. a
    bare attention layer, takes feature maps of any channels and range."""
    return any(isinstance(module, Normalize) for module in model.modules())


def _checked_input(model: nn.Module, x: Tensor) -> Tensor:
    """`x` on the model's device and in its float dtype, once it is a batch of finite
    floats (B, C, H, W) and, for a model that `takes_images`, RGB in [0, 1]; otherwise
    an error that says how to fix it."""
    images = takes_images(model)
    wanted = (f"{type(model).__name__} takes RGB images (B, 3, H, W) in [0, 1]" if images
              else "trace takes a batch of feature maps (B, C, H, W)")
    if not isinstance(x, Tensor):
        raise TypeError(f"{wanted}, as a torch.Tensor; got {type(x).__name__} "
                        f"(torch.from_numpy(array) makes a tensor of a numpy array, "
                        f"images.to_tensor(image) one of a PIL image).")
    shape = tuple(x.shape)
    if x.dim() != 4:
        raise ValueError(f"{wanted}; got a {x.dim()}-D tensor of shape {shape}"
                         f"{_batch_hint(shape, images)}.")
    if images and shape[1] != 3:
        raise ValueError(f"{wanted}; got shape {shape}{_channel_hint(shape)}.")
    if not x.is_floating_point():
        fix = "x.float() / 255 for 8-bit pixels (0..255)" if images else "x.float()"
        raise ValueError(f"{wanted}, as floats; got {x.dtype}: use {fix}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{wanted}; x holds NaN or infinite values.")
    if images:
        _check_range(float(x.min()), float(x.max()), wanted)
    parameter = next(model.parameters())
    return x.to(device=parameter.device, dtype=parameter.dtype)


def _batch_hint(shape: Tuple[int, ...], images: bool) -> str:
    """How to make a batch (B, C, H, W) of a tensor with too few dimensions."""
    if len(shape) == 2:
        return ("; for one greyscale (H, W) image use x.expand(1, 3, -1, -1)" if images
                else "; for one (H, W) map use x[None, None]")
    if len(shape) != 3:
        return ""
    if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return "; for one (H, W, C) image use x.permute(2, 0, 1).unsqueeze(0)"
    return "; for one (C, H, W) image use x.unsqueeze(0)"


def _channel_hint(shape: Tuple[int, ...]) -> str:
    """How to make RGB (B, 3, H, W) of a 4-D tensor with another number of channels."""
    if shape[-1] == 3:
        return "; for channels-last (B, H, W, 3) use x.permute(0, 3, 1, 2)"
    if shape[1] == 1:
        return "; for greyscale use x.expand(-1, 3, -1, -1)"
    if shape[1] == 4:
        return "; for RGBA use x[:, :3], the colours"
    return ""


def _check_range(low: float, high: float, wanted: str) -> None:
    """ValueError unless low..high lies in [0, 1], with the likely cause and its fix."""
    if 0 <= low and high <= 1:
        return
    if low >= 0 and high > 1.5:
        fix = "8-bit pixels (0..255) need x / 255"
    elif low < -0.5:
        fix = ("negative values suggest an image normalised already: the model normalises "
               "its input itself, so pass the image in [0, 1]")
    else:
        fix = "clamp a small overshoot (from resampling, say) with x.clamp(0, 1)"
    raise ValueError(f"{wanted}; x runs from {low:.4g} to {high:.4g}: {fix}.")


# ------------------------------------------------------------------- printing traces

def _layer_line(layer: LayerTrace) -> str:
    """One line about a layer: its map, stride, window and heads."""
    H, W = layer.size
    K = layer.kernel_size
    return (f"{H}x{W} map (stride {layer.stride} in a {layer.image_size[0]}x"
            f"{layer.image_size[1]} image), {K}x{K} {layer.window} window, "
            f"{layer.heads} heads")


def _count(n: int, thing: str) -> str:
    """"1 attention layer", "6 attention layers"."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _box_text(box: Tuple[int, int, int, int]) -> str:
    """(top, left, bottom, right), end-exclusive -> "rows 2..4, columns 0..1"."""
    top, left, bottom, right = box
    return f"rows {top}..{bottom - 1}, columns {left}..{right - 1}"


def _range_text(t: Tensor) -> str:
    """"from -1.2 to 3.4": the smallest and largest value."""
    return f"from {float(t.min()):.3g} to {float(t.max()):.3g}"


def _unravel(index: Tensor, shape) -> Tuple[int, ...]:
    """A flat index into a tensor of `shape` -> its index along every dimension."""
    return tuple(int(i) for i in torch.unravel_index(index, tuple(shape)))


# A probe side every stride divides: 2 ** 7 pixels (the ImageNet models' largest stride
# is 32). On the CPU: the meta device would do without arithmetic, but its first use in
# a process costs about two seconds of set-up, while a 128 x 128 pass of the convolutions
# alone takes milliseconds.
PROBE_SIZE = 2 ** 7


def layer_strides(model: nn.Module, channels: int = 3) -> Dict[str, int]:
    """{attention layer name: input-image pixels per feature pixel of its map}.

    The product of the strides and pools before each layer: a property of the model, not
    of an image (rounding image size / map size is wrong for sides the strides do not
    divide: a 21-pixel side is 3 feature pixels at stride 8, and 21 / 3 = 7). Measured by
    running a copy of the model with uninitialised weights on the CPU (only shapes
    matter) on a PROBE_SIZE x PROBE_SIZE input of `channels` channels (the model's:
    3 for images); in the copy each attention layer only notes its map's height and
    returns an empty output of the right shape. Exact for downsampling by powers of two
    (every model here) up to PROBE_SIZE. Layers are named as in a trace
    (`traced_names`).
    """
    probe = shape_copy(model)
    heights: Dict[str, int] = {}
    for module, name in traced_names(probe).items():
        module.forward = shape_only(module, name, heights)
    dtype = next(probe.parameters()).dtype
    with torch.no_grad():
        probe(torch.zeros(1, channels, PROBE_SIZE, PROBE_SIZE, dtype=dtype))
    return {name: PROBE_SIZE // height for name, height in heights.items()}


_STRIDES: "weakref.WeakKeyDictionary[nn.Module, Dict[tuple, Dict[str, int]]]" = \
    weakref.WeakKeyDictionary()
_STRIDES_LOCK = threading.Lock()


def known_strides(model: nn.Module, channels: int = 3) -> Dict[str, int]:
    """`layer_strides`, measured once per model: the probe copies the whole model, which
    took half of a trace's time at 32x32 (about 55 of 100 ms for sasa-cifar10). Kept as
    long as the model lives, keyed by its modules' names and classes and the channels, so
    a model whose layers are swapped is measured again."""
    key = (channels, tuple((name, type(module)) for name, module in model.named_modules()))
    with _STRIDES_LOCK:
        strides = _STRIDES.get(model, {}).get(key)
    if strides is None:
        strides = layer_strides(model, channels)
        with _STRIDES_LOCK:
            _STRIDES.setdefault(model, {})[key] = strides
    return dict(strides)


def shape_copy(model: nn.Module) -> nn.Module:
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


def shape_only(layer: LocalSelfAttention, name: str, heights: Dict[str, int]):
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
        scale=layer.logit_scale,
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
