"""A training step of sasa-cifar10 against its conv twin, eager and under torch.compile,
the attention layer against a 3x3 convolution, and where a step's time goes.

    python benchmarks/training_step.py                  # all three tables (minutes)
    python benchmarks/training_step.py --skip-compile   # eager only

One step: forward, cross-entropy, backward and an SGD update with Nesterov momentum, on a
batch of random 32x32 images (batch 128 by default), as `sasa_viz.train` does. Times are
medians of --repeats steps after --warmup ones, all models timed in this one process,
interleaved, so the ratios compare like with like on a noisy machine. The profile sorts
torch.profiler's self CPU time into the parts of a step (its operator names decide).
"""
import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sasa_viz import SelfAttention2d, create  # noqa: E402

MODELS = ("sasa-cifar10", "conv-cifar10")
# profiler operator names -> the part of a step they belong to, first match wins
PARTS = [("window attention kernel", ("sasa_viz::",)),
         ("convolutions", ("convolution", "conv2d", "mkldnn_conv", "_convolution")),
         ("batch norm", ("batch_norm",)),
         ("position logits (einsum, bmm)", ("bmm", "einsum", "mm")),
         ("copies and layouts", ("copy_", "clone", "contiguous", "to_dense", "cat", "permute")),
         ("optimizer", ("_foreach", "sgd", "lerp")),
         ("pooling", ("pool",)),
         ("elementwise", ("add", "mul", "relu", "threshold", "div", "sub", "fill", "zero",
                          "where", "sum", "mean", "exp", "log", "softmax", "nll"))]


def step_function(model: nn.Module, batch: int, compiled: bool):
    """A closure doing one training step of `model` on a fixed random batch."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    images, labels = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    forward = torch.compile(model) if compiled else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(images), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
    return step


def layer_function(kind: str, batch: int = 64, channels: int = 64, size: int = 16):
    """Forward + backward of one SelfAttention2d (k = 7, 8 heads) or one 3x3 convolution."""
    layer = (SelfAttention2d(channels, channels, 7, 8) if kind == "attention"
             else nn.Conv2d(channels, channels, 3, padding=1, bias=False))
    x = torch.randn(batch, channels, size, size, requires_grad=True)

    def step():
        layer(x).sum().backward()
    return step


def timed(functions: dict, repeats: int, warmup: int) -> dict:
    """name -> median seconds of `repeats` calls, the functions interleaved."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def profile(step, steps: int = 3) -> dict:
    """Part of a step -> share of its self CPU time, over `steps` steps."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    shares = {name: 0.0 for name, _ in PARTS}
    shares["other"] = 0.0
    for event in prof.key_averages():
        name = event.key.lower()
        part = next((p for p, keys in PARTS if any(k in name for k in keys)), "other")
        shares[part] += event.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    return {part: value / total for part, value in shares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# A training step, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{datetime.date.today()}\n")

    steps = {f"{name} eager": step_function(create(name), args.batch, False) for name in MODELS}
    if not args.skip_compile:
        steps.update({f"{name} compiled": step_function(create(name), args.batch, True)
                      for name in MODELS})
    result = timed(steps, args.repeats, args.warmup)
    best = {name: min(t for mode, t in result.items() if mode.startswith(name))
            for name in MODELS}
    print(f"| step, batch {args.batch} | seconds |\n| --- | --- |")
    for name, seconds in result.items():
        print(f"| {name} | {seconds:.3f} |")
    print(f"| **sasa-cifar10 / conv-cifar10, each in its best mode** | "
          f"**{best['sasa-cifar10'] / best['conv-cifar10']:.2f}x** |\n")

    layers = timed({kind: layer_function(kind) for kind in ("attention", "convolution")},
                   args.repeats * 2, args.warmup)
    print("| forward + backward, batch 64, 64 ch, 16x16 | ms |\n| --- | --- |")
    for kind, seconds in layers.items():
        print(f"| {kind} | {seconds * 1000:.1f} |")
    print(f"| **attention / 3x3 convolution** | "
          f"**{layers['attention'] / layers['convolution']:.2f}x** |\n")

    print("| part of an eager step | " + " | ".join(MODELS) + " |\n| --- | --- | --- |")
    shares = {name: profile(steps[f"{name} eager"]) for name in MODELS}
    for part in shares[MODELS[0]]:
        print(f"| {part} | " + " | ".join(f"{shares[m][part]:.0%}" for m in MODELS) + " |")


if __name__ == "__main__":
    main()
