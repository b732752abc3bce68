"""The choices a reader of the explorer makes, and the ones made for them, without
Streamlit: which models can be chosen, loading one (trained or freshly initialised), its
convolutional twin, naming layers, keeping a reader's choices when the options change,
and the view the explorer opens on (`opening_view`).

The page wraps these in Streamlit caches; notebooks can call them directly.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from sasa_viz.inspection.explain import attention_entropy
from sasa_viz.inspection.network import human_name, with_code_name
from sasa_viz.inspection.statistics import layer_statistics, most_telling
from sasa_viz.inspection.trace import LayerTrace, Trace
from sasa_viz.models.catalogue import entry, list_models
from sasa_viz.models.data import CIFAR10_CLASSES
from sasa_viz.models.pretrained import create, pretrained_info


@dataclass(frozen=True)
class ModelChoice:
    name: str        # catalogue name, e.g. "sasa-cifar10"
    trained: bool    # shipped weights, or the same architecture freshly initialised

    @property
    def label(self) -> str:
        if not self.trained:
            return f"{self.name} (untrained)"
        accuracy = pretrained_info(self.name).get("val_accuracy")
        return f"{self.name} (trained, {accuracy:.1%} held-out accuracy)"


def model_choices(stem: Optional[str] = None) -> List[ModelChoice]:
    """The catalogue's explorer models (only those whose stem is `stem`, e.g. "attention",
    when given): every shipped one first, then every one untrained."""
    names = [n for n in list_models(explorer=True)
             if stem in (None, entry(n).config.stem)]
    return ([ModelChoice(n, True) for n in names if entry(n).weights is not None]
            + [ModelChoice(n, False) for n in names])


def conv_twin(choice: Union[ModelChoice, str]) -> Optional[ModelChoice]:
    """The catalogue's convolutional twin (same network, 3x3 convs), trained only if the
    attention model is and the twin is shipped; None when there is no twin. A catalogue
    name stands for that model trained when it is shipped, untrained otherwise
    (ValueError listing the names for an unknown one)."""
    if isinstance(choice, str):
        choice = ModelChoice(choice, entry(choice).weights is not None)
    twin = entry(choice.name).conv_twin
    if twin is None:
        return None
    return ModelChoice(twin, choice.trained and entry(twin).weights is not None)


def load_model(choice: ModelChoice, device: str = "auto") -> nn.Module:
    """The model in eval mode on `device` ("auto": CUDA when present): the shipped
    weights, or the same architecture initialised from seed 0, the same every time. The
    seed is set in a fork of the random state, so the caller's (another session's, in
    the app) is left as it was."""
    if choice.trained:
        return create(choice.name, pretrained=True, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create(choice.name, device=device).eval()


def class_names(model: nn.Module) -> List[str]:
    info = getattr(model, "pretrained", None)
    return list(info["classes"]) if info else list(CIFAR10_CLASSES)


class OpeningView(NamedTuple):
    """Where the explorer opens: a layer, a head and an image pixel."""
    layer: str
    head: int
    row: int        # image pixel
    col: int


def opening_view(traced: Trace) -> OpeningView:
    """Where this image shows attention best: the most selective head on it
    (`statistics.most_telling` over `layer_statistics` of every layer of the trace, the
    statistics `describe_layer` puts in words, so the layer's sentence names the head the
    explorer opens on), at the image pixel at the centre of the feature pixel where that
    head is most selective, measured against what a uniform head would give there
    (`explain.attention_entropy(normalize=True)`). Only pixels whose whole window lies on
    the map compete when there are any: a corner pixel with a quarter of the window would
    otherwise win by having few neighbours to choose from."""
    stats = [row for found in traced.layers.values() for row in layer_statistics(found)]
    layer, head = most_telling(stats)
    found = traced.layers[layer]
    entropy = attention_entropy(found, normalize=True)[head]                # (H, W)
    full_window = found.valid.all(0).all(0)                                 # (H, W)
    if full_window.any():
        entropy = entropy.masked_fill(~full_window, float("inf"))
    i, j = divmod(int(entropy.flatten().argmin()), entropy.shape[1])
    return OpeningView(layer, head, *found.image_pixel(i, j))


def class_note(classes: List[str]) -> str:
    """Why a photo of an astronaut comes out as a truck: the classes are all there is."""
    which = "CIFAR-10's" if list(classes) == list(CIFAR10_CLASSES) else "these"
    return (f"The model knows only {which} {len(classes)} classes ({', '.join(classes)}): "
            f"every image, whether it shows one of them or not, is given one of them.")


def layer_label(name: str, layer: LayerTrace) -> str:
    """The layer for people, then in the code (`network.human_name`), e.g.
    "stage 2, block 2 (8×8 map, 7×7 window, 8 heads) · stages.1.1.spatial"."""
    human = human_name(name, layer.size, layer.kernel_size, layer.window, layer.heads)
    return with_code_name(human, name)


def keep_choice(wanted: Any, options: Sequence, label: Callable[[Any], str] = str,
                where: str = "") -> Tuple[Any, Optional[str]]:
    """What a picker shows when its options change (another image size, model or
    layer): the choice `wanted` if it is still an option, else the first option and a
    sentence saying so (None when nothing is said: `wanted` is kept, or None).

        keep_choice("stages.1.1.spatial", layers)   # the same layer at any image size
        keep_choice(7, [0, 1, 2, 3], lambda h: f"head {h}", "in stages.2.1.spatial")
        -> (0, "head 7 is not available in stages.2.1.spatial: showing head 0.")
    """
    if wanted in options:
        return wanted, None
    chosen = options[0]
    if wanted is None:
        return chosen, None
    unavailable = f"{label(wanted)} is not available {where}".rstrip()
    return chosen, f"{unavailable}: showing {label(chosen)}."


def keep_pixel(row: int, col: int, old_shape: Tuple[int, int],
               new_shape: Tuple[int, int]) -> Tuple[int, int]:
    """The pixel of a (H, W) = `new_shape` image at the same place in the picture as
    pixel (row, col) of an `old_shape` image (another working resolution): the one under
    the old pixel's centre, so the face stays the face at 32 and at 128 pixels.

        keep_pixel(13, 17, (32, 32), (128, 128))  -> (54, 70)
        keep_pixel(54, 70, (128, 128), (32, 32))  -> (13, 17)
    """
    (H0, W0), (H1, W1) = old_shape, new_shape
    new_row = min(math.floor((row + 0.5) * H1 / H0), H1 - 1)
    new_col = min(math.floor((col + 0.5) * W1 / W0), W1 - 1)
    return max(new_row, 0), max(new_col, 0)
