"""A class on one server: N sessions at once, each on its own image, clicking its own pixels.

    python benchmarks/load.py                            # N = 1, 10, 30; 32x32 images
    python benchmarks/load.py --sessions 30 --clicks 20 --size 64 --think 0

For each N it starts the app (`streamlit run app.py`, headless, on a free port) and does
to it what a class does, with light clients instead of browsers: each session is one
websocket speaking Streamlit's protocol (the messages a browser sends and receives,
nothing drawn). Once the server answers, one session opens the explorer alone (the
first page of a fresh server); then N sessions
  1. open the explorer, all at once (first page),
  2. each switch to a gallery image of its own (image switch: a forward pass, the
     layer's sentence, the picture and the panel),
  3. each click pixels of their own on the picture (click to render: the rerun of the
     page's fragment), waiting a random 0 to 2 x --think seconds before each step, as
     people do (--think 0: everyone at the same instant).
A time runs from the message a browser would send to the server's "finished", plus the
pictures of that run fetched over HTTP: what a browser waits for before drawing. Every
render is checked: the page must name the pixel this session clicked and show the top 5
of its own image, or it counts as a mix-up; a click that reruns more than the page's
fragment, an exception or an error box counts as an error. The clients run on the same
machine as the server and take a little of its time.

Prints a Markdown table for the README, with the machine and the date; the server's peak
memory is its resident peak (VmHWM, or getrusage of the finished child elsewhere).
"""
import argparse
import datetime
import os
import platform
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import List, NamedTuple


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server import Server, Session, top5  # noqa: E402

# --- a class --------------------------------------------------------------------------------

class Times(NamedTuple):
    first_page: List[float]
    image_switch: List[float]
    clicks: List[float]
    mix_ups: List[str]
    errors: List[str]


def pause(think: float, rng: random.Random) -> None:
    time.sleep(rng.uniform(0, 2 * think))


def student(number: int, url: str, size: int, clicks: int, think: float, seed: int,
            start: threading.Barrier, times: Times) -> None:
    """Session `number` of a class, from the moment the whole class starts."""
    rng = random.Random(seed * 1000 + number)
    start.wait()
    try:
        with Session(url) as session:
            lesson(session, number, size, clicks, think, rng, times)
    except Exception as error:       # the table reports it; one session's end is not the class's
        times.errors.append(f"session {number}: {type(error).__name__}: {error}")


def lesson(session: Session, number: int, size: int, clicks: int, think: float,
           rng: random.Random, times: Times) -> None:
    """The first page, then an image of its own, then pixels of its own: timed, checked."""
    opened = session.open()
    times.first_page.append(opened.seconds)
    times.errors.extend(opened.errors)
    if size != 32:
        times.errors.extend(session.slide("size", str(size)).errors)
    gallery = list(session.widgets["gallery_item"].element.options)
    pause(think, rng)
    switched = session.choose("gallery_item", gallery[(number + 1) % len(gallery)])
    times.image_switch.append(switched.seconds)
    times.errors.extend(switched.errors)
    own_top5 = top5(switched)
    H, W = session.image_shape
    for _ in range(clicks):
        pause(think, rng)
        row, col = rng.randrange(H), rng.randrange(W)
        shown = session.click(row, col, H * 12, W * 12)
        times.clicks.append(shown.seconds)
        times.errors.extend(shown.errors)
        if not shown.fragment:
            times.errors.append(f"session {number}: a click reran the whole page")
        if shown.pixel() != (row, col) or top5(shown) != own_top5:
            times.mix_ups.append(f"session {number} clicked ({row}, {col}) and was "
                                 f"shown {shown.pixel()}")


def percentile(values: List[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def seconds(values: List[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.2f} / {percentile(values, 95):.2f} s"


def a_class(sessions: int, size: int, clicks: int, think: float, seed: int) -> dict:
    """One fresh server, one session alone, then `sessions` at once -> the numbers."""
    server = Server()
    try:
        with Session(server.url) as alone:
            cold = alone.open()
        times = Times([], [], [], [], list(cold.errors))
        start = threading.Barrier(sessions)
        threads = [threading.Thread(target=student, args=(n, server.url, size, clicks,
                                                          think, seed, start, times))
                   for n in range(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        peak = server.stop()
    return dict(sessions=sessions, ready=server.ready, cold=cold.seconds, times=times,
                peak=peak)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = model.group(1).strip() if model else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 30],
                        help="class sizes to try, each on a fresh server (default 1 10 30)")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per session")
    parser.add_argument("--size", type=int, default=32,
                        help="working resolution, one of the app's 16 24 32 48 64 96 128 "
                             "(default 32, the app's own)")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds between a render and the next step (0: at once)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"# A class on one server: {', '.join(map(str, args.sessions))} sessions at once, "
          f"{args.size}x{args.size} working images, {args.clicks} clicks each, a random "
          f"0-{2 * args.think:g} s between steps\n")
    print(f"{machine()}; {datetime.date.today().isoformat()}\n")
    print("| sessions | server ready | first page, fresh server | first page p50 / p95 | "
          "image switch p50 / p95 | click to render p50 / p95 | slowest click | "
          "server peak memory | mix-ups | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    problems = []
    for n in args.sessions:
        result = a_class(n, args.size, args.clicks, args.think, args.seed)
        times = result["times"]
        print(f"| {n} | {result['ready']:.1f} s | {result['cold']:.2f} s | "
              f"{seconds(times.first_page)} | {seconds(times.image_switch)} | "
              f"{seconds(times.clicks)} | "
              f"{max(times.clicks, default=float('nan')):.2f} s | "
              f"{result['peak'] / 2**20:.0f} MiB | {len(times.mix_ups)} | "
              f"{len(times.errors)} |", flush=True)
        problems += times.mix_ups + times.errors
    for problem in problems[:20]:
        print(f"\n- {problem}")


if __name__ == "__main__":
    main()
