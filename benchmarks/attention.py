"""Time and peak memory of one SelfAttention2d: the fused kernel (the default path), its
plain PyTorch twin, the unfold reference and dense masked attention
(scaled_dot_product_attention), beside a 3x3 convolution of the same width.

    python benchmarks/attention.py                 # the README tables (several minutes)
    python benchmarks/attention.py --quick         # a smaller grid
    python benchmarks/attention.py --training      # only the training shapes (batch 64)

Each measurement runs in a fresh process: peak memory is the process's peak resident
memory during the first call minus its resident memory just before it (model, input
and torch already loaded); time is the median of --repeats warm calls. Dense attention
is skipped where its (H*W)^2 mask alone would pass --dense-limit-mb.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sasa_viz import SelfAttention2d  # noqa: E402
from sasa_viz.attention import native
from sasa_viz.attention.reference import dense_attention, reference_attention  # noqa: E402


def plain(layer, x):
    """The layer through its plain PyTorch twin (the compiled kernel switched off)."""
    native.supports = lambda t, kernel_size: False
    return layer(x)


IMPLEMENTATIONS = {
    "fast": lambda layer, x: layer(x),
    "plain": plain,
    "unfold": lambda layer, x: reference_attention(layer, x)[0],
    "dense": dense_attention,
    "conv": lambda conv, x: conv(x),
}


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def measure_one(impl: str, size: int, kernel: int, channels: int, batch: int, heads: int,
                backward: bool, repeats: int) -> dict:
    torch.manual_seed(0)
    layer = (torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False) if impl == "conv"
             else SelfAttention2d(channels, channels, kernel, heads=heads))
    x = torch.randn(batch, channels, size, size, requires_grad=backward)
    run = IMPLEMENTATIONS[impl]

    def call():
        if backward:
            run(layer, x).sum().backward()
        else:
            with torch.no_grad():
                run(layer, x)

    before = resident_mb()
    call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * statistics.median(times), "peak_mb": peak}


def measure(impl, size, kernel, args, backward=False, channels=None, batch=None,
            heads=8) -> dict:
    """Run measure_one in a fresh interpreter so peaks do not leak between runs."""
    command = [sys.executable, __file__, "--one", impl, str(size), str(kernel),
               "--channels", str(channels or args.channels), "--batch",
               str(batch or args.batch), "--heads", str(heads),
               "--repeats", str(args.repeats)] + (["--backward"] if backward else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout)


def cell(result: dict) -> str:
    if result is None:
        return "skipped"
    if "error" in result:
        return "failed"
    ms = result["ms"]
    return f"{ms:.1f} ms / {result['peak_mb']:.0f} MB" if ms < 10 else \
        f"{ms:.0f} ms / {result['peak_mb']:.0f} MB"


def ratio(numerator: dict, denominator: dict) -> str:
    if "ms" not in numerator or "ms" not in denominator:
        return "-"
    return f"{numerator['ms'] / denominator['ms']:.1f}x"


def training_table(args) -> None:
    """Forward + backward at training shapes: the attention/convolution ratio."""
    print(f"## training shapes: forward + backward, batch {TRAINING_BATCH}, k = 7\n")
    print("| channels | map | heads | fast | plain twin | 3x3 conv | fast / conv | "
          "plain / conv |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for channels, size, heads in TRAINING_SHAPES:
        got = {impl: measure(impl, size, 7, args, True, channels, TRAINING_BATCH, heads)
               for impl in ("fast", "plain", "conv")}
        print(f"| {channels} | {size}x{size} | {heads} | {cell(got['fast'])} | "
              f"{cell(got['plain'])} | {cell(got['conv'])} | "
              f"{ratio(got['fast'], got['conv'])} | {ratio(got['plain'], got['conv'])} |",
              flush=True)
    print()


# (channels, map side, heads): the issue's shape first, then the CIFAR models' layers
TRAINING_SHAPES = [(64, 16, 8), (32, 16, 8), (64, 16, 4), (128, 8, 8), (256, 8, 16),
                   (256, 4, 16)]
TRAINING_BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("IMPL", "SIZE", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--training", action="store_true",
                        help="only the training-shape table")
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="sizes 32, 64 and k = 7 only")
    parser.add_argument("--dense-limit-mb", type=float, default=1024)
    args = parser.parse_args()

    if args.one:
        impl, size, kernel = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(measure_one(impl, size, kernel, args.channels, args.batch,
                                     args.heads, args.backward, args.repeats)))
        return

    sizes, kernels = ([32, 64], [7]) if args.quick else ([32, 64, 128, 256], [3, 7, 11])
    print(f"# SelfAttention2d({args.channels}, {args.channels}, k, heads=8), batch "
          f"{args.batch}, float32, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}; "
          f"time = median of {args.repeats}, memory = peak over resident before the call; "
          f"compiled kernel: {native.available() or native.build_error()}\n")
    training_table(args)
    if args.training:
        return
    for backward in (False, True):
        print(f"## {'forward + backward' if backward else 'forward (inference)'}\n")
        print("| size | k | fast | plain twin | unfold reference | dense SDPA | 3x3 conv | "
              "unfold / fast | fast / conv |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for size in sizes:
            for kernel in kernels:
                fast = measure("fast", size, kernel, args, backward)
                twin = measure("plain", size, kernel, args, backward)
                unfold = measure("unfold", size, kernel, args, backward)
                conv = measure("conv", size, kernel, args, backward)
                mask_mb = 8 * args.batch * (size * size) ** 2 * 4 / 2 ** 20
                dense = (measure("dense", size, kernel, args, backward)
                         if mask_mb <= args.dense_limit_mb else None)
                print(f"| {size}x{size} | {kernel} | {cell(fast)} | {cell(twin)} | "
                      f"{cell(unfold)} | {cell(dense)} | {cell(conv)} | "
                      f"{ratio(unfold, fast)} | {ratio(fast, conv)} |", flush=True)
        print()


if __name__ == "__main__":
    main()
