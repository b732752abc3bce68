"""The map of the network (`inspection.network`, `ui.network_map`): every part's map,
window, channels and stride as the model computes them, names for people, and boxes
whose click chooses the layer."""
import pytest
import torch
from streamlit.testing.v1 import AppTest

from sasa_viz.choices import layer_label
from sasa_viz.inspection.network import KINDS, human_name, network_map, stage_and_block
from sasa_viz.inspection.trace import trace
from sasa_viz.models.catalogue import attention_layers, spatial_convs
from sasa_viz.models.pretrained import create
from tests.helpers import run

SHIPPED = ["sasa-cifar10", "sasa-full-cifar10", "conv-cifar10"]
SIZES = [(32, 32), (64, 64), (21, 40)]       # (21, 40): non-square, sides 2, 4, 8 don't divide


def traced_at(name: str, size):
    """A freshly initialised catalogue model and its trace on a random image of `size`."""
    torch.manual_seed(0)
    model = create(name).eval()
    return model, trace(model, torch.rand(1, 3, *size))


@pytest.fixture(scope="module")
def twin_traces():
    """The attention twin's trace at every size, for conv-cifar10's blocks."""
    return {size: traced_at("sasa-cifar10", size)[1] for size in SIZES}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", SHIPPED)
def test_every_block_has_the_traced_layers_map_window_heads_and_stride(name, size,
                                                                       twin_traces):
    model, traced = traced_at(name, size)
    parts = network_map(model, size)
    assert [p.kind for p in parts] == ["input", "stem", *["block"] * 6, "pool", "classifier"]
    assert [p.layer for p in parts if p.layer] == list(traced.layers)
    for part in parts:
        if part.layer:
            layer = traced.layers[part.layer]
            assert (part.size, part.window, part.heads, part.stride) == \
                (layer.size, layer.kernel_size, layer.heads, layer.stride)
    if name.startswith("conv"):                # same maps as the attention twin's layers
        blocks = [p for p in parts if p.kind == "block"]
        assert [p.name for p in blocks] == list(spatial_convs(model))
        assert [(p.size, p.stride) for p in blocks] == \
            [(t.size, t.stride) for n, t in twin_traces[size].layers.items()]
        assert {(p.window, p.window_kind, p.heads, p.layer) for p in blocks} == \
            {(3, "conv", None, None)}


@pytest.mark.parametrize("size", [(16, 16), (21, 40), (128, 96)])
@pytest.mark.parametrize("name", [*SHIPPED, "sasa-full-resnet26"])
def test_each_part_works_on_the_map_the_one_before_hands_on(name, size):
    parts = network_map(create(name), size)
    assert parts[0].size == size and {p.kind for p in parts} == set(KINDS)
    for before, after in zip(parts, parts[1:]):
        assert after.size == before.out_size, (before, after)
    assert parts[-2].out_size == parts[-1].size == (1, 1)
    assert parts[-1].channels == create(name).head.out_features


def test_strided_blocks_and_the_stems_at_sides_the_strides_do_not_divide():
    maps = [(p.name, p.size, p.out_size, p.stride)
            for p in network_map(create("sasa-full-cifar10"), (21, 40))]
    assert maps == [
        ("input", (21, 40), (21, 40), 1),
        ("stem.attention", (21, 40), (11, 20), 1),           # 2x2 blocks, 2x2 max pool
        ("stages.0.0.spatial", (11, 20), (11, 20), 2),
        ("stages.0.1.spatial", (11, 20), (11, 20), 2),
        ("stages.1.0.spatial", (11, 20), (6, 10), 2),         # attends at 11x20, then pools
        ("stages.1.1.spatial", (6, 10), (6, 10), 4),
        ("stages.2.0.spatial", (6, 10), (3, 5), 4),
        ("stages.2.1.spatial", (3, 5), (3, 5), 8),
        ("pool", (3, 5), (1, 1), 8),
        ("head", (1, 1), (1, 1), None),
    ]
    stem = network_map(create("sasa-full-resnet26"), (64, 48))[1]    # the paper's stem
    assert (stem.name, stem.size, stem.out_size, stem.window, stem.window_kind) == \
        ("stem.attention", (64, 48), (16, 12), 4, "blocks")
    conv_stem = network_map(create("sasa-resnet26"), (64, 48))[1]    # 7x7 conv, max pool
    assert (conv_stem.name, conv_stem.out_size, conv_stem.window, conv_stem.layer) == \
        ("stem", (16, 12), 7, None)


def test_channels_are_what_each_part_hands_on():
    parts = network_map(create("sasa-resnet26"), (32, 32))
    assert [p.channels for p in parts] == [3, 64, 256, 512, 512, *[1024] * 4, 2048, 2048, 1000]
    assert [p.heads for p in parts if p.kind == "block"] == [8] * 8


# --- names for people ----------------------------------------------------------------------

def test_human_names_count_from_one_and_say_map_and_window():
    assert human_name("stages.1.0.spatial", (8, 8), 7) == "stage 2, block 1 (8×8 map, 7×7 window)"
    assert human_name("stages.0.1.spatial", (16, 16), 3, "conv", None) == \
        "stage 1, block 2 (16×16 map, 3×3 convolution)"
    assert human_name("stem.attention", window=2, window_kind="blocks") == "the stem (2×2 blocks)"
    assert human_name("stages.2.1") == "stage 3, block 2"
    assert human_name("SelfAttention2d", (6, 6), 3, heads=2) == \
        "SelfAttention2d (6×6 map, 3×3 window, 2 heads)"
    assert stage_and_block("stages.1.0.spatial") == (2, 1)
    assert stage_and_block("stem.attention") is None


def test_every_part_has_a_name_for_people_beside_its_name_in_the_code():
    parts = network_map(create("sasa-full-cifar10"), (32, 24))
    assert [p.human for p in parts][:3] == [
        "the image (32×24 pixels)", "the stem (32×24 map, 2×2 blocks, 8 heads)",
        "stage 1, block 1 (16×12 map, 7×7 window, 4 heads)"]
    assert [p.human for p in parts][-2:] == ["the average pool (4×3 map)", "the classifier"]
    assert parts[5].label == \
        "stage 2, block 2 (8×6 map, 7×7 window, 8 heads) · stages.1.1.spatial"


def test_the_layer_pickers_labels_are_the_maps_names():
    model, traced = traced_at("sasa-full-cifar10", (32, 32))
    parts = {p.layer: p for p in network_map(model, (32, 32)) if p.layer}
    for name, layer in traced.layers.items():
        assert layer_label(name, layer) == parts[name].label
    assert layer_label("stem.attention", traced.layers["stem.attention"]) == \
        "the stem (32×32 map, 2×2 blocks, 8 heads) · stem.attention"


# --- the boxes on a page ---------------------------------------------------------------------

def map_page():
    """A page with the sidebar's layer picker and the network map, for AppTest."""
    import streamlit as st
    import torch

    from sasa_viz.inspection.trace import trace
    from sasa_viz.models.pretrained import create
    from sasa_viz.ui import sidebar
    from sasa_viz.ui.network_map import show_network_map

    @st.cache_resource
    def traced_model(name):
        torch.manual_seed(0)
        model = create(name).eval()
        return model, trace(model, torch.rand(1, 3, 32, 32))

    model, traced = traced_model(st.session_state.get("model_name", "sasa-full-cifar10"))
    chosen = sidebar.pick_layer(traced)[0] if traced.layers else None
    show_network_map(traced, model, chosen)


def open_map(**state):
    return run(AppTest.from_function(map_page, default_timeout=120), **state)


def box(app, name: str):
    return app.button(key=f"network_map_{name}")


def primary(app) -> list:
    return [b.key.removeprefix("network_map_") for b in app.button if b.proto.type == "primary"]


def test_clicking_a_layers_box_chooses_it_and_the_sidebar_picker_follows():
    app = open_map(layer="stages.0.0.spatial")
    assert primary(app) == ["stages.0.0.spatial"]
    box(app, "stages.1.1.spatial").click().run()
    assert not app.exception, app.exception[0].value
    assert app.session_state["layer"] == "stages.1.1.spatial"
    assert primary(app) == ["stages.1.1.spatial"]
    picker = next(b for b in app.sidebar.selectbox if b.label == "Layer")
    assert picker.value == "stages.1.1.spatial"
    box(app, "stem.attention").click().run()                # the attention stem is a layer too
    assert app.session_state["layer"] == "stem.attention" and primary(app) == ["stem.attention"]


def test_boxes_show_map_and_window_and_only_attention_layers_can_be_clicked():
    app = open_map()
    disabled = {b.key.removeprefix("network_map_") for b in app.button if b.disabled}
    assert disabled == {"input", "pool", "head"}
    assert box(app, "stages.1.0.spatial").label == "**1**  \n16×16  \n7×7"
    assert box(app, "stem.attention").label == "32×32  \n2×2"
    assert box(app, "stages.1.1.spatial").help == \
        "stage 2, block 2 (8×8 map, 7×7 window, 8 heads) · stages.1.1.spatial"
    assert [c.value for c in app.caption] == ["image", "stem", "stage 1", "stage 2", "stage 3",
                                              "pool", "classifier"]


def test_a_convolutional_model_is_drawn_with_nothing_to_click():
    app = open_map(model_name="conv-cifar10")
    assert len(app.button) == 10 and all(b.disabled for b in app.button)
    assert box(app, "stages.1.1.spatial").label == "**2**  \n8×8  \n3×3"
    assert not primary(app)


def test_the_blocks_of_a_deep_network_are_numbered_under_their_stage():
    model = create("sasa-resnet50")
    names = list(attention_layers(model))
    assert len(network_map(model, (32, 32))) == 20
    labels = [b.label for b in open_map(model_name="sasa-resnet50").button
              if b.key.removeprefix("network_map_") in names]
    assert labels == [f"**{n}**" for blocks in (3, 4, 6, 3) for n in range(1, blocks + 1)]
