"""The compiled fast path of local attention: `csrc/window_attention.cpp`, built on first
use with the machine's C++ compiler and called through ctypes.

    from sasa_viz.attention import native
    native.available()        # True once the library is built and loaded
    native.build_error()      # why not, when it is not

It computes exactly what `local_ops.window_attention_plain` computes (logits, masked
softmax, weighted sum; and their gradients) but works on one image-head plane at a time
while it sits in the CPU cache. Nothing depends on it: `local_ops.window_attention`
uses it for CPU float32 tensors when it is available and the plain PyTorch twin otherwise
(CUDA, no compiler, or SASA_VIZ_NATIVE=0 in the environment).

The shared library is cached in $SASA_VIZ_CACHE (default ~/.cache/sasa_viz), named
after a hash of the source, the compiler flags and the machine, so an edited source or
another CPU gets a fresh build. A build takes a few seconds.
"""
import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sasa_viz.attention.window import window_padding
from sasa_viz.files import atomic_path, default_cache_dir

SOURCE = Path(__file__).resolve().parent / "csrc" / "window_attention.cpp"
# tried in order: -march=native lets the compiler use the CPU's widest vectors
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])
COMMON_FLAGS = ["-std=c++17", "-shared", "-fPIC", "-pthread"]
MAX_KERNEL_SIZE = 63   # MAX_K in the .cpp


def _compile(flags) -> Path:
    """Build the library with these flags (or reuse a cached build); its path."""
    compiler = os.environ.get("CXX", "c++")
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(
        [compiler, *flags, platform.machine(), platform.node()]).encode()).hexdigest()[:16]
    target = default_cache_dir() / f"window_attention-{key}.so"
    if not target.exists():
        # built under a temporary name: concurrent builds never load half a library
        with atomic_path(target) as partial:
            subprocess.run([compiler, *flags, *COMMON_FLAGS, str(SOURCE), "-o", str(partial)],
                           check=True, capture_output=True, text=True, timeout=300)
    return target


@functools.lru_cache(maxsize=None)
def _load() -> Tuple[Optional[ctypes.CDLL], str]:
    """(the loaded library, "") or (None, why it could not be built or loaded)."""
    if os.environ.get("SASA_VIZ_NATIVE", "1") == "0":
        return None, "disabled by SASA_VIZ_NATIVE=0"
    errors = []
    for flags in FLAG_SETS:
        try:
            library = ctypes.CDLL(str(_compile(flags)))
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            errors.append(f"{' '.join(flags)}: {detail.strip()[-500:]}")
            continue
        _declare(library)
        return library, ""
    error = "; ".join(errors)
    warnings.warn(f"sasa_viz: the compiled attention kernel could not be built, so the "
                  f"plain PyTorch path runs instead (same results, slower): {error}",
                  RuntimeWarning, stacklevel=2)
    return None, error


def _declare(library: ctypes.CDLL) -> None:
    """Argument types of the two C functions (see the end of the .cpp)."""
    pointer, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    library.window_attention_forward.argtypes = [pointer] * 8 + [i64] + [i32] * 6 + [f32, i32]
    library.window_attention_forward.restype = None
    library.window_attention_backward.argtypes = [pointer] * 10 + [i64] + [i32] * 5 + [f32, i32]
    library.window_attention_backward.restype = None


def available() -> bool:
    """Whether the compiled path is built and loaded (builds it on the first call)."""
    return _load()[0] is not None


def build_error() -> str:
    """Why the compiled path is not available ("" when it is)."""
    return _load()[1]


def supports(t: Tensor, kernel_size: int) -> bool:
    """Can the compiled path take this tensor and window (CPU, float32, K <= 63)?"""
    if t.device.type != "cpu" or t.dtype != torch.float32 or kernel_size > MAX_KERNEL_SIZE:
        return False
    return available()


def _address(t: Optional[Tensor]):
    return None if t is None else t.data_ptr()


class _WindowAttention(torch.autograd.Function):
    """out = sum_ab softmax_ab(scale (q.k_ab + row_a + col_b)) v_ab, fused in C++."""

    @staticmethod
    def forward(ctx, q, k, v, row, col, kernel_size: int, before: int, mask: bool,
                scale: float, save_weights: bool, record: bool):
        """(out, weights, content logits q.k): weights is None unless save_weights (for a
        backward pass or a trace), the content logits unless record (a trace)."""
        B, h, d, H, W = q.shape
        library = _load()[0]
        ctx.set_materialize_grads(False)   # no zero gradient is made for the weights
        weights = q.new_empty(B, h, kernel_size, kernel_size, H, W) if save_weights else None
        content = q.new_empty(B, h, kernel_size, kernel_size, H, W) if record else None
        out = torch.empty_like(q)
        library.window_attention_forward(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), _address(row), _address(col),
            _address(weights), _address(content), out.data_ptr(), B * h, d, H, W,
            kernel_size, before, int(mask), scale, torch.get_num_threads())
        if save_weights:
            ctx.save_for_backward(q, k, v, weights)
            ctx.settings = (kernel_size, before, scale, row is not None)
            ctx.mark_non_differentiable(weights)
        if record:
            ctx.mark_non_differentiable(content)
        return out, weights, content

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_weights_unused, grad_content_unused):
        q, k, v, weights = ctx.saved_tensors
        kernel_size, before, scale, has_position = ctx.settings
        B, h, d, H, W = q.shape
        library = _load()[0]
        grad_q, grad_k, grad_v = (torch.empty_like(q) for _ in range(3))
        grad_row = q.new_empty(B, h, kernel_size, H, W) if has_position else None
        grad_col = q.new_empty(B, h, kernel_size, H, W) if has_position else None
        library.window_attention_backward(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), weights.data_ptr(),
            grad_out.contiguous().data_ptr(), grad_q.data_ptr(), grad_k.data_ptr(),
            grad_v.data_ptr(), _address(grad_row), _address(grad_col), B * h, d, H, W,
            kernel_size, before, scale, torch.get_num_threads())
        return grad_q, grad_k, grad_v, grad_row, grad_col, *[None] * 6


def window_attention(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor],
                     col: Optional[Tensor], kernel_size: int, padding: str, scale: float,
                     record: bool = False):
    """The compiled twin of `local_ops.window_attention_plain` (see there); CPU float32
    tensors only (check with `supports`). Returns the output, or with record
    (output, weights, content logits), all from the one pass of the kernel."""
    tensors = [None if t is None else t.contiguous() for t in (q, k, v, row, col)]
    # the weights are made only for a backward pass or a record
    save_weights = record or (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors))
    before, _ = window_padding(kernel_size)
    out, weights, content = _WindowAttention.apply(*tensors, kernel_size, before,
                                                   padding == "mask", scale, save_weights, record)
    return (out, weights, content) if record else out
