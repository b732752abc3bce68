"""What a k x k convolution and a local attention layer cost, as plain formulas.

Per output pixel, with d_in input and d_out output channels (the paper's section 3):

    convolution   params  k^2 d_in d_out
                  madds   k^2 d_in d_out
    attention     params  3 d_in d_out                 W_Q, W_K, W_V (1x1, no bias)
                        + k d_out                      r_row and r_col (position="relative")
                  madds   3 d_in d_out                 the three projections
                        + k^2 d_out                    logits q_ij . k_ab, k^2 neighbours
                        + k^2 d_out                    weighted sum of the values
                        + k d_out                      q . r: k row and k column offsets

Attention parameters barely depend on k, and its cost grows like k^2 d_out instead of
k^2 d_in d_out, which is why a wide window is affordable: with d_in = d_out = 128 a
19 x 19 attention layer costs no more than a 3 x 3 convolution (`crossover_k`).

The attention stem has m value matrices. `stem_madds` counts a value map and a
weighted sum per matrix, the count with which Table 1's full-attention FLOPS come out
as the paper's:

    stem          madds   (2 + m) d_in d_out           W_Q, W_K and W_V^1..m
                        + k^2 d_out                    logits q_ij . k_ab
                        + m k^2 d_out                  a weighted sum per value matrix

Over blocks p(a,b,m) depends on the pixel alone, so the matrices can be mixed
first, as `SpatiallyAwareAttention` does: one value map and one weighted sum,
`mixed_stem_madds` = 3 d_in d_out + 2 k^2 d_out. Counted that way the full-attention
rows fall short of the paper's; `stem_convention` sets the two side by side.

The number of heads cancels out of every count: h heads of d_out/h channels do as many
dot products of d_out/h as one head does of d_out. It is only checked to divide d_out.

"madds" are multiply-adds; the paper's FLOPS count each as 2. Softmax, masking and
pooling are not counted. An attention layer with stride 2 attends at full resolution and
then average-pools, so its cost per pixel is per pixel attended.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from sasa_viz.attention.layer import POSITIONS, LocalSelfAttention
from sasa_viz.attention.stem import SpatiallyAwareAttention
from sasa_viz.models.catalogue import IMAGENET_SIZE
from sasa_viz.models.pretrained import create
from sasa_viz.numbers import percent, significant

STEM_COUNTS = ("per matrix", "mixed")   # how model_madds counts the attention stem


def conv_params(k: int, d_in: int, d_out: int) -> int:
    """Weights of a bias-free k x k convolution: k^2 d_in d_out."""
    return k * k * d_in * d_out


def conv_madds(k: int, d_in: int, d_out: int) -> int:
    """Multiply-adds per output pixel of a k x k convolution: k^2 d_in d_out (every
    output channel is a dot product of length k^2 d_in)."""
    return k * k * d_in * d_out


def position_params(k: int, d_out: int, position: str = "relative",
                    max_size: int = 64) -> int:
    """Position embedding parameters: a row and a column part, d_out channels together
    (per head: half its channels each), one entry per offset for "relative" (k d_out) or
    per row/column of the map for "absolute" (max_size d_out); "none" has none."""
    _check_position(position)
    return {"relative": k, "absolute": max_size, "none": 0}[position] * d_out


def attention_params(k: int, d_in: int, d_out: int, heads: int = 8,
                     position: str = "relative", max_size: int = 64) -> int:
    """Parameters of SelfAttention2d: 3 d_in d_out (W_Q, W_K, W_V) + k d_out (relative
    r_row and r_col; see `position_params` for the others)."""
    _check_heads(d_out, heads)
    return 3 * d_in * d_out + position_params(k, d_out, position, max_size)


def attention_madds(k: int, d_in: int, d_out: int, heads: int = 8,
                    position: str = "relative") -> int:
    """Multiply-adds per output pixel of SelfAttention2d:

        3 d_in d_out    q, k and v, one 1x1 projection each
      + k^2 d_out       content logits: per head, k^2 dots q_ij . k_ab of d_out/heads
      + k^2 d_out       output: per head, sum_ab w_ab v_ab over k^2 vectors of d_out/heads
      + k d_out         position logits ("relative" or "absolute"): per head, k row dots
                        of the row half of q and k column dots of the column half; added
                        to the k^2 logits by broadcasting, not recomputed for each.
    """
    _check_heads(d_out, heads)
    _check_position(position)
    position_term = 0 if position == "none" else k * d_out
    return 3 * d_in * d_out + 2 * k * k * d_out + position_term


def stem_madds(k: int, d_in: int, d_out: int, heads: int = 8, mixtures: int = 4) -> int:
    """Multiply-adds per pixel of the spatially-aware stem, a value map and a weighted
    sum per value matrix (Table 1's full-attention FLOPS match the paper's with it):

        (2 + m) d_in d_out  q, k and the m value maps W_V^m x
      + k^2 d_out           content logits over the k x k window (a block: its k^2 pixels)
      + m k^2 d_out         the weighted sum, once per value matrix:
                            sum_m sum_ab (w_ab p(a,b,m)) (W_V^m x)_ab

    Over blocks a pixel's mixture depends on the pixel alone, so `SpatiallyAwareAttention`
    mixes the matrices first and needs one value map and one weighted sum
    (`mixed_stem_madds`).
    """
    _check_heads(d_out, heads)
    return (2 + mixtures) * d_in * d_out + (1 + mixtures) * k * k * d_out


def mixed_stem_madds(k: int, d_in: int, d_out: int, heads: int = 8) -> int:
    """Multiply-adds per pixel of the block stem with its value matrices mixed first:
    p(a,b,m) depends on the pixel's place in its block alone, so V_ab = sum_m p(a,b,m)
    W_V^m is one matrix per cell of the block (k^2 m d_in d_out once per layer, not per
    pixel) and the stem costs what an attention layer without position logits does,
    `attention_madds(k, d_in, d_out, heads, "none")`:

        3 d_in d_out    q, k and the one value map V_ab x_ab
      + k^2 d_out       content logits over the block
      + k^2 d_out       one weighted sum

    `SpatiallyAwareAttention` mixes the matrices so; its products then run on the C_in
    input channels (see `sasa_viz.attention.stem`), which neither count follows exactly."""
    return attention_madds(k, d_in, d_out, heads, "none")


def crossover_k(d_in: int, d_out: int, conv_k: int = 3, heads: int = 8,
                position: str = "relative") -> int:
    """The largest odd attention window k whose madds do not exceed a conv_k x conv_k
    convolution's: attention_madds(k) <= conv_madds(conv_k). The paper: 19 for
    d_in = d_out = 128 and conv_k = 3."""
    budget = conv_madds(conv_k, d_in, d_out)
    if attention_madds(1, d_in, d_out, heads, position) > budget:
        raise ValueError(f"even a 1x1 attention window costs more than a {conv_k}x{conv_k} "
                         f"convolution with d_in={d_in}, d_out={d_out}: the projections "
                         f"alone are 3 d_in d_out.")
    k = 1
    while attention_madds(k + 2, d_in, d_out, heads, position) <= budget:
        k += 2
    return k


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device too)."""
    return sum(p.numel() for p in module.parameters())


def parameter_breakdown(model: nn.Module) -> "OrderedDict[str, int]":
    """Where a model's parameters are, for a Table-1 style comparison:

        stem                   everything under the top-level `stem` module
        attention projections  W_Q, W_K, W_V of the attention layers
        position embeddings    r_row, r_col of the attention layers
        spatial convolutions   convolutions with a kernel larger than 1x1
        1x1 convolutions       the bottlenecks' reduce/expand convs and the shortcuts
        batch norm             gamma and beta
        classifier             linear layers

    The values add up to count_parameters(model).
    """
    counts: Dict[str, int] = OrderedDict((group, 0) for group in (
        "stem", "attention projections", "position embeddings", "spatial convolutions",
        "1x1 convolutions", "batch norm", "classifier"))
    modules = dict(model.named_modules())
    attention = {name for name, m in modules.items() if isinstance(m, LocalSelfAttention)}
    for name, p in model.named_parameters():
        owner_name = name.rpartition(".")[0]                 # "stages.0.0.spatial.query"
        owner = modules[owner_name]
        if name.split(".")[0] == "stem":
            group = "stem"
        elif owner_name in attention:                        # its own r_row, r_col
            group = "position embeddings"
        elif owner_name.rpartition(".")[0] in attention:     # its query, key, value convs
            group = "attention projections"
        elif isinstance(owner, nn.Conv2d):
            big = owner.kernel_size != (1, 1)
            group = "spatial convolutions" if big else "1x1 convolutions"
        elif isinstance(owner, nn.modules.batchnorm._BatchNorm):
            group = "batch norm"
        elif isinstance(owner, nn.Linear):
            group = "classifier"
        else:
            raise ValueError(f"parameter_breakdown does not know where {name} "
                             f"({type(owner).__name__}) belongs.")
        counts[group] += p.numel()
    return counts


# Table 1 of the paper (ImageNet, 224 x 224): parameters in millions and FLOPS in billions
# (a multiply-add counted as 2) of the baseline, conv-stem + attention and full attention.
PAPER_TABLE1_PARAMS = {
    "conv-resnet26": 13.7, "conv-resnet38": 19.6, "conv-resnet50": 25.6,
    "sasa-resnet26": 10.3, "sasa-resnet38": 14.1, "sasa-resnet50": 18.0,
    "sasa-full-resnet26": 10.3, "sasa-full-resnet38": 14.1, "sasa-full-resnet50": 18.0,
}
PAPER_TABLE1_FLOPS = {
    "conv-resnet26": 4.7, "conv-resnet38": 6.5, "conv-resnet50": 8.2,
    "sasa-resnet26": 4.5, "sasa-resnet38": 5.7, "sasa-resnet50": 7.0,
    "sasa-full-resnet26": 4.7, "sasa-full-resnet38": 6.0, "sasa-full-resnet50": 7.2,
}


def model_madds(model: nn.Module, height: int = IMAGENET_SIZE, width: int = IMAGENET_SIZE,
                stem_count: str = "per matrix") -> int:
    """Multiply-adds of one forward pass on a height x width image, counted layer by
    layer from the shapes a forward pass on the meta device produces: every convolution
    (k^2 C_in/groups C_out per output pixel), every attention layer with its projections
    (`attention_madds` per pixel attended) and the classifier. The attention stem is
    counted per value matrix (`stem_madds`, the count Table 1 uses) or, stem_count
    "mixed", with its matrices mixed first (`mixed_stem_madds`).
    Batch norm, softmax and pooling are not counted."""
    if stem_count not in STEM_COUNTS:
        raise ValueError(f"stem_count must be one of {STEM_COUNTS}, got {stem_count!r}.")
    total = 0
    projections = {m for layer in model.modules() if isinstance(layer, LocalSelfAttention)
                   for m in layer.children()}               # counted with their layer

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d) and module not in projections:
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.shape[-2] * output.shape[-1] * k * (
                module.in_channels // module.groups) * module.out_channels
        elif isinstance(module, LocalSelfAttention):
            total += inputs[0].shape[-2] * inputs[0].shape[-1] * _layer_madds(module,
                                                                              stem_count)
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _layer_madds(layer: LocalSelfAttention, stem_count: str) -> int:
    """Multiply-adds per pixel attended of one attention layer, projections included;
    the stem counted as `stem_count` says (see `model_madds`)."""
    shape = (layer.kernel_size, layer.in_channels, layer.out_channels, layer.heads)
    if not isinstance(layer, SpatiallyAwareAttention):
        return attention_madds(*shape, layer.position)
    if stem_count == "per matrix":
        return stem_madds(*shape, layer.mixtures)
    return mixed_stem_madds(*shape)


def table1() -> List[dict]:
    """Table 1 measured on `sasa_viz.models`, beside the paper's numbers.

    Models are built on the meta device: counted, never allocated (seconds in all)."""
    rows = []
    for name, paper in PAPER_TABLE1_PARAMS.items():
        with torch.device("meta"):
            model = create(name)
        params = count_parameters(model) / 1e6
        flops = 2 * model_madds(model.eval()) / 1e9
        paper_flops = PAPER_TABLE1_FLOPS[name]
        rows.append({"model": name,
                     "params, paper (M)": paper, "params (M)": round(params, 2),
                     "params difference": f"{(params - paper) / paper:+.1%}",
                     "FLOPS, paper (B)": paper_flops, "FLOPS (B)": round(flops, 2),
                     "FLOPS difference": f"{(flops - paper_flops) / paper_flops:+.1%}"})
    return rows


FULL_ATTENTION = ("sasa-full-resnet26", "sasa-full-resnet38", "sasa-full-resnet50")


@dataclass(frozen=True)
class StemConvention:
    """The attention stem of Table 1's full-attention models counted both ways.

    kernel_size, in_channels, out_channels, mixtures: the stem's (the same in every
    model). per_matrix, mixed: its multiply-adds per pixel (`stem_madds`,
    `mixed_stem_madds`). models, paper_flops: the rows and the paper's FLOPS (billions);
    flops_per_matrix, flops_mixed: the models' FLOPS (billions, a multiply-add counted
    as 2) with the stem counted each way."""
    kernel_size: int
    in_channels: int
    out_channels: int
    mixtures: int
    per_matrix: int
    mixed: int
    models: Tuple[str, ...]
    paper_flops: Tuple[float, ...]
    flops_per_matrix: Tuple[float, ...]
    flops_mixed: Tuple[float, ...]

    @staticmethod
    def differences(flops: Tuple[float, ...], paper: Tuple[float, ...]) -> List[float]:
        """(flops - paper) / paper, row by row."""
        return [(f - p) / p for f, p in zip(flops, paper)]

    def per_matrix_matches(self) -> bool:
        """Does counting per matrix bring every row closer to the paper than the closest
        row counted mixed?"""
        per_matrix = self.differences(self.flops_per_matrix, self.paper_flops)
        mixed = self.differences(self.flops_mixed, self.paper_flops)
        return max(map(abs, per_matrix)) < min(map(abs, mixed))

    def sentences(self) -> List[str]:
        """The convention in words, every number from the fields; the last sentence,
        that per matrix is the count that matches, only when `per_matrix_matches`."""
        K, m = self.kernel_size, self.mixtures
        paper = ", ".join(significant(f, 2) for f in self.paper_flops)
        said = [
            f"The attention stem of the full-attention rows ({K}×{K} blocks, "
            f"{self.in_channels} → {self.out_channels} channels, m = {m} value matrices) "
            f"is counted with q, k and {m} value maps and a weighted sum per value "
            f"matrix: {self.per_matrix:,} multiply-adds per pixel (`stem_madds`).",
            f"The stem as built here (`AttentionStem`) mixes the {m} matrices into one "
            f"per cell of its block first, which p(a, b, m) allows by depending only on "
            f"the pixel's place in its block, and takes one weighted sum: counted that "
            f"way, {self.mixed:,} per pixel (`mixed_stem_madds`).",
            f"Counted per matrix, the full-attention rows come out at "
            f"{_flops_list(self.flops_per_matrix)} billion FLOPS against the paper's "
            f"{paper} ({_how_far(self.differences(self.flops_per_matrix, self.paper_flops))}"
            f"); counted mixed, at {_flops_list(self.flops_mixed)} "
            f"({_how_far(self.differences(self.flops_mixed, self.paper_flops))})."]
        if self.per_matrix_matches():
            said.append("So Table 1 here counts the stem per matrix: that count, not "
                        "the one the code's mixing allows, matches the paper's "
                        "full-attention rows.")
        return said


def stem_convention() -> StemConvention:
    """Table 1's full-attention models counted with the stem per matrix and mixed,
    beside the paper's FLOPS. Built on the meta device: counted, never allocated."""
    rows = []
    for name in FULL_ATTENTION:
        with torch.device("meta"):
            model = create(name).eval()
        stem = model.stem.attention
        shape = (stem.kernel_size, stem.in_channels, stem.out_channels, stem.mixtures)
        rows.append((shape, *(2 * model_madds(model, stem_count=count) / 1e9
                              for count in STEM_COUNTS)))
    shapes = {shape for shape, *_ in rows}
    if len(shapes) != 1:
        raise ValueError(f"the full-attention models' stems differ: {sorted(shapes)}.")
    K, d_in, d_out, m = shapes.pop()
    return StemConvention(K, d_in, d_out, m, stem_madds(K, d_in, d_out, mixtures=m),
                          mixed_stem_madds(K, d_in, d_out), FULL_ATTENTION,
                          tuple(PAPER_TABLE1_FLOPS[n] for n in FULL_ATTENTION),
                          tuple(per_matrix for _, per_matrix, _ in rows),
                          tuple(mixed for *_, mixed in rows))


def _flops_list(flops: Tuple[float, ...]) -> str:
    """"4.78, 5.99, 7.20": billions of FLOPS, 3 significant digits."""
    return ", ".join(significant(f) for f in flops)


def _how_far(differences: List[float]) -> str:
    """"1.1% to 3.4% below the paper's", "... above ...", or "within 1.7% of ..." when
    the signs differ."""
    sizes = sorted(abs(d) for d in differences)
    if all(d < 0 for d in differences) or all(d > 0 for d in differences):
        side = "below" if differences[0] < 0 else "above"
        return f"{percent(sizes[0])} to {percent(sizes[-1])} {side} the paper's"
    return f"within {percent(sizes[-1])} of the paper's"


def _check_heads(d_out: int, heads: int) -> None:
    if d_out % heads:
        raise ValueError(f"heads={heads} does not divide d_out={d_out}.")


def _check_position(position: str) -> None:
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}.")
