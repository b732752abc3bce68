"""The spatially-aware attention stem of the paper's "full attention" models.

At the input, single pixels carry little content, so the stem makes the values depend on
where a pixel sits inside its window: a mixture of m value matrices

    v_ab = ( sum_m p(a,b,m) W_V^m ) x_ab,    p(a,b,m) = softmax_m( (emb_row(a) + emb_col(b)) . nu_m )

with (a, b) the position inside the K x K window, p shared by all heads. Batch norm, ReLU
and a K x K max pool follow (the paper names batch norm and the pool; the ReLU is this
project's, as in ResNet's conv stem). The paper's stem has K = 4 at 224 px; the CIFAR
models use K = 2 at 32 px (`sasa_viz.models.cifar_config`).

The windows are the paper's blocks: the map is cut into non-overlapping K x K blocks, the
very blocks the max pool takes its maxima over, and each pixel attends over the K^2
pixels of its own block with content logits only, softmax_ab(q_ij . k_ab); position
enters through the values alone. (a, b) is a pixel's position inside its block, so v_ab
belongs to the pixel, whichever pixel of the block asks. A map whose side is not a
multiple of K is zero-padded up to one, and the padded pixels are left out of the
softmax (padding="mask") or take part as zero keys and values ("zeros").

Blocks are cheap: `pixel_unshuffle` ("space to depth") puts each block's K^2 pixels
side by side as (P, nH, nW), so every key cell meets every query cell of its block in
elementwise products over the blocks, and `pixel_shuffle` puts the output back on the map.
Both products work on the C_in = 3 input channels rather than on d-dimensional queries,
keys and values: q_p . k_a = x_p^T (W_Q^T W_K) x_a, and sum_a w_ap V_a x_a weighs the
pixels before one matrix product with the mixed value matrices V_a = sum_m p(a,b,m) W_V^m
(twice as fast as products of q, k and v). `sasa_viz.inspection.cost.stem_madds` still counts m
value maps and m weighted sums, the count that matches Table 1's full-attention FLOPS;
`mixed_stem_madds` counts the mixing (`cost.stem_convention` compares the two).

Shapes: B batch, h heads, d head_dim, K window side, m mixtures, H x W the map,
nH x nW the blocks (H / K x W / K, rounded up), P = K * K pixels per block.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sasa_viz.attention.layer import AttentionTensors, LocalSelfAttention
from sasa_viz.attention.window import window_softmax, window_validity
from sasa_viz.numbers import WEIGHT


class SpatiallyAwareAttention(LocalSelfAttention):
    """Local self-attention over blocks whose values are a position-dependent mixture
    (see module doc). padding: what happens to cells past the map's edge, as in
    `SelfAttention2d`.
    """
    window = "blocks"       # each pixel attends over its own K x K block

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, padding: str = "mask"):
        if not isinstance(mixtures, int) or mixtures < 1:
            raise ValueError(f"mixtures must be a positive integer, got {mixtures!r}.")
        super().__init__(in_channels, out_channels, kernel_size, heads, padding, "none",
                         stride=1, scaled=False, max_size=64)
        self.mixtures = mixtures
        self.value = nn.Conv2d(in_channels, out_channels * mixtures, 1, bias=False)  # W_V^1..m
        self.emb_row = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.emb_col = nn.Parameter(torch.randn(kernel_size, out_channels))
        self.nu = nn.Parameter(torch.randn(mixtures, out_channels) * out_channels ** -0.5)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixtures={self.mixtures}"

    def value_mixture(self) -> Tensor:
        """p(a, b, m): (K, K, m), sums to 1 over m."""
        emb = self.emb_row[:, None, :] + self.emb_col[None, :, :]  # (K, K, C)
        return (emb @ self.nu.T).softmax(dim=-1)                   # (K, K, m)

    def window_origin(self, row, col):
        """The top-left pixel of the pixel's block (ints or tensors)."""
        K = self.kernel_size
        return row - row % K, col - col % K

    def attend(self, x: Tensor, record: bool = False) -> AttentionTensors:
        B, C_in, H, W = x.shape
        K, h, d, m = self.kernel_size, self.heads, self.head_dim, self.mixtures
        P, nH, nW = K * K, -(-H // K), -(-W // K)
        padded = F.pad(x, (0, nW * K - W, 0, nH * K - H))          # zero pixels to whole blocks
        pixels = F.pixel_unshuffle(padded, K).view(B, C_in, P, nH, nW)   # cell c of block (I, J)
        # q_p . k_a = x_p^T (W_Q^T W_K) x_a: a C_in x C_in form per head, cheaper than d-dim
        # queries and keys while C_in (3 at the input) is smaller than d.
        w_q, w_k = (conv.weight.view(h, d, C_in) for conv in (self.query, self.key))
        form = torch.einsum("hdi,hdj->hij", w_q, w_k)               # (h, C_in, C_in)
        keys = torch.einsum("hij,bjaIJ->bhiaIJ", form, pixels)     # (B, h, C_in, a, nH, nW)
        queries = pixels[:, None, :, None]                          # (B, 1, C_in, 1, p, nH, nW)
        content = (queries * keys[:, :, :, :, None]).sum(2)         # (B, h, a, p, nH, nW)
        on_map = torch.zeros(1, 1, nH * K, nW * K, device=x.device)
        on_map[..., :H, :W] = 1                                     # the padding is not
        inside = F.pixel_unshuffle(on_map, K).view(K, K, 1, nH, nW) > 0   # key cell (a, b)
        weights = window_softmax(content.view(B, h, K, K, P, nH, nW), inside,
                                 self.padding).view_as(content)     # over the key cells a
        # sum_a w_ap V_a x_a with V_a = sum_m p(a,b,m) W_V^m: weigh the pixels, then one
        # matrix product over (a, input channel)
        weighted = weights[:, :, None] * pixels[:, None, :, :, None]    # (B, h, C_in, a, p, nH, nW)
        out = torch.einsum("ahdi,bhiapIJ->bhdpIJ", self._cell_value_matrices(), weighted)

        def to_map(t: Tensor) -> Tensor:                            # (B, X, p, nH, nW) ->
            return F.pixel_shuffle(t.reshape(B, -1, nH, nW), K)[..., :H, :W]   # (B, X, H, W)

        output = to_map(out)                                        # (B, h d, H, W)
        if not record:
            return AttentionTensors(output)
        return AttentionTensors(
            output, x, self.query(x).view(B, h, d, H, W), self.key(x).view(B, h, d, H, W),
            self.value(x).view(B, m, h, d, H, W),                   # the m value maps W_V^m x
            to_map(content).view(B, h, K, K, H, W), None, None,     # q.k even past the edge
            block_validity(K, H, W, x.device), to_map(weights).view(B, h, K, K, H, W),
            self.value_mixture())

    def _cell_value_matrices(self) -> Tensor:
        """sum_m p(a,b,m) W_V^m for every cell of a block: (P, h, d, C_in)."""
        h, d, m = self.heads, self.head_dim, self.mixtures
        matrices = self.value.weight.view(m, h, d, -1)              # (m, h, d, C_in)
        return torch.einsum("abm,mhdi->abhdi", self.value_mixture(), matrices).flatten(0, 1)


def block_validity(kernel_size: int, height: int, width: int, device=None) -> Tensor:
    """(K, K, H, W) bool: is cell [a, b] of pixel (i, j)'s block, the pixel
    (i - i % K + a, j - j % K + b), inside the map (not padding)?"""
    K = kernel_size
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    return window_validity(K, rows - rows % K, cols - cols % K)     # windows: the blocks


class AttentionStem(nn.Module):
    """Spatially-aware attention, then batch norm, ReLU and a `pool` x `pool` max pool.

    The attention's blocks are the pool's: pool == kernel_size, or pool = 1 (no pool).
    The pool keeps a partial block at the bottom or right edge (ceil_mode), the same
    partial block the attention used.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, kernel_size: int = 4,
                 heads: int = 8, mixtures: int = 4, pool: int = 4):
        super().__init__()
        if pool not in (1, kernel_size):
            raise ValueError(f"the attention's blocks are the max pool's: pool must equal "
                             f"kernel_size={kernel_size} (or be 1 for no pool), got {pool}.")
        self.attention = SpatiallyAwareAttention(in_channels, out_channels, kernel_size,
                                                 heads, mixtures)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(pool, ceil_mode=True) if pool > 1 else nn.Identity()

    def value_mixture(self) -> Tensor:
        return self.attention.value_mixture()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.attention(x))))


# --- the stem in words ------------------------------------------------------------------

def stem_steps(stem: AttentionStem) -> List[str]:
    """What `stem` does, in order, named from its modules for a sentence, e.g.
    ["attention in 2×2 blocks", "batch norm", "a ReLU", "a 2×2 max pool"] (no pool
    step when pool is 1). Read from the modules, so the words follow the model."""
    steps = []
    for module in stem.children():                             # registered in forward order
        if isinstance(module, SpatiallyAwareAttention):
            K = module.kernel_size
            steps.append(f"attention in {K}×{K} blocks")
        elif isinstance(module, nn.BatchNorm2d):
            steps.append("batch norm")
        elif isinstance(module, nn.ReLU):
            steps.append("a ReLU")
        elif isinstance(module, nn.MaxPool2d):
            steps.append(f"a {module.kernel_size}×{module.kernel_size} max pool")
        elif not isinstance(module, nn.Identity):
            raise ValueError(f"stem_steps does not know the stem's {type(module).__name__}.")
    return steps


def compare_with_paper(stem: AttentionStem, image_size: int, paper_block: int,
                       paper_pool: int, paper_size: int) -> List[str]:
    """Sentences that set `stem`, made for image_size x image_size images, beside the
    paper's: attention in paper_block x paper_block blocks, then batch norm and a
    paper_pool x paper_pool max pool, at paper_size px (as the paper describes it,
    naming no activation). The paper's numbers come from the caller (the ImageNet
    configs); everything said about `stem` is read from its modules (`stem_steps`)."""
    steps = stem_steps(stem)
    pool = stem.pool.kernel_size if isinstance(stem.pool, nn.MaxPool2d) else 1
    sentences = [
        f"The paper's stem, for {paper_size}×{paper_size} images: attention in "
        f"{paper_block}×{paper_block} blocks, then batch norm and a "
        f"{paper_pool}×{paper_pool} max pool.",
        f"This one, for {image_size}×{image_size} images: {steps[0]}, then "
        f"{_and_list(steps[1:])}."]
    if pool != paper_pool:
        sentences.append(
            f"On a {image_size}×{image_size} image the paper's {paper_pool}×{paper_pool} "
            f"pool would make the map {_side(image_size, paper_pool)}×"
            f"{_side(image_size, paper_pool)}; {pool}×{pool} makes it "
            f"{_side(image_size, pool)}×{_side(image_size, pool)}.")
    if "a ReLU" in steps:
        sentences.append("The ReLU is this project's: the paper names batch norm and the "
                         "max pool only.")
    return sentences


def _side(size: int, pool: int) -> int:
    """The side of a size x size map after a pool x pool max pool (ceil_mode)."""
    return -(-size // pool)


def _and_list(words: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else words[0]


# --- what the value mixture p(a, b, m) does, in words -------------------------------------

UNUSED_BELOW = 0.1   # a value matrix whose p stays under this in every cell is "unused"
TAKES_ABOVE = 0.5    # a cell is a matrix's when its p there is over a half: the matrix is
                     # most of that cell's value matrix, and no other can be (p sums to 1)
EVEN_WITHIN = 0.1    # a matrix whose p varies less than this across the cells weighs
                     # "every cell about equally"


@dataclass(frozen=True)
class MatrixUse:
    """What value matrix m does in the stem, read from p(a, b, m).

    kind: "unused" (p < UNUSED_BELOW in every cell), "takes" (p > TAKES_ABOVE in
    `cells`), "even" (no cell taken, p within EVEN_WITHIN everywhere) or "share" (no
    cell taken, p uneven). cells: the cells taken ("takes"), every cell otherwise.
    low, high: the range of p over `cells`. elsewhere: the largest p outside `cells`
    (None when `cells` is every cell). sentence: all this in words."""
    m: int
    kind: str
    cells: Tuple[Tuple[int, int], ...]
    low: float
    high: float
    elsewhere: Optional[float]
    sentence: str


def describe_mixture(p) -> List[MatrixUse]:
    """Value matrix by value matrix, which cells of the K x K block it serves, with the range of p there, from p(a, b, m): (K, K, m), summing to 1 over
    m (a tensor or an array). The thresholds are UNUSED_BELOW, TAKES_ABOVE and
    EVEN_WITHIN; cells are named by their place in the block (`name_cells`); p is
    written as the grids write it (`numbers.WEIGHT`), so the sentence's numbers are the
    cells' own."""
    p = np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=float)
    return [_matrix_use(p[:, :, m], m) for m in range(p.shape[-1])]


def _matrix_use(p: np.ndarray, m: int) -> MatrixUse:
    """MatrixUse of one matrix's p(a, b): (K, K)."""
    K = p.shape[0]
    every = tuple((a, b) for a in range(K) for b in range(K))
    taken = tuple(cell for cell in every if p[cell] > TAKES_ABOVE)
    if p.max() < UNUSED_BELOW:
        kind, cells = "unused", every
    elif taken:
        kind, cells = "takes", taken
    else:
        kind = "even" if p.max() - p.min() < EVEN_WITHIN else "share"
        cells = every
    values = np.array([p[cell] for cell in cells])
    rest = [p[cell] for cell in every if cell not in cells]
    low, high = float(values.min()), float(values.max())
    elsewhere = float(max(rest)) if rest else None
    where = f"{name_cells(cells, K)} of each block"
    if kind == "unused":
        sentence = f"m = {m} is unused: p is {_at_most(high)} in every cell."
    elif kind == "takes":
        sentence = f"m = {m} takes {where} (p = {_range(low, high)})"
        sentence += f", and {_at_most(elsewhere)} elsewhere." if rest else "."
    elif kind == "even":
        sentence = f"m = {m} weighs every cell about equally (p = {_range(low, high)})."
    else:
        top = tuple(cell for cell in every if p[cell] == high)
        sentence = (f"m = {m} takes no cell: p = {_range(low, high)}, most in "
                    f"{name_cells(top, K)}.")
    return MatrixUse(m, kind, cells, low, high, elsewhere, sentence)


def _range(low: float, high: float) -> str:
    """"0.794–0.817" (p as the grids write it, `numbers.WEIGHT`), or one number when
    both are written alike."""
    low_text, high_text = WEIGHT(low), WEIGHT(high)
    return high_text if low_text == high_text else f"{low_text}–{high_text}"


def _at_most(value: float) -> str:
    """"at most 0.037", or "under 0.001" where WEIGHT writes "<0.001"."""
    text = WEIGHT(value)
    return f"under {text[1:]}" if text.startswith("<") else f"at most {text}"


def name_cells(cells: Sequence[Tuple[int, int]], K: int) -> str:
    """Cells (a, b) of a K x K block in words: "every cell", "the top row", "the
    bottom-left cell", "columns 1–2", "rows 0–1 of columns 2–3", "the cell in row 1,
    column 2", "every cell but the top-right cell", or the cells one by one. Rows count
    from 0 at the top, columns from 0 at the left."""
    chosen = set(cells)
    if len(chosen) == K * K:
        return "every cell"
    if _is_rectangle(chosen):
        return _rectangle_name(chosen, K)
    rest = {(a, b) for a in range(K) for b in range(K)} - chosen
    if _is_rectangle(rest):
        return f"every cell but {_rectangle_name(rest, K)}"
    return _and_list([_rectangle_name({cell}, K) for cell in sorted(chosen)])


def _is_rectangle(cells: set) -> bool:
    """Do the cells fill the rectangle that bounds them?"""
    rows, cols = {a for a, _ in cells}, {b for _, b in cells}
    return len(cells) == (max(rows) - min(rows) + 1) * (max(cols) - min(cols) + 1)


def _rectangle_name(cells: set, K: int) -> str:
    """A rectangle of cells of a K x K block (not all of it) in words."""
    r0, r1 = min(a for a, _ in cells), max(a for a, _ in cells)
    c0, c1 = min(b for _, b in cells), max(b for _, b in cells)
    rows = _span("row", r0, r1, K, ("top", "bottom"))
    cols = _span("column", c0, c1, K, ("left", "right"))
    if (c0, c1) == (0, K - 1):
        return rows
    if (r0, r1) == (0, K - 1):
        return cols
    corners = {0: "top", K - 1: "bottom"}, {0: "left", K - 1: "right"}
    if (r0, c0) != (r1, c1):
        return f"{rows} of {cols}"                           # "rows 0–1 of columns 2–3"
    if r0 in corners[0] and c0 in corners[1]:
        return f"the {corners[0][r0]}-{corners[1][c0]} cell"
    return f"the cell in {rows}, {cols.removeprefix('the ')}"


def _span(noun: str, first: int, last: int, K: int, ends: Tuple[str, str]) -> str:
    """Rows or columns first..last in words: "the top row", "row 2", "rows 0–1"."""
    if first != last:
        return f"{noun}s {first}–{last}"
    end = {0: ends[0], K - 1: ends[1]}.get(first)
    return f"the {end} {noun}" if end else f"{noun} {first}"
