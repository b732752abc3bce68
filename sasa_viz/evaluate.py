"""Accuracy of a shipped model on the held-out validation slice of CIFAR-10's training split.

    python -m sasa_viz.evaluate --model sasa-cifar10 --data ../shared/data/cifar10/train.tar.gz
    python -m sasa_viz.evaluate --model conv-cifar10 --data ... --plot confusion.png

Prints overall and per-class accuracy and the confusion matrix (rows: true class,
columns: predicted); --plot also saves it as a matplotlib figure.
"""
import argparse
from typing import List

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from torch import Tensor

from .data import batches, held_out_split, load_cifar10
from .pretrained import load_pretrained


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a shipped model on the "
                                     "held-out validation slice.")
    parser.add_argument("--model", required=True, help="a name from pretrained/")
    parser.add_argument("--data", required=True, help="CIFAR-10 archive or folder")
    parser.add_argument("--plot", metavar="PNG", help="also save the confusion matrix")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    model = load_pretrained(args.model, device=args.device)
    info = model.pretrained
    data = load_cifar10(args.data)
    _, val_idx = held_out_split(len(data.labels), info["val_size"], info["seed"],
                                info.get("limit"))
    predictions = predict(model, data.images[val_idx])
    confusion = confusion_matrix(data.labels[val_idx], predictions, len(data.classes))
    print(f"{args.model} on the held-out validation slice ({len(val_idx)} images of the "
          f"training split, seed {info['seed']})\n")
    print(report(confusion, data.classes))
    if args.plot:
        plot_confusion(confusion, data.classes, args.model).savefig(args.plot, dpi=120)
        print(f"\nsaved {args.plot}")


if __name__ == "__main__":
    main()
