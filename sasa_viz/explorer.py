"""What the explorer page works with, without Streamlit: which models can be chosen,
loading one (trained or freshly initialised), its convolutional twin, and naming layers.

The page wraps these in Streamlit caches; notebooks can call them directly.
"""
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn as nn

from .data import CIFAR10_CLASSES
from .models import create, list_models
from .pretrained import list_pretrained, load_pretrained, pretrained_info, resolve_device
from .trace import LayerTrace

# The CIFAR-scale models the explorer offers (the ImageNet ones are far too big to train here)
EXPLORER_MODELS = ("sasa-cifar10", "sasa-full-cifar10", "conv-cifar10")


@dataclass(frozen=True)
class ModelChoice:
    name: str        # registry name, e.g. "sasa-cifar10"
    trained: bool    # shipped weights, or the same architecture freshly initialised

    @property
    def label(self) -> str:
        if not self.trained:
            return f"{self.name} (untrained)"
        accuracy = pretrained_info(self.name).get("val_accuracy")
        return f"{self.name} (trained, {accuracy:.1%} held-out accuracy)"

    @property
    def is_attention(self) -> bool:
        return not self.name.startswith("conv-")


def model_choices() -> List[ModelChoice]:
    """Attention models to explore: every shipped one first, then every one untrained."""
    shipped = set(list_pretrained())
    names = [n for n in EXPLORER_MODELS if n in list_models() and not n.startswith("conv-")]
    return ([ModelChoice(n, True) for n in names if n in shipped]
            + [ModelChoice(n, False) for n in names])


def conv_twin(choice: ModelChoice) -> Optional[ModelChoice]:
    """The convolutional twin (same network, 3x3 convs), trained only if the attention
    model is and the twin is shipped; None when there is no such model."""
    name = "conv-" + choice.name.split("-")[-1]
    if name not in list_models():
        return None
    return ModelChoice(name, choice.trained and name in list_pretrained())


def load_model(choice: ModelChoice, device: str = "auto") -> nn.Module:
    """The model in eval mode on `device` ("auto": CUDA when present)."""
    if choice.trained:
        return load_pretrained(choice.name, device=device)
    torch.manual_seed(0)                      # the same "untrained" model every time
    return create(choice.name).eval().to(resolve_device(device))


def class_names(model: nn.Module) -> List[str]:
    info = getattr(model, "pretrained", None)
    return list(info["classes"]) if info else list(CIFAR10_CLASSES)


def layer_label(name: str, layer: LayerTrace) -> str:
    """e.g. "stages.0.0.spatial: 16x16 map, 7x7 window, 8 heads"."""
    H, W = layer.size
    return (f"{name}: {H}x{W} map, {layer.kernel_size}x{layer.kernel_size} window, "
            f"{layer.heads} heads")
