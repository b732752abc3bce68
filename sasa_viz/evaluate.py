"""Accuracy of a trained model on CIFAR-10 images, with a report of what was scored.

    python -m sasa_viz.evaluate --model sasa-cifar10 --data PATH/TO/cifar10/train.tar.gz
    python -m sasa_viz.evaluate --model sasa-cifar10 --data my-images/ --limit 500
    python -m sasa_viz.evaluate --model sasa-cifar10 --weights runs/ --data ... --plot c.png

Which images are scored depends on the data (`select_images`):

- the data the model was trained on (the same sha256 as its card's `data_sha256`, e.g.
  the shared train.tar.gz for the shipped models): the held-out validation slice the
  training command kept back (`data.held_out_split` with the card's val_size, seed and
  limit), so the score is the card's held-out accuracy, never one on training images;
- anything else the loader reads (a folder of class sub-folders, an archive): all of it.

--limit N scores N of those, drawn at random (seed 0). The first lines printed say which
model (and which weights), which data and which images were scored, and how many; then
come overall and per-class accuracy and the confusion matrix (rows: true class, columns:
predicted). Predictions use flip test-time augmentation when the card says training
measured with it, as the shipped models' cards do. --plot also saves the matrix as a
matplotlib figure. `sasa-viz-evaluate` is the same command, installed. A mistake ends it
with one line (`cli.Parser`): the arguments are checked before anything is loaded.
"""
import argparse
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from torch import Tensor

from sasa_viz.cli import (POSITIVE_INT, Parser, cifar10_source, device, figure_file,
                          model_name, one_line_errors)
from sasa_viz.models.catalogue import list_models
from sasa_viz.models.data import SPLITS, Cifar10, batches, held_out_split, load_cifar10
from sasa_viz.models.pretrained import load_pretrained

LIMIT_SEED = 0      # which --limit images are drawn


def predict(model: nn.Module, images: Tensor, batch_size: int = 500,
            flip: bool = False) -> Tensor:
    """Class predictions (N,) for uint8 images (N, 3, H, W), in eval mode, no gradients.
    flip=True averages the logits of each image and its mirror image (flip test-time
    augmentation)."""
    device = next(model.parameters()).device
    labels = torch.zeros(len(images), dtype=torch.int64)      # batches() wants labels
    model.eval()
    predictions = []
    with torch.no_grad():
        for x, _ in batches(images, labels, batch_size):
            x = x.to(device)
            logits = model(x)
            if flip:
                logits = logits + model(x.flip(-1))
            predictions.append(logits.argmax(1).cpu())
    return torch.cat(predictions)


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) counts: [true, predicted]."""
    pairs = labels * num_classes + predictions
    return torch.bincount(pairs, minlength=num_classes ** 2).view(num_classes, num_classes)


def report(confusion: Tensor, classes: List[str]) -> str:
    """Overall and per-class accuracy and the confusion matrix, as text."""
    correct, total = confusion.diag(), confusion.sum(1)
    lines = [f"accuracy {correct.sum() / total.sum():.2%} "
             f"({int(correct.sum())} / {int(total.sum())})", "", "per class:"]
    lines += [f"  {name:>10}  {c / max(t, 1):7.2%}  ({int(c)} / {int(t)})"
              for name, c, t in zip(classes, correct.tolist(), total.tolist())]
    short = [name[:5] for name in classes]
    lines += ["", "confusion (rows: true, columns: predicted):",
              " " * 12 + "".join(f"{s:>6}" for s in short)]
    lines += [f"  {name:>10}" + "".join(f"{n:6d}" for n in row)
              for name, row in zip(classes, confusion.tolist())]
    return "\n".join(lines)


def plot_confusion(confusion: Tensor, classes: List[str], title: str = ""):
    """A matplotlib Figure of the confusion matrix, counts written in the cells."""
    counts = confusion.numpy()
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, n, ha="center", va="center", fontsize=8,
                color="white" if n > counts.max() / 2 else "black")
    return fig


class Selection(NamedTuple):
    """The images to score and what they are, in words."""
    indices: Tensor         # (n,) int64 into the loaded images
    description: str        # e.g. "all 300 images"
    training_data: bool     # the data is the model's training data (by sha256)


def select_images(data: Cifar10, card: dict, limit: Optional[int] = None) -> Selection:
    """The held-out validation slice when `data` is the model's training data (by
    sha256, against the card), else every image; then `limit` of them at random."""
    n = len(data)
    training_data = data.split == "train" and data.source_sha256 == card.get("data_sha256")
    if data.split == "test":
        indices, description = torch.arange(n), f"all {n} images of the official test split"
    elif training_data:
        _, indices = held_out_split(n, card["val_size"], card["seed"], card.get("limit"))
        description = (f"{len(indices)} of its {n} images: the held-out validation slice "
                       f"the training command kept back (seed {card['seed']}) and never "
                       f"trained on")
    else:
        indices, description = torch.arange(n), f"all {n} images"
    if limit is not None and limit < len(indices):
        generator = torch.Generator().manual_seed(LIMIT_SEED)
        drawn = torch.randperm(len(indices), generator=generator)[:limit].sort().values
        indices = indices[drawn]
        description = f"{limit} images drawn at random (seed {LIMIT_SEED}) from {description}"
    return Selection(indices, description, training_data)


def describe(name: str, weights: Optional[str], data_path: str, data: Cifar10, card: dict,
             selection: Selection, flip: bool) -> str:
    """The lines that say what was measured: model and weights, data, images scored."""
    source = f"weights from {weights}" if weights else "shipped weights"
    trained_on = "the model's" if selection.training_data else "not the model's"
    how = "with flip test-time augmentation" if flip else "without test-time augmentation"
    return "\n".join([
        f"model:  {name}, {source} (sha256 {card['weights_sha256'][:12]}...)",
        f"data:   {data_path} (sha256 {data.source_sha256[:12]}..., {trained_on} "
        f"training data)",
        f"scored: {selection.description}; {how}"])


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, every argument checked as it is parsed."""
    p = Parser("evaluate", description="Accuracy of a trained model on CIFAR-10 images: "
               "the held-out slice of its training data, or all of another folder or "
               "archive.")
    p.add_argument("--model", required=True, type=model_name(list_models()), metavar="NAME",
                   help="a catalogue model, e.g. sasa-cifar10")
    p.add_argument("--weights", metavar="DIR", help="a folder the training command wrote "
                   "(its --out, e.g. runs); default: the shipped weights")
    p.add_argument("--data", required=True, type=cifar10_source,
                   help="CIFAR-10 archive or folder of class sub-folders")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="train: the training images (their held-out slice when they are "
                   "the model's); test: the official archive's test split (default: "
                   "%(default)s)")
    p.add_argument("--limit", type=POSITIVE_INT, metavar="N",
                   help=f"score only N of the images, drawn at random (seed {LIMIT_SEED})")
    p.add_argument("--plot", metavar="PNG", type=figure_file,
                   help="also save the confusion matrix")
    p.add_argument("--device", default="auto", type=device,
                   help="auto (CUDA when present), cpu, cuda, ... (default: %(default)s)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Load, score and print (and plot) as the command line asks."""
    model = load_pretrained(args.model, device=args.device, directory=args.weights)
    data = load_cifar10(args.data, split=args.split)
    card = model.pretrained
    selection = select_images(data, card, args.limit)
    flip = bool(card.get("flip_tta"))
    print(describe(args.model, args.weights, args.data, data, card, selection, flip) + "\n")
    predictions = predict(model, data.images[selection.indices], flip=flip)
    confusion = confusion_matrix(data.labels[selection.indices], predictions,
                                 len(data.classes))
    print(report(confusion, data.classes))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_confusion(confusion, data.classes, args.model).savefig(args.plot, dpi=120)
        print(f"\nsaved {args.plot}")


def main(argv=None) -> None:
    """`python -m sasa_viz.evaluate` and the `sasa-viz-evaluate` command. A model, weights,
    data or plot file that cannot be loaded or written ends it with one line and exit
    status 1 (2 for arguments)."""
    args = parse_args(argv)
    with one_line_errors("evaluate"):
        run(args)


if __name__ == "__main__":
    main()
