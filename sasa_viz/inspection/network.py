"""The network as a row of parts, for a map of it: the image, the stem, every bottleneck
block, the pool and the classifier, each with the map it works on at an image size, its
window, channels and stride, and a name for people beside its name in the code.

    parts = network_map(create("sasa-cifar10"), (32, 32))
    [p.human for p in parts]
    # ["the image (32×32 pixels)", "the stem (32×32 map, 3×3 convolution)",
    #  "stage 1, block 1 (16×16 map, 7×7 window, 4 heads)", ...,
    #  "the average pool (4×4 map)", "the classifier"]
    human_name("stages.1.1.spatial", (8, 8), 7)       # "stage 2, block 2 (8×8 map, 7×7 window)"
    human_name("stem.attention", window=2, window_kind="blocks")    # "the stem (2×2 blocks)"

Stages and blocks are counted from 1 for people, from 0 in the code. Sizes are measured,
not worked out: a copy of the model with uninitialised weights runs on zeros of the
image's size (attention layers only make an empty output of the right shape, as in
`trace.layer_strides`), so conv and attention stems, strided blocks and sides the
strides do not divide all come out as the model computes them.
"""
import re
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from sasa_viz.attention.layer import LocalSelfAttention
from sasa_viz.inspection.trace import PROBE_SIZE, shape_copy, shape_only, traced_names

KINDS = ("input", "stem", "block", "pool", "classifier")
WINDOW_WORDS = {"sliding": "window", "blocks": "blocks", "conv": "convolution"}
FIXED_NAMES = {"input": "the image", "stem": "the stem", "pool": "the average pool",
               "head": "the classifier"}
Size = Tuple[int, int]


@dataclass(frozen=True)
class Part:
    """One box of the network map, at one image size."""
    kind: str                       # one of KINDS
    name: str                       # in the code: "stages.1.1.spatial" (a block's spatial
                                    # layer), "stem.attention" or "stem", "pool", "head",
                                    # "input"
    size: Size                      # (H, W) of the map its window works on (an attention
                                    # layer's is its trace's `size`); the classifier: (1, 1)
    out_size: Size                  # (H, W) of the map it hands on
    channels: int                   # channels it hands on; the classifier: its classes
    stride: Optional[int]           # image pixels per pixel of `size` (as LayerTrace.stride);
                                    # None for the classifier
    window: Optional[int] = None    # K of its K×K attention window or convolution; None
                                    # for the image, the pool and the classifier
    window_kind: Optional[str] = None   # "sliding" or "blocks" (attention), or "conv"
    heads: Optional[int] = None     # attention only
    layer: Optional[str] = None     # the attention layer it stands for (== name), or None

    @property
    def human(self) -> str:
        """Its name for people: "stage 2, block 2 (8×8 map, 7×7 window, 8 heads)"."""
        size = None if self.kind == "classifier" else self.size
        return human_name(self.name, size, self.window, self.window_kind, self.heads)

    @property
    def label(self) -> str:
        """Its name for people, then in the code (`with_code_name`)."""
        return with_code_name(self.human, self.name)


def human_name(name: str, size: Optional[Size] = None, window: Optional[int] = None,
               window_kind: str = "sliding", heads: Optional[int] = None) -> str:
    """A part or layer named for people, from its name in the code and what is known of it
    (`window_kind`: "sliding" or "blocks" as LayerTrace.window, or "conv"):

        human_name("stages.1.0.spatial", (16, 16), 7, heads=8)
        # "stage 2, block 1 (16×16 map, 7×7 window, 8 heads)"
        human_name("stem.attention", window=2, window_kind="blocks")  # "the stem (2×2 blocks)"
        human_name("stages.0.1.spatial", (16, 16), 3, "conv")
        # "stage 1, block 2 (16×16 map, 3×3 convolution)"

    A name that is no part of a catalogue ResNet (a bare layer's "SelfAttention2d") is
    kept as it is."""
    details = []
    if size is not None:
        details.append(f"{size_text(size)} {'pixels' if name == 'input' else 'map'}")
    if window is not None:
        details.append(f"{window}×{window} {WINDOW_WORDS[window_kind]}")
    if heads is not None:
        details.append(f"{heads} heads")
    return _plain_name(name) + (f" ({', '.join(details)})" if details else "")


def with_code_name(human: str, name: str) -> str:
    """A name for people, then the code's: "stage 2, block 2 (...) · stages.1.1.spatial"."""
    return f"{human} · {name}"


def size_text(size: Size) -> str:
    """(8, 16) -> "8×16"."""
    return f"{size[0]}×{size[1]}"


def _plain_name(name: str) -> str:
    """"stages.1.0.spatial" -> "stage 2, block 1"; "stem.attention" -> "the stem"."""
    numbers = stage_and_block(name)
    if numbers:
        return "stage {}, block {}".format(*numbers)
    return FIXED_NAMES.get(name.split(".")[0], name)


def stage_and_block(name: str) -> Optional[Tuple[int, int]]:
    """(stage, block) counted from 1, as people count, of a block or one of its layers:
    "stages.1.0.spatial" -> (2, 1); None for any other name."""
    found = re.fullmatch(r"stages\.(\d+)\.(\d+)(\..*)?", name)
    return (int(found[1]) + 1, int(found[2]) + 1) if found else None


def network_map(model: nn.Module, image_size: Size) -> List[Part]:
    """Every part of a catalogue ResNet (`sasa_viz.models`) in forward order, for an
    image of (H, W) = `image_size`: the image, the stem, each block of each stage, the
    pool and the classifier."""
    image_size = tuple(image_size)
    spans = _spans(model)
    watched = {name for _, name, _, _ in spans} | {window for _, _, window, _ in spans}
    shapes, strides = _measured(model, watched, image_size)
    image = Part("input", "input", image_size, image_size, 3, 1)
    classifier = Part("classifier", "head", (1, 1), (1, 1), model.head.out_features, None)
    return [image, *(_part(*span, shapes, strides) for span in spans), classifier]


def _spans(model: nn.Module) -> List[Tuple[str, str, str, Optional[nn.Module]]]:
    """(kind, module name, the name of the layer its map is measured at, that layer when
    it has a window) of the stem, every block and the pool, in forward order."""
    modules = [("stem", "stem", model.stem),
               *(("block", f"stages.{i}.{j}", block) for i, stage in enumerate(model.stages)
                 for j, block in enumerate(stage)),
               ("pool", "pool", model.pool)]
    return [(kind, name, *_window_layer(name, module)) for kind, name, module in modules]


def _window_layer(name: str, module: nn.Module) -> Tuple[str, Optional[nn.Module]]:
    """The layer that gives a stem or block its window, and its name: its attention layer,
    else its first convolution wider than 1x1 (a block's `spatial`, a stem's first);
    (name, None) for a module without one (the pool)."""
    return next(((sub_name, sub) for sub_name, sub in module.named_modules(prefix=name)
                 if isinstance(sub, LocalSelfAttention)
                 or isinstance(sub, nn.Conv2d) and sub.kernel_size[0] > 1), (name, None))


def _part(kind: str, name: str, window_name: str, layer: Optional[nn.Module],
          shapes: Dict[str, Tuple], strides: Dict[str, int]) -> Part:
    """The Part of one module: its map measured at its window layer's input, what it
    hands on at its own output (`_measured`). Blocks and attention layers go by their
    window layer's name, as in a trace or `spatial_convs`."""
    attention = isinstance(layer, LocalSelfAttention)
    code = window_name if kind == "block" or attention else name
    _, channels, *out_size = shapes[name][1]                             # (1, C, H', W')
    measured = Part(kind, code, shapes[window_name][0][-2:], tuple(out_size), channels,
                    strides[window_name])
    return replace(measured, **_window_fields(layer, code))


def _window_fields(layer: Optional[nn.Module], name: str) -> dict:
    """What a window layer tells of its part: its window, and an attention layer's heads
    and name."""
    if layer is None:
        return {}
    if isinstance(layer, LocalSelfAttention):
        return dict(window=layer.kernel_size, window_kind=layer.window, heads=layer.heads,
                    layer=name)
    return dict(window=layer.kernel_size[0], window_kind="conv")         # conv: (K, K)


def _measured(model: nn.Module, watched: Set[str],
              image_size: Size) -> Tuple[Dict[str, Tuple], Dict[str, int]]:
    """{name: (input shape, output shape)} of every watched module of `model` on an image
    of `image_size`, and {name: image pixels per pixel of its input map}, from the map
    heights a PROBE_SIZE x PROBE_SIZE image gives (every stride divides it)."""
    probe = _shape_probe(model)
    shapes = _shapes(probe, watched, image_size)
    probed = _shapes(probe, watched, (PROBE_SIZE, PROBE_SIZE))
    return shapes, {name: PROBE_SIZE // probed[name][0][-2] for name in watched}


def _shape_probe(model: nn.Module) -> nn.Module:
    """A copy of `model` for shapes only, as `trace.layer_strides` makes one: uninitialised
    weights, attention layers that return an empty output of their shape; in eval mode,
    as batch norm in training refuses a 1x1 map."""
    probe = shape_copy(model).eval()
    for module, name in traced_names(probe).items():
        module.forward = shape_only(module, name, {})
    return probe


def _shapes(probe: nn.Module, watched: Set[str], size: Size) -> Dict[str, Tuple]:
    """{name: (input shape, output shape)} of every watched module of `probe` on zeros of
    shape (1, 3, H, W), (H, W) = `size`."""
    shapes: Dict[str, Tuple] = {}
    modules = dict(probe.named_modules())
    hooks = [modules[name].register_forward_hook(_noting(name, shapes)) for name in watched]
    with torch.no_grad():
        probe(torch.zeros(1, 3, *size, dtype=next(probe.parameters()).dtype))
    for hook in hooks:
        hook.remove()
    return shapes


def _noting(name: str, shapes: Dict[str, Tuple]):
    """A forward hook that notes (input shape, output shape) in shapes[name]."""
    def hook(module: nn.Module, inputs: Tuple[Tensor, ...], output: Tensor) -> None:
        shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
    return hook
