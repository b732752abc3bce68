"""What several test modules share: Table 1 of the paper, image files made in memory
(with Pillow, or byte by byte for PNGs Pillow will not write, e.g. a header claiming
20000 x 20000 pixels), and running the app's pages with Streamlit's AppTest."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

# Table 1 of the paper (ImageNet, 224 x 224) as it prints it: (FLOPS in billions, a
# multiply-add counted as 2; parameters in millions). Written here, not read from the
# code under test, whose copies (cost.PAPER_TABLE1_*) the tests check against it.
PAPER_TABLE_1 = {
    "conv-resnet26": (4.7, 13.7), "conv-resnet38": (6.5, 19.6), "conv-resnet50": (8.2, 25.6),
    "sasa-resnet26": (4.5, 10.3), "sasa-resnet38": (5.7, 14.1), "sasa-resnet50": (7.0, 18.0),
    "sasa-full-resnet26": (4.7, 10.3), "sasa-full-resnet38": (6.0, 14.1),
    "sasa-full-resnet50": (7.2, 18.0),
}

def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int,
                 rows: bytes) -> bytes:
    """A PNG written byte by byte. `rows` is the raw scanline data (each row starts with
    its filter byte); the header may claim any size, whatever `rows` holds."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def noise(size=(64, 64)) -> Image.Image:
    """Incompressible RGB pixels, so that cutting the file cuts real pixel data."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    return handmade_png(side, side, 1, 0, b"\x00" * 16)


# --- the app, run by Streamlit's AppTest ---------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def run(app=None, **state):
    if app is None:
        app = AppTest.from_file(APP, default_timeout=120)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, app.exception[0].value
    return app


def html_of(app) -> str:
    return "".join(str(element.proto) for element in app.get("html"))


def sidebar_selectbox(app, label: str):
    """The sidebar selectbox labelled `label` (layer and head widgets' keys name their
    options' labels, see sidebar.pick_kept)."""
    return next(box for box in app.sidebar.selectbox if box.label == label)


def pixel_text(app) -> str:
    """The sentence naming the selected pixel (or a failure saying what the page showed)."""
    said = [m.value for m in app.markdown if m.value.startswith("Image pixel")]
    if not said:
        shown = [e.value for kind in (app.error, app.warning, app.info, app.markdown)
                 for e in kind]
        pytest.fail(f"no pixel on the page; it showed {shown}")
    return said[0]
