"""What `sasa_viz.train` trains on, shared out between the processes of a run
(`distributed.World`): CIFAR-10 in memory, or image folders read by worker processes.

    data = open_training_set(args.data, world, ...)  # CIFAR-10 archive or image folders
    for x, y in data.epoch(epoch): ...               # this process's batches, on its device
    data.accuracy(model)                             # held-out accuracy, flip TTA

Both give every process its own share of each epoch's images, in batches of the same
size, so that every process takes the same number of steps: CIFAR-10 deals the seeded
order out (image n to process n % size), image folders use a DistributedSampler with the
same seed. On one process both are what they were before there were several.
"""
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from sasa_viz.distributed import World
from sasa_viz.evaluate import predict
from sasa_viz.models.data import batches, download_cifar10, held_out_split, load_cifar10
from sasa_viz.models.folders import ImageFolder, find_classes, is_image_folder

Batch = Tuple[Tensor, Tensor]     # (b, 3, H, W) float images in [0, 1], (b,) int64 labels


class CifarTrainingSet:
    """CIFAR-10 (or any class-folder archive of 32 x 32 images) with a seeded held-out
    slice; random crops and flips seeded by (seed, epoch)."""
    kind = "cifar"

    def __init__(self, source: str, world: World, batch_size: int, val_size: int, seed: int,
                 limit: Optional[int], progress: bool):
        data = load_cifar10(source, progress=progress)
        self.images, self.labels, self.classes = data.images, data.labels, data.classes
        self.source_sha256 = data.source_sha256
        self.train_index, self.val_index = held_out_split(len(data.labels), val_size, seed,
                                                          limit)
        self.world, self.batch_size, self.seed = world, batch_size, seed

    @property
    def train_size(self) -> int:
        return len(self.train_index)

    @property
    def val_size(self) -> int:
        return len(self.val_index)

    def steps_per_epoch(self) -> int:
        return -(-(self.train_size // self.world.size) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """This process's batches of epoch `epoch`: every world.size-th training image,
        starting at its rank, the last few left out so that every process has as many
        (and takes as many steps: DistributedDataParallel waits for all of them)."""
        size = self.world.size
        index = self.train_index[:self.train_size // size * size][self.world.rank::size]
        for x, y in batches(self.images[index], self.labels[index], self.batch_size,
                            shuffle=True, augment=True, seed=self.seed, epoch=epoch):
            yield x.to(self.world.device), y.to(self.world.device)

    def accuracy(self, model: nn.Module, flip: bool = True) -> float:
        images, labels = self.images[self.val_index], self.labels[self.val_index]
        return (predict(model, images, flip=flip) == labels).float().mean().item()


class FolderTrainingSet:
    """root/train/<class>/ and root/val/<class>/ (ImageNet's layout), at image_size,
    with the paper's augmentation (`folders`), read by `workers` processes."""
    kind = "folders"

    def __init__(self, root: str, world: World, batch_size: int, image_size: int, seed: int,
                 workers: int):
        self.classes: List[str] = find_classes(root)
        self.train = ImageFolder(root, "train", self.classes, image_size, augment=True,
                                 seed=seed)
        self.val = ImageFolder(root, "val", self.classes, image_size)
        self.sampler = DistributedSampler(self.train, world.size, world.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.world, self.batch_size, self.workers = world, batch_size, workers
        self.source_sha256 = None

    @property
    def train_size(self) -> int:
        return len(self.train)

    @property
    def val_size(self) -> int:
        return len(self.val)

    def steps_per_epoch(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.train.epoch = epoch               # the workers copy it with the dataset
        loader = DataLoader(self.train, self.batch_size, sampler=self.sampler,
                            num_workers=self.workers,
                            pin_memory=self.world.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.world.device, non_blocking=True), y.to(self.world.device)

    def accuracy(self, model: nn.Module, flip: bool = True) -> float:
        """Share of root/val classified right (flip: with the mirror images' logits
        averaged in), on this process."""
        model.eval()
        right = 0
        with torch.no_grad():
            for x, y in DataLoader(self.val, self.batch_size, num_workers=self.workers):
                x = x.to(self.world.device)
                logits = model(x) + (model(x.flip(-1)) if flip else 0)
                right += int((logits.argmax(1).cpu() == y).sum())
        return right / len(self.val)


def open_training_set(source: str, world: World, batch_size: int, val_size: int, seed: int,
                      limit: Optional[int], image_size: int, workers: int, progress: bool,
                      download: Optional[str] = None):
    """Image folders when `source` has train/ and val/ class folders, else CIFAR-10 (an
    archive, its folder, or the official archive fetched into `download`)."""
    if source and is_image_folder(source):
        return FolderTrainingSet(source, world, batch_size, image_size, seed, workers)
    return CifarTrainingSet(source or str(download_cifar10(download)), world, batch_size,
                            val_size, seed, limit, progress)

