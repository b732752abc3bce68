"""A class on one server: sessions at the same time, each on its own image and pixel, are
each shown exactly what they are shown alone (the same top 5, the same weights, the same
picture), also while another session uploads broken files; and a click reruns only the
pixel's part of the page.

The sessions are AppTests in threads of this process, so they share the app's caches as
a server's sessions do; `shared_runtime` lets their runs overlap. A click's rerun is
checked on a real server, with the light client of `tests.server` (the one
benchmarks/load.py times a class with).
"""
import contextlib
import threading
from unittest.mock import MagicMock

import pytest
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest, app_test, local_script_runner
from streamlit.testing.v1.util import patch_config_options

from tests.server import Server, Session
from sasa_viz.drawing import images
from sasa_viz.inspection.trace import trace
from tests.helpers import APP, bomb_png, encode, noise, pixel_text, run

pytestmark = pytest.mark.slow          # see pytest.ini

SIZE = 16                              # small working images: a class, quickly
LAYER = "stages.0.0.spatial"
CLICKS = [(3, 4), (12, 7), (0, 15)]    # image pixels; each session shifts them by its number
BROKEN = [("truncated.png", encode(noise(), "PNG")[:600]), ("bomb.png", bomb_png()),
          ("notes.txt", b"this is not an image\n")]


@pytest.fixture
def shared_runtime(monkeypatch):
    """Let AppTest runs overlap in threads of one process, as a server's sessions do.

    Around every run AppTest installs, for the whole process, a mock runtime, fresh
    script caches (its own, and its script runner's) and a config override, and takes
    them away afterwards: one run ending would pull them from under another still running
    (and two fresh script caches compile the pages in two threads at once, which CPython
    3.11's compiler does not survive: "SystemError: AST constructor recursion depth
    mismatch", an empty page). Here every run shares one of each, set up once for the
    test."""
    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    monkeypatch.setattr(Runtime, "_instance", runtime)
    monkeypatch.setattr(app_test, "Runtime", type("RuntimeOfOneRun", (Runtime,), {}))
    script_cache = ScriptCache()                # AppTest's (pages) and its runner's (code)
    for module in (app_test, local_script_runner):
        monkeypatch.setattr(module, "ScriptCache", lambda: script_cache)
    monkeypatch.setattr(app_test, "patch_config_options",
                        lambda overrides: contextlib.nullcontext())
    with patch_config_options({"global.appTest": True}):
        yield


def shown(app: AppTest) -> dict:
    """What a student sees of the pixel: the sentence naming it, the top 5 and the weights
    (HTML, every weight in a tooltip to 6 digits), and the clickable picture."""
    return {"pixel": pixel_text(app),
            "html": [str(e.proto) for e in app.get("html")],
            "picture": [e.proto.json_args for e in app.get("component_instance")]}


def lesson(number: int, start: threading.Barrier = None) -> list:
    """Session `number`: a gallery image it shares with one other session (so the two
    read one trace), then pixels of its own -> what it was shown after each click."""
    item = list(images.gallery())[5 + number // 2]
    app = AppTest.from_file(APP, default_timeout=300)
    if start is not None:
        start.wait()
    run(app, size=SIZE, gallery_item=item, layer=LAYER, head="all heads", panel="Weights")
    seen = []
    for row, col in CLICKS:
        run(app, pixel_row=(row + number) % SIZE, pixel_col=(col + 2 * number) % SIZE)
        seen.append(shown(app))
    return seen


def broken_uploads(start: threading.Barrier) -> list:
    """A session uploading one broken file after another -> the messages it got, each
    while the page went on showing the image it had."""
    app = AppTest.from_file(APP, default_timeout=300)
    start.wait()
    before = shown(run(app, size=SIZE, image_source="Upload"))
    messages = []
    for name, data in BROKEN:
        app.file_uploader(key="upload").set_value((name, data, "application/octet-stream"))
        assert shown(run(app)) == before
        messages.append(app.sidebar.error[0].value)
    return messages


def test_sessions_at_once_see_what_they_see_alone(shared_runtime):
    sessions = range(4)
    alone = {n: lesson(n) for n in sessions}
    assert len({str(alone[n]) for n in sessions}) == len(sessions)    # four different views

    st.cache_data.clear()            # together, the traces and drawings are made anew, at once
    st.cache_resource.clear()
    start = threading.Barrier(len(sessions) + 1)
    together, failures = {}, []

    def attend(n):
        try:
            together[n] = lesson(n, start) if n != "upload" else broken_uploads(start)
        except BaseException as error:          # reported below, with the session
            failures.append(f"session {n}: {error!r}")

    threads = [threading.Thread(target=attend, args=(n,)) for n in [*sessions, "upload"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for n in sessions:
        assert together[n] == alone[n], f"session {n} was shown something else"
    for message in together["upload"]:
        assert len(message) < 200 and "Traceback" not in message


def test_a_click_reruns_only_the_pixels_part_of_the_page_on_a_real_server():
    server = Server()
    try:
        with Session(server.url) as session:
            opened = session.open()
            assert not opened.errors and not opened.fragment
            assert {"gallery_item", "size", "pixel_row", "click", "panel"} <= set(opened.widgets)
            H, W = session.image_shape
            clicked = session.click(H - 1, 0, H * 12, W * 12)
            assert not clicked.errors and clicked.fragment
            assert clicked.pixel() == (H - 1, 0)
            assert {"pixel_row", "click", "panel"} <= set(clicked.widgets)
            assert not {"gallery_item", "size", "model"} & set(clicked.widgets)   # the sidebar
    finally:
        server.stop()


def test_a_session_keeps_its_trace_when_the_shared_cache_lets_it_go(monkeypatch):
    """A class of more students than the shared cache holds traces: each session holds
    the one it shows, so a click never runs the model again; a new image does."""
    from sasa_viz.ui import sources
    app = run(AppTest.from_file(APP, default_timeout=300), size=SIZE, layer=LAYER)
    traced = []
    monkeypatch.setattr(sources, "trace",
                        lambda *arguments: traced.append(1) or trace(*arguments))
    sources.cached_trace.clear()                  # as when other images pushed it out
    before = shown(app)
    run(app, pixel_row=2, pixel_col=9)
    assert traced == [] and shown(app) != before
    run(app, gallery_item=list(images.gallery())[7])
    assert traced == [1]


def test_the_caches_hash_a_source_by_its_key_not_its_picture():
    """A click hashes the Source of every drawing it looks up: by its key (the picture's
    digest), so two Sources of one picture share their drawings, and a different
    picture of the same working image does not."""
    import hashlib
    from streamlit.runtime.caching.cache_type import CacheType
    from streamlit.runtime.caching.hashing import update_hash
    from sasa_viz.choices import ModelChoice
    from sasa_viz.ui import sources

    picture = sources.picture_views(images.gallery()[list(images.gallery())[0]]())
    other = picture._replace(backdrop=picture.backdrop.copy(), digest="another picture")
    choice, image = ModelChoice("sasa-cifar10", True), picture.working[32]

    def hashed(source):
        digest = hashlib.md5()
        update_hash(sources.PixelView(source, "stages.0.0.spatial", 1, 2), digest,
                    CacheType.DATA, hash_funcs={sources.Source: sources.Source.key})
        return digest.hexdigest()

    first = sources.Source.of(choice, "cpu", image, picture)
    copied = sources.Source.of(choice, "cpu", image.copy(), picture._replace(
        backdrop=picture.backdrop.copy()))
    assert hashed(first) == hashed(copied)
    assert hashed(first) != hashed(sources.Source.of(choice, "cpu", image, other))
    assert first.same_as(copied) and not first.same_as(sources.Source.of(choice, "cpu",
                                                                         image, other))
