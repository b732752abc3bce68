"""sasa_viz.drawing.figures: every figure builds from a traced model, writes the trace's own
numbers in the cells where they belong, crosses out exactly the cells outside the map,
titles its panels with what they show, and renders to PNG."""
import inspect
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from sasa_viz import AttentionStem, SelfAttention2d, trace
from sasa_viz.drawing import figures
from sasa_viz.drawing.grids import OWN_CELL_COLOUR
from sasa_viz.inspection import explain
from sasa_viz.models.pretrained import create
from sasa_viz.numbers import WEIGHT, shared_format


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


def cell_texts(ax, gid="number"):
    """{(a, b): text} of what a window panel writes in its cells: the numbers, or with
    gid="crossed" the x of the crossed-out cells."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t
            for t in ax.texts if t.get_gid() == gid}


def written(ax):
    return {cell: t.get_text() for cell, t in cell_texts(ax).items()}


def cells(mask):
    """The set of (a, b) where a (K, K) boolean array is True."""
    return {(int(a), int(b)) for a, b in zip(*np.nonzero(np.asarray(mask)))}


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
    valid = px.valid.numpy()
    weights = px.weights.numpy()
    mean = weights.mean(0)
    for ax, values in zip(fig.axes, [*weights, mean]):
        assert written(ax) == {(a, b): WEIGHT(values[a, b]) for a, b in cells(valid)}
        assert set(cell_texts(ax, "crossed")) == cells(~valid)
        assert len(set(written(ax).values())) > 1                # untrained, nearly uniform
    for h in range(layer.heads):
        w = px.weights[h][px.valid].double()
        title = fig.axes[h].get_title()
        assert title.startswith(f"head {h} (entropy\n")
        entropy = float(title.split("(entropy\n")[1].split(" nats")[0])
        assert entropy == pytest.approx(float(-(w * w.log()).sum()), abs=5e-3)
        assert "×10" not in title
    assert fig.axes[layer.heads].get_title().startswith("mean over heads")
    bar = fig.axes[-1]
    high = weights[:, valid].max()
    assert bar.get_ylim() == pytest.approx((0.0, float(high)))          # from 0
    ticks = [label.get_text() for label in bar.get_yticklabels()]
    assert (ticks[0], ticks[-1]) == (WEIGHT(0), WEIGHT(high))
    stretched = figures.weights_figure(px, layer_name=layer.name, stretch=True).axes[-1]
    low = weights[:, valid].min()
    assert stretched.get_ylim() == pytest.approx((float(low), float(high)))
    assert "Attention weights at stages.0.0.spatial: feature pixel (row 0, col 2)" in \
        fig.get_suptitle()
    png(fig)


def test_text_reads_white_on_the_darkest_cell_and_black_on_the_brightest(cifar):
    px = cifar[0].layers["stages.0.0.spatial"].pixel(4, 4)
    ax = figures.weights_figure(px, heads=[0], stretch=True).axes[0]
    weights = px.weights[0].numpy()
    texts = cell_texts(ax)
    darkest = np.unravel_index(weights.argmin(), weights.shape)
    brightest = np.unravel_index(weights.argmax(), weights.shape)
    assert texts[darkest].get_color() == "white" and texts[brightest].get_color() == "black"


def test_weights_figure_subset_of_heads_and_zeros_padding(small):
    t, _ = small
    layer = t.layers["1"]
    px = layer.pixel(0, 0)
    fig = figures.weights_figure(px, heads=[1])
    assert len(fig.axes) == 1 + 1                 # one head (no mean of one), colour bar
    ax = fig.axes[0]
    weights = px.weights[1].numpy()
    assert written(ax) == {(a, b): WEIGHT(weights[a, b]) for a in range(3) for b in range(3)}
    assert not cell_texts(ax, "crossed")          # zeros padding: they take part
    hatched = {(round(p.get_y() + .5), round(p.get_x() + .5)) for p in ax.patches
               if p.get_hatch()}
    assert hatched == cells(~px.valid.numpy()) and len(hatched) == 5
    outline = [p for p in ax.patches if not p.get_hatch()]
    assert [(p.get_y() + .5, p.get_x() + .5) for p in outline] == [px.cell]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["-1", "0", "+1"]
    with pytest.raises(ValueError, match="head"):
        figures.weights_figure(px, heads=[2])
    png(fig)


def test_logits_figure_draws_each_part_and_each_softmax_under_its_title(cifar, small):
    t, _, _ = cifar
    px = t.layers["stages.1.0.spatial"].pixel(0, 3)           # top edge: cells outside
    head = 5
    fig = figures.logits_figure(px, head=head)
    assert len(fig.axes) == 10                   # 7 panels, a note, 2 colour bars
    valid = px.valid.numpy()
    top = {"content q·k": px.logits_content[head], "row part q_row·r_row(dy)":
           px.logits_row[head], "column part q_col·r_col(dx)": px.logits_col[head],
           "sum = logit": px.logits[head]}
    bottom = {"softmax(content only)": explain.content_only_weights(px)[head],
              "softmax(position only)": explain.position_only_weights(px)[head],
              "real weights = softmax(sum)": px.weights[head]}
    logit_format = shared_format([v.numpy()[valid] for v in top.values()])
    for axes, panels, fmt in [(fig.axes[0:4], top, logit_format),
                              (fig.axes[5:8], bottom, WEIGHT)]:
        for ax, (title, values) in zip(axes, panels.items()):
            assert ax.get_title().startswith(title)
            assert written(ax) == {(a, b): fmt(values[a, b]) for a, b in cells(valid)}
            assert set(cell_texts(ax, "crossed")) == cells(~valid)
    content_only, position_only = (written(ax) for ax in fig.axes[5:7])
    assert content_only != position_only
    limit = max(float(v[px.valid].abs().max()) for v in top.values())
    assert fig.axes[4].get_ylim() == pytest.approx((-limit, limit))   # symmetric about 0
    note = fig.axes[8].texts[0].get_text()
    assert f"head {head}: {int(valid.sum())} of 49" in note and "content only" in note
    assert "drop q.r" in note
    png(fig)
    fig = figures.logits_figure(explain.without_position(px), head=head)
    assert fig.get_suptitle().startswith("Hypothetical, not what the model computed")
    assert fig.axes[1].get_title().startswith("row part q_row·r_row(dy)\n(dropped)")
    fig = figures.logits_figure(small[0].layers["1"].pixel(0, 9), head=1)   # zeros padding
    assert len(fig.axes) == 10
    assert not any(cell_texts(ax, "crossed") for ax in fig.axes)


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


def marked_cells(ax):
    """The (row, col) of every one-pixel box a map axes outlines in the pixel's colour."""
    red = to_rgba(OWN_CELL_COLOUR)
    return [(round(p.get_y() + .5), round(p.get_x() + .5)) for p in ax.patches
            if p.get_edgecolor() == red and p.get_width() == p.get_height() == 1]


def maps(fig):
    """A head maps figure's per-head maps (entropy and offset)."""
    return [ax for ax in fig.axes if ax.get_title().startswith("head ")]


def test_head_maps_figure_marks_the_selected_pixel(cifar):
    t, _, image = cifar
    layer = t.layers["stages.0.1.spatial"]
    fig = figures.head_maps_figure(layer, image, heads=[1, 2], pixel=(3, 5))
    assert len(maps(fig)) == 4                                   # entropy and offset, twice
    assert all(marked_cells(ax) == [(3, 5)] for ax in maps(fig))
    unmarked = figures.head_maps_figure(layer, image, heads=[1, 2])
    assert not any(marked_cells(ax) for ax in maps(unmarked))
    H, W = layer.size
    with pytest.raises(ValueError, match=f"outside this layer's {H}x{W} map"):
        figures.head_maps_figure(layer, image, pixel=(H, 0))
    png(fig)


def test_kernels_figure_with_and_without_a_conv(cifar, small):
    t, twin, _ = cifar
    name = "stages.0.0.spatial"
    layer = t.layers[name]
    px = layer.pixel(0, 6)                                   # top edge: 3 rows outside
    conv = explain.conv_kernel(explain.twin_conv(twin, name), 4)
    effective = explain.effective_kernel(layer, px, 4)
    fig = figures.kernels_figure(effective, conv, channel=4, pixel=(0, 6), valid=px.valid,
                                 layer_name=name)
    assert len(fig.axes) == 2 * 4 + 4                        # 2 rows, their 4 colour bars
    valid = px.valid.numpy()
    norms = effective.pow(2).sum(0).sqrt().numpy()           # (7, 7)
    fmt = shared_format([norms[valid]])
    assert written(fig.axes[0]) == {(a, b): fmt(norms[a, b]) for a, b in cells(valid)}
    assert set(cell_texts(fig.axes[0], "crossed")) == cells(~valid)
    conv_norms = conv.pow(2).sum(0).sqrt().numpy()           # (3, 3), centred on the 7 x 7
    fmt = shared_format([conv_norms])
    assert written(fig.axes[4]) == {(a + 2, b + 2): fmt(conv_norms[a, b])
                                    for a in range(3) for b in range(3)}
    strongest = np.argsort(-effective.pow(2).sum((1, 2)).numpy())[:3]
    assert [ax.get_title() for ax in fig.axes[1:4]] == [f"input channel {i}" for i in strongest]
    assert not any(written(ax) for ax in fig.axes[1:4])      # signed channels: colour only
    assert "same at every pixel" in fig.get_suptitle()
    png(fig)
    stem = small[0].layers["0.attention"]
    effective = explain.effective_kernel(stem, (0, 0), 1)
    fig = figures.kernels_figure(effective, None, channel=1)
    assert len(fig.axes) == 4 + 1 + 2            # attention row, the note, two colour bars
    assert any("No convolution" in text.get_text() for ax in fig.axes for text in ax.texts)


def test_pixel_figure(cifar, small):
    t, twin, image = cifar
    name = "stages.1.0.spatial"
    layer = t.layers[name]
    conv = explain.conv_kernel(explain.twin_conv(twin, name), 10)
    fig = figures.pixel_figure(layer, (0, 7), head=2, channel=10, image=image, conv=conv)
    assert len(fig.axes) == 8
    px = layer.pixel(0, 7)
    valid = px.valid.numpy()
    mean, weights = px.weights.mean(0).numpy(), px.weights[2].numpy()
    fmt = shared_format([mean[valid], weights[valid]])       # one scale, one format
    panels = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
    assert written(panels["weights, mean over heads"]) == {
        (a, b): fmt(mean[a, b]) for a, b in cells(valid)}
    assert written(panels["head 2: weights"]) == {
        (a, b): fmt(weights[a, b]) for a, b in cells(valid)}
    notes = " ".join(text.get_text() for ax in fig.axes for text in ax.texts)
    d = layer.q.shape[1]                                     # channels per head
    assert (f"Output channel c = 10 is channel {10 % d} of head {10 // d} (each head has "
            f"{d} channels)") in notes
    assert "y[0,7][c=10]" in notes
    assert not fig.get_suptitle().startswith("Hypothetical")
    png(fig)
    px = explain.without_position(px)
    fig = figures.pixel_figure(layer, px, head=2, channel=10, image=image, conv=conv)
    assert fig.get_suptitle().startswith("Hypothetical, not what the model computed")
    notes = " ".join(text.get_text() for ax in fig.axes for text in ax.texts)
    assert "hypothetical output" in notes and "recorded (traced) output" in notes
    fig = figures.pixel_figure(small[0].layers["0.attention"], (9, 0), head=1, channel=5)
    assert len(fig.axes) == 8                    # the stem: no image, no conv twin


def test_a_pixel_marked_on_the_drawn_maps_lands_where_the_figure_draws_it(cifar):
    """The explorer draws the head maps once per layer and marks the clicked pixel on
    the PNG: the mark covers the same pixels as the figure drawn with that pixel."""
    layer = cifar[0].layers["stages.0.0.spatial"]
    plain, cells = figures.head_maps_png(layer, cifar[2])
    assert len(cells.left) == 2 * layer.heads
    red = np.array([int(OWN_CELL_COLOUR[k:k + 2], 16) for k in (1, 3, 5)])
    for pixel in [(0, 0), (5, 11), (15, 15)]:
        marked = np.asarray(Image.open(io.BytesIO(figures.mark_pixel(plain, cells, pixel))))
        figure = figures.head_maps_figure(layer, cifar[2], pixel=pixel)
        figure.set_dpi(110)                          # laid out at the dpi it is saved at
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        drawn = np.asarray(Image.open(buffer).convert("RGB"))
        assert marked.shape == drawn.shape
        ours = np.abs(marked.astype(int) - red).sum(-1) < 60            # (H, W) marked red
        theirs = np.abs(drawn.astype(int) - red).sum(-1) < 60
        assert ours.sum() > 0 and theirs.sum() > 0
        ys, xs = np.nonzero(theirs)
        for y, x in zip(ys, xs):                    # every red pixel of the figure's marks
            assert ours[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any(), (pixel, y, x)
