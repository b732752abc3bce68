"""The compiled window kernel (`sasa_viz.attention.native`) and its plain PyTorch twin, against the
unfold reference, and the fallback when the kernel cannot be built."""
import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import require_native

from sasa_viz.attention import native
from sasa_viz.attention.local_ops import window_attention, window_attention_plain
from sasa_viz.attention.reference import unfold_windows
from sasa_viz.models.pretrained import create


def unfold_record(q, k, v, row, col, kernel_size, padding, scale):
    """The window attention written with unfold, independently of local_ops: the oracle.
    -> (output, weights, content logits q.k)."""
    B, h, d, H, W = q.shape
    K = kernel_size
    keys = unfold_windows(k.flatten(1, 2), K).view(B, h, d, K, K, H, W)
    values = unfold_windows(v.flatten(1, 2), K).view(B, h, d, K, K, H, W)
    content = (q[:, :, :, None, None] * keys).sum(2)                     # (B, h, K, K, H, W)
    logits = content
    if row is not None:
        logits = logits + row[:, :, :, None] + col[:, :, None, :]
    logits = logits * scale
    if padding == "mask":
        inside = unfold_windows(torch.ones(1, 1, H, W), K)[0, 0] > 0
        logits = logits.masked_fill(~inside, float("-inf"))
    weights = logits.flatten(2, 3).softmax(2).view_as(logits)
    return (weights[:, :, None] * values).sum((3, 4)), weights, content  # (B, h, d, H, W)


def unfold_attention(*arguments):
    return unfold_record(*arguments)[0]


def inputs(B, h, d, H, W, K, position, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, d, H, W, generator=g, requires_grad=True) for _ in range(3))
    row = col = None
    if position:
        row, col = (torch.randn(B, h, K, H, W, generator=g, requires_grad=True)
                    for _ in range(2))
    return q, k, v, row, col


def run(fn, tensors, grad_out, *settings):
    out = fn(*tensors, *settings)
    wanted = [t for t in tensors if t is not None]
    return [out, *torch.autograd.grad(out, wanted, grad_out)]


def native_attention(q, k, v, row, col, kernel_size, padding, scale, record=False):
    return window_attention(q, k, v, row, col, kernel_size, padding, scale, record,
                            backend="native")


CASES = list(itertools.product(
    [(5, 7), (16, 16), (8, 8), (4, 4), (3, 21), (1, 1), (11, 33)],   # H, W: odd, >1 vector
    [1, 3, 7],                                                        # K (7 > map sometimes)
    ["mask", "zeros"],                                                # padding
    [True, False]))                                                   # position term


@pytest.mark.parametrize("size, kernel_size, padding, position", CASES)
def test_native_and_plain_match_unfold_forward_and_gradients(size, kernel_size, padding,
                                                             position):
    require_native()
    H, W = size
    tensors = inputs(2, 3, 5, H, W, kernel_size, position)
    grad_out = torch.randn(2, 3, 5, H, W, generator=torch.Generator().manual_seed(9))
    settings = (kernel_size, padding, 0.7)
    expected = run(unfold_attention, tensors, grad_out, *settings)
    for fn in (native_attention, window_attention_plain):
        for got, want in zip(run(fn, tensors, grad_out, *settings), expected):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fn", [native_attention, window_attention_plain])
@pytest.mark.parametrize("padding, position", [("mask", True), ("zeros", False)])
def test_a_record_holds_the_weights_and_content_logits_of_the_same_pass(fn, padding,
                                                                         position):
    """What a trace keeps (record=True) is what the pass computed, and the output is the
    same as without the record."""
    if fn is native_attention:
        require_native()
    tensors = inputs(2, 3, 5, 7, 9, 3, position)
    with torch.no_grad():
        recorded = fn(*tensors, 3, padding, 0.7, record=True)
        alone = fn(*tensors, 3, padding, 0.7)
        expected = unfold_record(*tensors, 3, padding, 0.7)
    for got, want in zip(recorded, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, recorded[0], atol=0, rtol=0)


def test_native_takes_even_windows_that_reach_further_back():
    """The stem's even K = 4 covers offsets -2..+1."""
    require_native()
    tensors = inputs(1, 2, 4, 6, 9, 4, position=True)
    grad_out = torch.randn(1, 2, 4, 6, 9)
    expected = run(unfold_attention, tensors, grad_out, 4, "mask", 1.0)
    for got, want in zip(run(native_attention, tensors, grad_out, 4, "mask", 1.0), expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_inference_without_gradients_keeps_no_weights_and_gives_the_same_output():
    require_native()
    q, k, v, row, col = inputs(2, 2, 8, 9, 10, 5, position=True)
    with torch.no_grad():
        out = native_attention(q, k, v, row, col, 5, "mask", 1.0)
    assert out.grad_fn is None
    torch.testing.assert_close(out, unfold_attention(q, k, v, row, col, 5, "mask", 1.0).detach(),
                               atol=1e-5, rtol=1e-5)


def test_a_training_step_is_the_same_through_both_paths(monkeypatch):
    """A whole attention ResNet: same loss and same gradient for every parameter."""
    require_native()
    torch.manual_seed(0)
    model = create("sasa-cifar10", widths=(16, 32, 32), blocks=(1, 1, 1))
    x, y = torch.rand(4, 3, 20, 20), torch.tensor([0, 1, 2, 3])

    def step():
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_native, grads_native = step()
    monkeypatch.setattr(native, "supports", lambda t, kernel_size: False)
    loss_plain, grads_plain = step()
    torch.testing.assert_close(loss_native, loss_plain, atol=1e-5, rtol=0)
    for g_native, g_plain in zip(grads_native, grads_plain):
        torch.testing.assert_close(g_native, g_plain, atol=1e-4, rtol=1e-4)


def test_cuda_double_and_huge_windows_go_the_plain_way():
    assert not native.supports(torch.zeros(1, dtype=torch.float64), 7)
    assert not native.supports(torch.zeros(1), native.MAX_KERNEL_SIZE + 2)


FALLBACK = textwrap.dedent("""
    import warnings, torch
    from sasa_viz import SelfAttention2d
    from sasa_viz.attention import native
    from sasa_viz.attention.reference import reference_attention
    layer = SelfAttention2d(4, 8, kernel_size=3, heads=2)
    x = torch.randn(1, 4, 6, 7, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = layer(x)
    y.sum().backward()
    expected = reference_attention(layer, x.detach())[0]
    assert not native.available(), "the kernel should not be available here"
    print("ERROR", native.build_error())
    print("WARNINGS", [str(w.message) for w in caught])
    print("DIFFERENCE", (y - expected).abs().max().item(), x.grad.abs().sum().item() > 0)
""")


@pytest.mark.parametrize("environment, reason", [
    ({"SASA_VIZ_NATIVE": "0"}, "disabled by SASA_VIZ_NATIVE=0"),
    ({"CXX": "no-such-compiler"}, "no-such-compiler"),
])
def test_without_the_kernel_the_plain_path_runs_and_says_so(environment, reason, tmp_path):
    env = {**os.environ, "SASA_VIZ_CACHE": str(tmp_path), **environment}
    result = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True,
                            text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert reason in lines["ERROR"]
    assert ("plain PyTorch path runs instead" in lines["WARNINGS"]) == ("CXX" in environment)
    difference, has_gradient = lines["DIFFERENCE"].split()
    assert float(difference) < 1e-5 and has_gradient == "True"


def test_the_library_is_cached_by_source_and_flags(tmp_path, monkeypatch):
    require_native()
    monkeypatch.setenv("SASA_VIZ_CACHE", str(tmp_path))
    first = native._compile(["-O1"])
    assert first.exists() and first.parent == tmp_path
    assert native._compile(["-O1"]) == first                      # reused, not rebuilt
    assert native._compile(["-O2"]) != first                      # other flags, other file


def test_the_backend_is_chosen_by_name(monkeypatch):
    """"plain" runs the twin even where the kernel could run; "native" runs the kernel or
    says why it cannot; "auto" takes the kernel where it can; both give the same numbers."""
    require_native()
    tensors = inputs(1, 2, 4, 6, 7, 3, position=True)
    with torch.no_grad():
        outputs = {backend: window_attention(*tensors, 3, "mask", 0.5, backend=backend)
                   for backend in ("auto", "native", "plain")}
        for backend in ("native", "plain"):
            torch.testing.assert_close(outputs[backend], outputs["auto"], atol=1e-5, rtol=0)
        doubles = [None if t is None else t.double() for t in tensors]
        with pytest.raises(ValueError, match="compiled kernel cannot run on torch.float64"):
            window_attention(*doubles, 3, "mask", 0.5, backend="native")
        window_attention(*doubles, 3, "mask", 0.5, backend="auto")       # the twin takes it
        with pytest.raises(ValueError, match="backend must be one of auto, native, plain"):
            window_attention(*tensors, 3, "mask", 0.5, backend="fast")

    def kernel_called(*args, **kwargs):
        raise AssertionError("the compiled kernel ran")

    monkeypatch.setattr(native, "window_attention", kernel_called)
    with torch.no_grad():
        window_attention(*tensors, 3, "mask", 0.5, backend="plain")      # the twin alone
        with pytest.raises(AssertionError, match="the compiled kernel ran"):
            window_attention(*tensors, 3, "mask", 0.5, backend="native")


@pytest.mark.parametrize("position, record", [(True, False), (False, False), (True, True)])
def test_the_kernel_is_a_well_formed_pytorch_operator(position, record):
    """torch.library's own checks of the registered operator: its schema, the fake
    (shape-only) implementation, the autograd registration and AOT dispatch."""
    require_native()
    q, k, v, row, col = inputs(2, 2, 4, 5, 6, 3, position)
    checks = torch.library.opcheck(torch.ops.sasa_viz.window_attention_forward.default,
                                   (q, k, v, row, col, 3, 1, True, 1.0, record))
    assert set(checks.values()) == {"SUCCESS"}, checks


def test_torch_compile_takes_a_whole_layer_in_one_graph():
    """fullgraph=True fails on any graph break: the kernel is one operator to the
    compiler, and the compiled layer gives the eager layer's output and gradients."""
    require_native()
    from sasa_viz import SelfAttention2d
    torch.manual_seed(0)
    layer = SelfAttention2d(8, 8, 3, heads=2)
    x = torch.randn(2, 8, 5, 7, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    eager, traced = layer(x), compiled(x)
    torch.testing.assert_close(traced, eager)
    grad_out = torch.randn_like(eager)
    torch.testing.assert_close(torch.autograd.grad(traced, x, grad_out)[0],
                               torch.autograd.grad(eager, x, grad_out)[0])
