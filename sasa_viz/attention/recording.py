"""Per-call recording of attention intermediates.

An attention layer asks `active_recorder()` during its forward pass; outside a
`recording(...)` block the answer is None and the layer keeps nothing extra. The recorder
lives in a ContextVar, so two threads (two browser sessions sharing one cached model)
tracing at the same moment never see each other's tensors.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn

# A recorder is called as recorder(layer, tensors) by every attention layer it sees.
Recorder = Callable[[nn.Module, object], None]

_active: ContextVar[Optional[Recorder]] = ContextVar("sasa_viz_recorder", default=None)


def active_recorder() -> Optional[Recorder]:
    """The recorder of the innermost `recording` block of this thread, or None; None in
    a model compiled by torch.compile, which traces nothing (and cannot read a
    ContextVar)."""
    if torch.compiler.is_compiling():
        return None
    return _active.get()


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """Within the block, every attention layer that runs calls recorder(layer, tensors)
    with its `AttentionTensors`, all of them filled in:

        seen = []
        with recording(lambda layer, tensors: seen.append(tensors.weights.shape)):
            SelfAttention2d(3, 8, kernel_size=3, heads=2)(torch.rand(1, 3, 6, 6))
        seen                                    # [torch.Size([1, 2, 3, 3, 6, 6])]
    """
    token = _active.set(recorder)
    try:
        yield
    finally:
        _active.reset(token)
