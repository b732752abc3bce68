"""SelfAttention2d: the fast path against the unfold reference, and the mathematical
properties the paper relies on. The stem's tests are in test_stem.py."""
import pytest
import torch

from sasa_viz import SelfAttention2d
from sasa_viz.attention.reference import dense_attention, reference_attention

POSITIONS = ["relative", "absolute", "none"]
PADDINGS = ["mask", "zeros"]


def make_layer(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(in_channels=6, out_channels=16, kernel_size=5, heads=4)
    args.update(kw)
    return SelfAttention2d(**args)


def outputs_and_grads(fn, layer, x, grad_out):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    grads = torch.autograd.grad((y * grad_out).sum(), [x, *layer.parameters()])
    return y, grads


def assert_matches_reference(layer, x, atol):
    torch.manual_seed(1)
    grad_out = torch.randn_like(layer(x))
    fast, fast_grads = outputs_and_grads(layer, layer, x, grad_out)
    ref, ref_grads = outputs_and_grads(lambda t: reference_attention(layer, t)[0], layer, x, grad_out)
    torch.testing.assert_close(fast, ref, atol=atol, rtol=0)
    names = ["input"] + [n for n, _ in layer.named_parameters()]
    for name, g_fast, g_ref in zip(names, fast_grads, ref_grads):
        torch.testing.assert_close(g_fast, g_ref, atol=atol, rtol=0, msg=f"gradient of {name}")


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_path_matches_unfold_reference(position, padding, stride, window_path):
    layer = make_layer(position=position, padding=padding, stride=stride)
    x = torch.randn(2, 6, 9, 12)
    assert_matches_reference(layer, x, atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_the_weights_a_layer_keeps_are_the_references(padding, window_path):
    """What a trace records: the fast path's softmax weights, kept for every pixel."""
    layer = make_layer(padding=padding, kernel_size=7, scaled=True)
    x = torch.randn(2, 6, 5, 9)
    with torch.no_grad():
        kept = layer.attend(x, record=True).weights
        torch.testing.assert_close(kept, reference_attention(layer, x)[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("position", POSITIONS)
def test_fast_path_matches_dense_masked_attention(position, window_path):
    layer = make_layer(position=position, stride=2, scaled=position == "none")
    x = torch.randn(2, 6, 7, 10)
    torch.testing.assert_close(layer(x), dense_attention(layer, x), atol=1e-5, rtol=0)


def test_fast_path_matches_reference_with_scaling_and_a_window_larger_than_the_map(
        window_path):
    layer = make_layer(kernel_size=9, scaled=True)
    assert_matches_reference(layer, torch.randn(1, 6, 5, 7), atol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_weights_sum_to_one_over_valid_neighbours_and_ignore_masked_ones(position):
    layer = make_layer(position=position, kernel_size=7)
    t = layer.attend(torch.randn(1, 6, 6, 8), record=True)
    valid = t.valid.expand_as(t.weights)
    torch.testing.assert_close(t.weights.sum(dim=(2, 3)), torch.ones(1, 4, 6, 8))
    assert torch.all(t.weights[~valid] == 0)
    assert torch.all(t.weights[valid] > 0)


def test_zero_padding_gives_weight_to_outside_neighbours_and_shrinks_border_outputs():
    masked, zeros = make_layer(padding="mask"), make_layer(padding="zeros")
    x = torch.randn(1, 6, 8, 8)
    t = zeros.attend(x, record=True)
    outside = ~t.valid.expand_as(t.weights)
    assert torch.all(t.weights[outside] > 0)                    # they take part in the softmax
    torch.testing.assert_close(t.weights.sum(dim=(2, 3)), torch.ones(1, 4, 8, 8))
    interior = (slice(None), slice(None), slice(2, 6), slice(2, 6))
    torch.testing.assert_close(zeros(x)[interior], masked(x)[interior])
    assert not torch.allclose(zeros(x)[..., 0, 0], masked(x)[..., 0, 0])


@pytest.mark.parametrize("position, equivariant", [("relative", True), ("none", True),
                                                   ("absolute", False)])
def test_translation_equivariance_away_from_borders(position, equivariant, window_path):
    layer = make_layer(position=position, kernel_size=5)
    x = torch.randn(1, 6, 20, 20)
    dy, dx = 3, 2
    shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    y, y_shifted = layer(x), layer(shifted)
    # pixels whose windows lie inside the image in both inputs (the roll wraps at borders)
    inner = (slice(None), slice(None), slice(2 + dy, 18 - 2), slice(2 + dx, 18 - 2))
    original = (slice(None), slice(None), slice(2, 18 - 2 - dy), slice(2, 18 - 2 - dx))
    difference = (y_shifted[inner] - y[original]).abs().max().item()
    if equivariant:
        assert difference < 1e-5
    else:
        assert difference > 1e-2


def permute_window(x, i, j, radius, seed=0):
    """Shuffle the pixels of the (2r+1)^2 window around (i, j), keeping (i, j) itself."""
    g = torch.Generator().manual_seed(seed)
    coords = [(a, b) for a in range(i - radius, i + radius + 1)
              for b in range(j - radius, j + radius + 1) if (a, b) != (i, j)]
    order = torch.randperm(len(coords), generator=g)
    out = x.clone()
    for (a, b), k in zip(coords, order):
        out[..., a, b] = x[..., coords[k][0], coords[k][1]]
    return out


@pytest.mark.parametrize("position, invariant", [("none", True), ("relative", False)])
def test_permuting_the_neighbourhood(position, invariant, window_path):
    layer = make_layer(position=position, kernel_size=5)
    x = torch.randn(1, 6, 11, 11)
    permuted = permute_window(x, 5, 5, radius=2)
    before, after = layer(x)[..., 5, 5], layer(permuted)[..., 5, 5]
    assert torch.allclose(before, after, atol=1e-5) == invariant


def test_stride_two_is_an_average_pool_after_the_attention():
    x = torch.randn(1, 6, 10, 10)
    strided, plain = make_layer(stride=2), make_layer(stride=1)
    torch.testing.assert_close(strided(x), torch.nn.functional.avg_pool2d(plain(x), 2))
    odd = torch.randn(1, 6, 7, 9)              # the last row and column average alone
    torch.testing.assert_close(strided(odd), torch.nn.functional.avg_pool2d(plain(odd), 2, ceil_mode=True))


def test_heads_each_have_one_softmax_shared_by_their_channels():
    layer = make_layer(heads=2)
    t = layer.attend(torch.randn(1, 6, 7, 7), record=True)
    assert t.weights.shape == (1, 2, 5, 5, 7, 7)                 # one per head, not per channel


def test_parameters_do_not_grow_with_k_except_the_relative_embeddings():
    count = lambda layer: sum(p.numel() for p in layer.parameters())  # noqa: E731
    small, big = make_layer(kernel_size=3), make_layer(kernel_size=11)
    assert count(big) - count(small) == (11 - 3) * 16               # k x d_out for r
    assert count(make_layer(position="none")) == 3 * 6 * 16         # W_Q, W_K, W_V only


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=4), "odd"),
    (dict(heads=5), "does not divide"),
    (dict(padding="reflect"), "padding must be one of"),
    (dict(position="learned"), "position must be one of"),
    (dict(stride=3), "stride must be 1 or 2"),
    (dict(in_channels=0), "positive integer"),
])
def test_bad_arguments_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_layer(**kwargs)


@pytest.mark.parametrize("x, message", [
    (torch.randn(6, 8, 8), "4-D tensor"),
    (torch.randn(1, 5, 8, 8), "6 input channels but got 5"),
])
def test_bad_input_says_what_to_change(x, message):
    with pytest.raises(ValueError, match=message):
        make_layer()(x)


def test_absolute_embeddings_refuse_maps_larger_than_they_cover():
    with pytest.raises(ValueError, match="max_size"):
        make_layer(position="absolute", max_size=8)(torch.randn(1, 6, 9, 9))


def test_inference_softmax_in_place_gives_the_same_weights_as_autograd():
    layer = make_layer()
    x = torch.randn(1, 6, 8, 9)
    with torch.no_grad():
        inference = layer.attend(x, record=True).weights
    training = layer.attend(x.requires_grad_(True), record=True).weights
    torch.testing.assert_close(inference, training.detach(), atol=1e-6, rtol=0)


def test_a_channels_last_input_gives_the_same_output_and_gradients():
    """Training on GPUs keeps tensors channels-last; the layer copies them into the
    layout its kernel reads and computes the same numbers."""
    from sasa_viz import SelfAttention2d
    torch.manual_seed(0)
    layer = SelfAttention2d(8, 8, 3, heads=2)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    last = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(layer(last), layer(x))
    torch.testing.assert_close(torch.autograd.grad(layer(last), last, grad)[0],
                               torch.autograd.grad(layer(x), x, grad)[0])
