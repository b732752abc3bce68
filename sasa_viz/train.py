"""Train a registered model on CIFAR-10 and write its weights and card to a runs folder.

    python -m sasa_viz.train --model sasa-cifar10 --data PATH/TO/cifar10/train.tar.gz
    python -m sasa_viz.train --model sasa-cifar10 --data ... --resume     # after a stop
    python -m sasa_viz.train --model conv-cifar10 --download data/        # official archive
    python -m sasa_viz.train --model sasa-cifar10 --data ... --out pretrained --overwrite
    sasa-viz-train --model sasa-cifar10 --data ...        # the same, once pip-installed

The recipe (the same for every model): a fixed, seeded 45,000 / 5,000 split of the
training images; random crop (4-pixel padding) and horizontal flip; SGD with Nesterov
momentum 0.9, weight decay 5e-4 and a one-cycle learning rate (peak --lr); cross entropy
with label smoothing 0.1, and with --teacher half of the loss the cross entropy with a
trained teacher's predictions (DeiT's hard distillation; the conv twin teaches an
attention student); an exponential moving average (EMA) of the weights, which is what
gets shipped; accuracy measured with flip test-time augmentation (the logits of the
image and of its mirror image, averaged). A checkpoint is written after every epoch
(--resume continues from it, bit for bit the same data order). The end writes
NAME.safetensors and NAME.json into --out: `runs/` of the current folder by default,
never the shipped weights (`pretrained.PRETRAINED_DIR`, the checkout's pretrained/ or
an installed sasa_viz/weights/) and never over an earlier run's files unless
--overwrite says so. Every argument is checked before any image is decoded: a mistake
ends the command with one line (`cli.Parser`).
"""
import argparse
import math
import pickle
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from sasa_viz.cli import (NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, Parser, device,
                          existing_folder, model_name, number, one_line_errors,
                          training_data, writable_folder)
from sasa_viz.distributed import World, join, leave, mean, same_everywhere, wait
from sasa_viz.files import atomic_path, file_digest
from sasa_viz.models.catalogue import list_models
from sasa_viz.models.data import CIFAR10_SITE, held_out_split
from sasa_viz.models.pretrained import (PRETRAINED_DIR, PretrainedError, create,
                                        load_pretrained, resolve_device, save_pretrained)
from sasa_viz.training_sets import open_training_set

WARMUP = 0.25      # share of the steps the one-cycle learning rate rises over
# torch's one-cycle schedule divides by the warm-up's length in steps minus one, so a run
# needs more than 1 / WARMUP steps (4 steps: a ZeroDivisionError)
MIN_STEPS = int(1 / WARMUP) + 1


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, every argument checked (`check_args`) before anything runs."""
    p = Parser("train", description="Train a catalogue model on CIFAR-10 and write "
               "NAME.safetensors + NAME.json (the shipped weights only with --overwrite).")
    p.add_argument("--model", required=True, type=model_name(list_models()),
                   help="a catalogue name, e.g. sasa-cifar10")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", type=training_data,
                        help="PATH/TO/cifar10/train.tar.gz (train/<class>/*.jpg), its "
                        "extracted folder, or the official cifar-10-python.tar.gz; or image "
                        "folders DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg "
                        "(ImageNet's layout) at --image-size")
    source.add_argument("--download", metavar="DIR", type=writable_folder,
                        help=f"fetch the official archive ({CIFAR10_SITE}) into DIR "
                        "(checksum verified) and train on it")
    p.add_argument("--epochs", type=POSITIVE_INT, default=16, help="default: %(default)s; "
                   "the attention models shipped with 16, conv-cifar10 (compiled) with 26")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128,
                   help="default: %(default)s")
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=0.1,
                   help="peak of the one-cycle schedule (default: %(default)s)")
    p.add_argument("--weight-decay", type=NON_NEGATIVE_FLOAT, default=5e-4,
                   help="default: %(default)s")
    p.add_argument("--ema", type=number(float, lambda d: 0 <= d < 1, "a number in [0, 1)"),
                   default=0.999, help="decay per step of the weights' moving average "
                   "(0: no average; default: %(default)s)")
    p.add_argument("--image-size", type=POSITIVE_INT, default=224,
                   help="image folders: the side of the crops trained and evaluated on "
                   "(default: %(default)s, the paper's)")
    p.add_argument("--workers", type=number(int, lambda n: n >= 0, "a whole number >= 0"),
                   default=4, help="image folders: processes decoding images for each "
                   "training process (default: %(default)s)")
    p.add_argument("--device", type=device, default="auto",
                   help="auto (CUDA when present; under torchrun each process its own "
                   "GPU), cpu or cuda (default: %(default)s)")
    p.add_argument("--no-amp", action="store_true",
                   help="on GPUs, train in float32 throughout (default there: bfloat16 "
                   "mixed precision and channels-last memory; CPUs always run float32)")
    p.add_argument("--teacher", type=model_name(list_models()),
                   help="distil from this trained model (DeiT's hard distillation: half of "
                   "the loss is cross entropy with the teacher's predicted class), e.g. "
                   "conv-cifar10, the conv twin, for an attention student")
    p.add_argument("--teacher-from", metavar="DIR", type=existing_folder,
                   help="the folder the teacher's NAME.safetensors and NAME.json were "
                   "written to by an earlier run (default: the shipped weights)")
    p.add_argument("--distill", type=number(float, lambda a: 0 <= a <= 1, "a number in "
                   "[0, 1]"), default=0.5, help="with --teacher: the share of the loss that "
                   "is the teacher's (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--val-size", type=POSITIVE_INT, default=5000,
                   help="images held out for validation, at most a tenth of them "
                   "(default: %(default)s)")
    p.add_argument("--limit", type=POSITIVE_INT, help="use only N images, drawn at random "
                   "(smoke runs; default: all)")
    p.add_argument("--threads", type=POSITIVE_INT, help="torch threads (default: torch's "
                   "choice)")
    p.add_argument("--compile", action="store_true",
                   help="run the training steps through torch.compile (every model: the "
                   "kernel is a registered operator; a step of sasa-cifar10 0.77 s "
                   "instead of 0.89, conv-cifar10 0.35 instead of 0.42 on 2 CPU cores)")
    p.add_argument("--checkpoint-dir", default="checkpoints", type=writable_folder,
                   help="default: %(default)s")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint of an earlier run of this command")
    p.add_argument("--out", default="runs", type=writable_folder,
                   help="folder NAME.safetensors and NAME.json are written to, made when "
                   "missing (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into the shipped weights folder (to ship a model: "
                   "--out pretrained --overwrite) and replacing NAME.* already in --out")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.command = "python -m sasa_viz.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    problem = check_args(args)
    if problem:
        p.error(problem)
    return args


def check_args(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with arguments that passed the parser, in one sentence (None when
    nothing is): no data, the shipped folder or an earlier run's files as --out without
    --overwrite, a --resume without a checkpoint, a --limit too small to train on."""
    out = Path(args.out)
    written = [out / f"{args.model}.{ext}" for ext in ("safetensors", "json")]
    if not (args.data or args.download):
        return (f"give --data PATH/TO/cifar10/train.tar.gz (or cifar-10-python.tar.gz, or "
                f"a folder of class folders) or --download DIR (the official archive, "
                f"from {CIFAR10_SITE})")
    if out.resolve() == PRETRAINED_DIR.resolve() and not args.overwrite:
        return (f"--out {args.out} is the shipped weights folder ({PRETRAINED_DIR}): add "
                f"--overwrite to replace the shipped files, or drop --out to write to "
                f"runs/")
    if any(path.exists() for path in written) and not args.overwrite:
        return (f"{written[0]} or .json is already there (an earlier run): add --overwrite "
                f"to replace it, or give another --out")
    if args.resume and not checkpoint_path(args).is_file():
        return (f"--resume: there is no checkpoint {checkpoint_path(args)}; start without "
                f"--resume")
    if args.teacher_from and not args.teacher:
        return "--teacher-from names where the teacher is: give --teacher NAME too"
    if args.limit is not None:
        return size_problem(args.limit, args, f"--limit {args.limit}")
    return None


def size_problem(images: int, args: argparse.Namespace, what: str) -> Optional[str]:
    """Why training on `images` images (`what` says where the number comes from) cannot
    run with these options, or None: too few to hold out a validation slice, or fewer
    than MIN_STEPS optimiser steps in all."""
    try:
        train_idx, _ = held_out_split(images, args.val_size, args.seed)
    except ValueError:
        return f"{what}: too few images to hold out a tenth for validation"
    steps = args.epochs * math.ceil(len(train_idx) / args.batch_size)
    if steps < MIN_STEPS:
        return (f"{what}: {steps} training steps ({len(train_idx)} training images in "
                f"batches of {args.batch_size}, {args.epochs} "
                f"epoch{'s' * (args.epochs > 1)}), and the one-cycle "
                f"schedule needs at least {MIN_STEPS}: use more images or --epochs, or a "
                f"smaller --batch-size")
    return None


def checkpoint_path(args: argparse.Namespace) -> Path:
    """Where this model's run keeps its checkpoint."""
    return Path(args.checkpoint_dir) / f"{args.model}.pt"


def train(args: argparse.Namespace) -> dict:
    """Train as the (checked) command line says and write NAME.safetensors + NAME.json
    into args.out; the card is returned. ValueError / OSError with a message for the
    user when the data or the checkpoint cannot be used. Under torchrun every process
    runs this; rank 0 alone logs and writes (`distributed`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    world = join(resolve_device(args.device))
    try:
        return _train(args, world)
    finally:
        leave(world)


def _train(args: argparse.Namespace, world: World) -> dict:
    saved = read_checkpoint(args, world)
    teacher = load_teacher(args, world)
    data = open_training_set(args.data, world, args.batch_size, args.val_size, args.seed,
                             args.limit, args.image_size, args.workers,
                             progress=world.main and not args.no_progress,
                             download=args.download)
    if data.kind == "cifar":
        problem = size_problem(min(len(data.labels), args.limit or len(data.labels)), args,
                               f"the data's {len(data.labels)} images")
        if problem:
            raise ValueError(problem)
    elif args.epochs * data.steps_per_epoch() < MIN_STEPS:
        raise ValueError(f"{args.epochs * data.steps_per_epoch()} training steps "
                         f"({data.train_size} images in batches of {args.batch_size} on "
                         f"{world.size} process(es)), and the one-cycle schedule needs at "
                         f"least {MIN_STEPS}: use more images or --epochs, or a smaller "
                         f"--batch-size")

    torch.manual_seed(args.seed)
    model = create(args.model, num_classes=len(data.classes)).to(world.device)
    fast_gpu = world.device.type == "cuda" and not args.no_amp
    if fast_gpu:
        model = model.to(memory_format=torch.channels_last)
    trained = model
    if world.size > 1:
        if world.device.type == "cuda":          # batch statistics over every GPU's batch
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(model)
    forward = torch.compile(trained) if args.compile else trained   # same weights
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)
    # the average of the weights (and BN statistics) that is evaluated and shipped
    ema = AveragedModel(model, avg_fn=ema_with_warmup(args.ema), use_buffers=True)
    steps_per_epoch = data.steps_per_epoch()
    checkpoint = checkpoint_path(args)
    state = {"epoch": 0, "seconds": 0.0, "images": 0, "history": [], "recipe": recipe(args)}
    if saved:
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        log(world, f"resuming {args.model} after epoch {state['epoch']}")
    schedule = one_cycle(optimizer, args, steps_per_epoch, saved)

    for epoch in range(state["epoch"], args.epochs):
        model.train()
        start, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        bar = tqdm(data.epoch(epoch), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress or not world.main)
        for x, y in bar:
            with torch.autocast("cuda", torch.bfloat16, enabled=fast_gpu):
                logits = forward(x)
                loss = training_loss(logits, y, teacher, x, args.distill)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            if "first_step_loss" not in state:        # over every process's batch
                state["first_step_loss"] = mean(world, loss.item())
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + seconds
        state["images"] += seen * world.size
        if world.main:
            val_accuracy = data.accuracy(shipped(model, ema, args))
            state["history"].append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                                     "train_accuracy": correct / seen,
                                     "val_accuracy": val_accuracy, "seconds": seconds})
            print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.3f}, train accuracy "
                  f"{correct / seen:.1%}, validation accuracy {val_accuracy:.1%}, "
                  f"{seen * world.size / seconds:.0f} images/s", flush=True)
            save_checkpoint(checkpoint, model, ema, optimizer, schedule, state)
        wait(world)                                  # the checkpoint is there for everyone

    agree = same_everywhere(world, shipped(model, ema, args))
    if not world.main:
        return {}
    if not agree:
        raise RuntimeError("the processes ended with different weights: not written")
    final = shipped(model, ema, args)
    card = {
        "classes": data.classes,
        "val_accuracy": data.accuracy(final),
        "val_accuracy_no_flip": data.accuracy(final, flip=False),
        "val_accuracy_no_ema": data.accuracy(model),
        "val_size": data.val_size, "train_size": data.train_size, "seed": args.seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": args.epochs, "batch_size": args.batch_size, "processes": world.size,
        "lr": args.lr, "weight_decay": args.weight_decay, "ema": args.ema,
        "label_smoothing": 0.1, "flip_tta": True, "compiled": args.compile,
        "mixed_precision": "bfloat16" if fast_gpu else None,
        "teacher": args.teacher, "distill": args.distill if args.teacher else None,
        "image_size": args.image_size if data.kind == "folders" else None,
        "first_step_loss": state.get("first_step_loss"),
        "wall_time_s": round(state["seconds"], 1),
        "images_per_s": round(state["images"] / max(state["seconds"], 1e-9), 1),
        "data_sha256": data.source_sha256, "limit": args.limit,
        "history": state["history"],
        "command": args.command,
        "machine": f"{world.size} x {torch.get_num_threads()} CPU threads, "
                   f"{world.device.type}, torch {torch.__version__}",
    }
    weights = save_pretrained(final, args.model, card, args.out)
    print(f"wrote {weights} and .json: validation accuracy {card['val_accuracy']:.2%}")
    if data.kind == "cifar":
        print(f"to ship it, copy both into pretrained/ and give its catalogue entry "
              f"(sasa_viz/models/catalogue.py) _cifar_weights({args.model!r}, "
              f"{file_digest(weights)!r})")
    else:
        print(f"load it with sasa_viz.load_pretrained({args.model!r}, "
              f"directory={str(args.out)!r})")
    return card


def log(world: World, text: str) -> None:
    if world.main:
        print(text, flush=True)


def one_cycle(optimizer, args: argparse.Namespace, steps_per_epoch: int,
              saved: Optional[dict]) -> torch.optim.lr_scheduler.OneCycleLR:
    """The one-cycle learning rate over args.epochs. Resuming with the epochs it was
    planned for, it continues where it stopped, step for step; resuming with more
    (--epochs 2 --resume after --epochs 1) it is planned again for the new length and
    goes on from the step reached."""
    total = args.epochs * steps_per_epoch
    if saved is None:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr,
                                                   total_steps=total, pct_start=WARMUP)
    done = saved["schedule"]["last_epoch"]
    # made at step `done` of a plan of `total` steps, its learning rate that step's
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr,
                                                   total_steps=max(total, done + 1),
                                                   pct_start=WARMUP, last_epoch=done - 1)
    if saved["schedule"]["total_steps"] == total:
        schedule.load_state_dict(saved["schedule"])
    return schedule


def recipe(args: argparse.Namespace) -> dict:
    """The options a resumed run must share with the run it continues (the number of
    epochs may grow: `one_cycle`)."""
    return {k: getattr(args, k) for k in ("model", "batch_size", "lr", "weight_decay", "ema",
                                          "seed", "val_size", "limit", "teacher", "distill",
                                          "image_size")}


def load_teacher(args: argparse.Namespace, world: World):
    """The trained teacher in eval mode (None without --teacher); ValueError when its
    weights cannot be loaded."""
    if not args.teacher:
        return None
    try:
        return load_pretrained(args.teacher, directory=args.teacher_from).to(world.device)
    except PretrainedError as error:
        raise ValueError(f"--teacher {args.teacher}: {error}") from None


def training_loss(logits: Tensor, labels: Tensor, teacher, images: Tensor,
                  distill: float) -> Tensor:
    """Cross entropy with label smoothing 0.1; with a teacher, (1 - distill) of it plus
    distill x the cross entropy with the class the teacher predicts for the same
    augmented images (DeiT's hard distillation: a conv teacher hands an attention student
    its inductive bias)."""
    loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
    if teacher is None:
        return loss
    with torch.no_grad():
        taught = teacher(images).argmax(1)
    return (1 - distill) * loss + distill * F.cross_entropy(logits, taught)


def read_checkpoint(args: argparse.Namespace, world: World) -> Optional[dict]:
    """The checkpoint --resume continues from (None without --resume), read before any
    data is decoded; ValueError when it cannot be read or was made with other options
    (`recipe`)."""
    if not args.resume:
        return None
    path = checkpoint_path(args)
    try:
        saved = torch.load(path, weights_only=True, map_location=world.device)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"{path} cannot be read ({error}); start again without --resume")
    made, wanted = saved["state"]["recipe"], recipe(args)
    changed = [key for key in wanted if made.get(key) != wanted[key]]
    if changed:
        before = ", ".join(f"--{key.replace('_', '-')} {made.get(key)}" for key in changed)
        now = ", ".join(f"--{key.replace('_', '-')} {wanted[key]}" for key in changed)
        raise ValueError(f"{path} was made with {before}, not {now}: resume with the same "
                         f"options, or start again without --resume")
    return saved


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


def save_checkpoint(path: Path, model, ema, optimizer, schedule, state: dict) -> None:
    """Write atomically, so a stop during the write keeps the previous checkpoint."""
    with atomic_path(path) as partial:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "state": state}, partial)


def main(argv=None) -> None:
    """`python -m sasa_viz.train` and the `sasa-viz-train` command: a mistake ends it with
    one line (exit status 2 for arguments, 1 for data or files that cannot be used)."""
    args = parse_args(argv)
    with one_line_errors("train"):
        train(args)


if __name__ == "__main__":
    main()
