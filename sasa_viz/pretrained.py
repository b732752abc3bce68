"""Shipped weights: `pretrained/NAME.safetensors` beside `pretrained/NAME.json`.

The JSON holds the architecture config, class names, normalisation, training figures and
the sha256 of the weights file; loading checks that hash and reads tensors with
safetensors, so nothing is ever unpickled.

    model = load_pretrained("sasa-cifar10")      # eval mode, on CUDA when present
    model.pretrained["classes"]                  # the JSON, kept on the model
"""
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .models import ResNetConfig, build

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
PathLike = Union[str, Path]


class PretrainedError(RuntimeError):
    """A shipped model is missing, damaged or does not match its JSON."""


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def list_pretrained(directory: Optional[PathLike] = None) -> List[str]:
    """Names of the models in `directory` (default: the project's pretrained/)."""
    folder = Path(directory or PRETRAINED_DIR)
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").exists())


def file_sha256(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rebuild_hint(name: str) -> str:
    return (f"rebuild it with `python -m sasa_viz.train --model {name} "
            f"--data ../shared/data/cifar10/train.tar.gz` (see pretrained/README.md)")


def pretrained_info(name: str, directory: Optional[PathLike] = None) -> dict:
    """The JSON card of a shipped model."""
    path = Path(directory or PRETRAINED_DIR) / f"{name}.json"
    if not path.exists():
        known = ", ".join(list_pretrained(directory)) or "none"
        raise PretrainedError(f"no pretrained model {name!r}: {path} is missing (shipped "
                              f"models: {known}); {rebuild_hint(name)}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PretrainedError(f"{path} is not valid JSON ({error}); {rebuild_hint(name)}.")


def load_pretrained(name: str, device: str = "auto",
                    directory: Optional[PathLike] = None) -> nn.Module:
    """The trained model `name`, checked against its sha256, in eval mode on `device`.

    It takes RGB tensors in [0, 1] of any height and width; normalisation is inside.
    """
    info = pretrained_info(name, directory)
    weights = Path(directory or PRETRAINED_DIR) / f"{name}.safetensors"
    if not weights.exists():
        raise PretrainedError(f"{weights} is missing; {rebuild_hint(name)}.")
    actual = file_sha256(weights)
    if actual != info["weights_sha256"]:
        raise PretrainedError(f"{weights} is damaged or was changed: its sha256 is {actual}, "
                              f"but {name}.json expects {info['weights_sha256']}; "
                              f"{rebuild_hint(name)}.")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise PretrainedError(f"{weights} cannot be read ({error}); {rebuild_hint(name)}.")
    model = build(ResNetConfig(**info["config"]))
    model.load_state_dict(state)
    model.pretrained = info
    return model.eval().to(resolve_device(device))


def save_pretrained(model: nn.Module, name: str, card: dict,
                    directory: Optional[PathLike] = None) -> Path:
    """Write NAME.safetensors and NAME.json (the card plus config and weights sha256)."""
    folder = Path(directory or PRETRAINED_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, weights)
    info = {"name": name, "config": asdict(model.config), **card,
            "weights_sha256": file_sha256(weights)}
    (folder / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return weights
