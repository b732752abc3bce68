"""Per-call recording of attention intermediates.

An attention layer asks `active_recorder()` during its forward pass; outside a
`recording(...)` block the answer is None and the layer keeps nothing extra. The recorder
lives in a ContextVar, so two threads (two browser sessions sharing one cached model)
tracing at the same moment never see each other's tensors.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

import torch.nn as nn

# A recorder is called as recorder(layer, tensors) by every attention layer it sees.
Recorder = Callable[[nn.Module, object], None]

_active: ContextVar[Optional[Recorder]] = ContextVar("sasa_viz_recorder", default=None)


def active_recorder() -> Optional[Recorder]:
    return _active.get()


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    token = _active.set(recorder)
    try:
        yield
    finally:
        _active.reset(token)
