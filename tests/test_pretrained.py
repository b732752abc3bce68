"""Training, shipping and loading models: a smoke run of the real training command on a
few hundred images, the checksum and corrupt-file errors, and the shipped models."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sasa_viz import data as cifar
from sasa_viz.evaluate import confusion_matrix, predict, report
from sasa_viz.files import file_digest
from sasa_viz.models import ResNetConfig, config_for, create, entry, list_models
from sasa_viz.pretrained import (PRETRAINED_DIR, PretrainedError, list_pretrained,
                                 load_pretrained, pretrained_info)
from sasa_viz.train import parse_args, train

SHIPPED = list_models(trained=True)


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    """300 JPEGs in train/<class>/ folders: each class a noisy version of its own colour."""
    root = tmp_path_factory.mktemp("cifar") / "train"
    rng = np.random.default_rng(0)
    for label, name in enumerate(cifar.CIFAR10_CLASSES):
        (root / name).mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for n in range(30):
            pixels = np.clip(colour + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{n:04d}.jpg", quality=95)
    return root.parent


def run_training(tiny_cifar, tmp_path, monkeypatch, *extra, model="sasa-cifar10"):
    monkeypatch.setenv("SASA_VIZ_CACHE", str(tmp_path / "cache"))
    args = parse_args(["--model", model, "--data", str(tiny_cifar),
                       "--batch-size", "64", "--checkpoint-dir", str(tmp_path / "ck"),
                       "--out", str(tmp_path / "out"), "--no-progress", *extra])
    return train(args)


@pytest.fixture(scope="module")
def shipped_tiny(tiny_cifar, tmp_path_factory):
    """One epoch of the training command, written to a temporary pretrained/."""
    tmp = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        card = run_training(tiny_cifar, tmp, mp, "--epochs", "1")
    return tmp / "out", card


@pytest.mark.slow                                 # a training run
def test_training_writes_weights_and_a_complete_card(shipped_tiny):
    out, card = shipped_tiny
    info = json.loads((out / "sasa-cifar10.json").read_text())
    assert info["weights_sha256"] == file_digest(out / "sasa-cifar10.safetensors")
    assert info["classes"] == list(cifar.CIFAR10_CLASSES)
    assert info["config"]["mean"] == list(cifar.CIFAR10_MEAN)
    assert info["val_size"] == 30 and info["train_size"] == 270
    for key in ["val_accuracy", "parameters", "epochs", "wall_time_s", "images_per_s",
                "data_sha256", "command", "history"]:
        assert key in info
    assert list_pretrained(out) == ["sasa-cifar10"]


@pytest.mark.slow                                 # a training run
def test_loaded_model_is_the_trained_one_and_takes_any_image_size(shipped_tiny):
    out, card = shipped_tiny
    model = load_pretrained("sasa-cifar10", device="cpu", directory=out)
    assert not model.training
    assert model(torch.rand(2, 3, 40, 28)).shape == (2, 10)
    assert model.pretrained["val_accuracy"] == card["val_accuracy"]


@pytest.mark.slow                                 # a training run
def test_resume_continues_and_refuses_a_different_recipe(tiny_cifar, tmp_path, monkeypatch):
    run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "2", "--limit", "200")
    card = run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "2", "--limit", "200",
                        "--resume")
    assert [h["epoch"] for h in card["history"]] == [1, 2]      # nothing trained again
    with pytest.raises(SystemExit, match="resume with the same options"):
        run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "3", "--limit", "200",
                     "--resume")


@pytest.mark.slow                                 # two training runs, one compiled
def test_a_compiled_run_trains_and_ships_the_same_network(tiny_cifar, tmp_path, monkeypatch):
    """--compile changes the speed only: the shipped weights are those of an eager run."""
    shipped = {}
    for extra in ([], ["--compile"]):
        folder = tmp_path / ("compiled" if extra else "eager")
        card = run_training(tiny_cifar, folder, monkeypatch, "--epochs", "1", "--limit", "200",
                            *extra, model="conv-cifar10")
        assert card["compiled"] == bool(extra)
        shipped[bool(extra)] = load_file(folder / "out" / "conv-cifar10.safetensors")
    torch.manual_seed(0)                                # the start both runs trained from
    untrained = create("conv-cifar10").state_dict()
    for key, eager in shipped[False].items():
        torch.testing.assert_close(shipped[True][key], eager, atol=1e-4, rtol=1e-3)
    assert any(not torch.equal(shipped[True][key], untrained[key]) for key in untrained)


@pytest.fixture
def copy_of_shipped(shipped_tiny, tmp_path):
    out, _ = shipped_tiny
    for path in out.iterdir():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_tampered_weights_are_refused_naming_the_file(copy_of_shipped):
    weights = copy_of_shipped / "sasa-cifar10.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(PretrainedError, match="sasa-cifar10.safetensors is damaged.*rebuild"):
        load_pretrained("sasa-cifar10", directory=copy_of_shipped)


def test_truncated_weights_are_refused(copy_of_shipped):
    weights = copy_of_shipped / "sasa-cifar10.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PretrainedError, match="damaged"):
        load_pretrained("sasa-cifar10", directory=copy_of_shipped)


def test_unreadable_weights_with_a_matching_checksum_are_refused(copy_of_shipped):
    weights, card = (copy_of_shipped / f"sasa-cifar10.{ext}" for ext in ("safetensors", "json"))
    weights.write_bytes(b"not a safetensors file")
    info = json.loads(card.read_text())
    info["weights_sha256"] = file_digest(weights)
    card.write_text(json.dumps(info))
    with pytest.raises(PretrainedError, match="cannot be read"):
        load_pretrained("sasa-cifar10", directory=copy_of_shipped)


def test_missing_files_are_explained(copy_of_shipped):
    (copy_of_shipped / "sasa-cifar10.safetensors").unlink()
    with pytest.raises(PretrainedError, match="missing.*python -m sasa_viz.train"):
        load_pretrained("sasa-cifar10", directory=copy_of_shipped)
    with pytest.raises(PretrainedError, match="no pretrained model 'nope'"):
        pretrained_info("nope", directory=copy_of_shipped)


def test_evaluation_report_counts():
    labels = torch.tensor([0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0])
    confusion = confusion_matrix(labels, predictions, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    text = report(confusion, ["a", "b", "c"])
    assert "accuracy 60.00% (3 / 5)" in text and "100.00%" in text


@pytest.mark.parametrize("name", SHIPPED)
def test_catalogue_and_card_agree_on_the_shipped_weights(name):
    weights = entry(name).weights
    card = pretrained_info(name)
    assert file_digest(PRETRAINED_DIR / weights.file) == weights.sha256 == card["weights_sha256"]
    assert ResNetConfig(**card["config"]) == config_for(name)
    assert list(weights.classes) == card["classes"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_model_cards_table_gives_each_model_the_numbers_of_its_card(name):
    """pretrained/README.md's summary row (parameters, held-out accuracy, epochs, minutes,
    images/s) is the JSON card's, so a retrained model cannot leave stale numbers."""
    readme = Path(__file__).resolve().parent.parent / "pretrained" / "README.md"
    row = next(line for line in readme.read_text().splitlines()
               if line.startswith(f"| `{name}` |"))
    _, _, parameters, accuracy, epochs, minutes, rate = (
        cell.strip() for cell in row.strip().strip("|").split("|"))
    card = pretrained_info(name)
    assert parameters == f"{card['parameters']:,}"
    assert accuracy == f"{card['val_accuracy']:.1%}"
    assert epochs == str(card["epochs"])
    assert minutes == f"{card['wall_time_s'] / 60:.0f} min"
    assert rate == f"{card['images_per_s']:.0f}"


def test_create_pretrained_loads_the_checked_weights():
    name = SHIPPED[0]
    model = create(name, pretrained=True)
    shipped = load_pretrained(name, device="cpu")
    assert not model.training and model.pretrained["classes"] == shipped.pretrained["classes"]
    for (key, a), b in zip(model.state_dict().items(), shipped.state_dict().values()):
        assert torch.equal(a, b), key


def test_models_without_shipped_weights_say_how_to_get_them():
    untrained = [n for n in list_models() if n not in SHIPPED]
    with pytest.raises(PretrainedError, match="no shipped weights.*python -m sasa_viz.train"):
        load_pretrained(untrained[0])
    with pytest.raises(PretrainedError, match="unknown model 'nope'"):
        load_pretrained("nope")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_the_committed_sample_as_its_card_says(name):
    assert name in list_pretrained(), f"{name} is not in {PRETRAINED_DIR}"
    model = load_pretrained(name, device="cpu")
    sample = cifar.load_sample(cifar.SAMPLE_PATH)
    accuracy = (predict(model, sample.images) == sample.labels).float().mean().item()
    assert accuracy > 0.6                # chance is 0.1
    # the sample is drawn from the held-out slice: its accuracy estimates the card's, within
    # four standard errors of a proportion measured on len(sample) images
    card = model.pretrained["val_accuracy"]
    assert abs(accuracy - card) < 4 * (card * (1 - card) / len(sample.labels)) ** 0.5


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_has_the_parameters_its_card_states(name):
    model = load_pretrained(name, device="cpu")
    assert sum(p.numel() for p in model.parameters()) == model.pretrained["parameters"]


@pytest.mark.slow                                 # a training run
def test_evaluate_command_reproduces_the_cards_held_out_accuracy(shipped_tiny, tiny_cifar,
                                                                  monkeypatch, capsys, tmp_path):
    from sasa_viz import evaluate
    out, card = shipped_tiny
    monkeypatch.setenv("SASA_VIZ_CACHE", str(tmp_path / "cache"))
    evaluate.main(["--model", "sasa-cifar10", "--weights", str(out), "--data", str(tiny_cifar),
                   "--device", "cpu", "--plot", str(tmp_path / "confusion.png")])
    printed = capsys.readouterr().out
    assert "the held-out validation slice" in printed
    assert f"accuracy {card['val_accuracy']:.2%} (" in printed
    assert f"/ {card['val_size']})" in printed
    assert "per class:" in printed and "confusion" in printed
    assert (tmp_path / "confusion.png").stat().st_size > 1000
