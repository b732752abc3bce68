"""Local attention's window operations, in plain PyTorch, and the fused fast path.

    local_dot(q, k)[n,h,a,b,i,j] = sum_d q[n,h,d,i,j] * k[n,h,d, i+a-K//2, j+b-K//2]
    local_sum(w, v)[n,h,d,i,j]   = sum_ab w[n,h,a,b,i,j] * v[n,h,d, i+a-K//2, j+b-K//2]
    attention_weights(logits, ...) = the softmax over each pixel's K x K neighbours
    window_attention(q, k, v, ...) = local_sum(attention_weights(local_dot(q, k), q.r), v)

(neighbours outside the map count as zero). `local_dot` gives the content logits q . k;
`local_sum` gives the weighted sum of values. Each walks the K*K offsets and reads the
shifted map as a view of one zero-padded copy, so no tensor K*K times the size of k or v
is ever made. Their backward passes are each other plus one adjoint, `_scatter`, and are
written by hand so autograd does not keep K*K graph nodes (tested against the unfold
reference in tests/test_attention.py). The window itself (offsets, validity, padding,
the masked softmax) is `sasa_viz.attention.window`'s.

`window_attention` is the whole layer after the projections. It runs the compiled
kernel of `sasa_viz.attention.native` (one image-head at a time, in cache: several times faster to
train) when it can, and otherwise its plain twin `window_attention_plain`, built from
the operations above. Both are tested against `sasa_viz.attention.reference`.
"""
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sasa_viz.attention import native
from sasa_viz.attention.window import (neighbour_validity, pad_for_windows, window_padding,
                                       window_softmax)


def _offsets(kernel_size: int, H: int, W: int):
    """(a, b, window): offset indices and the slice of a padded map that offset reads."""
    for a in range(kernel_size):
        for b in range(kernel_size):
            yield a, b, (..., slice(a, a + H), slice(b, b + W))


# Work on a few images at a time, so that the tensors touched by all K*K offsets (about
# this many floats each) stay in the CPU cache: 2-4x faster than the whole batch at once.
_CACHE_FLOATS = 2 ** 18


def _batch_chunks(t: Tensor):
    """Slices of t's batch dimension (dim 0) of about _CACHE_FLOATS elements each."""
    step = max(1, _CACHE_FLOATS // max(1, t[0].numel()))
    for start in range(0, t.shape[0], step):
        yield slice(start, start + step)


def _dot(q: Tensor, k: Tensor, kernel_size: int) -> Tensor:
    B, h, d, H, W = q.shape
    k_pad = pad_for_windows(k, kernel_size)                        # (B, h, d, H+K-1, W+K-1)
    out = q.new_empty(B, h, kernel_size, kernel_size, H, W)
    for n in _batch_chunks(q):
        q_n, k_n, out_n = q[n], k_pad[n], out[n]
        for a, b, window in _offsets(kernel_size, H, W):
            out_n[:, :, a, b] = (q_n * k_n[window]).sum(dim=2)     # (b, h, H, W)
    return out


def _sum(w: Tensor, v: Tensor) -> Tensor:
    K, (H, W) = w.shape[2], v.shape[-2:]
    v_pad = pad_for_windows(v, K)
    out = torch.zeros_like(v)                                      # (B, h, d, H, W)
    for n in _batch_chunks(v):
        w_n, v_n, out_n = w[n], v_pad[n], out[n]
        for a, b, window in _offsets(K, H, W):
            out_n.addcmul_(w_n[:, :, a, b, None], v_n[window])
    return out


def _scatter(w: Tensor, x: Tensor) -> Tensor:
    """The adjoint of both: z[.., i+a-K//2, j+b-K//2] += w[.., a, b, i, j] * x[.., i, j]."""
    K, (H, W) = w.shape[2], x.shape[-2:]
    before, _ = window_padding(K)
    z_pad = pad_for_windows(torch.zeros_like(x), K)
    for n in _batch_chunks(x):
        w_n, x_n, z_n = w[n], x[n], z_pad[n]
        for a, b, window in _offsets(K, H, W):
            z_n[window].addcmul_(w_n[:, :, a, b, None], x_n)
    return z_pad[..., before:before + H, before:before + W]


class _LocalDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, kernel_size: int) -> Tensor:
        ctx.save_for_backward(q, k)
        return _dot(q, k, kernel_size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        q, k = ctx.saved_tensors
        grad = grad.contiguous()
        return _sum(grad, k), _scatter(grad, q), None


class _LocalSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, v: Tensor) -> Tensor:
        ctx.save_for_backward(w, v)
        return _sum(w, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        w, v = ctx.saved_tensors
        grad = grad.contiguous()
        return _dot(grad, v, w.shape[2]), _scatter(w, grad)


def local_dot(q: Tensor, k: Tensor, kernel_size: int) -> Tensor:
    """(B, h, d, H, W) x2 -> (B, h, K, K, H, W): q_ij . k_ab for every neighbour."""
    return _LocalDot.apply(q.contiguous(), k.contiguous(), kernel_size)


def local_sum(w: Tensor, v: Tensor) -> Tensor:
    """(B, h, K, K, H, W), (B, h, d, H, W) -> (B, h, d, H, W): sum_ab w_ab v_ab."""
    return _LocalSum.apply(w, v.contiguous())


def attention_weights(logits: Tensor, row: Optional[Tensor], col: Optional[Tensor],
                      padding: str, scale: float) -> Tensor:
    """softmax over the K x K neighbours of scale * (logits + row_a + col_b), neighbours
    outside the map at weight 0 with padding "mask" (`window.PADDINGS`): (B, h, K, K, H, W).

    logits: (B, h, K, K, H, W) content logits q . k; row, col: (B, h, K, H, W) the
    position logits q_row . r_row(a) and q_col . r_col(b), or None. Without autograd the
    logits' memory is reused for the weights, so the two largest tensors of the layer
    never exist at once."""
    in_place = not (torch.is_grad_enabled() and (logits.requires_grad or (
        row is not None and (row.requires_grad or col.requires_grad))))
    if row is not None and in_place:
        logits += row[:, :, :, None]                              # varies along rows only
        logits += col[:, :, None, :]                              # along columns only
    elif row is not None:
        logits = logits + row[:, :, :, None] + col[:, :, None, :]
    K, (H, W) = logits.shape[2], logits.shape[-2:]
    valid = neighbour_validity(K, H, W, logits.device)            # (K, K, H, W)
    return window_softmax(logits, valid, padding, scale, in_place)


def window_attention_plain(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor],
                           col: Optional[Tensor], kernel_size: int, padding: str,
                           scale: float, record: bool = False):
    """sum_ab softmax_ab(scale (q . k_ab + row_a + col_b)) v_ab: (B, h, d, H, W), and
    with record also what a trace keeps: the softmax weights and the content logits
    q . k_ab, (B, h, K, K, H, W) each.

    q, k, v: (B, h, d, H, W); row, col: (B, h, K, H, W) or None; padding: "mask" leaves
    out-of-map neighbours out of the softmax, "zeros" lets them take part as zero keys
    and values (`window.PADDINGS`)."""
    logits = local_dot(q, k, kernel_size)
    content = logits.clone() if record else None          # the softmax may reuse logits
    weights = attention_weights(logits, row, col, padding, scale)
    out = local_sum(weights, v)
    return (out, weights, content) if record else out


BACKENDS = ("auto", "native", "plain")


def window_attention(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor],
                     col: Optional[Tensor], kernel_size: int, padding: str, scale: float,
                     record: bool = False, backend: str = "auto"):
    """`window_attention_plain`, by the backend named: "native", the compiled kernel
    (CPU float32; a ValueError where it cannot run), "plain", the PyTorch twin, or
    "auto", the kernel where it can run and the twin elsewhere. Same numbers to float
    rounding, forward and gradients (both are tested against `reference`)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    runs_natively = native.supports(q, kernel_size)
    if backend == "native" and not runs_natively:
        raise ValueError(f"the compiled kernel cannot run on {q.dtype} {q.device.type} "
                         f"tensors with {kernel_size}x{kernel_size} windows here "
                         f"({native.build_error() or 'CPU float32 only'}); use "
                         f"backend='plain' or 'auto'.")
    if backend == "native" or (backend == "auto" and runs_natively):
        return native.window_attention(q, k, v, row, col, kernel_size, padding, scale, record)
    return window_attention_plain(q, k, v, row, col, kernel_size, padding, scale, record)
