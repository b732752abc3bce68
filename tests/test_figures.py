"""sasa_viz.figures: every figure builds from a traced model, has the panels it promises,
renders to PNG, and writes the trace's own numbers."""
import inspect
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from sasa_viz import AttentionStem, SelfAttention2d, explain, figures, trace
from sasa_viz.models import create
from sasa_viz.numbers import number_format


@pytest.fixture(scope="module")
def cifar():
    """An untrained sasa-cifar10 and its conv twin, traced on one random 32x32 image."""
    torch.manual_seed(0)
    model = create("sasa-cifar10").eval()
    twin = create("conv-cifar10").eval()
    x = torch.rand(1, 3, 32, 32)
    image = (x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return trace(model, x), twin, image


@pytest.fixture(scope="module")
def small():
    """A stem (4x4, mixture values) and a zeros-padded layer."""
    torch.manual_seed(0)
    model = nn.Sequential(AttentionStem(3, 8, kernel_size=4, heads=2, pool=1),
                          SelfAttention2d(8, 8, kernel_size=3, heads=2, padding="zeros")).eval()
    x = torch.rand(1, 3, 10, 10)
    return trace(model, x), x[0]


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    data = buffer.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def cell_texts(ax):
    """{(a, b): text} of the numbers written in a window panel's cells."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
            for t in ax.texts if t.get_gid() == "weight"}


def test_no_pyplot_global_state():
    source = inspect.getsource(figures)
    for forbidden in ["import matplotlib.pyplot", "from matplotlib import pyplot", "plt.",
                      "import streamlit"]:
        assert forbidden not in source


def test_weights_figure_writes_the_traced_weights(cifar):
    t, _, _ = cifar
    layer = t.layers["stages.0.0.spatial"]
    px = layer.pixel(0, 2)                                   # top edge: 3 rows outside
    fig = figures.weights_figure(px, layer_name=layer.name)
    assert len(fig.axes) == layer.heads + 1 + 1              # heads, mean, colour bar
    for h in range(layer.heads):
        texts = cell_texts(fig.axes[h])
        assert len(texts) == int(px.valid.sum())             # one number per valid cell
        fmt = number_format(px.weights[h][px.valid].numpy())   # the panel's own format
        for (a, b), text in texts.items():
            assert px.valid[a, b]
            assert text == fmt(float(px.weights[h, a, b]))
        assert len(set(texts.values())) > 1                  # untrained, nearly uniform
        outside = [t for t in fig.axes[h].texts if t.get_text() == "x"]
        assert len(outside) == int((~px.valid).sum())
    mean = px.weights.mean(0)
    fmt = number_format(mean[px.valid].numpy())
    for (a, b), text in cell_texts(fig.axes[layer.heads]).items():
        assert text == fmt(float(mean[a, b]))
    bar = fig.axes[-1]
    low, high = px.weights[:, px.valid].min(), px.weights[:, px.valid].max()
    assert bar.get_ylim() == pytest.approx((float(low), float(high)))   # stretched
    png(fig)


def test_weights_figure_subset_of_heads_and_zeros_padding(small):
    t, _ = small
    layer = t.layers["1"]
    px = layer.pixel(0, 0)
    fig = figures.weights_figure(px, heads=[1])
    assert len(fig.axes) == 1 + 1 + 1
    texts = cell_texts(fig.axes[0])
    assert len(texts) == 9                       # zeros padding: outside cells have weights
    fmt = number_format(px.weights[1].numpy())
    for (a, b), text in texts.items():
        assert text == fmt(float(px.weights[1, a, b]))
    with pytest.raises(ValueError, match="head"):
        figures.weights_figure(px, heads=[2])
    png(fig)


def test_logits_figure(cifar, small):
    t, _, _ = cifar
    px = t.layers["stages.1.0.spatial"].pixel(3, 3)
    fig = figures.logits_figure(px, head=5)
    assert len(fig.axes) == 10                   # 7 panels, a note, 2 colour bars
    titles = [ax.get_title() for ax in fig.axes]
    for title in ["content  q.k", "sum = logit"]:
        assert any(t.startswith(title) for t in titles)
    png(fig)
    fig = figures.logits_figure(explain.without_position(px), head=5)
    assert fig.get_suptitle().startswith("HYPOTHETICAL")
    fig = figures.logits_figure(small[0].layers["1"].pixel(0, 9), head=1)   # zeros padding
    assert len(fig.axes) == 10


def test_head_maps_figure(cifar):
    t, _, image = cifar
    layer = t.layers["stages.0.1.spatial"]
    fig = figures.head_maps_figure(layer, image)
    assert len(fig.axes) == 2 * (layer.heads + 1) + 2
    entropy = explain.attention_entropy(layer)
    entropy_bar = fig.axes[-2]                  # stretched to the maps, not 0..log(K^2)
    assert entropy_bar.get_ylim() == pytest.approx((float(entropy.min()),
                                                    float(entropy.max())))
    sizes = [t.get_fontsize() for ax in fig.axes for t in [ax.title, *ax.texts]
             if t.get_text()]
    assert min(sizes) >= 9                      # reading size
    fig = figures.head_maps_figure(layer, image.astype(float) / 255, heads=[0, 3],
                                   normalize=True)
    assert len(fig.axes) == 2 * 3 + 2
    png(fig)


def test_kernels_figure_with_and_without_a_conv(cifar, small):
    t, twin, _ = cifar
    name = "stages.0.0.spatial"
    layer = t.layers[name]
    px = layer.pixel(5, 6)
    conv = explain.conv_kernel(explain.twin_conv(twin, name), 4)
    effective = explain.effective_kernel(layer, px, 4)
    fig = figures.kernels_figure(effective, conv, channel=4, pixel=(5, 6), valid=px.valid,
                                 layer_name=name)
    assert len(fig.axes) == 2 * 4 + 2
    assert "same at every pixel" in fig.get_suptitle()
    png(fig)
    stem = small[0].layers["0.attention"]
    effective = explain.effective_kernel(stem, (0, 0), 1)
    fig = figures.kernels_figure(effective, None, channel=1)
    assert len(fig.axes) == 4 + 1 + 1            # attention row, the note, one colour bar
    assert any("No convolution" in text.get_text() for ax in fig.axes for text in ax.texts)


def test_pixel_figure(cifar, small):
    t, twin, image = cifar
    name = "stages.1.0.spatial"
    conv = explain.conv_kernel(explain.twin_conv(twin, name), 10)
    fig = figures.pixel_figure(t.layers[name], (0, 7), head=2, channel=10, image=image,
                               conv=conv)
    assert len(fig.axes) == 8
    assert any("y[0,7][c=10]" in text.get_text() for ax in fig.axes for text in ax.texts)
    assert not fig.get_suptitle().startswith("HYPOTHETICAL")
    png(fig)
    px = explain.without_position(t.layers[name].pixel(0, 7))
    fig = figures.pixel_figure(t.layers[name], px, head=2, channel=10, image=image, conv=conv)
    assert fig.get_suptitle().startswith("HYPOTHETICAL")
    notes = " ".join(text.get_text() for ax in fig.axes for text in ax.texts)
    assert "hypothetical output" in notes and "recorded (traced) output" in notes
    fig = figures.pixel_figure(small[0].layers["0.attention"], (9, 0), head=1, channel=5)
    assert len(fig.axes) == 8                    # the stem: no image, no conv twin
