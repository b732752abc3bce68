"""Train a registered model on CIFAR-10 and ship it to pretrained/.

    python -m sasa_viz.train --model sasa-cifar10 --data ../shared/data/cifar10/train.tar.gz
    python -m sasa_viz.train --model sasa-cifar10 --data ... --resume     # after a stop
    python -m sasa_viz.train --model conv-cifar10 --download data/        # official archive
    sasa-viz-train --model sasa-cifar10 --data ...        # the same, once pip-installed

The recipe (the same for every model): a fixed, seeded 45,000 / 5,000 split of the
training images; random crop (4-pixel padding) and horizontal flip; SGD with Nesterov
momentum 0.9, weight decay 5e-4 and a one-cycle learning rate (peak --lr); cross entropy
with label smoothing 0.1; an exponential moving average (EMA) of the weights, which is
what gets shipped; accuracy measured with flip test-time augmentation (the logits of the
image and of its mirror image, averaged). A checkpoint is written after every epoch
(--resume continues from it, bit for bit the same data order). The end writes
NAME.safetensors and NAME.json.
"""
import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from .data import batches, download_cifar10, held_out_split, load_cifar10
from .evaluate import predict
from .files import atomic_path, file_digest
from .models import create
from .pretrained import PRETRAINED_DIR, save_pretrained


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a model on CIFAR-10 and write "
                                "pretrained/NAME.safetensors + NAME.json.")
    p.add_argument("--model", required=True, help="registered name, e.g. sasa-cifar10")
    p.add_argument("--data", help="the shared train.tar.gz, its folder, or the official "
                   "cifar-10-python.tar.gz")
    p.add_argument("--download", metavar="DIR", help="fetch the official archive into DIR "
                   "(checksum verified) and train on it")
    p.add_argument("--epochs", type=int, default=16,
                   help="the attention models shipped with 16, conv-cifar10 (compiled) with 26")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999,
                   help="decay per step of the weights' moving average (0: no average)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--limit", type=int, help="use only the first N images (smoke runs)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true",
                   help="run the training steps through torch.compile (1.5x faster for "
                   "conv-cifar10 on 2 CPU cores; the attention models' native kernel "
                   "breaks the graph and makes them slower, so leave it off for them)")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--out", default=str(PRETRAINED_DIR), help="where NAME.* are written")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.command = "python -m sasa_viz.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.data and not args.download:
        p.error("give --data PATH (e.g. ../shared/data/cifar10/train.tar.gz) or --download DIR")
    return args


def train(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_cifar10(args.data or download_cifar10(args.download),
                        progress=not args.no_progress)
    images, labels = data.images, data.labels
    train_idx, val_idx = held_out_split(len(labels), args.val_size, args.seed, args.limit)
    val_size = len(val_idx)

    torch.manual_seed(args.seed)
    model = create(args.model)
    forward = torch.compile(model) if args.compile else model    # same weights, same module
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)
    # the average of the weights (and BN statistics) that is evaluated and shipped
    ema = AveragedModel(model, avg_fn=ema_with_warmup(args.ema), use_buffers=True)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.25)
    checkpoint = Path(args.checkpoint_dir) / f"{args.model}.pt"
    state = {"epoch": 0, "seconds": 0.0, "images": 0, "history": [], "recipe": recipe(args)}
    if args.resume and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["state"]["recipe"] != state["recipe"]:
            raise SystemExit(f"{checkpoint} was made with {saved['state']['recipe']}, not "
                             f"{state['recipe']}: resume with the same options, or start "
                             f"again without --resume.")
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = saved["state"]
        print(f"resuming {args.model} after epoch {state['epoch']}")

    for epoch in range(state["epoch"], args.epochs):
        model.train()
        start, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        bar = tqdm(batches(images[train_idx], labels[train_idx], args.batch_size,
                           shuffle=True, augment=True, seed=args.seed, epoch=epoch),
                   total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress)
        for x, y in bar:
            logits = forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        val_accuracy = accuracy(shipped(model, ema, args), images[val_idx], labels[val_idx])
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        state["images"] += seen
        state["history"].append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                                 "train_accuracy": correct / seen,
                                 "val_accuracy": val_accuracy, "seconds": seconds})
        print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.3f}, train accuracy "
              f"{correct / seen:.1%}, validation accuracy {val_accuracy:.1%}, "
              f"{seen / seconds:.0f} images/s", flush=True)
        save_checkpoint(checkpoint, model, ema, optimizer, schedule, state)

    final = shipped(model, ema, args)
    card = {
        "classes": data.classes,
        "val_accuracy": accuracy(final, images[val_idx], labels[val_idx]),
        "val_accuracy_no_flip": accuracy(final, images[val_idx], labels[val_idx], flip=False),
        "val_accuracy_no_ema": accuracy(model, images[val_idx], labels[val_idx]),
        "val_size": val_size, "train_size": len(train_idx), "seed": args.seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "ema": args.ema, "label_smoothing": 0.1,
        "flip_tta": True, "compiled": args.compile,
        "wall_time_s": round(state["seconds"], 1),
        "images_per_s": round(state["images"] / max(state["seconds"], 1e-9), 1),
        "data_sha256": data.source_sha256, "limit": args.limit,
        "history": state["history"],
        "command": args.command,
        "machine": f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}",
    }
    weights = save_pretrained(final, args.model, card, args.out)
    print(f"wrote {weights} and .json: validation accuracy {card['val_accuracy']:.2%}\n"
          f"to ship it, copy both into pretrained/ and give its catalogue entry "
          f"(sasa_viz/models.py) _cifar_weights({args.model!r}, {file_digest(weights)!r})")
    return card


def recipe(args: argparse.Namespace) -> dict:
    """The options a resumed run must share with the run it continues."""
    return {k: getattr(args, k) for k in ("model", "epochs", "batch_size", "lr",
                                          "weight_decay", "ema", "seed", "val_size", "limit")}


def ema_with_warmup(decay: float):
    """The moving average's update: average <- d * average + (1 - d) * weights, with
    d = min(decay, (1 + n) / (10 + n)) after n updates. The warm-up lets the average
    forget the random initial weights quickly: with a constant d = 0.999 a quarter of it
    would still be the initialisation after 1,400 steps, which gives a useless network."""
    def update(average: Tensor, weights: Tensor, updates: Tensor) -> Tensor:
        d = torch.clamp((1 + updates) / (10 + updates), max=decay)
        return d * average + (1 - d) * weights
    return update


def shipped(model, ema: AveragedModel, args: argparse.Namespace):
    """The network that is evaluated and shipped: the weights' average, or the weights."""
    return ema.module if args.ema else model


def accuracy(model, images, labels, flip: bool = True) -> float:
    """Share of correct predictions, with flip test-time augmentation by default."""
    return (predict(model, images, flip=flip) == labels).float().mean().item()


def save_checkpoint(path: Path, model, ema, optimizer, schedule, state: dict) -> None:
    """Write atomically, so a stop during the write keeps the previous checkpoint."""
    with atomic_path(path) as partial:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "state": state}, partial)


def main(argv=None) -> None:
    """`python -m sasa_viz.train` and the `sasa-viz-train` command."""
    train(parse_args(argv))


if __name__ == "__main__":
    main()
