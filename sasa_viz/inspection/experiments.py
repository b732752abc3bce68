"""The paper's claims about position and borders as experiments on a real model and
image. Pure functions returning tensors (and the sentences that report them); the
teaching pages draw them.

- `roll_layer_input`: roll one layer's own input, and with relative embeddings its
  weights roll along wherever a window stays clear of the border and the seam;
  an absolute-position twin of the layer (`absolute_twin`) breaks this everywhere.
- `shift_equivariance`: roll the whole image instead; every layer before feeds its own
  borders in, so only pixels whose view (`view_extent`) stays clear are unchanged.
- `permute_neighbourhood`: without the position term a pixel's output does not depend
  on where its neighbours sit; with relative embeddings it does.
- `border_comparison`: one layer, the same input, padding "mask" vs "zeros".

"Unchanged" means no weight of the pixel moved by more than UNCHANGED (1e-6): the layer
does the same sums for a pixel wherever it sits, but not always in the same order (a
pixel rolled from a SIMD lane into the tail of a row rounds differently, by up to about
2e-7 on the plain PyTorch path; the compiled kernel gives bit-identical weights), while
a border, the seam or absolute embeddings move weights by 1e-4 and more (tested).
"""
import copy
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.attention.window import window_softmax
from sasa_viz.inspection.explain import relative_change, self_weight, weighted_values
from sasa_viz.inspection.trace import (PROBE_SIZE, LayerTrace, PixelTrace,
                                       traced_names, known_strides, trace)
from sasa_viz.numbers import NumberFormat, relative, significant

Extent = Tuple[float, float, float, float]   # (up, down, left, right) in feature pixels
UNCHANGED = 1e-6         # the largest weight change that counts as none (see above)
WITHIN = f"to within {NumberFormat(0, round(math.log10(UNCHANGED))).text(UNCHANGED)}"


# --- shifts ------------------------------------------------------------------------------

@dataclass
class ShiftResult:
    difference: Tensor    # (H, W) max over heads and window of |w(shifted) - shift(w)|
    reach: Tensor         # (H, W) bool: pixels whose view meets the border or the seam
    original: Tensor      # (H, W) mean over heads of the pixel's own weight, original input
    shifted: Tensor       # (H, W) the same for the shifted input
    feature_shift: tuple  # (dy, dx) in feature pixels
    kernel_size: int      # the layer's window is K x K,
    window: str           # "sliding" or "blocks"

    @property
    def unchanged(self) -> Tensor:
        """(H, W) bool: every weight the rolled original's, to within UNCHANGED."""
        return self.difference <= UNCHANGED

    def count(self, where: Optional[Tensor] = None) -> Tuple[int, int]:
        """(unchanged pixels, pixels) among those `where` (H, W) bool is True; all of
        them without `where`."""
        where = torch.ones_like(self.reach) if where is None else where
        return int((self.unchanged & where).sum()), int(where.sum())


@dataclass
class LayerShift:
    """One layer run on its recorded input and on that input rolled."""
    layer: ShiftResult            # the layer as the model has it
    twin: Optional[ShiftResult]   # its absolute-position twin; None unless the layer has
                                  # relative embeddings


def feature_shift(layer: LayerTrace, dy: int, dx: int) -> Tuple[int, int]:
    """A shift of (dy, dx) image pixels, down and right, in `layer`'s feature pixels; a
    ValueError unless both are multiples of the layer's stride, short of the image's
    side."""
    (height, width), s = layer.image_size, layer.stride
    if not (0 <= dy < height and 0 <= dx < width):
        raise ValueError(f"shift by 0 to {height - 1} pixels down and 0 to {width - 1} "
                         f"right, got ({dy}, {dx}): a roll by -d, or by the side + d, is "
                         f"the roll by side - d, or by d.")
    if dy % s or dx % s:
        raise ValueError(f"shift by multiples of {s} pixels: one feature pixel of "
                         f"{layer.name} covers {s}x{s} image pixels.")
    return dy // s, dx // s


def compare_shift(before: LayerTrace, after: LayerTrace, shift: Tuple[int, int],
                  reach: Tensor) -> ShiftResult:
    """The weights of `after` (the shifted input's) against those of `before` rolled by
    `shift` feature pixels."""
    expected = torch.roll(before.weights, shift, dims=(-2, -1))        # (h, K, K, H, W)
    difference = (after.weights - expected).abs().amax(dim=(0, 1, 2))  # (H, W)
    return ShiftResult(difference, reach, self_weight(before).mean(0),
                       self_weight(after).mean(0), shift, before.kernel_size, before.window)


def window_reach(layer: LayerTrace, shift: Tuple[int, int]) -> Tensor:
    """(H, W) bool: the pixels whose window, once the input is rolled by `shift` feature
    pixels, differs from the window of the pixel they came from: it meets the map's
    border or the seam where the roll wraps around. A window is known by which of its
    cells lie inside the map and where the pixel sits in it (its own cell: the centre of
    a sliding window, anywhere in a block); where both match, the window holds the same
    neighbours at the same offsets, so the weights cannot change."""
    pattern = torch.cat([layer.valid.flatten(0, 1).long(), layer.cells])   # (K*K + 2, H, W)
    return (pattern != torch.roll(pattern, shift, dims=(-2, -1))).any(0)


def roll_layer_input(model: nn.Module, layer: LayerTrace, dy: int, dx: int,
                     seed: int = 0) -> LayerShift:
    """Roll `layer`'s own recorded input (C_in, H, W) by (dy, dx) image pixels (multiples
    of its stride) and run the layer on both, and its `absolute_twin` (drawn with `seed`)
    on both, at the attention's resolution.

    Nothing before the layer takes part, so only the layer's own window can meet the
    border or the seam (`window_reach`): a relative-position layer is unchanged
    everywhere else, its absolute twin is not."""
    shift = feature_shift(layer, dy, dx)
    module = attention_only(_module_named(model, layer.name))
    reach = window_reach(layer, shift)
    features = layer.input[None]                                        # (1, C_in, H, W)
    rolled = torch.roll(features, shift, dims=(-2, -1))

    def compared(attention: nn.Module) -> ShiftResult:
        before, after = (run_layer(attention, x) for x in (features, rolled))
        return compare_shift(before, after, shift, reach)

    twin = None
    if module.position == "relative":
        twin = compared(absolute_twin(module, max(layer.size), seed))
    return LayerShift(compared(module), twin)


def absolute_twin(module: LocalSelfAttention, size: int, seed: int = 0) -> nn.Module:
    """A copy of a relative-position layer with absolute position embeddings instead, as
    comparable as can be: the same W_Q, W_K and W_V, and for each of `size` rows (and
    columns) an embedding drawn at random (seeded) from the layer's relative ones. Its
    position logits are q . r with the very vectors r the layer uses, so of the same
    scale; only which r a neighbour gets depends on where the neighbour is, not on its
    offset. An untrained absolute model would not do: its weights are nearly uniform,
    and barely move whatever happens."""
    if module.position != "relative":
        raise ValueError(f"an absolute twin borrows the layer's relative embeddings; this "
                         f"layer's position is {module.position!r}.")
    twin = copy.deepcopy(module)
    twin.position, twin.max_size = "absolute", size
    draw = torch.Generator().manual_seed(seed)
    for name in ("rel_row", "rel_col"):
        relative = getattr(module, name).detach()                       # (h, c, K)
        rows = torch.randint(module.kernel_size, (size,), generator=draw)
        setattr(twin, name, nn.Parameter(relative[..., rows]))         # (h, c, size)
    return twin


def shift_equivariance(model: nn.Module, x: Tensor, layer: str, dy: int, dx: int,
                       extent: Optional[Extent] = None) -> ShiftResult:
    """Roll the image (1, 3, H, W) by (dy, dx) pixels and compare `layer`'s weights.

    If the layer is translation-equivariant, its weights for the rolled image are the
    rolled weights, except where its view (everything its weights depend on, through
    every layer before: the stem's zero padding, earlier windows) meets the image border
    or the seam where the roll wraps around: `reach`, from the layer's `view_extent`
    (measured unless given) and its own window. dy and dx must be multiples of the
    layer's stride (input pixels per feature pixel); block windows are equivariant only
    to shifts by whole blocks (their `window_reach` covers everything otherwise).
    """
    before = trace(model, x).layers[layer]
    shift = feature_shift(before, dy, dx)
    after = trace(model, torch.roll(x, (dy, dx), dims=(2, 3))).layers[layer]
    if extent is None:
        extent = view_extent(model, layer, max(x.shape[-2:]), x.shape[1])
    return compare_shift(before, after, shift, view_reach(extent, before, shift))


def view_extent(model: nn.Module, layer: str, side: int, channels: int = 3,
                seed: int = 0) -> Extent:
    """How far into the image the input of `layer` at a feature pixel looks, through
    every layer before it: (up, down, left, right) in feature pixels (blocks of
    stride x stride image pixels); math.inf where farther than an image `side` pixels
    across. 0 where the input is the image itself.

    Measured, not derived: one block of a random probe image is changed, and the input
    pixels that change are those whose view holds it. The probe is at least twice `side`
    across and a multiple of PROBE_SIZE (which every stride divides), so a view that
    reaches the probe's edge is wider than the image itself: inf. (The layer's own
    window comes on top: `view_reach`.)
    """
    stride = known_strides(model, channels)[layer]
    probe = PROBE_SIZE * -(-2 * side // PROBE_SIZE)
    x = torch.rand(1, channels, probe, probe, generator=torch.Generator().manual_seed(seed))
    c = probe // stride // 2                                      # the changed block
    block = (..., slice(c * stride, (c + 1) * stride), slice(c * stride, (c + 1) * stride))
    moved = x.clone()
    moved[block] = 1 - x[block]
    inputs = [trace(model, image).layers[layer].input for image in (x, moved)]
    changed = (inputs[0] != inputs[1]).any(0)                     # (H, W): sees the block
    extent = []
    for seen in (changed.any(1), changed.any(0)):                # rows, then columns
        first, last = seen.nonzero()[[0, -1], 0].tolist()
        extent += [math.inf if last == len(seen) - 1 else last - c,    # up (left): the
                   math.inf if first == 0 else c - first]              # pixels below see it
    return tuple(extent)


def view_reach(extent: Extent, layer: LayerTrace, shift: Tuple[int, int]) -> Tensor:
    """(H, W) bool: the pixels of `layer` whose view meets the image border or the seam
    when the image is rolled by `shift` feature pixels: their window does
    (`window_reach`), or a neighbour in it has an input whose view (`extent`) does."""
    (H, W), (height, width) = layer.size, layer.image_size
    rows = _view_crosses(H, height, layer.stride, shift[0], *extent[:2])
    cols = _view_crosses(W, width, layer.stride, shift[1], *extent[2:])
    inputs = rows[:, None] | cols[None, :]                        # (H, W) inputs that change
    return window_reach(layer, shift) | _in_window(layer, inputs)


def _view_crosses(n: int, side: int, stride: int, shift: int, before: float,
                  after: float) -> Tensor:
    """(n,) bool along one axis: the feature rows (or columns) whose view, from `before`
    rows above to `after` below, does not lie wholly on one side of the seam, inside the
    image. Unrolled (shift 0), nothing changes. Rows [0, shift) hold the image's last
    rows, wrapped round: whole blocks only when the stride divides the side."""
    if shift == 0:
        return torch.zeros(n, dtype=torch.bool)
    rows = torch.arange(n, dtype=torch.float64)
    top, bottom = rows - before, rows + after
    whole = side // stride                               # rows of whole blocks
    clear = (top >= shift) & (bottom < whole)
    if side % stride == 0:
        clear |= (top >= 0) & (bottom < shift)
    return ~clear


def _in_window(layer: LayerTrace, marked: Tensor) -> Tensor:
    """(H, W) bool: whether any neighbour inside each pixel's window is marked (H, W)."""
    (H, W), steps = layer.size, torch.arange(layer.kernel_size)
    rows = (layer.origins[0] + steps.view(-1, 1, 1, 1)).clamp(0, H - 1)   # (K, 1, H, W)
    cols = (layer.origins[1] + steps.view(1, -1, 1, 1)).clamp(0, W - 1)   # (1, K, H, W)
    return (marked[rows, cols] & layer.valid).flatten(0, 1).any(0)


# --- what the shifts show, in words -----------------------------------------------------

ALONG = "the border or the seam"


def layer_shift_sentence(rolled: LayerShift) -> str:
    """What `roll_layer_input` shows, every number counted on the arrays it returns:
    unchanged pixels whose window stays clear of the border and the seam, and hatched
    (`reach`) ones; the absolute twin's count and median change on the same clear
    pixels."""
    result = rolled.layer
    K = result.kernel_size
    text = _shift_text(result, "the layer's own input", "window", f"{K}x{K} window", "")
    twin = rolled.twin
    if twin is None:
        return text + (" This layer has no relative position embeddings, so it has no "
                       "absolute twin.")
    twin_kept, clear = twin.count(~twin.reach)
    if not clear or _misaligned(result):
        return text
    median = significant(float(twin.difference[~twin.reach].median()), 2)
    return text + (f" Its absolute twin (the same W_Q, W_K and W_V; each row and column "
                   f"of the map given one of the layer's relative embeddings, at random) "
                   f"is unchanged at {twin_kept} of those {clear} pixels; its "
                   f"median change there is {median}.")


def image_shift_sentence(result: ShiftResult, extent: Extent) -> str:
    """What `shift_equivariance` shows, every number counted on its arrays: unchanged
    pixels whose view (`extent`, and the window) stays clear of the border and the
    seam, and hatched ones; equivariance is never claimed where no pixel is clear."""
    return _shift_text(result, "the whole image", "view", "view" + _extent_text(extent),
                       " through its window or the layers before it (the stem's zero "
                       "padding, earlier windows)")


def _shift_text(result: ShiftResult, rolled: str, part: str, described: str,
                how: str) -> str:
    """The counts of `result` in a sentence: with `rolled` rolled, the weights are
    unchanged at so many of the pixels whose `part` ("window"; `described` where first
    named) stays clear of the border and the seam, and at so many of the hatched ones,
    whose `part` meets one (`how`)."""
    dy, dx = result.feature_shift
    if (dy, dx) == (0, 0):
        return "Choose a shift: unrolled, every weight is trivially unchanged."
    rolled = (f"With {rolled} rolled {dy} feature pixel{'' if dy == 1 else 's'} down and "
              f"{dx} right")
    kept, pixels = result.count()
    K = result.kernel_size
    if _misaligned(result):
        return (f"{rolled}, {kept} of {pixels} pixels are unchanged ({WITHIN}): this "
                f"layer's windows are {K}x{K} blocks, which move only by whole blocks, so "
                f"every pixel now sits elsewhere in its block; shift by multiples of {K} "
                f"feature pixels.")
    clear_kept, clear = result.count(~result.reach)
    reached_kept, reached = result.count(result.reach)
    if not clear:
        return (f"{rolled}, {kept} of {pixels} pixels are unchanged ({WITHIN}): every "
                f"pixel's {part} meets {ALONG}{how}, so none can show equivariance here.")
    everywhere = " (all of them: translation equivariance)" if clear_kept == clear else ""
    text = (f"{rolled}, the weights are unchanged ({WITHIN}) at {clear_kept} of the "
            f"{clear} pixels whose {described} stays clear of {ALONG}{everywhere}")
    if reached:
        text += (f", and at {reached_kept} of the {reached} hatched pixels, whose "
                 f"{part} meets one{how}")
    return text + "."


def _misaligned(result: ShiftResult) -> bool:
    """Whether block windows were rolled by part of a block: every pixel now sits
    elsewhere in its block."""
    return result.window == "blocks" and any(s % result.kernel_size
                                             for s in result.feature_shift)


def _extent_text(extent: Extent) -> str:
    """" (each neighbour in its window seeing the image up to 1 feature pixel around
    it)", or "" where the input is the image itself or sees farther than the probe could
    tell."""
    farthest = max(extent)
    if farthest == 0 or math.isinf(farthest):
        return ""
    return (f" (each neighbour in its window seeing the image up to {farthest} feature "
            f"pixel{'' if farthest == 1 else 's'} around it)")


# --- the neighbourhood and the border -------------------------------------------------

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


def permutation_changes(result: PermutationResult) -> Dict[str, float]:
    """{"without position": ..., "with position": ...}: the relative L2 change of the
    pixel's output when its neighbours are shuffled (`explain.relative_change`)."""
    return {term: relative_change(result.outputs[term], result.outputs[term + " permuted"])
            for term in ("without position", "with position")}


def permutation_sentence(result: PermutationResult) -> str:
    """What the shuffle did, in words, from its numbers: whether the output moved
    without the position term (a set of neighbours: it should not, beyond float
    rounding, UNCHANGED) and with it."""
    if int((result.source != torch.arange(len(result.source))).sum()) < 2:
        return "No neighbour moved (the window holds fewer than two besides the pixel)."
    change = {term: relative(value) for term, value in permutation_changes(result).items()}
    without, with_ = permutation_changes(result).values()
    if without > UNCHANGED:
        said = (f"Without the position term the shuffle moved the output by "
                f"{change['without position']} (relative L2).")
    else:
        said = (f"Without the position term the output did not move ({WITHIN}): the layer "
                f"sees its neighbours as a set, in no order.")
    if with_ > UNCHANGED:
        return said + (f" With it the output moved by {change['with position']} (relative "
                       f"L2): the same neighbours at other offsets get other position "
                       f"logits.")
    return said + " With it the output did not move either: this layer's position term " \
                  "does not tell these offsets apart."


def border_comparison(model: nn.Module, layer_trace: LayerTrace, row: int,
                      col: int) -> Dict[str, PixelTrace]:
    """The same layer on the same input, with padding "mask" and "zeros", at one pixel.

    The layer's own input (recorded in the trace) goes through the layer twice, so the
    only difference is how the border is handled. Returns {"mask": px, "zeros": px}.
    """
    module = _module_named(model, layer_trace.name)
    pixels = {}
    for padding in ("mask", "zeros"):
        twin = attention_only(module)
        twin.padding = padding
        pixels[padding] = run_layer(twin, layer_trace.input[None]).pixel(row, col)
    return pixels


# --- running one layer on its own -------------------------------------------------------

def _module_named(model: nn.Module, name: str) -> LocalSelfAttention:
    """The attention layer of `model` that a trace names `name`."""
    return next(module for module, known in traced_names(model).items()
                if known == name)


def attention_only(module: LocalSelfAttention) -> LocalSelfAttention:
    """A CPU copy of the layer without its pool, to compare at the attention's resolution
    (changing the copy leaves the model alone)."""
    twin = copy.deepcopy(module).cpu()
    twin.pool = nn.Identity()
    return twin


def run_layer(module: nn.Module, features: Tensor) -> LayerTrace:
    """The trace of one attention layer run on its own on features (1, C_in, H, W)."""
    return trace(nn.Sequential(module), features).layers["0"]
