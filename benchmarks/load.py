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
import json
import os
import platform
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
FINISHED = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)
PIXEL_SENTENCE = re.compile(r"Image pixel \*\*\((\d+), (\d+)\)\*\*")
TOP5_TABLE = '<table style="border-collapse:collapse;font-size:14px">'     # html.predictions_table


# --- the server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` in a child process, and how long it took to answer."""

    def __init__(self, timeout: float = 120):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        start = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.perf_counter() - start < timeout:
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.process.kill()
            raise RuntimeError(f"the server did not answer within {timeout:.0f} s")
        self.ready = time.perf_counter() - start

    def peak_memory(self) -> Optional[int]:
        """The server's resident peak so far, bytes (Linux), or None."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024

    def stop(self) -> int:
        """Stop the server -> its resident peak, bytes."""
        peak = self.peak_memory()
        self.process.terminate()
        self.process.wait(timeout=30)
        if peak is None:       # not Linux: the largest finished child (kB on Linux, B on macOS)
            scale = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
        return peak


# --- one session -----------------------------------------------------------------------------

class Widget(NamedTuple):
    id: str
    fragment: str       # the fragment it was drawn in ("" outside any): a change reruns it
    element: object     # its proto


class Render(NamedTuple):
    """What one run drew, as far as the checks need it."""
    seconds: float
    fragment: bool              # a fragment's rerun, not the whole page's
    widgets: List[str]          # the keys of the widgets it drew
    texts: List[str]            # markdown
    html: List[str]
    errors: List[str]           # exceptions and error boxes

    def pixel(self):
        found = [PIXEL_SENTENCE.search(text) for text in self.texts]
        return next((tuple(map(int, m.groups())) for m in found if m), None)


def top5(render: Render) -> Optional[str]:
    """The top-5 table of a render (the explorer's only table in 14px type), or None."""
    return next((html for html in render.html if html.startswith(TOP5_TABLE)), None)


class Session:
    """One browser tab, as far as the server can tell: a websocket and the widget states
    it sends. Widgets are found by their key (the end of the id Streamlit gives them)."""

    def __init__(self, url: str):
        self.url = url
        self.connection = connect(url.replace("http", "ws", 1) + "/_stcore/stream",
                                  subprotocols=["streamlit"], max_size=None, proxy=None,
                                  open_timeout=60)
        self.widgets: Dict[str, Widget] = {}
        self.page = ""

    def __enter__(self) -> "Session":
        self.socket = self.connection.__enter__()
        return self

    def __exit__(self, *error) -> None:
        self.connection.__exit__(*error)

    def rerun(self, *states: WidgetState, fragment: str = "") -> Render:
        """Send the widget states (a full rerun, or one of `fragment`) and wait for the
        page, and its pictures, to arrive."""
        message = BackMsg(rerun_script=ClientState(
            page_script_hash=self.page, fragment_id=fragment,
            widget_states=WidgetStates(widgets=list(states))))
        start = time.perf_counter()
        self.socket.send(message.SerializeToString())
        widgets, texts, html, errors, pictures = [], [], [], [], []
        while True:
            reply = ForwardMsg()
            reply.ParseFromString(self.socket.recv())
            kind = reply.WhichOneof("type")
            if kind == "new_session":
                self.page = reply.new_session.page_script_hash
            elif kind == "script_finished":
                if reply.script_finished in FINISHED:
                    break
            elif kind == "delta" and reply.delta.WhichOneof("type") == "new_element":
                element = reply.delta.new_element
                what = element.WhichOneof("type")
                inner = getattr(element, what)
                if "id" in inner.DESCRIPTOR.fields_by_name and inner.id:
                    key = inner.id.rsplit("-", 1)[-1]
                    self.widgets[key] = Widget(inner.id, reply.delta.fragment_id, inner)
                    widgets.append(key)
                if what == "markdown":
                    texts.append(inner.body)
                elif what == "html":
                    html.append(inner.body)
                elif what == "imgs":
                    pictures += [image.url for image in inner.imgs]
                elif what == "exception":
                    errors.append(f"{inner.type}: {inner.message}")
                elif what == "alert" and inner.format == inner.ERROR:
                    errors.append(inner.body)
        for url in pictures:
            urllib.request.urlopen(self.url + url, timeout=60).read()
        fragment_run = reply.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
        return Render(time.perf_counter() - start, fragment_run, widgets, texts, html, errors)

    def open(self) -> Render:
        return self.rerun()

    def choose(self, key: str, label: str) -> Render:
        """Pick `label` in the selectbox `key` (a full rerun)."""
        return self.rerun(WidgetState(id=self.widgets[key].id, string_value=label))

    def slide(self, key: str, label: str) -> Render:
        """Set the select slider `key` to `label` (a full rerun)."""
        state = WidgetState(id=self.widgets[key].id)
        state.string_array_value.data.append(label)
        return self.rerun(state)

    def click(self, row: int, col: int, height: int, width: int) -> Render:
        """A click on the middle of image pixel (row, col) of the picture, which the
        browser shows at height x width."""
        picture = self.widgets["click"]
        scale_y, scale_x = height / self.image_shape[0], width / self.image_shape[1]
        value = {"x": (col + 0.5) * scale_x, "y": (row + 0.5) * scale_y, "width": width,
                 "height": height, "unix_time": int(time.time() * 1000)}
        return self.rerun(WidgetState(id=picture.id, json_value=json.dumps(value)),
                          fragment=picture.fragment)

    @property
    def image_shape(self):
        """(H, W) of the working image: the pixel inputs' ranges."""
        rows, cols = self.widgets["pixel_row"].element, self.widgets["pixel_col"].element
        return int(rows.max) + 1, int(cols.max) + 1


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
