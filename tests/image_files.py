"""Image files made in memory for the tests: with Pillow, or byte by byte for PNGs
Pillow will not write (e.g. a header claiming 20000 x 20000 pixels)."""
import io
import struct
import zlib

import numpy as np
from PIL import Image


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
