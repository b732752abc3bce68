"""Training, shipping and loading models: a smoke run of the real training command on a
few hundred images, where it writes (a runs folder, never the shipped weights unless
--overwrite says so), the checksum and corrupt-file errors, and the shipped models."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sasa_viz import train as train_module
from sasa_viz import training_sets
from sasa_viz.evaluate import confusion_matrix, predict, report
from sasa_viz.files import file_digest
from sasa_viz.models import data as cifar
from sasa_viz.models import pretrained
from sasa_viz.models.catalogue import ResNetConfig, config_for, entry, list_models
from sasa_viz.models.pretrained import (PRETRAINED_DIR, PretrainedError, create,
                                        list_pretrained, load_pretrained, pretrained_info)
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
def test_resume_continues_grows_and_refuses_a_different_recipe(tiny_cifar, tmp_path,
                                                               monkeypatch):
    run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "2", "--limit", "200")
    card = run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "2", "--limit", "200",
                        "--resume", "--overwrite")
    assert [h["epoch"] for h in card["history"]] == [1, 2]      # nothing trained again
    card = run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "3", "--limit", "200",
                        "--resume", "--overwrite")
    assert [h["epoch"] for h in card["history"]] == [1, 2, 3]   # one more epoch
    monkeypatch.setattr(training_sets, "load_cifar10", refuse_to_decode)
    with pytest.raises(ValueError, match="made with --lr 0.1, not --lr 0.2: resume with "
                                         "the same options"):
        run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "3", "--limit", "200",
                     "--lr", "0.2", "--resume", "--overwrite")


def refuse_to_decode(*args, **kwargs):
    """Stands in for the data loader where a mistake must be found before any decoding."""
    raise AssertionError("the data was loaded before the mistake was found")


def pretrained_digests(folder: Path) -> dict:
    """File name -> sha256 of every file in `folder`."""
    return {p.name: file_digest(p) for p in sorted(folder.iterdir())}


@pytest.fixture
def checkout_copy(tmp_path) -> Path:
    """The package and its shipped weights copied into tmp_path: a command run from the
    copy treats the copy's pretrained/ as the shipped folder, so a regression overwrites
    that, never this checkout's weights."""
    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "checkout"
    shutil.copytree(root / "sasa_viz", copy / "sasa_viz",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "pretrained", copy / "pretrained")
    return copy


@pytest.mark.slow                                 # a training run, in its own process
def test_training_without_out_writes_a_runs_folder_and_leaves_the_shipped_weights(
        checkout_copy, tiny_cifar, tmp_path):
    shipped = checkout_copy / "pretrained"
    before = pretrained_digests(shipped)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(checkout_copy),
           "SASA_VIZ_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "sasa_viz.train", "--model", "conv-cifar10",
                           "--data", str(tiny_cifar), "--limit", "100", "--epochs", "1",
                           "--batch-size", "16", "--no-progress"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert pretrained_digests(shipped) == before
    card = json.loads((work / "runs" / "conv-cifar10.json").read_text())
    assert card["weights_sha256"] == file_digest(work / "runs" / "conv-cifar10.safetensors")
    assert (work / "checkpoints" / "conv-cifar10.pt").is_file()
    assert "wrote runs/conv-cifar10.safetensors" in done.stdout


def train_error(argv, capsys, monkeypatch) -> str:
    """The one line the training command ends with for `argv`, checked to come before any
    data is loaded or model built, with exit status 2."""
    monkeypatch.setattr(training_sets, "load_cifar10", refuse_to_decode)
    monkeypatch.setattr(train_module, "create", refuse_to_decode)
    with pytest.raises(SystemExit) as stop:
        train_module.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_out_the_shipped_folder_is_refused_without_overwrite(tiny_cifar, capsys, monkeypatch):
    err = train_error(["--model", "sasa-cifar10", "--data", str(tiny_cifar),
                       "--out", str(PRETRAINED_DIR)], capsys, monkeypatch)
    assert err.startswith(f"train: --out {PRETRAINED_DIR} is the shipped weights folder")
    assert "--overwrite" in err


def test_an_installed_weights_folder_is_the_shipped_folder(tiny_cifar, tmp_path, capsys,
                                                           monkeypatch):
    installed = tmp_path / "site-packages" / "sasa_viz" / "weights"
    installed.mkdir(parents=True)
    monkeypatch.setattr(train_module, "PRETRAINED_DIR", installed)
    err = train_error(["--model", "sasa-cifar10", "--data", str(tiny_cifar),
                       "--out", str(installed / ".." / "weights")], capsys, monkeypatch)
    assert "is the shipped weights folder" in err


def test_overwrite_lets_a_model_be_shipped(tiny_cifar):
    args = parse_args(["--model", "sasa-cifar10", "--data", str(tiny_cifar),
                       "--out", str(PRETRAINED_DIR), "--overwrite"])
    assert Path(args.out) == PRETRAINED_DIR


def test_an_earlier_runs_files_are_not_replaced_without_overwrite(tiny_cifar, tmp_path, capsys,
                                                                  monkeypatch):
    (tmp_path / "sasa-cifar10.json").write_text("{}")
    argv = ["--model", "sasa-cifar10", "--data", str(tiny_cifar), "--out", str(tmp_path)]
    err = train_error(argv, capsys, monkeypatch)
    assert "is already there (an earlier run): add --overwrite" in err
    assert parse_args(argv + ["--overwrite"]).overwrite
    assert parse_args(["--model", "conv-cifar10", "--data", str(tiny_cifar),
                       "--out", str(tmp_path)]).out == str(tmp_path)     # another model's


def test_the_default_out_is_a_runs_folder_and_help_says_so(capsys):
    with pytest.raises(SystemExit):
        train_module.main(["--help"])
    assert "(default: runs)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv, message", [
    ("--model sasa-cifar1 --data {data}",
     "argument --model: unknown model 'sasa-cifar1'; did you mean sasa-cifar10? known models: "),
    ("--model sasa-cifar10 --data {tmp}/missing.tar.gz",
     "argument --data: No CIFAR-10 data at {tmp}/missing.tar.gz: expected "),
    ("--model sasa-cifar10", "give --data PATH/TO/cifar10/train.tar.gz"),
    ("--model sasa-cifar10 --data {data} --limit 500 --epochs 1",
     "--limit 500: 4 training steps (450 training images in batches of 128, 1 epoch), and "
     "the one-cycle schedule needs at least 5"),
    ("--model sasa-cifar10 --data {data} --limit 9", "--limit 9: too few images to hold out"),
    ("--model sasa-cifar10 --data {data} --epochs 0",
     "argument --epochs: expected a whole number of at least 1, got '0'"),
    ("--model sasa-cifar10 --data {data} --batch-size -1", "argument --batch-size: expected"),
    ("--model sasa-cifar10 --data {data} --lr 0", "argument --lr: expected a number above 0"),
    ("--model sasa-cifar10 --data {data} --ema 1", "argument --ema: expected a number in [0, 1)"),
    ("--model sasa-cifar10 --data {data} --resume",
     "--resume: there is no checkpoint {tmp}/ck/sasa-cifar10.pt"),
    ("--model sasa-cifar10 --data {data} --out {tmp}/file/out",
     "{tmp}/file/out cannot be a folder: {tmp}/file is a file"),
])
def test_each_mistake_is_one_line_before_any_data_is_loaded(argv, message, tiny_cifar,
                                                            tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    fill = {"tmp": tmp_path, "data": tiny_cifar}
    argv = argv.format(**fill).split() + ["--checkpoint-dir", str(tmp_path / "ck")]
    err = train_error(argv, capsys, monkeypatch)
    assert err.startswith("train: ") and message.format(**fill) in err


def test_data_smaller_than_a_schedule_is_refused_before_training(tiny_cifar, tmp_path,
                                                                 monkeypatch):
    """300 images, 270 of them for training: 3 steps of 128 in one epoch."""
    monkeypatch.setattr(train_module, "create", refuse_to_decode)
    with pytest.raises(ValueError, match="the data's 300 images: 3 training steps"):
        run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "1", "--batch-size", "128")


@pytest.mark.slow                                 # two training runs, one compiled
def test_a_compiled_run_trains_and_ships_the_same_network(tiny_cifar, tmp_path, monkeypatch):
    """--compile changes the speed only: the shipped weights are those of an eager run."""
    shipped = {}
    for extra in ([], ["--compile"]):
        folder = tmp_path / ("compiled" if extra else "eager")
        card = run_training(tiny_cifar, folder, monkeypatch, "--epochs", "1", "--limit", "200",
                            "--batch-size", "32", *extra, model="conv-cifar10")  # 6 steps
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


def flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_tampered_weights_are_refused_naming_the_file(copy_of_shipped):
    flip_last_byte(copy_of_shipped / "sasa-cifar10.safetensors")
    with pytest.raises(PretrainedError, match="sasa-cifar10.safetensors was changed or damaged"
                                              ".*train it again .*--out"):
        load_pretrained("sasa-cifar10", directory=copy_of_shipped)


def test_changed_shipped_weights_say_how_to_restore_them(tmp_path, monkeypatch):
    """Not "retrain" (hours): git or pip still has the shipped file."""
    for ext in ("safetensors", "json"):
        shutil.copy(PRETRAINED_DIR / f"sasa-cifar10.{ext}", tmp_path)
    flip_last_byte(tmp_path / "sasa-cifar10.safetensors")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(PretrainedError) as refused:
        load_pretrained("sasa-cifar10")
    message = str(refused.value)
    assert "sasa-cifar10.safetensors was changed or damaged" in message
    assert "restore it with `git checkout -- pretrained/` in a checkout, or reinstall" in message
    assert "sasa_viz.train" not in message and "\n" not in message


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
    assert ResNetConfig.from_dict(card["config"]) == config_for(name)
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


# How many of the 100 committed held-out images each shipped model gets right (flip TTA, as
# evaluate scores): fixed weights and fixed images give an exact count, so any change to
# the weights, the data pipeline or inference shows here
SAMPLE_CORRECT = {"sasa-cifar10": 84, "sasa-full-cifar10": 80, "conv-cifar10": 84}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_the_committed_sample_as_its_card_says(name):
    assert name in list_pretrained(), f"{name} is not in {PRETRAINED_DIR}"
    model = load_pretrained(name, device="cpu")
    sample = cifar.load_sample(cifar.SAMPLE_PATH)
    correct = int((predict(model, sample.images) == sample.labels).sum())
    assert correct == SAMPLE_CORRECT[name]
    # the sample is drawn from the held-out slice: its accuracy estimates the card's, within
    # three standard errors of a proportion measured on len(sample) images
    accuracy, card = correct / len(sample.labels), model.pretrained["val_accuracy"]
    assert abs(accuracy - card) < 3 * (card * (1 - card) / len(sample.labels)) ** 0.5


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


def test_distillation_mixes_the_labels_and_the_teachers_predictions():
    """(1 - a) x smoothed cross entropy with the labels + a x cross entropy with the
    class the teacher predicts for the same images."""
    from sasa_viz.train import training_loss
    torch.manual_seed(0)
    logits, labels, images = torch.randn(6, 10), torch.randint(0, 10, (6,)), torch.rand(6, 5)
    teacher = torch.nn.Linear(5, 10)
    taught = teacher(images).argmax(1)
    wanted = (0.7 * torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
              + 0.3 * torch.nn.functional.cross_entropy(logits, taught))
    torch.testing.assert_close(training_loss(logits, labels, teacher, images, 0.3), wanted)
    torch.testing.assert_close(training_loss(logits, labels, None, images, 0.3),
                               torch.nn.functional.cross_entropy(logits, labels,
                                                                 label_smoothing=0.1))


@pytest.mark.slow                                 # two training runs
def test_a_student_trains_with_a_teacher_written_by_an_earlier_run(shipped_tiny, tiny_cifar,
                                                                   tmp_path, monkeypatch):
    teacher_folder, _ = shipped_tiny
    card = run_training(tiny_cifar, tmp_path, monkeypatch, "--epochs", "1", "--teacher",
                        "sasa-cifar10", "--teacher-from", str(teacher_folder),
                        model="sasa-full-cifar10")
    assert card["teacher"] == "sasa-cifar10" and card["distill"] == 0.5


def test_a_teacher_that_cannot_be_loaded_ends_with_one_line(tiny_cifar, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sasa_viz.train", "--model", "sasa-full-cifar10", "--data",
         str(tiny_cifar), "--teacher", "sasa-cifar10", "--teacher-from", str(tmp_path),
         "--out", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "c"),
         "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "--teacher sasa-cifar10" in result.stderr
