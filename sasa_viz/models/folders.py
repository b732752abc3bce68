"""Image folders as training data: ImageNet's layout, root/train/<class>/*.jpg and
root/val/<class>/*.jpg, read in DataLoader worker processes.

    classes = find_classes(root)                     # sorted class folders of root/train
    train = ImageFolder(root, "train", classes, image_size=224, augment=True)
    val = ImageFolder(root, "val", classes, image_size=224)
    x, label = train[0]                              # (3, 224, 224) float in [0, 1], int

The paper's augmentation for ImageNet, the usual one: for training a random resized crop
(8% to 100% of the picture's area, aspect ratio 3/4 to 4/3) scaled to image_size x
image_size, flipped left-right half of the time; for evaluation the shorter side resized
to image_size x 256 / 224 and the centre image_size x image_size cut out. A training
image's crop and flip come from a generator seeded by (seed, epoch, index): the same on
every run, in any worker and on any number of processes, so a run on one process and on
several sees the same images.
"""
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPLITS = ("train", "val")
CROP_AREA = (0.08, 1.0)               # share of the picture a random resized crop covers
CROP_RATIO = (3 / 4, 4 / 3)           # its width / height
EVAL_RESIZE = 256 / 224               # evaluation: shorter side to image_size x this


def is_image_folder(root) -> bool:
    """Whether `root` has the layout: train/ and val/ folders (an extracted CIFAR-10
    archive has train/ alone)."""
    root = Path(root)
    return all((root / split).is_dir() for split in SPLITS)


def find_classes(root) -> List[str]:
    """The class folders of root/train, sorted: class k is the k-th."""
    return sorted(p.name for p in (Path(root) / "train").iterdir() if p.is_dir())


class ImageFolder(Dataset):
    """The images of root/<split>/<class>/, labelled by their class's place in `classes`
    (a class folder missing from `classes` is a ValueError: the model has no output
    for it)."""

    def __init__(self, root, split: str, classes: List[str], image_size: int,
                 augment: bool = False, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        folder = Path(root) / split
        if not folder.is_dir():
            raise ValueError(f"{folder} is missing: image folders need {root}/train/<class>/ "
                             f"and {root}/val/<class>/.")
        unknown = sorted({p.name for p in folder.iterdir() if p.is_dir()} - set(classes))
        if unknown:
            raise ValueError(f"{folder} has class folders {unknown} that {root}/train has "
                             f"not: every split needs the same classes.")
        self.samples: List[Tuple[Path, int]] = [
            (path, label) for label, name in enumerate(classes) if (folder / name).is_dir()
            for path in sorted((folder / name).iterdir())
            if path.suffix.lower() in EXTENSIONS]
        if not self.samples:
            raise ValueError(f"{folder} holds no images ({', '.join(EXTENSIONS)}).")
        self.image_size, self.augment, self.seed = image_size, augment, seed
        self.epoch = 0                  # set by the trainer before each epoch's loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        if self.augment:
            generator = np.random.default_rng([self.seed, self.epoch, index])
            picture = random_resized_crop(picture, self.image_size, generator)
            if generator.random() < 0.5:
                picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            picture = centre_crop(picture, self.image_size)
        pixels = torch.from_numpy(np.asarray(picture).copy())               # (H, W, 3) uint8
        return pixels.permute(2, 0, 1).float() / 255.0, label               # (3, H, W)


def random_resized_crop(picture: Image.Image, size: int,
                        generator: np.random.Generator) -> Image.Image:
    """A random part of the picture (CROP_AREA of its area, CROP_RATIO aspect), scaled to
    size x size; after 10 tries that do not fit, the centre crop instead."""
    width, height = picture.size
    area = width * height
    for _ in range(10):
        target = area * generator.uniform(*CROP_AREA)
        ratio = math.exp(generator.uniform(*np.log(CROP_RATIO)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(generator.integers(0, width - w + 1))
            top = int(generator.integers(0, height - h + 1))
            return picture.resize((size, size), Image.Resampling.BILINEAR,
                                  box=(left, top, left + w, top + h))
    return centre_crop(picture, size)


def centre_crop(picture: Image.Image, size: int) -> Image.Image:
    """The shorter side resized to size x EVAL_RESIZE, then the centre size x size."""
    width, height = picture.size
    scale = round(size * EVAL_RESIZE) / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    picture = picture.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    return picture.crop((left, top, left + size, top + size))
