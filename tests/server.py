"""The app on a real server, for the browser and class tests and for benchmarks/load.py:
`Server` starts `streamlit run app.py` on a free port, and `Session` is a light client
that speaks Streamlit's websocket protocol (the messages a browser sends and receives,
nothing drawn): it opens the page, sets widgets, clicks, and reads what was rendered.
"""
import json
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
from websockets.sync.client import connect

from tests.helpers import APP, ROOT

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
            [sys.executable, "-m", "streamlit", "run", APP,
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


FINISHED = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)
PIXEL_SENTENCE = re.compile(r"Image pixel \*\*\((\d+), (\d+)\)\*\*")
TOP5_TABLE = '<table style="border-collapse:collapse;font-size:14px">'     # html.predictions_table


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
