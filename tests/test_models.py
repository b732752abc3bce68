"""The ResNets of sasa_viz.models: Table 1 parameter counts, shapes, registry, configs."""
import json
from dataclasses import asdict

import pytest
import torch
import torch.nn as nn

from sasa_viz.attention.layer import SelfAttention2d
from sasa_viz.inspection.cost import PAPER_TABLE1_PARAMS, count_parameters, model_madds, table1
from sasa_viz.models.catalogue import (CATALOGUE, Bottleneck, ResNetConfig, attention_layers,
                                       build, config_for, conv_cifar, conv_resnet, entry,
                                       list_models, sasa_cifar, sasa_resnet, spatial_convs)
from sasa_viz.models.pretrained import create
from tests.helpers import PAPER_TABLE_1

TABLE_1 = {name: params for name, (_, params) in PAPER_TABLE_1.items()}   # millions


def test_the_code_carries_the_papers_table1_parameters():
    assert PAPER_TABLE1_PARAMS == TABLE_1
CIFAR = ["sasa-cifar10", "sasa-full-cifar10", "conv-cifar10"]


def on_meta(name, **overrides):
    """Build without allocating or initialising weights: enough to count them."""
    with torch.device("meta"):
        return create(name, **overrides)


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_table_1_parameter_counts(name):
    millions = count_parameters(on_meta(name)) / 1e6
    assert abs(millions - TABLE_1[name]) / TABLE_1[name] < 0.015, millions


def test_conv_resnet50_is_torchvision_resnet50():
    # torchvision.models.resnet50() has 25,557,032 parameters
    assert count_parameters(on_meta("conv-resnet50")) == 25_557_032


def test_every_spatial_conv_is_replaced_and_nothing_else():
    for depth in (26, 38, 50):
        sasa, conv = on_meta(f"sasa-resnet{depth}"), on_meta(f"conv-resnet{depth}")
        convs, attns = spatial_convs(conv), attention_layers(sasa)
        assert list(convs) == list(attns)
        for name in convs:
            assert convs[name].kernel_size == (3, 3)
            assert isinstance(attns[name], SelfAttention2d)
            assert attns[name].kernel_size == 7 and attns[name].heads == 8
            assert convs[name].stride[0] == attns[name].stride
        # all other parameters are identical in shape
        rest = lambda m: {n: p.shape for n, p in m.named_parameters() if ".spatial." not in n}
        assert rest(sasa) == rest(conv)


def test_downsampling_positions_resnet_v1_5():
    model = on_meta("sasa-resnet50")
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            expected = 2 if s > 0 and b == 0 else 1
            assert block.spatial.stride == expected, (s, b)
            shortcut_convs = [m for m in block.shortcut.modules() if isinstance(m, nn.Conv2d)]
            if expected == 2 or b == 0:
                assert shortcut_convs[0].stride == (expected, expected)
            else:
                assert shortcut_convs == []


@pytest.mark.parametrize("name", CIFAR)
@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_cifar_models_give_logits(name, size):
    torch.manual_seed(0)
    model = create(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def block_output_shapes(model, x):
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for m in model.modules() if isinstance(m, Bottleneck)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


def test_cifar_resolutions_and_twins_agree():
    x = torch.rand(1, 3, 32, 32)
    stem_out = {}
    for name in CIFAR:
        model = create(name)
        model.stem.register_forward_hook(lambda m, i, o: stem_out.__setitem__(name, o.shape))
        shapes = block_output_shapes(model, x)
        assert stem_out[name] == (1, 64, 16, 16)      # the first attention layer sees 16x16
        assert shapes == [(1, 64, 16, 16)] * 2 + [(1, 128, 8, 8)] * 2 + [(1, 256, 4, 4)] * 2


def test_sasa_cifar_is_smaller_than_its_conv_twin():
    conv = count_parameters(create("conv-cifar10"))
    assert count_parameters(create("sasa-cifar10")) < conv
    assert count_parameters(create("sasa-full-cifar10")) < conv


def test_attention_layers_line_up_with_conv_twin():
    convs = spatial_convs(create("conv-cifar10"))
    sasa = attention_layers(create("sasa-cifar10"))
    full = attention_layers(create("sasa-full-cifar10"))
    assert len(convs) == 6
    assert list(sasa) == list(convs)
    assert list(full) == ["stem.attention"] + list(convs)
    assert list(convs)[0] == "stages.0.0.spatial"
    for attn, conv in zip(sasa.values(), convs.values()):
        assert attn.in_channels == conv.in_channels and attn.out_channels == conv.out_channels
    assert spatial_convs(create("sasa-cifar10")) == {}
    assert attention_layers(create("conv-cifar10")) == {}


def test_the_model_normalises_its_input():
    model = create("conv-cifar10")
    config = model.config
    seen = {}
    model.stem.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    # an image at the channel means reaches the stem as 0, one a std above as 1
    at_mean = torch.tensor(config.mean).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    model.eval()(torch.cat([at_mean, at_mean + std]))
    torch.testing.assert_close(seen["x"][0], torch.zeros(3, 8, 8))
    torch.testing.assert_close(seen["x"][1], torch.ones(3, 8, 8))
    assert config.mean == (0.4914, 0.4822, 0.4465)
    assert config_for("sasa-resnet26").mean == (0.485, 0.456, 0.406)
    # mean and std come from the config, not from weights
    assert not any("normalize" in k for k in model.state_dict())


def test_zero_init_residual_starts_each_block_as_identity_branch():
    torch.manual_seed(0)
    model = create("sasa-cifar10").eval()
    block = model.stages[0][1]                          # an identity-shortcut block
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x.relu())
    block = create("sasa-cifar10", zero_init_residual=False).eval().stages[0][1]
    with torch.no_grad():
        assert not torch.allclose(block(x), x.relu())


def test_registry():
    names = list_models()
    assert set(TABLE_1) | set(CIFAR) == set(names)
    with pytest.raises(ValueError) as error:
        create("sasa-resnet101")
    assert all(name in str(error.value) for name in names)
    with pytest.raises(ValueError, match="kernel"):
        config_for("sasa-cifar10", kernal_size=5)
    with pytest.raises(ValueError, match="spatial"):
        config_for("sasa-cifar10", spatial="transformer")
    with pytest.raises(ValueError, match="stem"):
        config_for("sasa-cifar10", stem="patchify")
    with pytest.raises(ValueError, match="depth"):
        sasa_resnet(101)

    model = create("sasa-cifar10", kernel_size=5, heads=4, num_classes=100)
    assert model.config == config_for("sasa-cifar10", kernel_size=5, heads=4, num_classes=100)
    layer = attention_layers(model)["stages.0.0.spatial"]
    assert (layer.kernel_size, layer.heads) == (5, 4)
    assert model.head.out_features == 100


def test_catalogue_entries_are_consistent():
    for name, model in CATALOGUE.items():
        assert entry(name) is model and model.name == name
        config = model.config
        if model.conv_twin is not None:               # the twin differs in the spatial op
            twin = entry(model.conv_twin).config
            assert config.spatial == "attention" and twin.spatial == "conv"
            assert (config.blocks, config.widths, config.num_classes, config.mean) == \
                (twin.blocks, twin.widths, twin.num_classes, twin.mean)
        if model.weights is not None:
            assert len(model.weights.classes) == config.num_classes
    assert list_models(explorer=True) == ["sasa-cifar10", "sasa-full-cifar10"]
    assert set(list_models(trained=True)) <= set(CIFAR)
    imagenet = [n for n in list_models() if n not in CIFAR]       # no weights, no explorer
    assert imagenet == [n for n in list_models(explorer=False, trained=False) if n not in CIFAR]
    assert "sasa-cifar10" not in list_models(explorer=False)


def test_create_pretrained_refuses_overrides():
    with pytest.raises(ValueError, match="pretrained=False"):
        create("sasa-cifar10", pretrained=True, heads=2)


def test_builders_match_the_registry():
    with torch.device("meta"):
        assert sasa_resnet(26).config == config_for("sasa-resnet26")
        assert sasa_resnet(38, stem="attention").config == config_for("sasa-full-resnet38")
        assert conv_resnet(50).config == config_for("conv-resnet50")
        assert sasa_cifar().config == config_for("sasa-cifar10")
        assert sasa_cifar(stem="attention").config == config_for("sasa-full-cifar10")
        assert conv_cifar().config == config_for("conv-cifar10")
        small = sasa_cifar(widths=(16, 32), blocks=(1, 1), num_classes=3)
    assert [len(stage) for stage in small.stages] == [1, 1]
    assert small.head.out_features == 3


@pytest.mark.parametrize("name", list_models())
def test_config_round_trips_through_json(name):
    config = config_for(name)
    loaded = ResNetConfig(**json.loads(json.dumps(asdict(config))))
    assert loaded == config
    assert isinstance(loaded.blocks, tuple) and isinstance(loaded.mean, tuple)
    if name in CIFAR:                                   # the weights fit the rebuilt model
        build(loaded).load_state_dict(create(name).state_dict())


def test_live_table1_matches_the_models_and_the_paper():
    rows = {row["model"]: row for row in table1()}
    assert set(rows) == set(TABLE_1)
    for name, row in rows.items():
        assert row["params (M)"] == round(count_parameters(on_meta(name)) / 1e6, 2)
        assert abs(float(row["params difference"].rstrip("%"))) < 1.5
        assert abs(float(row["FLOPS difference"].rstrip("%"))) < 6


def test_multiply_adds_of_resnet50_are_the_well_known_4_1_billion():
    # torchvision's ResNet-50 (the same network, see above): 4.09 GMACs at 224 x 224
    assert abs(model_madds(on_meta("conv-resnet50").eval()) / 1e9 - 4.09) < 0.01
