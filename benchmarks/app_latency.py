"""Server time of the explorer: cold start, and a whole page at a new pixel, per panel.

    python benchmarks/app_latency.py                  # 64x64 working image, 5 clicks
    python benchmarks/app_latency.py --size 32 --clicks 9

Runs the real page with Streamlit's AppTest (no browser, no server): "cold" is the first
run (model load, forward pass, trace, first figures); a "click" sets a new pixel the way
a click on the image does and reruns the page, which reuses the cached trace. AppTest
reruns the whole page where a server reruns only the page's fragment (the pixel's part),
so these are upper bounds of a click; benchmarks/load.py times clicks on a real server,
with a class of sessions. The time is the page script's; the browser adds the transfer
and drawing.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch
from streamlit.testing.v1 import AppTest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sasa_viz.ui.panels import PANELS  # noqa: E402

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "app.py")


def timed_run(app: AppTest) -> float:
    start = time.perf_counter()
    app.run()
    if app.exception:
        raise RuntimeError(app.exception[0].value)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args()

    app = AppTest.from_file(APP, default_timeout=300)
    app.session_state["size"] = args.size
    cold = timed_run(app)
    print(f"# explorer, working image {args.size}x{args.size} (gallery default), model "
          f"{app.session_state['model'].label}; {torch.get_num_threads()} threads, "
          f"{platform.machine()}; median of {args.clicks} clicks\n")
    print(f"cold start (first run): {cold * 1000:.0f} ms\n")
    print("| panel | page at a new pixel (median) | slowest |")
    print("| --- | --- | --- |")
    for panel in PANELS:
        app.session_state["panel"] = panel
        timed_run(app)                                    # switching panel, not a click
        times = []
        for n in range(args.clicks):
            app.session_state["pixel_row"] = (7 * n + 3) % args.size
            app.session_state["pixel_col"] = (11 * n + 5) % args.size
            times.append(timed_run(app))
        print(f"| {panel} | {statistics.median(times) * 1000:.0f} ms | "
              f"{max(times) * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
