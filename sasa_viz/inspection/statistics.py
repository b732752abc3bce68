"""What each attention head does on average: statistics over many images and pixels.

    stats = head_statistics(model, images)        # one HeadStats per (layer, head)
    print(statistics_table(stats))                # a Markdown table
    layer, head = most_telling(stats)             # the head to show a student first

    python -m sasa_viz.inspection.statistics --model sasa-cifar10 --sample
    python -m sasa_viz.inspection.statistics --model sasa-cifar10 --data PATH/TO/cifar10/train.tar.gz

The model runs over the images in batches while `recording` hands over every attention
layer's tensors for the whole batch; each batch is reduced at once to per-head running
sums, so memory does not grow with the number of images.

For every pixel (i, j) of a layer's map and every head, with weights w_ab over the K x K
window (0 where masked), offsets (dy, dx) of window cell [a, b] from the pixel (see
`window.cell_offsets`: -(K//2)..K-1-K//2 for a sliding window, the block's cells for the
block stem):

    entropy         -sum_ab w_ab ln w_ab                  nats (0 ln 0 = 0)
    largest weight  max_ab w_ab
    distance        sum_ab w_ab sqrt(dy^2 + dx^2)         feature-map pixels
    position share  Var_valid(q.r) / (Var_valid(q.k) + Var_valid(q.r))   (`position_share`)

A head's statistic is the mean of these over every image and every pixel of the map.

ln(K^2) is the entropy of a head that spreads evenly over a whole window. With
padding="mask", windows at the border hold fewer neighbours, so even a uniform head stays
below it: averaged over an 8x8 map with K = 7 the ceiling is 86% of ln 49, over a 4x4 map
71%. `HeadStats.uniform_entropy` is that ceiling for the layer; compare entropies with it.

Shapes: B batch, h heads, K window side, H x W the layer's feature map.
"""
import argparse
import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.layer import AttentionTensors
from sasa_viz.attention.recording import recording
from sasa_viz.attention.window import cell_offsets, participating
from sasa_viz.cli import (POSITIVE_INT, Parser, cifar10_source, device, model_name,
                          one_line_errors)
from sasa_viz.inspection.explain import attention_entropy, entropy_of
from sasa_viz.inspection.trace import LayerTrace, own_cells, window_origins
from sasa_viz.models.catalogue import list_models
from sasa_viz.models.data import (SAMPLE_PATH, held_out_split, load_cifar10, load_sample,
                                  to_float)
from sasa_viz.models.pretrained import load_pretrained
from sasa_viz.numbers import percent, significant

SELECTIVE = 0.75        # a head is "selective" when its mean entropy is at most this of ln(K^2)
NEARLY_UNIFORM = 0.95   # entropy at least this share of the uniform ceiling: a blur
POSITION_DRIVEN = 0.5   # position share from which a head's logits vary mostly with position


@dataclass
class HeadStats:
    """One head of one attention layer, averaged over every image and pixel."""
    layer: str                  # module name, e.g. "stages.0.0.spatial"
    head: int
    kernel_size: int            # K, the window side
    map_size: Tuple[int, int]   # (H, W) of the feature map the layer attends over
    local: bool                 # max(H, W) > K: the map is larger than the window.
                                # False: the window spans the map (global attention)
    images: int                 # how many images the means are over
    entropy: float              # mean entropy of the weights, nats
    entropy_fraction: float     # entropy / ln(K^2): 0 one neighbour, 1 uniform over K^2
    uniform_entropy: float      # what `entropy` would be if the head spread evenly over
                                # the neighbours in each softmax (mean ln n): its ceiling,
                                # below ln(K^2) where borders cut windows short
    largest_weight: float       # mean of the largest weight
    distance: float             # mean attended distance, feature-map pixels
    position_share: float       # mean share of the logits' variation from q.r, 0..1

    @property
    def evenness(self) -> float:
        """entropy / uniform_entropy: 1 for a head that spreads evenly over the
        neighbours in each softmax (its logits do not vary), 0 for one on one neighbour."""
        return self.entropy / self.uniform_entropy if self.uniform_entropy > 0 else 1.0

    @property
    def nearly_uniform(self) -> bool:
        """The head spreads its attention almost evenly (a blur): its logits barely vary,
        so nothing is said about what makes them vary."""
        return self.evenness >= NEARLY_UNIFORM


class PixelStatistics(NamedTuple):
    """The per-pixel quantities behind HeadStats, each (B, h, H, W)."""
    entropy: Tensor
    largest_weight: Tensor
    distance: Tensor
    position_share: Tensor


# --- per pixel ----------------------------------------------------------------------------

def offset_lengths(kernel_size: int, cells: Tensor) -> Tensor:
    """(K, K, H, W): sqrt(dy^2 + dx^2), how far window cell [a, b] of pixel (i, j) is from
    the pixel, given every pixel's own cell (2, H, W) (`trace.own_cells`, layer.cells);
    the same for every pixel of a sliding window, not for the stem's blocks."""
    return cell_offsets(kernel_size, *cells).float().pow(2).sum(dim=0).sqrt()


def position_share(logits_content: Tensor, logits_row: Optional[Tensor],
                   logits_col: Optional[Tensor], valid: Tensor) -> Tensor:
    """How much of each pixel's logit variation comes from the position term q.r, 0..1.

    For every pixel and head, over the neighbours inside the map (valid; the same set for
    both padding modes):

        share = Var_valid(row_a + col_b) / (Var_valid(content_ab) + Var_valid(row_a + col_b))

    with Var the population variance (divide by the number of valid neighbours) and
    content = q.k, row = q_row.r_row, col = q_col.r_col: how the two parts' variation
    divides between them, content's share being 1 - share. It lies in 0..1 whether the
    parts pull together or against each other (the variance of the whole logit,
    Var(content + position), would put their covariance in the denominator: where they
    pull against each other a "share" of it exceeds 1). 0 where neither part varies (one
    valid neighbour, or q = 0) and everywhere for position="none" (row and col None); 1
    when content is constant over the window. The logit scale (scaled=True) cancels.

    logits_content: (B, h, K, K, H, W); logits_row, logits_col: (B, h, K, H, W) or None;
    valid: (K, K, H, W) bool. Returns (B, h, H, W).
    """
    B, h, K, _, H, W = logits_content.shape
    if logits_row is None:
        return logits_content.new_zeros(B, h, H, W)
    position = logits_row[:, :, :, None] + logits_col[:, :, None, :]   # (B, h, K, K, H, W)
    weight = valid.to(position.dtype)                                        # (K, K, H, W)
    count = weight.sum(dim=(0, 1))                                       # (H, W)

    def variance(x: Tensor) -> Tensor:                                   # -> (B, h, H, W)
        mean = (x * weight).sum(dim=(2, 3)) / count
        return ((x - mean[:, :, None, None]).pow(2) * weight).sum(dim=(2, 3)) / count

    var_position = variance(position)
    var_both = variance(logits_content) + var_position
    ratio = var_position / var_both.clamp_min(torch.finfo(var_both.dtype).tiny)
    return torch.where(var_both > 0, ratio, torch.zeros_like(ratio))


def pixel_statistics(tensors: AttentionTensors, lengths: Tensor) -> PixelStatistics:
    """Entropy, largest weight, attended distance and position share at every pixel of
    one recorded layer (what `recording` hands over, with weights and logits kept).
    lengths: (K, K, H, W) from `offset_lengths`. Each (B, h, H, W); see the module doc
    for the definitions."""
    weights = tensors.weights                                            # (B, h, K, K, H, W)
    # entropy_of wants heads first and the window next: move the batch to the end
    entropy = entropy_of(weights.movedim(0, -1), tensors.valid).movedim(-1, 0)
    largest = weights.amax(dim=(2, 3))
    distance = (weights * lengths.to(weights)).sum(dim=(2, 3))
    share = position_share(tensors.logits_content, tensors.logits_row, tensors.logits_col,
                           tensors.valid)
    return PixelStatistics(entropy, largest, distance, share)


# --- over many images -----------------------------------------------------------------------

class _Sums:
    """Running per-head sums of one layer's per-pixel statistics (float64)."""

    def __init__(self, heads: int, kernel_size: int, map_size: Tuple[int, int]):
        self.kernel_size, self.map_size = kernel_size, map_size
        self.images, self.pixels, self.uniform = 0, 0, 0.0
        self.totals = torch.zeros(len(PixelStatistics._fields), heads, dtype=torch.float64)

    def add(self, stats: PixelStatistics, taking_part: Tensor) -> None:
        """stats: each (B, h, H, W); taking_part: (H, W) neighbours in each softmax."""
        B, h, H, W = stats.entropy.shape
        per_head = torch.stack([s.double().sum(dim=(0, 2, 3)) for s in stats])  # (4, h)
        self.totals += per_head.cpu()
        self.uniform += B * float(taking_part.double().log().sum())
        self.images += B
        self.pixels += B * H * W


def head_statistics(model: nn.Module, images: Tensor, batch_size: int = 100) -> List[HeadStats]:
    """Run `model` over `images` and average each attention head's statistics over every
    image and every pixel of its layer's map (module doc).

    images: (N, 3, H, W), uint8 (0..255) or float in [0, 1]. The model runs in eval mode
    on its own device, without gradients, `batch_size` images at a time (its mode is
    restored afterwards). Returns one HeadStats per (layer, head), layers in forward order.
    """
    if len(images) == 0:
        raise ValueError("head_statistics needs at least one image.")
    device = next(model.parameters()).device
    names: Dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
    sums: Dict[str, _Sums] = {}                  # insertion order = forward order

    def record(layer: nn.Module, tensors: AttentionTensors) -> None:
        name = names.get(layer) or type(layer).__name__      # "" when the model is the layer
        if name not in sums:
            sums[name] = _Sums(layer.heads, layer.kernel_size, tuple(tensors.q.shape[-2:]))
        taking_part = participating(tensors.valid, layer.padding).sum(dim=(0, 1))  # (H, W)
        cells = own_cells(window_origins(layer, *tensors.q.shape[-2:]))          # (2, H, W)
        lengths = offset_lengths(layer.kernel_size, cells)                       # (K, K, H, W)
        sums[name].add(pixel_statistics(tensors, lengths), taking_part)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recording(record):
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size]             # (b, 3, H, W)
                batch = to_float(batch) if batch.dtype == torch.uint8 else batch.float()
                model(batch.to(device))
    finally:
        model.train(was_training)
    return [row for name, s in sums.items() for row in _rows(name, s)]


def layer_statistics(layer: LayerTrace) -> List[HeadStats]:
    """The same per-head statistics for one traced image: what the explorer shows. A
    trace keeps the numbers of one image, so `images` is 1."""
    H, W = layer.size
    K = layer.kernel_size
    none = layer.position == "none"
    tensors = AttentionTensors(                          # the recorded shapes, batch of one
        layer.output[None], weights=layer.weights[None], valid=layer.valid,
        logits_content=layer.logits_content[None],
        logits_row=None if none else layer.logits_row[None, :, :, 0],     # (1, h, K, H, W)
        logits_col=None if none else layer.logits_col[None, :, 0])        # (1, h, K, H, W)
    lengths = offset_lengths(K, layer.cells)                               # (K, K, H, W)
    taking_part = participating(layer.valid, layer.padding).sum(dim=(0, 1))  # (H, W)
    sums = _Sums(layer.heads, K, (H, W))
    sums.add(pixel_statistics(tensors, lengths), taking_part)
    return _rows(layer.name, sums)


def _rows(name: str, sums: _Sums) -> List[HeadStats]:
    means = sums.totals / sums.pixels                                    # (4, h)
    K, (H, W) = sums.kernel_size, sums.map_size
    log_k2 = math.log(K * K)
    rows = []
    for head in range(means.shape[1]):
        entropy, largest, distance, share = means[:, head].tolist()
        rows.append(HeadStats(
            layer=name, head=head, kernel_size=K, map_size=(H, W), local=max(H, W) > K,
            images=sums.images, entropy=entropy,
            entropy_fraction=entropy / log_k2 if log_k2 > 0 else 0.0,
            uniform_entropy=sums.uniform / sums.pixels,
            largest_weight=largest, distance=distance, position_share=share))
    return rows


# --- what to look at first -----------------------------------------------------------------

def most_telling(stats: Sequence[HeadStats]) -> Tuple[str, int]:
    """(layer, head) to show a student first: the most selective head of a local layer.

    Rule: among heads of layers whose map is larger than the window (`local`: the
    window's position and the relative embeddings matter there), the one whose entropy
    is the smallest share of `uniform_entropy`, what spreading evenly over the same
    neighbours would give. That ceiling, not ln(K^2), is the fair yardstick between
    layers of different map sizes (borders cut small maps' windows short: a uniform head
    on a 4x4 map scores 71% of ln 49). Ties go to the earlier layer, then the lower head.
    If no layer is local, every layer is considered.
    """
    if not stats:
        raise ValueError("most_telling needs at least one HeadStats row.")
    candidates = [s for s in stats if s.local] or list(stats)
    best = min(candidates, key=lambda s: s.evenness)             # min keeps the first tie
    return best.layer, best.head


def most_selective_pixel(layer: LayerTrace, head: int) -> Tuple[int, int]:
    """(row, col) of the feature pixel where `head` attends most selectively in this
    trace: the lowest entropy in nats (`explain.attention_entropy`), first in row-major
    order on ties. Border pixels have fewer neighbours, so they can win by that alone."""
    if not 0 <= head < layer.heads:
        raise ValueError(f"head must be 0..{layer.heads - 1}, got {head!r}.")
    entropy = attention_entropy(layer)[head]                             # (H, W)
    row, col = divmod(int(entropy.flatten().argmin()), entropy.shape[1])
    return row, col


# --- as text -------------------------------------------------------------------------------


def describe_layer(stats: Sequence[HeadStats]) -> str:
    """One plain sentence about one layer's heads (its rows of `head_statistics` or
    `layer_statistics`), for a student: whether the layer is a blur, which head is the
    most selective and how much it puts on one neighbour, and which head's logits vary
    mostly with position. Position is named only for a head that is not nearly uniform
    (`HeadStats.nearly_uniform`): the logits of a head that spreads evenly barely vary,
    and what little they vary by says nothing about what the head attends to.

    e.g. "Nearly uniform: every head spreads its attention almost evenly over its window,
    so this layer acts like a 7×7 blur." or "Head 4 is the most selective: on average
    51% of its attention goes to a single neighbour, 1.3 feature pixels away."
    """
    if not stats or len({s.layer for s in stats}) != 1:
        raise ValueError("describe_layer needs the rows of exactly one layer.")
    K = stats[0].kernel_size
    if all(s.nearly_uniform for s in stats):
        sentence = (f"Nearly uniform: every head spreads its attention almost evenly over "
                    f"its window, so this layer acts like a {K}×{K} blur.")
    else:
        best = min(stats, key=lambda s: s.evenness)                  # min keeps the first tie
        sentence = (f"Head {best.head} is the most selective: on average "
                    f"{percent(best.largest_weight)} of its attention goes to a single "
                    f"neighbour, {significant(best.distance, 2)} feature pixels away.")
    driven = position_driven(stats)
    if driven:
        top = driven[0]
        sentence += (f" Head {top.head}'s logits vary mostly with position: q·r makes "
                     f"{percent(top.position_share)} of the variation of q·k and q·r "
                     f"together.")
    if not stats[0].local:
        sentence += " Its window spans the whole map, so it attends globally."
    return sentence


def position_driven(stats: Sequence[HeadStats]) -> List[HeadStats]:
    """The heads whose logits vary mostly with position (position share at least
    POSITION_DRIVEN) and that are not nearly uniform, the largest share first."""
    driven = [s for s in stats if s.position_share >= POSITION_DRIVEN and not s.nearly_uniform]
    return sorted(driven, key=lambda s: s.position_share, reverse=True)


def _map(s: HeadStats) -> str:
    H, W = s.map_size
    return f"{H}×{W}" + ("" if s.local else " (global)")


def statistics_table(stats: Sequence[HeadStats]) -> str:
    """A Markdown table, one row per (layer, head), then the three most position-driven
    heads and, for every local layer, whether one of its heads is selective (mean
    entropy at most 75% of ln(K^2)). Numbers have 3 significant digits."""
    lines = ["| layer | head | map | K | entropy (nats) | uniform (nats) | entropy / ln K² "
             "| largest weight | distance (px) | position share |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in stats:
        lines.append(f"| {s.layer} | {s.head} | {_map(s)} | {s.kernel_size} | "
                     f"{significant(s.entropy)} | {significant(s.uniform_entropy)} | "
                     f"{significant(100 * s.entropy_fraction)}% | "
                     f"{significant(s.largest_weight)} | {significant(s.distance)} | "
                     f"{significant(s.position_share)} |")

    lines += ["", f"Most position-driven heads (largest position share, at least "
              f"{POSITION_DRIVEN}, among heads that are not nearly uniform: entropy below "
              f"{NEARLY_UNIFORM:.0%} of the uniform ceiling):", ""]
    ranked = position_driven(stats)[:3]
    lines += [f"- {s.layer} head {s.head}: {significant(s.position_share)}" for s in ranked]
    if not ranked:
        lines.append("- none")

    lines += ["", f"Selective heads (entropy ≤ {SELECTIVE:.0%} of ln K²) in layers whose "
              f"map is larger than the window:", ""]
    layers = list(dict.fromkeys(s.layer for s in stats))           # forward order
    for name in layers:
        heads = [s for s in stats if s.layer == name]
        if not heads[0].local:
            continue
        selective = [s.head for s in heads if s.entropy_fraction <= SELECTIVE]
        if selective:
            lines.append(f"- {name}: yes, head{'s' * (len(selective) > 1)} "
                         f"{', '.join(map(str, selective))}")
        else:
            low = min(heads, key=lambda s: s.entropy_fraction)
            lines.append(f"- {name}: no (lowest {significant(100 * low.entropy_fraction)}%, "
                         f"head {low.head})")
    if not any(s.local for s in stats):
        lines.append("- none: every layer's window spans its map")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    """The command line, each argument checked as it is parsed (one line for a mistake,
    before the model or any image is loaded)."""
    parser = Parser("statistics", description="Per-head attention statistics of a "
                    "shipped model on held-out CIFAR-10 images.")
    parser.add_argument("--model", required=True, type=model_name(list_models()),
                        help="a shipped model, e.g. sasa-cifar10")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=cifar10_source, help="CIFAR-10 archive or folder: "
                        "use the held-out validation slice the model was trained without")
    source.add_argument("--sample", action="store_true",
                        help="use the 100 held-out images committed with the project")
    parser.add_argument("--limit", type=POSITIVE_INT, help="only the first N images")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=100)
    parser.add_argument("--device", default="auto", type=device)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """`python -m sasa_viz.inspection.statistics`: a model or data that cannot be loaded ends it with
    one line and exit status 1 (2 for arguments)."""
    args = parse_args(argv)
    with one_line_errors("statistics"):
        report_statistics(args)


def report_statistics(args: argparse.Namespace) -> None:
    """Measure the heads on the images the command line names and print the table."""
    model = load_pretrained(args.model, device=args.device)
    info = model.pretrained
    if args.sample:
        images = load_sample(SAMPLE_PATH).images
        split = (f"the committed sample of {len(images)} held-out images "
                 f"({SAMPLE_PATH.name})")
    else:
        data = load_cifar10(args.data)
        # the split sasa_viz.train held out and sasa_viz.evaluate measures
        _, val_idx = held_out_split(len(data.labels), info.get("val_size", 5000),
                                    info.get("seed", 0), info.get("limit"))
        images = data.images[val_idx]
        split = (f"the held-out validation slice ({len(val_idx)} images of the training "
                 f"split, seed {info.get('seed', 0)})")
    total = len(images)
    if args.limit:
        images = images[:args.limit]

    stats = head_statistics(model, images, args.batch_size)
    layer, head = most_telling(stats)
    count = f"{total} images" if len(images) == total else f"the first {len(images)}"
    height, width = images.shape[-2:]
    print(f"{args.model}: attention statistics over {count} ({height}×{width}) of {split}, "
          f"averaged over every image and every pixel of each layer's map.\n")
    print(statistics_table(stats))
    print(f"\nLook first at {layer} head {head}: the most selective head of a layer "
          f"whose map is larger than its window.")


if __name__ == "__main__":
    main()
