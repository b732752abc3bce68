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
    library.window_attention_backward.argtypes = [pointer] * 11 + [i64] + [i32] * 6 + [f32, i32]
    library.window_attention_backward.restype = None


@torch.compiler.assume_constant_result      # torch.compile: a constant, not code to trace
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


# --- the kernel as PyTorch operators ----------------------------------------------------
#
# Registered with torch.library, with their shapes for tracing ("fake" implementations)
# and the forward's gradient formula, so that torch.compile sees one graph through a
# whole model instead of breaking it at every attention layer. The backward recomputes
# the softmax weights from q, k and the position logits (as flash attention does), so a
# training step never writes the weights, K*K times the size of q, to memory. Outputs a
# pass does not need (the weights and content logits without a trace, the position
# gradients without position logits) are empty tensors.

NOTHING = (0,)     # the shape of an output that is not needed


@torch.library.custom_op("sasa_viz::window_attention_forward", mutates_args=())
def _forward(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor], col: Optional[Tensor],
             kernel_size: int, before: int, mask: bool, scale: float, record: bool
             ) -> Tuple[Tensor, Tensor, Tensor]:
    """(out (B, h, d, H, W), and with record the weights and the content logits q.k
    (B, h, K, K, H, W), else empty): out = sum_ab softmax_ab(scale (q.k_ab + row_a +
    col_b)) v_ab, fused in C++."""
    out, weights, content = _forward_shapes(q, kernel_size, record)
    B, h, d, H, W = q.shape
    _load()[0].window_attention_forward(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), _address(row), _address(col),
        _address(weights if record else None), _address(content if record else None),
        out.data_ptr(), B * h, d, H, W, kernel_size, before, int(mask), scale,
        torch.get_num_threads())
    return out, weights, content


@_forward.register_fake
def _forward_fake(q, k, v, row, col, kernel_size, before, mask, scale, record):
    return _forward_shapes(q, kernel_size, record)


def _forward_shapes(q: Tensor, kernel_size: int, record: bool):
    """Empty outputs of the forward operator, of the shapes it fills."""
    B, h, d, H, W = q.shape
    window = (B, h, kernel_size, kernel_size, H, W) if record else NOTHING
    return torch.empty_like(q), q.new_empty(window), q.new_empty(window)


@torch.library.custom_op("sasa_viz::window_attention_backward", mutates_args=())
def _backward(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor], col: Optional[Tensor],
              grad_out: Tensor, kernel_size: int, before: int, mask: bool, scale: float
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of q, k, v and (with position logits) of the row and column logits
    (B, h, K, H, W), the weights recomputed."""
    position = row is not None
    grad_q, grad_k, grad_v, grad_row, grad_col = _backward_shapes(q, kernel_size, position)
    B, h, d, H, W = q.shape
    _load()[0].window_attention_backward(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), _address(row), _address(col),
        grad_out.data_ptr(), grad_q.data_ptr(), grad_k.data_ptr(), grad_v.data_ptr(),
        _address(grad_row if position else None), _address(grad_col if position else None),
        B * h, d, H, W, kernel_size, before, int(mask), scale, torch.get_num_threads())
    return grad_q, grad_k, grad_v, grad_row, grad_col


@_backward.register_fake
def _backward_fake(q, k, v, row, col, grad_out, kernel_size, before, mask, scale):
    return _backward_shapes(q, kernel_size, row is not None)


def _backward_shapes(q: Tensor, kernel_size: int, position: bool):
    B, h, d, H, W = q.shape
    logits = (B, h, kernel_size, H, W) if position else NOTHING
    return (*(torch.empty_like(q) for _ in range(3)), q.new_empty(logits),
            q.new_empty(logits))


def _save_for_backward(ctx, inputs, output) -> None:
    q, k, v, row, col, kernel_size, before, mask, scale, _ = inputs
    ctx.set_materialize_grads(False)    # no zero gradient is made for weights and content
    ctx.save_for_backward(q, k, v, row, col)
    ctx.settings = (kernel_size, before, mask, scale)


def _gradients(ctx, grad_out, _grad_weights, _grad_content):
    q, k, v, row, col = ctx.saved_tensors
    grad_q, grad_k, grad_v, grad_row, grad_col = _backward(
        q, k, v, row, col, grad_out.contiguous(), *ctx.settings)
    if row is None:
        grad_row = grad_col = None
    return grad_q, grad_k, grad_v, grad_row, grad_col, *[None] * 5


_forward.register_autograd(_gradients, setup_context=_save_for_backward)


def window_attention(q: Tensor, k: Tensor, v: Tensor, row: Optional[Tensor],
                     col: Optional[Tensor], kernel_size: int, padding: str, scale: float,
                     record: bool = False):
    """The compiled twin of `local_ops.window_attention_plain` (see there); CPU float32
    tensors only (check with `supports`). Returns the output, or with record
    (output, weights, content logits), all from the one pass of the kernel."""
    tensors = [None if t is None else t.contiguous() for t in (q, k, v, row, col)]
    before, _ = window_padding(kernel_size)
    out, weights, content = _forward(*tensors, kernel_size, before, padding == "mask", scale,
                                     record)
    return (out, weights, content) if record else out
