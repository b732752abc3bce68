"""Time and peak memory of one SelfAttention2d: the fast path vs the unfold reference vs
dense masked attention (scaled_dot_product_attention).

    python benchmarks/attention.py                 # the README table (a few minutes)
    python benchmarks/attention.py --quick         # a smaller grid

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
from sasa_viz.reference import dense_attention, reference_attention  # noqa: E402

IMPLEMENTATIONS = {
    "fast": lambda layer, x: layer(x),
    "unfold": lambda layer, x: reference_attention(layer, x)[0],
    "dense": dense_attention,
}


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def measure_one(impl: str, size: int, kernel: int, channels: int, batch: int,
                backward: bool, repeats: int) -> dict:
    torch.manual_seed(0)
    layer = SelfAttention2d(channels, channels, kernel, heads=8)
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


def measure(impl, size, kernel, args, backward=False) -> dict:
    """Run measure_one in a fresh interpreter so peaks do not leak between runs."""
    command = [sys.executable, __file__, "--one", impl, str(size), str(kernel),
               "--channels", str(args.channels), "--batch", str(args.batch),
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
    return f"{result['ms']:.0f} ms / {result['peak_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("IMPL", "SIZE", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="sizes 32, 64 and k = 7 only")
    parser.add_argument("--dense-limit-mb", type=float, default=1024)
    args = parser.parse_args()

    if args.one:
        impl, size, kernel = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(measure_one(impl, size, kernel, args.channels, args.batch,
                                     args.backward, args.repeats)))
        return

    sizes, kernels = ([32, 64], [7]) if args.quick else ([32, 64, 128, 256], [3, 7, 11])
    print(f"# SelfAttention2d({args.channels}, {args.channels}, k, heads=8), batch "
          f"{args.batch}, float32, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {platform.processor() or platform.machine()}; "
          f"time = median of {args.repeats}, memory = peak over resident before the call\n")
    for backward in (False, True):
        print(f"## {'forward + backward' if backward else 'forward (inference)'}\n")
        print("| size | k | fast | unfold reference | dense SDPA | unfold / fast time |")
        print("| --- | --- | --- | --- | --- | --- |")
        for size in sizes:
            for kernel in kernels:
                fast = measure("fast", size, kernel, args, backward)
                unfold = measure("unfold", size, kernel, args, backward)
                mask_mb = 8 * args.batch * (size * size) ** 2 * 4 / 2 ** 20
                dense = (measure("dense", size, kernel, args, backward)
                         if mask_mb <= args.dense_limit_mb else None)
                ratio = (f"{unfold['ms'] / fast['ms']:.1f}x"
                         if "ms" in fast and "ms" in unfold else "-")
                print(f"| {size}x{size} | {kernel} | {cell(fast)} | {cell(unfold)} | "
                      f"{cell(dense)} | {ratio} |", flush=True)
        print()


if __name__ == "__main__":
    main()
