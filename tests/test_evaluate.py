"""python -m sasa_viz.evaluate: which images it scores (the held-out slice of the model's
training data, or all of any other folder or archive, or --limit of them), that it says
so, and one line for every mistake. The model is an untrained sasa-cifar10 written the
way the training command writes one, with a card that names its training data."""
import dataclasses
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from sasa_viz import evaluate
from sasa_viz.models.catalogue import list_models
from sasa_viz.models.data import CIFAR10_CLASSES, held_out_split, load_cifar10
from sasa_viz.models.pretrained import create, save_pretrained

PER_CLASS = 4


def write_class_folders(root, seed: int):
    """PER_CLASS random 32x32 JPEGs in root/<class>/ for every CIFAR-10 class."""
    rng = np.random.default_rng(seed)
    for name in CIFAR10_CLASSES:
        (root / name).mkdir(parents=True)
        for n in range(PER_CLASS):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{n:04d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A training folder, another folder, the other one as an archive, and weights in a
    folder whose card says the model was trained on the first."""
    tmp = tmp_path_factory.mktemp("evaluate")
    trained_on = write_class_folders(tmp / "train", seed=0)
    other = write_class_folders(tmp / "other" / "test", seed=1)
    archive = tmp / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(other, arcname="test")
    data = load_cifar10(trained_on, cache_dir=tmp / "cache", progress=False)
    torch.manual_seed(0)
    card = {"classes": CIFAR10_CLASSES, "val_size": 5000, "seed": 0, "limit": None,
            "data_sha256": data.source_sha256, "flip_tta": True}
    save_pretrained(create("sasa-cifar10"), "sasa-cifar10", card, tmp / "weights")
    return {"trained_on": trained_on, "other": other, "archive": archive,
            "weights": tmp / "weights", "labels": data.labels}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SASA_VIZ_CACHE", str(tmp_path / "cache"))


def evaluate_main(run, data, *extra):
    evaluate.main(["--model", "sasa-cifar10", "--weights", str(run["weights"]),
                   "--data", str(data), "--device", "cpu", *extra])


def scored_total(printed: str) -> int:
    """n of the report's first line, "accuracy x% (correct / n)"."""
    line = next(line for line in printed.splitlines() if line.startswith("accuracy "))
    return int(line.rstrip(")").split("/ ")[1])


def test_on_its_training_data_it_scores_the_held_out_slice_and_says_so(run, capsys):
    evaluate_main(run, run["trained_on"])
    printed = capsys.readouterr().out
    n = PER_CLASS * len(CIFAR10_CLASSES)
    _, val_idx = held_out_split(n, 5000, 0)
    lines = printed.splitlines()
    assert lines[0].startswith(f"model:  sasa-cifar10, weights from {run['weights']} (sha256 ")
    assert lines[1].startswith(f"data:   {run['trained_on']} (sha256 ")
    assert lines[1].endswith("the model's training data)")
    assert lines[2] == (f"scored: {len(val_idx)} of its {n} images: the held-out validation "
                        f"slice the training command kept back (seed 0) and never trained "
                        f"on; with flip test-time augmentation")
    assert scored_total(printed) == len(val_idx)
    per_class = run["labels"][val_idx].bincount(minlength=10).tolist()
    for name, count in zip(CIFAR10_CLASSES, per_class):
        assert f"/ {count})" in next(line for line in lines if line.strip().startswith(name))


@pytest.mark.parametrize("source", ["other", "archive"])
def test_any_other_folder_or_archive_is_scored_whole(run, source, capsys):
    evaluate_main(run, run[source])
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[1].startswith(f"data:   {run[source]} (sha256 ")
    assert lines[1].endswith("not the model's training data)")
    n = PER_CLASS * len(CIFAR10_CLASSES)
    assert lines[2] == f"scored: all {n} images; with flip test-time augmentation"
    assert scored_total(printed) == n


def test_limit_draws_that_many_and_says_from_what(run, capsys):
    evaluate_main(run, run["other"], "--limit", "7")
    printed = capsys.readouterr().out
    n = PER_CLASS * len(CIFAR10_CLASSES)
    assert (f"scored: 7 images drawn at random (seed 0) from all {n} images;"
            in printed.splitlines()[2])
    assert scored_total(printed) == 7


def test_a_limit_past_the_images_scores_them_all(run, capsys):
    evaluate_main(run, run["other"], "--limit", "1000")
    printed = capsys.readouterr().out
    assert scored_total(printed) == PER_CLASS * len(CIFAR10_CLASSES)
    assert "drawn at random" not in printed


def test_limit_on_the_training_data_draws_from_the_held_out_slice(run):
    data = load_cifar10(run["trained_on"], progress=False)
    card = {"data_sha256": data.source_sha256, "val_size": 5000, "seed": 0, "limit": None}
    _, val_idx = held_out_split(len(data), 5000, 0)
    chosen = evaluate.select_images(data, card, limit=2)
    assert len(chosen.indices) == 2 and chosen.training_data
    assert torch.isin(chosen.indices, val_idx).all()
    assert torch.equal(chosen.indices, evaluate.select_images(data, card, limit=2).indices)


def test_the_plot_folder_is_made_when_missing(run, tmp_path, capsys):
    plot = tmp_path / "figures" / "confusion.png"
    evaluate_main(run, run["other"], "--plot", str(plot))
    assert plot.stat().st_size > 1000 and f"saved {plot}" in capsys.readouterr().out


UNSHIPPED = list_models(trained=False)[0]        # a catalogue model without weights


@pytest.mark.parametrize("args, message", [
    (["--model", UNSHIPPED], f"evaluate: {UNSHIPPED} has no shipped weights.*--weights"),
    (["--model", "sasa-cifar10", "--weights", "{tmp}"], "evaluate: no pretrained model "
                                                        "'sasa-cifar10'"),
])
def test_what_cannot_be_loaded_ends_with_one_line(run, args, message, tmp_path):
    argv = ["--data", str(run["other"]), "--device", "cpu"] + args
    with pytest.raises(SystemExit, match=message) as stop:
        evaluate.main([a.format(tmp=tmp_path) for a in argv])
    assert "\n" not in str(stop.value.code)


def test_a_damaged_archive_ends_with_one_line(run, tmp_path):
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(run["archive"].read_bytes()[:-200])
    with pytest.raises(SystemExit, match="^evaluate: .*damaged.tar.gz is damaged or truncated "
                                         "[^\n]*$"):
        evaluate_main(run, damaged)


@pytest.mark.parametrize("args, message", [
    (["--model", "sasa-cifar1"], "evaluate: argument --model: unknown model 'sasa-cifar1'; "
                                 "did you mean sasa-cifar10? known models: "),
    (["--model", "sasa-cifar10", "--limit", "0"],
     "evaluate: argument --limit: expected a whole number of at least 1, got '0'"),
    (["--model", "sasa-cifar10", "--data", "{tmp}/missing"],
     "evaluate: argument --data: No CIFAR-10 data at {tmp}/missing: expected "),
    (["--model", "sasa-cifar10", "--device", "nope"], "evaluate: argument --device: unknown "
                                                      "device 'nope'"),
    (["--model", "sasa-cifar10", "--plot", "{tmp}/c.xyz"], ".xyz files are not supported"),
])
def test_bad_arguments_are_one_line_before_anything_is_loaded(run, args, message, tmp_path,
                                                              capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "load_pretrained", refuse)
    monkeypatch.setattr(evaluate, "load_cifar10", refuse)
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--data", str(run["other"]), *(a.format(tmp=tmp_path) for a in args)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert message.format(tmp=tmp_path) in err


def refuse(*args, **kwargs):
    """Stands in for the loaders where a mistake must be found before anything loads."""
    raise AssertionError("loading started before the mistake was found")


def test_the_test_split_is_scored_whole_even_from_the_training_archive(run):
    """The official archive's test split shares the archive's sha256 with its training
    images: it is scored whole, never mistaken for the held-out slice."""
    data = load_cifar10(run["trained_on"], progress=False)
    card = {"data_sha256": data.source_sha256, "val_size": 5000, "seed": 0, "limit": None}
    test = dataclasses.replace(data, split="test")
    chosen = evaluate.select_images(test, card)
    assert not chosen.training_data and torch.equal(chosen.indices, torch.arange(len(data)))
    assert "official test split" in chosen.description
