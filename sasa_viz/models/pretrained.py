"""Shipped weights: `pretrained/NAME.safetensors` beside `pretrained/NAME.json`.

The catalogue (`sasa_viz.models.CATALOGUE`) says which models are shipped, with their
config, weights file, sha256 and classes; the JSON card beside the weights keeps the
training record (recipe, accuracy, history) and the same config and hash, which a test
holds equal to the catalogue's. Loading checks the hash and reads tensors with
safetensors, so nothing is ever unpickled. The training command writes both files, to
any folder: `load_pretrained(name, directory=folder)` loads from such a folder by its card.

    model = load_pretrained("sasa-cifar10")      # eval mode, on the CPU (device="auto":
                                                 # CUDA when present)
    model.pretrained["classes"]                  # the JSON, kept on the model

Where the shipped files are (`PRETRAINED_DIR`): `pip install .` copies the checkout's
top-level `pretrained/` into the installed package as `sasa_viz/weights/`
(pyproject.toml maps it there), and that copy is used when it exists; otherwise the
package runs from a checkout (a clone, or `pip install -e .`) and reads `pretrained/`.
"""
import json
from dataclasses import asdict
from pathlib import Path
from typing import List, NamedTuple, Optional, Union

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sasa_viz.files import atomic_path, file_digest
from sasa_viz.models.catalogue import (ResNet, ResNetConfig, build, config_for, entry,
                                       list_models)

PathLike = Union[str, Path]
INSTALLED_DIR = Path(__file__).resolve().parent.parent / "weights"          # made by pip install .
CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "pretrained"  # a clone, pip install -e
# the shipped weights and cards (module docstring)
PRETRAINED_DIR = INSTALLED_DIR if INSTALLED_DIR.is_dir() else CHECKOUT_DIR


class PretrainedError(RuntimeError):
    """A shipped model is missing, damaged or does not match its JSON."""


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def list_pretrained(directory: Optional[PathLike] = None) -> List[str]:
    """Names of the shipped models (the catalogue's entries with weights), or of the
    models written to `directory` by the training command (NAME.json + NAME.safetensors)."""
    if directory is None:
        return list_models(trained=True)
    folder = Path(directory)
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").exists())


def restore_hint(name: str, directory: Optional[PathLike] = None) -> str:
    """How to get a model's files back. The shipped ones are restored, never retrained
    (hours of training for files git or pip still has); a training folder's are written
    again by the training command."""
    if directory is None:
        return ("restore it with `git checkout -- pretrained/` in a checkout, or reinstall "
                "sasa-viz")
    return (f"train it again with `python -m sasa_viz.train --model {name} --data "
            f"PATH/TO/cifar10/train.tar.gz --out {directory}`")


def pretrained_info(name: str, directory: Optional[PathLike] = None) -> dict:
    """The JSON card of a shipped model (or of one in `directory`): its config, classes,
    training recipe and figures."""
    path = Path(directory or PRETRAINED_DIR) / f"{name}.json"
    if not path.exists():
        known = list_pretrained(directory)
        hint = f"; {restore_hint(name, directory)}" if directory or name in known else ""
        raise PretrainedError(f"no pretrained model {name!r}: {path} is missing (models "
                              f"there: {', '.join(known) or 'none'}){hint}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PretrainedError(f"{path} is not valid JSON ({error}); "
                              f"{restore_hint(name, directory)}.")


class _Source(NamedTuple):
    """Where a model's weights are and what they must be."""
    weights: Path
    sha256: str
    config: ResNetConfig
    card: dict


def _source(name: str, directory: Optional[PathLike]) -> _Source:
    """Shipped models: the catalogue says which file, which sha256 and which config (the
    JSON card adds the training record). A `directory` of training outputs: its cards."""
    if directory is not None:
        card = pretrained_info(name, directory)
        return _Source(Path(directory) / f"{name}.safetensors", card["weights_sha256"],
                       ResNetConfig.from_dict(card["config"]), card)
    try:
        shipped = entry(name)
    except ValueError as error:
        raise PretrainedError(str(error))
    if shipped.weights is None:
        raise PretrainedError(f"{name} has no shipped weights (shipped models: "
                              f"{', '.join(list_pretrained())}); train it with `python -m "
                              f"sasa_viz.train --model {name} --data "
                              f"PATH/TO/cifar10/train.tar.gz --out FOLDER` and load "
                              f"it from there: load_pretrained({name!r}, directory=FOLDER), "
                              f"or `python -m sasa_viz.evaluate --weights FOLDER`.")
    card = pretrained_info(name)
    return _Source(PRETRAINED_DIR / shipped.weights.file, shipped.weights.sha256,
                   shipped.config, {**card, "classes": list(shipped.weights.classes)})


def load_pretrained(name: str, device: str = "cpu",
                    directory: Optional[PathLike] = None) -> nn.Module:
    """The trained model `name`, checked against its sha256, in eval mode on `device`
    (the catalogue's weights, or those the training command wrote to `directory`).

    It takes RGB tensors in [0, 1] of any height and width; normalisation is inside.
    `model.pretrained` is its card (classes, accuracy, recipe).
    """
    source = _source(name, directory)
    weights = source.weights
    hint = restore_hint(name, directory)
    if not weights.exists():
        raise PretrainedError(f"{weights} is missing; {hint}.")
    actual = file_digest(weights)
    if actual != source.sha256:
        raise PretrainedError(f"{weights} was changed or damaged (sha256 {actual[:12]}..., "
                              f"expected {source.sha256[:12]}...); {hint}.")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise PretrainedError(f"{weights} cannot be read ({error}); {hint}.")
    model = build(source.config)
    model.load_state_dict(state)
    model.pretrained = source.card
    return model.eval().to(resolve_device(device))


def save_pretrained(model: nn.Module, name: str, card: dict,
                    directory: Optional[PathLike] = None) -> Path:
    """Write NAME.safetensors and NAME.json (the card plus config and weights sha256),
    each atomically (`files.atomic_path`)."""
    folder = Path(directory or PRETRAINED_DIR)
    weights = folder / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as partial:
        save_file(state, partial)
    info = {"name": name, "config": asdict(model.config), **card,
            "weights_sha256": file_digest(weights)}
    with atomic_path(folder / f"{name}.json") as partial:
        partial.write_text(json.dumps(info, indent=2) + "\n")
    return weights


def create(name: str, pretrained: bool = False, device: str = "cpu", **overrides) -> ResNet:
    """The one way to a catalogue model (timm-style; `sasa_viz.create`): freshly
    initialised, create("sasa-cifar10", heads=4), or with its shipped weights, checked
    against their sha256, in eval mode, create("sasa-cifar10", pretrained=True), which
    is `load_pretrained("sasa-cifar10")`. Either way on `device`: the CPU by default, as
    PyTorch makes modules; "auto" is CUDA when present (`resolve_device`)."""
    if pretrained:
        if overrides:
            raise ValueError(f"shipped weights fit the catalogue's config only; drop "
                             f"{sorted(overrides)} or use pretrained=False.")
        return load_pretrained(name, device=device)
    model = build(config_for(name, **overrides))     # on the default device ("cpu", or
    return model if device == "cpu" else model.to(resolve_device(device))   # meta for cost)
