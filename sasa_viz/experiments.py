"""The paper's claims about position and borders as experiments on a real model and
image. Pure functions returning tensors; the teaching pages draw them.

- `shift_equivariance`: shift the image, and relative attention maps shift with it
  (away from the borders); absolute embeddings break this.
- `permute_neighbourhood`: without the position term a pixel's output does not depend
  on where its neighbours sit; with relative embeddings it does.
- `border_comparison`: one layer, the same input, padding "mask" vs "zeros".
"""
import copy
from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn as nn
from torch import Tensor

from .explain import self_weight, weighted_values
from .trace import LayerTrace, PixelTrace, attention_layer_names, trace
from .window import window_softmax


@dataclass
class ShiftResult:
    difference: Tensor    # (H, W) max over heads and window of |w(shifted) - shift(w)|
    original: Tensor      # (H, W) mean over heads of the pixel's own weight, original image
    shifted: Tensor       # (H, W) the same for the shifted image
    feature_shift: tuple  # (dy, dx) in feature pixels


def shift_equivariance(model: nn.Module, x: Tensor, layer: str, dy: int, dx: int) -> ShiftResult:
    """Roll the image (1, 3, H, W) by (dy, dx) pixels and compare `layer`'s weights.

    If the layer is translation-equivariant, its weights for the rolled image are the
    rolled weights: `difference` is 0 except where a window (or the stem before it)
    reaches the image border or the seam where the roll wraps around. dy and dx must be
    multiples of the layer's stride (input pixels per feature pixel); block windows are
    equivariant only to shifts by whole blocks.
    """
    before = trace(model, x).layers[layer]
    s = before.stride
    if dy % s or dx % s:
        raise ValueError(f"shift by multiples of {s} pixels: one feature pixel of "
                         f"{layer} covers {s}x{s} image pixels.")
    after = trace(model, torch.roll(x, (dy, dx), dims=(2, 3))).layers[layer]
    shift = (dy // s, dx // s)
    expected = torch.roll(before.weights, shift, dims=(-2, -1))        # (h, K, K, H, W)
    difference = (after.weights - expected).abs().amax(dim=(0, 1, 2))  # (H, W)
    return ShiftResult(difference, self_weight(before).mean(0), self_weight(after).mean(0),
                       shift)


@dataclass
class PermutationResult:
    source: Tensor                # (K*K,) window cell c takes the neighbour from source[c]
    outputs: Dict[str, Tensor]    # (C,) "with position", "without position", each also
                                  # with " permuted" after the shuffle


def permute_neighbourhood(px: PixelTrace, seed: int = 0) -> PermutationResult:
    """Move the neighbours of one pixel around its window (the pixel itself stays) and
    recompute its output, with and without the position term.

    A neighbour carries its content logit q.k and its value to its new cell; the
    position logits stay with the cells (they belong to offsets).
    """
    K = px.weights.shape[-1]
    movable = px.valid.clone()
    movable[px.cell] = False                                   # the pixel itself stays
    cells = movable.flatten().nonzero().squeeze(1)             # (n,) cells inside the map
    order = cells[torch.randperm(len(cells), generator=torch.Generator().manual_seed(seed))]
    source = torch.arange(K * K)
    source[cells] = order                                      # cell -> where it comes from

    def moved(t: Tensor) -> Tensor:                            # (..., K, K) rearranged
        return t.flatten(-2)[..., source].view_as(t)

    position = px.logits_row + px.logits_col                   # (h, K, K), stays put
    outputs = {}
    for label, content, values in [("", px.logits_content, px.values),
                                   (" permuted", moved(px.logits_content), moved(px.values))]:
        for term, logits in [("with position", content + position),
                             ("without position", content)]:
            weights = window_softmax(logits, px.valid, px.padding, px.scale)
            outputs[term + label] = weighted_values(weights, values)
    return PermutationResult(source, outputs)


def border_comparison(model: nn.Module, layer_trace: LayerTrace, row: int,
                      col: int) -> Dict[str, PixelTrace]:
    """The same layer on the same input, with padding "mask" and "zeros", at one pixel.

    The layer's own input (recorded in the trace) goes through the layer twice, so the
    only difference is how the border is handled. Returns {"mask": px, "zeros": px}.
    """
    names = attention_layer_names(model)
    module = next(m for m, name in names.items() if name == layer_trace.name)
    pixels = {}
    for padding in ("mask", "zeros"):
        twin = copy.deepcopy(module).cpu()
        twin.padding = padding
        twin.pool = nn.Identity()                  # compare at the attention's resolution
        features = layer_trace.input[None]                     # (1, C_in, H, W)
        pixels[padding] = trace(nn.Sequential(twin), features).layers["0"].pixel(row, col)
    return pixels
