"""How much a head looks at an object: the share of a pixel's attention that lands on it,
set against the share of the window the object fills.

    mask = scene.mask                               # (h, w) bool, True on the object
    weight_on(layer, mask, 5, 3)                    # (heads,): pixel (5, 3)'s weight on it
    window_share(layer, mask, 5, 3)                 # what spreading evenly would give
    seeking = object_seeking(layer, mask, "the disc")
    seeking.sentence    # "Head 7 at pixel (5, 3), outside the disc, 1 feature pixel from
                        #  it, puts 0.660 of its weight on the disc, which covers 0.200 of
                        #  its window."

From image pixels to feature pixels: a mask may be given at the layer's feature
resolution, at the resolution of the traced image, or at a whole multiple of it (a
scene's 128-pixel mask for a 32-pixel trace). Feature pixel (i, j) stands for the image
pixels that `LayerTrace.feature_pixel` maps to it (rows i*s..i*s+s-1 at stride s, the
last row and column taking any rest), and its *coverage* is the mean of the mask over
them: the share of its image area on the object, 0..1. Coverage is averaged, not rounded
to a majority, so a feature pixel half on the object counts half, and no pixel is
counted twice or not at all:

    weight on the object   sum_ab w_ab c_ab                  the weights' share of the area
    window share           sum_ab p_ab c_ab / sum_ab p_ab    p: the cells in the softmax

where c_ab is the coverage of window cell [a, b] (0 outside the map). A head that spread
its weight evenly over the cells of its softmax would put exactly the window share on the
object, so weight above it is weight the head moved towards the object. A pixel is
*outside* the object when its coverage is 0: none of its image pixels are on it.

Shapes: h heads, K window side, H x W the layer's feature map.
"""
from typing import NamedTuple, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sasa_viz.attention.window import participating
from sasa_viz.inspection.trace import LayerTrace
from sasa_viz.numbers import WEIGHT


Mask = Union[np.ndarray, Tensor]    # bool, or floats 0..1: the object's share of each pixel


class ObjectSeeking(NamedTuple):
    """The (head, pixel) outside the object that moves most weight onto it."""
    head: int
    row: int
    col: int
    weight: float           # the head's weight on the object at (row, col)
    window_share: float     # the object's share of the pixel's window: the uniform weight
    distance: int           # feature pixels from the pixel to the nearest object pixel
    sentence: str


def coverage(layer: LayerTrace, mask: Mask) -> Tensor:
    """(H, W) float: the share of each feature pixel's image pixels on the object.

    mask: (H, W) at feature resolution, or (h, w) = the traced image's size times a whole
    number, bool or 0..1 (array or tensor)."""
    mask = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    H, W = layer.size
    if tuple(mask.shape) == (H, W):
        return mask
    step = layer.stride * _scale(tuple(mask.shape), layer.image_size)
    rows = (torch.arange(mask.shape[0]) // step).clamp(max=H - 1)       # (h,)
    cols = (torch.arange(mask.shape[1]) // step).clamp(max=W - 1)       # (w,)
    index = (rows[:, None] * W + cols[None, :]).flatten()               # (h * w,)
    area = torch.zeros(H * W).index_add_(0, index, mask.flatten())
    pixels = torch.zeros(H * W).index_add_(0, index, torch.ones_like(mask).flatten())
    return (area / pixels).view(H, W)


def _scale(shape: Tuple[int, ...], image_size: Tuple[int, int]) -> int:
    """The whole number s with shape = image_size * s, or a ValueError."""
    (h, w), (H, W) = shape, image_size
    scale = h // H
    if scale < 1 or (h, w) != (H * scale, W * scale):
        raise ValueError(f"the mask is {h}x{w}; it must be the traced image's {H}x{W}, a "
                         f"whole multiple of it, or the layer's feature map.")
    return scale


def window_coverage(layer: LayerTrace, mask: Mask) -> Tensor:
    """(K, K, H, W): the coverage of window cell [a, b] of every pixel, 0 outside the map."""
    K = layer.kernel_size
    padded = F.pad(coverage(layer, mask), (K, K, K, K))                 # (H + 2K, W + 2K)
    steps = torch.arange(K)
    rows = layer.origins[0] + K + steps.view(K, 1, 1, 1)               # (K, 1, H, W)
    cols = layer.origins[1] + K + steps.view(1, K, 1, 1)               # (1, K, H, W)
    return padded[rows, cols]


def weights_on(layer: LayerTrace, mask: Mask) -> Tensor:
    """(h, H, W): every head's weight on the object at every pixel."""
    return (layer.weights * window_coverage(layer, mask)).sum(dim=(1, 2))


def window_shares(layer: LayerTrace, mask: Mask) -> Tensor:
    """(H, W): the object's share of every pixel's window, counting the cells that take
    part in the softmax (all K*K with "zeros" padding, those inside the map with "mask")."""
    cells = participating(layer.valid, layer.padding).float()          # (K, K, H, W)
    return (cells * window_coverage(layer, mask)).sum(dim=(0, 1)) / cells.sum(dim=(0, 1))


def weight_on(layer: LayerTrace, mask: Mask, row: int, col: int) -> Tensor:
    """(h,): the share of feature pixel (row, col)'s weight, per head, on the object."""
    px = layer.pixel(row, col)                  # checks the pixel is on the map
    return weights_on(layer, mask)[:, px.row, px.col]


def window_share(layer: LayerTrace, mask: Mask, row: int, col: int) -> float:
    """The object's share of feature pixel (row, col)'s window: what a head spreading
    its weight evenly would put on it."""
    px = layer.pixel(row, col)
    return float(window_shares(layer, mask)[px.row, px.col])


def object_seeking(layer: LayerTrace, mask: Mask, name: str = "the object") -> ObjectSeeking:
    """The (head, pixel) outside the object (coverage 0) whose weight on the object most
    exceeds the object's share of its window, and a sentence with its numbers. Ties go to
    the lower head, then the first pixel in row-major order. `name` names the object in
    the sentence ("the disc"). A ValueError if no feature pixel is on the object, or
    none wholly outside it (a fine pattern on a coarse map)."""
    cover = coverage(layer, mask)                                       # (H, W)
    outside = cover == 0
    if bool(outside.all()):
        raise ValueError(f"the mask puts no pixel of {layer.name}'s map on the object.")
    if not outside.any():
        raise ValueError(f"every feature pixel of {layer.name}'s map is partly on the "
                         f"object: none is wholly outside it to look from.")
    weights, shares = weights_on(layer, mask), window_shares(layer, mask)   # (h, H, W), (H, W)
    excess = torch.where(outside, weights - shares, -torch.inf)         # (h, H, W)
    head, row, col = map(int, np.unravel_index(int(excess.argmax()), excess.shape))
    weight, share = float(weights[head, row, col]), float(shares[row, col])
    distance = _distance(cover > 0, row, col)
    return ObjectSeeking(
        head, row, col, weight, share, distance,
        f"Head {head} at pixel ({row}, {col}), outside {name}, {distance} feature "
        f"pixel{'s' * (distance != 1)} from it, puts {WEIGHT(weight)} of its weight on "
        f"{name}, which covers {WEIGHT(share)} of its window.")


def _distance(on: Tensor, row: int, col: int) -> int:
    """Chessboard distance from (row, col) to the nearest True pixel of `on` (H, W)."""
    rows, cols = torch.nonzero(on, as_tuple=True)
    return int(torch.maximum((rows - row).abs(), (cols - col).abs()).min())
