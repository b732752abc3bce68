"""Fixtures shared by the test files."""
import os

import pytest
import torch

from sasa_viz.attention import native


@pytest.fixture(autouse=True)
def torch_threads():
    """app.py gives torch one thread per process (a class shares the cores); an AppTest
    runs it in this process, so put the thread count back for the tests after it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def require_native() -> None:
    """The compiled kernel must build here; under CI a missing compiler is a failure."""
    if not native.available():
        message = f"the compiled attention kernel did not build: {native.build_error()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["native", "plain"])
def window_path(request, monkeypatch):
    """Run the test once through the compiled kernel and once through its plain
    PyTorch twin (`local_ops.window_attention_plain`)."""
    if request.param == "plain":
        monkeypatch.setattr(native, "supports", lambda t, kernel_size: False)
    else:
        require_native()
    return request.param


@pytest.fixture
def plain_window_path(monkeypatch):
    """Only the plain PyTorch twin, whose every product PyTorch's dispatcher sees."""
    monkeypatch.setattr(native, "supports", lambda t, kernel_size: False)
