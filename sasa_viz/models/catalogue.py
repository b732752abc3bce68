"""Bottleneck ResNets whose spatial convolutions are local self-attention (the paper's
section 4), and their convolutional twins.

Everything about an architecture lives in one `ResNetConfig`; `build(config)` turns it
into a `ResNet`. The paper's models and small CIFAR versions are in one catalogue,
`CATALOGUE`, each entry with its config and what is shipped for it (weights file, sha256,
classes, conv twin, whether the explorer offers it):

    model = create("sasa-resnet26")              # conv stem + attention, 10.3M params
    model = create("sasa-cifar10", heads=4)      # any config field can be overridden
    model = create("sasa-cifar10", pretrained=True)   # the shipped, checked weights
    list_models(trained=True)                    # names with shipped weights

A model takes RGB tensors in [0, 1] of shape (B, 3, H, W) and normalises them itself,
so callers never normalise. It keeps its config on `model.config`; the config is a plain
dataclass, so `asdict(model.config)` can be stored as JSON next to the weights and
`ResNetConfig.from_dict(d)` rebuilds it.

The bottleneck block (ResNet v1.5: the spatial op carries the stride):

    x -> 1x1 conv -> BN -> ReLU -> spatial -> BN -> ReLU -> 1x1 conv -> BN -> (+ shortcut) -> ReLU

where `spatial` is `SelfAttention2d(width, width, 7, heads=8)` (followed by a 2x2 average
pool where it strides) or, in the twin, a 3x3 convolution. Both sit at the same module
name ("stages.0.0.spatial"), so `attention_layers(sasa)` and `spatial_convs(twin)` line
up name by name.
"""
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.layer import LocalSelfAttention, SelfAttention2d
from sasa_viz.attention.stem import AttentionStem
from sasa_viz.models.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224        # the side of the paper's ImageNet images (Table 1's input)

SPATIAL_OPS = ("attention", "conv")
STEMS = ("conv", "attention", "cifar-conv")
RESNET_BLOCKS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}


@dataclass
class ResNetConfig:
    """Every architecture knob of a bottleneck ResNet. Defaults: the paper's ResNet-50
    with conv stem and attention in every bottleneck ("conv-stem + attention").

    blocks, widths: bottleneck blocks per stage and each stage's inner width; a block
        outputs width * expansion channels. The first stage keeps the stem's resolution,
        every later stage halves it in its first block.
    spatial: "attention" (SelfAttention2d) or "conv" (3x3 convolution) in every block.
    stem: "conv" ResNet's 7x7 stride-2 conv + BN + ReLU + 3x3 stride-2 max pool (/4);
        "attention" the spatially-aware AttentionStem (attention + BN + ReLU +
        stem_pool x stem_pool max pool, /stem_pool); "cifar-conv" two 3x3 convs,
        3 -> stem_width/2 -> stem_width, the second with stride 2 (/2).
    stem_width: channels out of the stem.
    stem_kernel_size, stem_mixtures, stem_pool: the attention stem's window side, number
        of value matrices m and max pool (ignored by the conv stems).
        The attention stem attends over blocks, the very blocks its max pool takes its
        maxima over: stem_kernel_size must equal stem_pool.
    kernel_size, heads, padding, position: passed to every SelfAttention2d.
    head_dim: when set, every attention layer gets width // head_dim heads (so narrow
        and wide stages have heads of the same size) and `heads` is ignored.
    num_classes: outputs of the linear classifier.
    mean, std: per-channel RGB statistics the model normalises its [0, 1] input with.
    zero_init_residual: start every block's last BN at gamma = 0, so each residual branch
        begins as the identity.
    """
    blocks: Tuple[int, ...] = RESNET_BLOCKS[50]
    widths: Tuple[int, ...] = (64, 128, 256, 512)
    expansion: int = 4
    spatial: str = "attention"
    stem: str = "conv"
    stem_width: int = 64
    stem_kernel_size: int = 4
    stem_mixtures: int = 4
    stem_pool: int = 4
    kernel_size: int = 7
    heads: int = 8
    head_dim: Optional[int] = None
    padding: str = "mask"
    position: str = "relative"
    num_classes: int = 1000
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    zero_init_residual: bool = True

    @classmethod
    def from_dict(cls, stored: dict) -> "ResNetConfig":
        """The config a card stored (`asdict`, through JSON). Cards written while the stem
        could also slide carry stem_window="blocks", the only stem ever trained: the
        field is gone, its value is the stem's only kind."""
        stored = dict(stored)
        if stored.pop("stem_window", "blocks") != "blocks":
            raise ValueError("this card's stem uses sliding windows, which sasa_viz no "
                             "longer builds; only block stems are.")
        return cls(**stored)

    def __post_init__(self):
        # JSON gives lists back where we stored tuples
        for name in ("blocks", "widths", "mean", "std"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.spatial not in SPATIAL_OPS:
            raise ValueError(f"spatial must be one of {SPATIAL_OPS}, got {self.spatial!r}.")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}.")
        if self.stem == "attention" and self.stem_kernel_size != self.stem_pool:
            raise ValueError(f"the attention stem's blocks are its max pool's: "
                             f"stem_kernel_size={self.stem_kernel_size} must equal "
                             f"stem_pool={self.stem_pool}.")
        if len(self.blocks) != len(self.widths) or not self.blocks:
            raise ValueError(f"blocks {self.blocks} and widths {self.widths} must give one "
                             f"entry per stage.")
        if (self.spatial == "attention" and self.head_dim is not None
                and any(w % self.head_dim for w in self.widths)):
            raise ValueError(f"head_dim={self.head_dim} must divide every stage width "
                             f"{self.widths}.")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got "
                             f"{self.mean} and {self.std}.")


# --- building blocks -----------------------------------------------------------------

class Normalize(nn.Module):
    """(x - mean) / std per channel, for RGB input in [0, 1]."""

    def __init__(self, mean: Tuple[float, ...], std: Tuple[float, ...]):
        super().__init__()
        # not in the state dict: the config is the one place they are stored
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """The (conv, BN) pair ResNets are made of: a bias-free conv with 'same' padding."""
    return (nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                      padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels))


def spatial_op(width: int, stride: int, config: ResNetConfig) -> nn.Module:
    """The block's only spatial layer: local attention, or the 3x3 conv it replaces."""
    if config.spatial == "attention":
        heads = width // config.head_dim if config.head_dim else config.heads
        return SelfAttention2d(width, width, config.kernel_size, heads,
                               config.padding, config.position, stride=stride)
    return nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """1x1 (reduce to width) -> spatial (stride s) -> 1x1 (expand), plus a shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int, config: ResNetConfig):
        super().__init__()
        out_channels = width * config.expansion
        self.conv1, self.bn1 = conv_bn(in_channels, width, 1)
        self.spatial = spatial_op(width, stride, config)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv_bn(width, out_channels, 1)
        if config.zero_init_residual:
            nn.init.zeros_(self.bn3.weight)
        if stride != 1 or in_channels != out_channels:   # match the branch's shape
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:                  # (B, C_in, H, W)
        y = self.act(self.bn1(self.conv1(x)))                # (B, width, H, W)
        y = self.act(self.bn2(self.spatial(y)))              # (B, width, H/s, W/s)
        y = self.bn3(self.conv3(y))                          # (B, C_out, H/s, W/s)
        return self.act(y + self.shortcut(x))


def make_stem(config: ResNetConfig) -> nn.Module:
    """(B, 3, H, W) -> (B, stem_width, H/r, W/r); r = 4 ("conv"), 2 ("cifar-conv"),
    stem_pool ("attention")."""
    c = config.stem_width
    if config.stem == "attention":
        return AttentionStem(3, c, config.stem_kernel_size, config.heads,
                             config.stem_mixtures, config.stem_pool)
    if config.stem == "conv":
        conv, bn = conv_bn(3, c, 7, stride=2)
        return nn.Sequential(OrderedDict(conv=conv, bn=bn, act=nn.ReLU(),
                                         pool=nn.MaxPool2d(3, stride=2, padding=1)))
    conv1, bn1 = conv_bn(3, c // 2, 3)                   # "cifar-conv"
    conv2, bn2 = conv_bn(c // 2, c, 3, stride=2)
    return nn.Sequential(OrderedDict(conv1=conv1, bn1=bn1, act1=nn.ReLU(),
                                     conv2=conv2, bn2=bn2, act2=nn.ReLU()))


class ResNet(nn.Module):
    """normalize -> stem -> stages of bottlenecks -> global average pool -> linear."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.stem = make_stem(config)
        stages, channels = [], config.stem_width
        for index, (depth, width) in enumerate(zip(config.blocks, config.widths)):
            blocks = []
            for block in range(depth):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(Bottleneck(channels, width, stride, config))
                channels = width * config.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:                  # (B, 3, H, W), RGB in [0, 1]
        x = self.stem(self.normalize(x))                     # (B, stem_width, H/r, W/r)
        x = self.stages(x)                                   # (B, C, H/(r*2^(stages-1)), ..)
        return self.head(self.pool(x).flatten(1))            # (B, num_classes)


def build(config: ResNetConfig) -> ResNet:
    """The network a config describes, freshly initialised."""
    return ResNet(config)


# --- the paper's models and small CIFAR versions -------------------------------------

def resnet_config(depth: int, spatial: str = "attention", stem: str = "conv",
                  num_classes: int = 1000, **overrides) -> ResNetConfig:
    """ImageNet ResNet-26/38/50 (IMAGENET_SIZE x IMAGENET_SIZE input), widths
    64/128/256/512."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}.")
    return ResNetConfig(blocks=RESNET_BLOCKS[depth], widths=(64, 128, 256, 512),
                        spatial=spatial, stem=stem, stem_pool=4, num_classes=num_classes,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, **overrides)


def cifar_config(spatial: str = "attention", stem: str = "conv", num_classes: int = 10,
                 widths: Tuple[int, ...] = (64, 128, 256),
                 blocks: Tuple[int, ...] = (2, 2, 2), **overrides) -> ResNetConfig:
    """A three-stage ResNet for 32 x 32 images. Both stems reach 16 x 16 with 64
    channels, so the first attention layer sees a 16 x 16 map; the stages then run at
    16, 8 and 4. stem="conv" means the two-3x3 "cifar-conv" stem here; the attention
    stem attends within the 2x2 blocks its 2x2 max pool reduces.

    The paper's proportions at CIFAR scale: heads of 16 dimensions everywhere (4, 8 and
    16 heads in the three stages), a 7 x 7 window that is smaller than the 16 x 16 and
    8 x 8 maps, and blocks without channel expansion (1x1 -> spatial -> 1x1 at the same
    width), which keeps the spatial layer the larger part of each block's cost."""
    stem = {"conv": "cifar-conv"}.get(stem, stem)
    settings = {**dict(expansion=1, head_dim=16, stem_width=64, stem_kernel_size=2,
                       stem_pool=2), **overrides}
    return ResNetConfig(blocks=blocks, widths=widths, spatial=spatial, stem=stem,
                        num_classes=num_classes, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                        **settings)


def sasa_resnet(depth: int, stem: str = "conv", num_classes: int = 1000, **kw) -> ResNet:
    """Attention in every bottleneck; stem "conv" (conv-stem + attention) or "attention"
    (the paper's full attention)."""
    return build(resnet_config(depth, "attention", stem, num_classes, **kw))


def conv_resnet(depth: int, num_classes: int = 1000, **kw) -> ResNet:
    """The convolutional baseline of Table 1."""
    return build(resnet_config(depth, "conv", "conv", num_classes, **kw))


def sasa_cifar(stem: str = "conv", num_classes: int = 10,
               widths: Tuple[int, ...] = (64, 128, 256), blocks: Tuple[int, ...] = (2, 2, 2),
               **kw) -> ResNet:
    """The CIFAR-scale attention ResNet (see `cifar_config`)."""
    return build(cifar_config("attention", stem, num_classes, widths, blocks, **kw))


def conv_cifar(num_classes: int = 10, widths: Tuple[int, ...] = (64, 128, 256),
               blocks: Tuple[int, ...] = (2, 2, 2), **kw) -> ResNet:
    """The same CIFAR network with 3x3 convolutions and the conv stem."""
    return build(cifar_config("conv", "conv", num_classes, widths, blocks, **kw))


# --- the catalogue: every named model, its config and what is shipped for it -----------

@dataclass(frozen=True)
class Weights:
    """Trained weights shipped in pretrained/: the file, its sha256 (checked whenever it
    is loaded) and the names of the classes the model's outputs stand for."""
    file: str
    sha256: str
    classes: Tuple[str, ...]


@dataclass(frozen=True)
class CatalogueEntry:
    """One named model: how to build it and what the project ships for it."""
    name: str
    make_config: Callable[[], ResNetConfig]
    description: str
    weights: Optional[Weights] = None   # None: the architecture only (train it yourself)
    conv_twin: Optional[str] = None     # the same network with 3x3 convolutions
    explorer: bool = False              # offered on the explorer's pages

    @property
    def config(self) -> ResNetConfig:
        return self.make_config()


def _cifar_weights(name: str, sha256: str) -> Weights:
    return Weights(f"{name}.safetensors", sha256, tuple(CIFAR10_CLASSES))


_ENTRIES = [
    *(CatalogueEntry(f"sasa-resnet{d}", partial(resnet_config, d, "attention", "conv"),
                     f"ImageNet ResNet-{d}, conv stem + attention (Table 1)",
                     conv_twin=f"conv-resnet{d}") for d in RESNET_BLOCKS),
    *(CatalogueEntry(f"sasa-full-resnet{d}",
                     partial(resnet_config, d, "attention", "attention"),
                     f"ImageNet ResNet-{d}, fully attentional with the spatially-aware stem "
                     f"(Table 1)", conv_twin=f"conv-resnet{d}") for d in RESNET_BLOCKS),
    *(CatalogueEntry(f"conv-resnet{d}", partial(resnet_config, d, "conv", "conv"),
                     f"ImageNet ResNet-{d}, the convolutional baseline (Table 1)")
      for d in RESNET_BLOCKS),
    CatalogueEntry("sasa-cifar10", partial(cifar_config, "attention", "conv"),
                   "CIFAR-10, conv stem + attention in every block",
                   _cifar_weights("sasa-cifar10", "1d4500e72d26b08c6d6c077f65291d682ab20c601baf1ebabc98e3e978a354f2"),
                   conv_twin="conv-cifar10", explorer=True),
    CatalogueEntry("sasa-full-cifar10", partial(cifar_config, "attention", "attention"),
                   "CIFAR-10, fully attentional: the spatially-aware stem + attention",
                   _cifar_weights("sasa-full-cifar10", "8594b7805d0fe2825f3123a9340e281f8705802635bd4c6a968ddb0a49665cb1"),
                   conv_twin="conv-cifar10", explorer=True),
    CatalogueEntry("conv-cifar10", partial(cifar_config, "conv", "conv"),
                   "CIFAR-10, the convolutional twin of sasa-cifar10",
                   _cifar_weights("conv-cifar10", "eb4fcbeac5a6bacddc2aee2a30a296cf2c31684bfe1daaa776da9d0832439da4")),
]
CATALOGUE: "OrderedDict[str, CatalogueEntry]" = OrderedDict((e.name, e) for e in _ENTRIES)


def list_models(explorer: Optional[bool] = None, trained: Optional[bool] = None) -> List[str]:
    """Catalogue names, in catalogue order; explorer / trained: only those that are (True)
    or are not (False) offered by the explorer / shipped with weights."""
    return [e.name for e in CATALOGUE.values()
            if explorer in (None, e.explorer) and trained in (None, e.weights is not None)]


def entry(name: str) -> CatalogueEntry:
    """The catalogue entry of `name` (ValueError listing the names when there is none)."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(CATALOGUE)}.")
    return CATALOGUE[name]


def config_for(name: str, **overrides) -> ResNetConfig:
    """The config of a catalogue model, with any fields replaced by `overrides`."""
    config = entry(name).config
    known = {f.name for f in fields(ResNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; ResNetConfig has "
                         f"{sorted(known)}.")
    return replace(config, **overrides)


# --- finding the layers to look at ----------------------------------------------------

def attention_layers(model: nn.Module) -> "OrderedDict[str, LocalSelfAttention]":
    """Module name -> attention layer, in forward order: the stem's attention
    ("stem.attention", full-attention models only), then every block's
    ("stages.0.0.spatial", ...)."""
    return OrderedDict((name, m) for name, m in model.named_modules()
                       if isinstance(m, LocalSelfAttention))


def spatial_convs(model: nn.Module) -> "OrderedDict[str, nn.Conv2d]":
    """Module name -> the 3x3 conv of every bottleneck, in forward order. The names are
    those of `attention_layers` of the attention twin (stem aside)."""
    return OrderedDict((f"{name}.spatial", m.spatial) for name, m in model.named_modules()
                       if isinstance(m, Bottleneck) and isinstance(m.spatial, nn.Conv2d))
