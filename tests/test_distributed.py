"""Training beyond one process: `torchrun` starting two CPU processes (gloo) on a tiny
generated image folder, what they write, resuming, and one process against two."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sasa_viz.models.folders import ImageFolder, find_classes, random_resized_crop
from sasa_viz.models.pretrained import load_pretrained
from tests.helpers import ROOT

CLASSES = {"blue": (40, 60, 200), "red": (200, 50, 40)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """DIR/train/<class>/ 40 images each and DIR/val/<class>/ 6 each: noisy pictures of
    each class's colour, 72 x 80 pixels (not square, not the image size)."""
    root = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("val", 6)):
        for name, colour in CLASSES.items():
            (root / split / name).mkdir(parents=True)
            for n in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (72, 80, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{n}.jpg")
    return root


def train(folders, tmp_path, processes: int, *extra, batch_size: int = 8):
    """`torchrun --standalone --nproc_per_node=N -m sasa_viz.train ...` (or a plain
    `python -m sasa_viz.train` for one process) -> the finished process."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable])
    command = [*launcher, "-m", "sasa_viz.train", "--model", "sasa-resnet26", "--data",
               str(folders), "--image-size", "64", "--batch-size", str(batch_size),
               "--checkpoint-dir", str(tmp_path / "checkpoints"), "--out",
               str(tmp_path / "out"), "--workers", "1", "--no-progress", *extra]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def card_of(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "sasa-resnet26.json").read_text())


def test_a_folder_is_read_with_the_papers_augmentation(folders):
    classes = find_classes(folders)
    assert classes == ["blue", "red"]
    train = ImageFolder(folders, "train", classes, 64, augment=True, seed=3)
    val = ImageFolder(folders, "val", classes, 64)
    assert len(train) == 80 and len(val) == 12
    x, label = train[41]
    assert x.shape == (3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert label == 1                                              # red
    assert torch.equal(train[41][0], x)                            # the same crop again
    train.epoch = 1
    assert not torch.equal(train[41][0], x)                        # another epoch's
    assert torch.equal(val[0][0], val[0][0]) and val[0][0].shape == (3, 64, 64)


def test_random_resized_crops_keep_their_area_and_aspect():
    picture = Image.new("RGB", (200, 100))
    generator = np.random.default_rng(0)
    for _ in range(50):
        assert random_resized_crop(picture, 32, generator).size == (32, 32)


@pytest.mark.slow                                 # three training runs under torchrun
def test_two_processes_train_write_once_resume_and_match_one(folders, tmp_path):
    first = train(folders, tmp_path, 2, "--epochs", "1")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sasa-resnet26.json", "sasa-resnet26.safetensors"]
    assert first.stdout.count("wrote ") == 1                       # by rank 0 alone
    card = card_of(tmp_path)
    assert card["processes"] == 2 and card["classes"] == ["blue", "red"]
    assert card["train_size"] == 80 and card["image_size"] == 64
    model = load_pretrained("sasa-resnet26", directory=tmp_path / "out")
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2)       # two classes, any folder

    train(folders, tmp_path, 2, "--epochs", "2", "--resume", "--overwrite")
    assert [h["epoch"] for h in card_of(tmp_path)["history"]] == [1, 2]

    alone = tmp_path / "alone"
    train(folders, alone, 1, "--epochs", "1", batch_size=16)
    # the same 16 images, the same crops, the same initial weights; only batch norm sees
    # 8 images a process on CPUs (SyncBatchNorm needs GPUs), so the losses agree closely,
    # not exactly
    assert card_of(alone)["first_step_loss"] == pytest.approx(card["first_step_loss"],
                                                             rel=0.03)


def test_cifar_is_dealt_out_evenly_between_processes(monkeypatch):
    """Every process gets as many images and steps (an odd image left out), no image
    twice; one process gets them all, in the order it always had."""
    from sasa_viz import training_sets
    from sasa_viz.distributed import World

    class Fake:
        images = torch.arange(23 * 3 * 32 * 32, dtype=torch.float32).view(23, 3, 32, 32)
        labels, classes, source_sha256 = torch.arange(23), ["c"] * 23, "x"
    monkeypatch.setattr(training_sets, "load_cifar10", lambda *a, **k: Fake)
    monkeypatch.setattr(training_sets, "batches",
                        lambda images, labels, *a, **k: iter([(images, labels)]))

    def dealt(rank, size):
        world = World(rank, size, rank, torch.device("cpu"))
        data = training_sets.CifarTrainingSet("x", world, 4, 3, 0, None, False)
        return data, next(data.epoch(0))[1]
    alone, everything = dealt(0, 1)
    assert torch.equal(everything, alone.train_index)
    (first, mine), (_, theirs) = dealt(0, 2), dealt(1, 2)
    assert len(mine) == len(theirs) == len(first.train_index) // 2
    assert not set(mine.tolist()) & set(theirs.tolist())
    assert first.steps_per_epoch() == -(-len(mine) // 4)
