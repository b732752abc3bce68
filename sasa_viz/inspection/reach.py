"""Each pixel's reach across layers: which input-image pixels one feature pixel of one
layer draws on, three ways.

    r = reach(model, image, "stages.1.1.spatial", y, x)   # image (1, 3, H, W) in [0, 1]
    r.rollout            # (H, W) attention rollout, sums to 1 (None for a conv model)
    r.gradient           # (H, W) effective receptive field, sums to 1
    r.theoretical_box    # (top, left, bottom, right) it can possibly see, clipped
    describe(r)          # "At least half of this pixel's gradient comes from within ..."
    theoretical_sides(model)    # [("stages.0.0.spatial", 17), ...] for every layer

(y, x) is an image pixel; the layer's feature pixel under it (`feature_pixel`, the one
`LayerTrace.feature_pixel` gives) is the one asked about. A layer's output is its map
before any pooling: the attention's (or the twin's 3x3 conv's) own output.

1. Attention rollout (Abnar & Zuidema, 2020), adapted to local attention: the recorded
   weights composed through the network, as if every op mixed pixels by fixed weights:

   - an attention layer mixes by its weights' mean over heads, cell [a, b] of pixel p's
     window being the pixel `origins[:, p] + (a, b)` (sliding windows and the stem's
     blocks alike); cells outside the map take no part (with padding="zeros" they hold
     zero values, so each pixel's weights are renormalised over the cells on the map);
   - a residual block's output is 0.5 * its branch + 0.5 * its shortcut (the rollout's
     usual convention for the identity path), RESIDUAL below;
   - pointwise ops (1x1 convs, batch norm, ReLU, the input normalisation) mix nothing;
   - a k x k conv, an average pool and a max pool average their window's cells on the
     map, uniformly (for a max pool this approximates: the maximum takes one cell, which
     one depends on the image); so the strided attention's 2x2 average pool does too,
     and a stride-2 1x1 shortcut conv takes the pixel (2i, 2j).

   Computed backwards, from a one-hot map at the pixel through every op in reverse
   (a scatter of the window weights; a transposed convolution with a ones kernel over
   the windows' counts of cells on the map), so a 128 x 128 image costs milliseconds.

2. The effective receptive field (Luo et al., 2016): the gradient of the sum over
   channels of the layer's output at the pixel with respect to the input image, its
   absolute value summed over RGB, as a share of the whole. Exact, for any model of
   the catalogue: the attention model and its conv twin alike (there the layer of the
   same name is the 3x3 conv, `catalogue.spatial_convs`).

3. The theoretical reach: the square a layer's output can possibly see, by the usual
   receptive-field arithmetic (side += (k - 1) * jump, jump *= stride) through the stem,
   the blocks and the pools; the attention stem's blocks are its max pool's, so it
   reaches as far as that pool. `theoretical_box` places it around a pixel, clipped.

Shapes: H x W the image, h x w a feature map; maps are float64 on the CPU.
"""
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.inspection.trace import LayerTrace, Trace, trace as run_trace
from sasa_viz.models.catalogue import Bottleneck, Normalize, ResNet

RESIDUAL = 0.5      # the branch's share of a residual block's rollout; the shortcut's: rest
POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.Identity, Normalize)   # mix no pixels

Size = Tuple[int, int]
Box = Tuple[int, int, int, int]      # (top, left, bottom, right), end-exclusive


@dataclass(frozen=True)
class Reach:
    """Where one feature pixel of one layer draws from in the input image."""
    layer: str
    pixel: Tuple[int, int]              # the image pixel (y, x) asked about
    feature_pixel: Tuple[int, int]      # (row, col) of the layer's map under it
    cell: Box                           # the image pixels that feature pixel covers
    rollout: Optional[Tensor]           # (H, W) sums to 1; None unless the layer attends
    gradient: Tensor                    # (H, W) |d output / d image| over RGB, sums to 1
    raw_gradient: Tensor                # (3, H, W) d output / d image
    theoretical_box: Box                # what it can possibly see, clipped to the image
    side: int                           # that square's side, unclipped

    @property
    def image_size(self) -> Size:
        return tuple(self.gradient.shape)


def reach(model: ResNet, image: Tensor, layer: str, y: int, x: int,
          trace: Optional[Trace] = None) -> Reach:
    """The reach of `layer`'s feature pixel under image pixel (y, x), for `model` (in eval
    mode) on `image` (1, 3, H, W) in [0, 1]. `trace`: the model's trace of this image, if
    made already (an attention layer's rollout needs one; it is made otherwise)."""
    image_size = _checked_image(image)
    geometry = _geometry(model, layer)
    row, col = geometry.feature_pixel(geometry.map_size(model, image_size), y, x)
    rollout = None
    if isinstance(geometry.module, LocalSelfAttention):
        trace = run_trace(model, image) if trace is None else trace
        if tuple(trace.input_shape[-2:]) != image_size:
            raise ValueError(f"the trace is of a {tuple(trace.input_shape)} input, the image "
                             f"{tuple(image.shape)}: pass the trace of this image.")
        rollout = attention_rollout(model, trace, layer, row, col)
    raw = input_gradient(model, image, layer, row, col)
    s = geometry.stride
    return Reach(layer=layer, pixel=(y, x), feature_pixel=(row, col),
                 cell=_clip((row * s, col * s, (row + 1) * s, (col + 1) * s), image_size),
                 rollout=rollout, gradient=gradient_share(raw), raw_gradient=raw,
                 theoretical_box=geometry.box(row, col, image_size), side=geometry.side)


# --- 1. attention rollout --------------------------------------------------------------

def attention_rollout(model: ResNet, trace: Trace, layer: str, row: int, col: int) -> Tensor:
    """(H, W) float64: the share of each input-image pixel in attention layer `layer`'s
    output at feature pixel (row, col), by the rules of the module doc, from `trace`
    (the model's trace of the image)."""
    geometry = _geometry(model, layer)
    traced = trace.layers[layer]
    _check_pixel(traced.size, row, col)
    units = _units(model)[:geometry.index]
    sizes = _sizes(units, trace.input_shape[-2:])
    share = torch.zeros(traced.size, dtype=torch.float64)            # (h, w) one-hot
    share[row, col] = 1.0
    with torch.no_grad():
        share = _attention_back(share, traced)                       # (h, w) the layer's input
        for (name, module), size in zip(reversed(units), reversed(sizes)):
            share = _unit_back(name, module, share, size, trace)
    return share


def _unit_back(name: str, module: nn.Module, share: Tensor, size: Size,
               trace: Trace) -> Tensor:
    """A share over a unit's output -> over its input, a map of `size`."""
    if isinstance(module, Bottleneck):            # conv1 is 1x1: the layer sees the input
        branch = _layer_back(module.spatial, share, size, trace.layers[f"{name}.spatial"])
        shortcut = (share if isinstance(module.shortcut, nn.Identity)
                    else _window_back(module.shortcut[0], share, size))
        return RESIDUAL * branch + (1 - RESIDUAL) * shortcut
    if isinstance(module, LocalSelfAttention):
        return _layer_back(module, share, size, trace.layers[name])
    return _window_back(module, share, size)


def _layer_back(attention: LocalSelfAttention, share: Tensor, size: Size,
                traced: LayerTrace) -> Tensor:
    """Back through an attention layer's pool (if it strides), then its attention."""
    return _attention_back(_window_back(attention.pool, share, size), traced)


def _attention_back(share: Tensor, traced: LayerTrace) -> Tensor:
    """(h, w) share over an attention layer's output -> (h, w) over its input: every
    pixel's share goes to its window cells by the mean weight over heads."""
    K, (h, w) = traced.kernel_size, traced.size
    valid = traced.valid                                             # (K, K, h, w)
    weights = traced.weights.double().mean(0) * valid                # (K, K, h, w)
    weights = weights / weights.sum((0, 1))                          # 1 per pixel, on the map
    cells = torch.arange(K)
    rows = traced.origins[0] + cells[:, None, None, None]            # (K, 1, h, w)
    cols = traced.origins[1] + cells[None, :, None, None]            # (1, K, h, w)
    where = (rows * w + cols).expand(K, K, h, w)[valid]              # (n,) input pixel
    return share.new_zeros(h * w).scatter_add_(0, where, (weights * share)[valid]).view(h, w)


def _window_back(module: nn.Module, share: Tensor, size: Size) -> Tensor:
    """(h', w') share over a conv's or pool's output -> over its input (h, w) = size,
    each output pixel's share spread evenly over its window's cells on the map; a
    pointwise module passes it on."""
    window = _window(module)
    if window is None:
        return share
    k, s, p, _ = window
    (h, w), (h_out, w_out) = size, share.shape
    counts = _cells_on_map(h_out, h, k, s, p)[:, None] * _cells_on_map(w_out, w, k, s, p)
    ones = share.new_ones(1, 1, k, k)
    spread = F.conv_transpose2d((share / counts)[None, None], ones, stride=s)[0, 0]
    # spread[i, j] is input pixel (i - p, j - p); windows may stop short of the last rows
    short_h, short_w = p + h - spread.shape[0], p + w - spread.shape[1]
    spread = F.pad(spread, (0, max(0, short_w), 0, max(0, short_h)))
    return spread[p:p + h, p:p + w]


def _cells_on_map(outputs: int, n: int, k: int, s: int, p: int) -> Tensor:
    """(outputs,) int64: how many of each window's k cells along a side of n lie on it."""
    starts = torch.arange(outputs) * s - p
    return (starts + k).clamp(max=n) - starts.clamp(min=0)


# --- 2. the effective receptive field --------------------------------------------------

class _Reached(Exception):
    """Stops a forward pass once the layer's output is in hand."""


def input_gradient(model: ResNet, image: Tensor, layer: str, row: int, col: int) -> Tensor:
    """(3, H, W): d (sum over channels of `layer`'s output at feature pixel (row, col))
    / d image, at `image` (1, 3, H, W). The output is the layer's map before any pooling;
    the forward pass stops there. `model` must be in eval mode; its parameters' .grad are
    left alone, and so are other threads running it meanwhile."""
    if model.training:
        raise ValueError("the gradient of a model in training mode would use the batch's "
                         "statistics: call model.eval() first.")
    module = _geometry(model, layer).module
    pooled = isinstance(module, LocalSelfAttention)      # its pool's input is its output
    watched = module.pool if pooled else module
    parameter = next(model.parameters())
    x = image.detach().to(parameter.device, parameter.dtype).requires_grad_()
    caller, seen = threading.get_ident(), []

    def hook(_, inputs, output):
        if threading.get_ident() == caller:               # not another thread's pass
            seen.append(inputs[0] if pooled else output)
            raise _Reached

    handle = watched.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    output = seen[0]                                      # (1, C, h, w)
    _check_pixel(tuple(output.shape[-2:]), row, col)
    (grad,) = torch.autograd.grad(output[0, :, row, col].sum(), x)
    return grad[0].detach().cpu()


def gradient_share(gradient: Tensor) -> Tensor:
    """(3, H, W) gradient -> (H, W) float64: |gradient| summed over RGB, as a share of the
    whole (all zeros stays zeros)."""
    size = gradient.double().abs().sum(0)
    total = size.sum()
    return size / total if total > 0 else size


# --- 3. the theoretical reach ----------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """The image rows (or columns, alike) a feature map's pixels can see: pixel i sees
    rows i * jump + first .. i * jump + last, before clipping to the image."""
    jump: int       # image pixels between neighbouring feature pixels
    first: int
    last: int

    @property
    def side(self) -> int:
        return self.last - self.first + 1

    def through(self, kernel: int, stride: int, padding: int) -> "Span":
        """The span after a kernel x kernel window with this stride and padding."""
        return Span(self.jump * stride, self.first - padding * self.jump,
                    self.last + (kernel - 1 - padding) * self.jump)

    def rows(self, first_pixel: int, last_pixel: int) -> Tuple[int, int]:
        """Image rows feature pixels first_pixel..last_pixel see together, end-exclusive."""
        return first_pixel * self.jump + self.first, last_pixel * self.jump + self.last + 1


@dataclass(frozen=True)
class _Geometry:
    """Where a layer sits: its module, its unit's index in `_units`, and its input map."""
    name: str
    module: nn.Module               # the attention layer, or the twin's 3x3 conv
    index: int
    span: Span                      # of the layer's input map

    @property
    def kernel(self) -> int:
        if isinstance(self.module, nn.Conv2d):
            return _window(self.module)[0]
        return self.module.kernel_size

    @property
    def step(self) -> int:
        """The layer's own stride: a conv's; 1 for attention (its pool comes after)."""
        return self.module.stride[0] if isinstance(self.module, nn.Conv2d) else 1

    @property
    def stride(self) -> int:
        """Image pixels per pixel of the layer's output map."""
        return self.span.jump * self.step

    @property
    def side(self) -> int:
        return self.span.side + (self.kernel - 1) * self.span.jump

    def map_size(self, model: ResNet, image_size: Size) -> Size:
        """(h, w) of the layer's output map, before any pooling."""
        size = _sizes(_units(model)[:self.index + 1], image_size)[-1]
        return size if self.step == 1 else _out_size(self.module, size)

    def feature_pixel(self, map_size: Size, y: int, x: int) -> Tuple[int, int]:
        """The pixel of the layer's output map (of map_size) covering image pixel (y, x)."""
        h, w = map_size
        return min(max(y // self.stride, 0), h - 1), min(max(x // self.stride, 0), w - 1)

    def box(self, row: int, col: int, image_size: Size) -> Box:
        """The image pixels output pixel (row, col) can see, clipped to the image."""
        if isinstance(self.module, LocalSelfAttention):
            top, left = self.module.window_origin(row, col)
        else:
            padding = _window(self.module)[2]
            top, left = row * self.step - padding, col * self.step - padding
        k = self.kernel
        (y0, y1), (x0, x1) = self.span.rows(top, top + k - 1), self.span.rows(left, left + k - 1)
        return _clip((y0, x0, y1, x1), image_size)


def theoretical_sides(model: ResNet) -> List[Tuple[str, int]]:
    """(layer name, side in image pixels of the square its output can see), for every
    layer in forward order: the attention layers, or the conv twin's 3x3 convs."""
    return [(g.name, g.side) for g in _geometries(model)]


def theoretical_box(model: ResNet, layer: str, row: int, col: int, image_size: Size) -> Box:
    """The image pixels `layer`'s feature pixel (row, col) can possibly see, clipped to an
    image of image_size (H, W): (top, left, bottom, right), end-exclusive."""
    return _geometry(model, layer).box(row, col, tuple(image_size))


def feature_pixel(model: ResNet, layer: str, y: int, x: int, image_size: Size
                  ) -> Tuple[int, int]:
    """The feature pixel of `layer`'s output map covering image pixel (y, x), clipped to
    the map (`LayerTrace.feature_pixel` for an attention layer; the conv twin's strided
    conv has its output's stride)."""
    geometry = _geometry(model, layer)
    return geometry.feature_pixel(geometry.map_size(model, tuple(image_size)), y, x)


# --- in words --------------------------------------------------------------------------

def half_radius(share: Tensor, y: int, x: int) -> int:
    """The smallest r such that the pixels within r of (y, x) (a (2r + 1)-pixel square,
    clipped) hold at least half of `share` (H, W)."""
    H, W = share.shape
    rows = (torch.arange(H) - y).abs()[:, None]
    cols = (torch.arange(W) - x).abs()[None, :]
    distance = torch.maximum(rows, cols).flatten()                   # (H W,) Chebyshev
    ring = share.double().new_zeros(int(distance.max()) + 1)
    within = ring.scatter_add_(0, distance, share.double().flatten()).cumsum(0)
    return int((within < 0.5 * within[-1]).sum())


def describe(result: Reach) -> str:
    """One sentence from the arrays: how near the pixel half of its gradient (and of its
    rollout) lies, and how wide its theoretical window is."""
    y, x = result.pixel
    n = half_radius(result.gradient, y, x)
    sentence = (f"At least half of this pixel's gradient comes from within {_pixels(n)} "
                f"of it ({2 * n + 1}×{2 * n + 1} pixels)")
    if result.rollout is not None:
        sentence += (f", at least half of its attention rollout from within "
                     f"{_pixels(half_radius(result.rollout, y, x))}")
    H, W = result.image_size
    sentence += f"; the theoretical window is {result.side} pixels wide"
    if result.side > max(H, W):
        sentence += f", more than the whole {H}×{W} image"
    return sentence + "."


def _pixels(n: int) -> str:
    return f"{n} pixel" if n == 1 else f"{n} pixels"


# --- walking the model -----------------------------------------------------------------

def _units(model: ResNet) -> List[Tuple[str, nn.Module]]:
    """The model up to its global pool as a chain of (name, module): the normalisation,
    each of the stem's modules, each block, in forward order."""
    stem = [(f"stem.{name}", m) for name, m in model.stem.named_children()]
    blocks = [(f"stages.{s}.{b}", block) for s, stage in enumerate(model.stages)
              for b, block in enumerate(stage)]
    return [("normalize", model.normalize), *stem, *blocks]


def _geometries(model: ResNet) -> List[_Geometry]:
    """Every layer of the model (attention, or the twin's 3x3 conv), in forward order."""
    found, span = [], Span(1, 0, 0)
    for index, (name, module) in enumerate(_units(model)):
        if isinstance(module, Bottleneck):
            found.append(_Geometry(f"{name}.spatial", module.spatial, index, span))
        elif isinstance(module, LocalSelfAttention):
            found.append(_Geometry(name, module, index, span))
        span = _span_after(module, span)
    return found


def _geometry(model: ResNet, layer: str) -> _Geometry:
    """The geometry of the layer named `layer`, or a ValueError naming the layers."""
    found = {g.name: g for g in _geometries(model)}
    if layer not in found:
        raise ValueError(f"no layer {layer!r} in this model; its layers are "
                         f"{', '.join(map(repr, found))}.")
    return found[layer]


def _sizes(units: List[Tuple[str, nn.Module]], image_size: Size) -> List[Size]:
    """(h, w) of the map each unit takes, for an image of image_size."""
    sizes = [tuple(image_size)]
    for _, module in units[:-1]:
        sizes.append(_out_size(module, sizes[-1]))
    return sizes


def _out_size(module: nn.Module, size: Size) -> Size:
    """(h, w) of a unit's (or a window's) output for an input of `size`."""
    if isinstance(module, Bottleneck):
        module = module.spatial
    if isinstance(module, LocalSelfAttention):
        module = module.pool
    window = _window(module)
    return size if window is None else tuple(_outputs(n, *window) for n in size)


def _span_after(module: nn.Module, span: Span) -> Span:
    """The span of a unit's output, given its input's."""
    if isinstance(module, Bottleneck):
        module = module.spatial
    if isinstance(module, LocalSelfAttention):
        if module.window == "sliding":
            span = span.through(module.kernel_size, 1, module.kernel_size // 2)
        # block windows are the next max pool's blocks: that pool reaches as far
        module = module.pool
    window = _window(module)
    return span if window is None else span.through(*window[:3])


def _window(module: nn.Module) -> Optional[Tuple[int, int, int, bool]]:
    """(kernel, stride, padding, ceil_mode) of a conv or pool; None for a pointwise
    module; a ValueError for anything else."""
    if isinstance(module, POINTWISE):
        return None
    if not isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)):
        raise ValueError(f"reach does not know how a {type(module).__name__} mixes pixels.")
    kernel, stride, padding, dilation = (
        _square(module, getattr(module, a, 1)) for a in ("kernel_size", "stride", "padding",
                                                         "dilation"))
    if dilation != 1:
        raise ValueError(f"reach knows undilated windows only, not {module}.")
    return kernel, stride, padding, getattr(module, "ceil_mode", False)


def _square(module: nn.Module, number) -> int:
    """A window's size, stride or padding: an int, or a pair of equal ints."""
    if isinstance(number, int):
        return number
    if len(set(number)) > 1:
        raise ValueError(f"reach knows square windows only, not {module}.")
    return number[0]


def _outputs(n: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Outputs along a side of n, as PyTorch's convs and pools count them."""
    span = n + 2 * padding - kernel
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= n + padding:   # the last window starts inside
        count -= 1
    return count


# --- checks and boxes ------------------------------------------------------------------

def _checked_image(image: Tensor) -> Size:
    """(H, W) of one image (1, 3, H, W), or a ValueError."""
    if not isinstance(image, Tensor) or image.dim() != 4 or tuple(image.shape[:2]) != (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"reach takes one RGB image (1, 3, H, W) in [0, 1], got {shape}.")
    return tuple(image.shape[-2:])


def _check_pixel(size: Size, row: int, col: int) -> None:
    h, w = size
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"feature pixel ({row}, {col}) is outside the {h}x{w} map.")


def _clip(box: Box, image_size: Size) -> Box:
    top, left, bottom, right = box
    H, W = image_size
    return max(top, 0), max(left, 0), min(bottom, H), min(right, W)
