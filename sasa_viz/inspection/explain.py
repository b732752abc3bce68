"""What the recorded tensors mean: pure functions of a LayerTrace / PixelTrace.

Everything here is arithmetic on a trace (see `sasa_viz.inspection.trace`); nothing re-runs a model
and nothing draws. `sasa_viz.drawing.figures` draws these numbers; the app and the CLI show them.

Conventions (those of the trace):
- heads first; window index [a, b] is the neighbour (top + a, left + b) with (top, left)
  the layer's window origin for the pixel: (i - K//2, j - K//2) for a sliding window, so
  the offset (dy, dx) is (a - K//2, b - K//2); the corner of the pixel's block for the
  block stem, so the offsets depend on where the pixel sits in its block (px.offsets,
  layer.offsets);
- a layer's per-pixel arrays end in (H, W), the feature map the attention runs on;
- `padding` is the layer's (px.padding): "mask" leaves out-of-image neighbours out of
  the softmax, "zeros" lets them in with a zero key and value (their logit is q . r only).

Shapes: h heads, d head_dim, K window side, H x W feature map, C = h * d output channels,
C_in input channels.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.window import participating, weighted_sum, window_at, window_softmax
from sasa_viz.inspection.trace import Counterfactual, LayerTrace, PixelTrace
from sasa_viz.numbers import NumberFormat, number_format, sentence_format

# --- softmaxes ------------------------------------------------------------------------



def content_only_weights(px: PixelTrace) -> Tensor:
    """(h, K, K): softmax of the content logits q . k alone, as if r were 0."""
    return window_softmax(px.logits_content, px.valid, px.padding, px.scale)


def position_only_weights(px: PixelTrace) -> Tensor:
    """(h, K, K): softmax of the position logits q . r alone (row part + column part),
    as if every key were 0. Uniform over the window for a layer without position."""
    return window_softmax(px.logits_row + px.logits_col, px.valid, px.padding, px.scale)


def weighted_values(weights: Tensor, values: Tensor) -> Tensor:
    """sum_ab w[h, a, b] v[h, :, a, b]: (h, K, K), (h, d, K, K) -> (h * d,), the layer's
    output at one pixel for those weights."""
    return weighted_sum(weights, values, dim=1).flatten()


def relative_change(before: Tensor, after: Tensor) -> float:
    """|after - before| / |before| (L2 norms): how much an output moved, 0.05 = 5%."""
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


WITHOUT_POSITION = "position term dropped: softmax(q·k) only"


def without_position(px: PixelTrace) -> PixelTrace:
    """The pixel as it would be if the position term q . r were dropped: a counterfactual
    (px.counterfactual says so and keeps the recorded pixel), with the content-only
    softmax as weights, the same values and the output they give; row and column logits
    0. For a layer without position embeddings the numbers are the recorded ones (up to
    float rounding).
    """
    weights = content_only_weights(px)
    return dataclasses.replace(
        px, weights=weights, output=weighted_values(weights, px.values),
        logits_row=torch.zeros_like(px.logits_row), logits_col=torch.zeros_like(px.logits_col),
        counterfactual=Counterfactual("without_position", WITHOUT_POSITION, px))


def in_softmax(px: PixelTrace) -> Tensor:
    """(K, K) bool: the neighbours that take part in the pixel's softmax."""
    return participating(px.valid, px.padding)


def outside_weight(px: PixelTrace) -> Tensor:
    """(h,): the share of each head's softmax weight on neighbours outside the map
    (0 with "mask" padding, which leaves them out)."""
    return (px.weights * ~px.valid).sum(dim=(1, 2))


# --- maps over the whole layer ---------------------------------------------------------

def entropy_of(weights: Tensor, valid: Tensor, padding: str = "mask",
               normalize: bool = False) -> Tensor:
    """Entropy in nats of each head's window distribution, -sum_ab w log w (0 log 0 = 0).

    weights: (h, K, K, ...), valid: (K, K, ...). Returns (h, ...). 0 when a head looks at
    one neighbour only; log(n) when it spreads evenly over the n neighbours taking part
    (the in-image ones for "mask", all K*K for "zeros"). normalize=True divides by that
    log(n), giving 0..1 (0 where n = 1).
    """
    entropy = -torch.xlogy(weights, weights).sum(dim=(1, 2))
    if not normalize:
        return entropy
    n = participating(valid, padding).sum(dim=(0, 1)).to(weights.dtype)    # (...)
    log_n = torch.log(n)
    return torch.where(log_n > 0, entropy / log_n.clamp_min(1e-12), torch.zeros_like(entropy))


def attention_entropy(layer: LayerTrace, normalize: bool = False) -> Tensor:
    """(h, H, W): entropy in nats of every pixel's attention, per head (see
    `entropy_of`). Low: the head picks few neighbours; high: it averages its window."""
    return entropy_of(layer.weights, layer.valid, layer.padding, normalize)


def self_weight(layer: LayerTrace) -> Tensor:
    """(h, H, W): the weight each pixel gives itself, its own window cell (px.cell)."""
    h, K = layer.heads, layer.kernel_size
    cells = layer.cells
    own = (cells[0] * K + cells[1]).expand(h, 1, *layer.size)          # (h, 1, H, W)
    return layer.weights.flatten(1, 2).gather(1, own)[:, 0]


def expected_offset(weights: Tensor, offsets: Tensor) -> Tensor:
    """(h, K, K, ...) weights, (2, K, K, ...) offsets -> (h, 2, ...): sum_ab w[a, b]
    (dy, dx), the mean offset of the neighbour a head attends to, in feature-map pixels
    ((0, 0): balanced around the pixel; (+1, 0): on average one row below). offsets:
    `window.window_offsets` (sliding windows), px.offsets or layer.offsets (any window)."""
    offsets = offsets.to(weights.dtype)
    offsets = offsets.view(*offsets.shape, *([1] * (weights.dim() - offsets.dim())))
    return (weights[:, None] * offsets).sum(dim=(2, 3))


def mean_offset(layer: LayerTrace) -> Tensor:
    """(h, 2, H, W): the expected (dy, dx) of the attended neighbour at every pixel under
    the layer's weights (see `expected_offset`). With "zeros" padding the mass given to
    out-of-image neighbours counts too."""
    return expected_offset(layer.weights, layer.offsets)


# --- attention as a convolution at one pixel -------------------------------------------

def _head_dim(layer: LayerTrace) -> int:
    return layer.q.shape[1]


def _check_channel(channel: int, channels: int) -> int:
    if not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < channels:
        raise ValueError(f"channel must be an output channel 0..{channels - 1}, "
                         f"got {channel!r}.")
    return channel


def value_matrices(layer: LayerTrace) -> Tensor:
    """(K, K, C, C_in): the matrix turning the input feature at window cell [a, b] into
    its value. W_V everywhere for ordinary layers; the stem's sum_m p(a,b,m) W_V^m."""
    K = layer.kernel_size
    if layer.value_mixture is None:
        return layer.value_weight.expand(K, K, *layer.value_weight.shape)
    return torch.einsum("abm,mci->abci", layer.value_mixture, layer.value_weight)


def effective_kernel(layer: LayerTrace, pixel: Union[PixelTrace, Tuple[int, int]],
                     channel: int) -> Tensor:
    """Attention at one pixel, written as a convolution kernel for one output channel.

    y_ij[c] = sum_ab w[h(c), a, b] (V_ab x_ab)[c] = sum_{i, a, b} kernel[i, a, b] x_ab[i]

    with x_ab the input at window cell [a, b], h(c) = c // head_dim and V_ab = W_V (the
    stem: sum_m p(a,b,m) W_V^m), so

        kernel[i, a, b] = w[h(c), a, b] * V_ab[c, i]        (C_in, K, K)

    where x is the layer's input (zero outside the map). A convolution has one kernel for
    every pixel; this one changes with the pixel because the weights w do. Outside ("zeros"
    padding) cells may have a weight but meet x = 0.
    """
    px = pixel if isinstance(pixel, PixelTrace) else layer.pixel(*pixel)
    C = px.output.shape[0]
    c = _check_channel(channel, C)
    head = c // _head_dim(layer)
    rows = value_matrices(layer)[:, :, c, :]                           # (K, K, C_in)
    return px.weights[head][None] * rows.permute(2, 0, 1)              # (C_in, K, K)


def apply_kernel(kernel: Tensor, features: Tensor, origin: Tuple[int, int]) -> Tensor:
    """sum_{i,a,b} kernel[i, a, b] * x[i, top + a, left + b] with x zero outside the map:
    a (C_in, K, K) kernel applied to (C_in, H, W) features over the window whose cell
    [0, 0] is origin = (top, left), e.g. px.origin (a 0-d tensor)."""
    return (kernel * window_at(features, *origin, kernel.shape[-1])).sum()


def conv_kernel(conv: nn.Conv2d, channel: int) -> Tensor:
    """(C_in / groups, k, k): the kernel a convolution applies for output channel
    `channel`, the same at every pixel."""
    c = _check_channel(channel, conv.out_channels)
    return conv.weight[c].detach().cpu()


def twin_conv(conv_model: Optional[nn.Module], layer_name: str) -> Optional[nn.Conv2d]:
    """The conv twin's 3x3 convolution at the attention layer `layer_name` (e.g.
    "stages.0.0.spatial"), or None (no twin, or no such layer: the attention stem)."""
    if conv_model is None:
        return None
    from sasa_viz.models.catalogue import spatial_convs  # models imports nothing from here
    return spatial_convs(conv_model).get(layer_name)


# --- the output as an equation -----------------------------------------------------------

class Term(NamedTuple):
    """One neighbour's share of y_ij[c]: weight * value = product."""
    a: int              # window row index
    b: int              # window column index
    dy: int             # offset from the pixel
    dx: int
    weight: float       # w[h(c), a, b]
    value: float        # v_ab[c]
    product: float      # weight * value
    valid: bool         # inside the feature map


@dataclass
class OutputEquation:
    """y_ij[c] = sum over terms of weight * value."""
    row: int
    col: int
    channel: int
    head: int
    terms: List[Term]   # window order; every neighbour that takes part in the softmax
    total: float        # sum of the products (float64)
    output: float       # px.output[c]; equal to total up to rounding
    recorded: float     # what the model computed for y_ij[c]: `output` unless the pixel
                        # is a counterfactual
    counterfactual: Optional[str] = None   # its description, None for recorded numbers


def output_terms(px: PixelTrace, channel: int) -> OutputEquation:
    """The terms of y_ij[c] = sum_ab w[h(c), a, b] v_ab[c] with the trace's numbers.

    Takes the neighbours inside the map for "mask" padding, every neighbour for "zeros"
    (out-of-image ones have value 0 but still take weight)."""
    h, d, K, _ = px.values.shape
    c = _check_channel(channel, h * d)
    head, e = divmod(c, d)
    use = participating(px.valid, px.padding)
    offsets = px.offsets
    weights, values = px.weights[head].double(), px.values[head, e].double()
    terms = [Term(a, b, int(offsets[0, a, b]), int(offsets[1, a, b]),
                  float(weights[a, b]), float(values[a, b]),
                  float(weights[a, b] * values[a, b]), bool(px.valid[a, b]))
             for a in range(K) for b in range(K) if use[a, b]]
    total = math.fsum(t.product for t in terms)
    return OutputEquation(px.row, px.col, c, head, terms, total, float(px.output[c]),
                          float(px.recorded.output[c]),
                          None if px.counterfactual is None else px.counterfactual.description)


def equation_formats(equation: OutputEquation) -> Tuple[NumberFormat, NumberFormat]:
    """(weights, values): how `format_equation` writes the weights, and the values, the
    rest and the total, so that the terms' differences show (see `numbers`)."""
    weights = number_format([t.weight for t in equation.terms], max_decimals=6)
    values = number_format([t.value for t in equation.terms] + [equation.total],
                           significant=3, max_decimals=4)
    return weights, values


def output_sentence(equation: OutputEquation) -> str:
    """The output in words: the recorded y_ij[c], or for a counterfactual the
    hypothetical one beside the recorded (traced) one."""
    fmt = sentence_format([equation.output, equation.recorded])
    if equation.counterfactual is None:
        return f"recorded output y_ij[c] = {fmt.text(equation.output)}"
    return (f"hypothetical output y_ij[c] = {fmt.text(equation.output)} "
            f"({equation.counterfactual}); the model's recorded (traced) output is "
            f"{fmt.text(equation.recorded)}")


def format_equation(equation: OutputEquation, max_terms: int = 6, latex: bool = False,
                    per_line: int = 3) -> str:
    """y_ij[c] = w * v + ... written out, the largest |w * v| first, the remaining terms
    gathered as "+ ... (n more: their sum)", then "= total", numbers written as
    `equation_formats` says. Plain text on one line, e.g.
        y[3,5][c=12] = 0.412*1.203 + 0.210*(-0.331) + ... (40 more: 0.012) = 0.511
    latex=True gives KaTeX/LaTeX (no surrounding $) for st.latex: an aligned block with
    `per_line` terms a line, so that a long sum wraps instead of running off the page.
    """
    ranked = sorted(equation.terms, key=lambda t: abs(t.product), reverse=True)
    shown, rest = ranked[:max(0, max_terms)], ranked[max(0, max_terms):]
    weight, value = equation_formats(equation)
    write = (lambda fmt, x: fmt.latex(x)) if latex else (lambda fmt, x: fmt.text(x))

    def signed(x: float) -> str:
        text = write(value, x)
        return f"({text})" if text.startswith("-") else text

    times = r" \cdot " if latex else "*"
    parts = [f"{write(weight, t.weight)}{times}{signed(t.value)}" for t in shown]
    if rest:
        more = signed(math.fsum(t.product for t in rest))
        if latex:
            parts.append(rf"\underbrace{{\cdots}}_{{{len(rest)}\text{{ more}}\,=\,{more}}}")
        else:
            parts.append(f"... ({len(rest)} more: {more})")
    total = write(value, equation.total)
    if not latex:
        lhs = f"y[{equation.row},{equation.col}][c={equation.channel}]"
        return f"{lhs} = {' + '.join(parts) or '0'} = {total}"
    lhs = rf"y_{{{equation.row},{equation.col}}}^{{[{equation.channel}]}}"
    lines = [" + ".join(parts[n:n + per_line]) for n in range(0, len(parts), per_line)]
    body = r" \\ &\quad + ".join(lines) or "0"
    return rf"\begin{{aligned}} {lhs} &= {body} \\ &= {total} \end{{aligned}}"


def neighbour_table(px: PixelTrace, head: int) -> List[dict]:
    """One row per window cell of one head: offset, inside the map or not, the three
    logit parts, their sum, the weight, and the size |v| of the neighbour's value."""
    K = px.weights.shape[-1]
    offsets = px.offsets
    rows = []
    for a in range(K):
        for b in range(K):
            rows.append({
                "dy": int(offsets[0, a, b]), "dx": int(offsets[1, a, b]),
                "inside": bool(px.valid[a, b]),
                "content q·k": float(px.logits_content[head, a, b]),
                "row q·r_row": float(px.logits_row[head, a, b]),
                "column q·r_col": float(px.logits_col[head, a, b]),
                "logit": float(px.logits[head, a, b]),
                "weight": float(px.weights[head, a, b]),
                "|v|": float(px.values[head, :, a, b].norm()),
            })
    return rows


# --- predictions ---------------------------------------------------------------------------

def top_k(logits: Tensor, classes: Sequence[str], k: int = 5) -> List[Tuple[str, float]]:
    """The k most probable classes under softmax(logits), most probable first.

    logits: (classes,) or (1, classes); returns [(class name, probability), ...]."""
    logits = logits.detach().reshape(-1).float().cpu()
    if logits.numel() != len(classes):
        raise ValueError(f"got {logits.numel()} logits but {len(classes)} class names.")
    probs = logits.softmax(dim=0)
    values, indices = probs.topk(min(k, len(classes)))
    return [(classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
