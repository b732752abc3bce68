"""Tests for sasa_viz.drawing.images: every upload is made in memory with Pillow (or by hand, for
PNGs Pillow will not write), so the whole file runs in a few seconds."""
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sasa_viz.drawing import images
from sasa_viz.drawing.images import (DISPLAY, MAX_PIXELS, MAX_UPLOAD_BYTES, MAX_WORKING_SIZE,
                                     MIN_WORKING_SIZE, ImageError, check_aspect,
                                     display_rectangle, display_to_image, draw_box, enlarge,
                                     gallery, load_image, to_display, to_tensor,
                                     to_working_size)
from sasa_viz.drawing.scenes import SIZE, scenes
from tests.helpers import encode, handmade_png, noise

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def refusal(data: bytes, name: str = "") -> str:
    """The message load_image refuses `data` with, checked to be fit for a student."""
    with pytest.raises(ImageError) as caught:
        load_image(data, name)
    message = str(caught.value)
    assert 0 < len(message) < 200, message
    assert "Traceback" not in message and "\n" not in message
    assert message.endswith("."), message
    return message


def pixel(image: Image.Image, x: int = 0, y: int = 0):
    assert image.mode == "RGB"
    return image.getpixel((x, y))


# ------------------------------------------------------------------------- refusals

def test_empty_file():
    assert "empty" in refusal(b"")


def test_over_size_file():
    message = refusal(bytes(MAX_UPLOAD_BYTES + 1), "huge.png")
    assert "20 MB" in message and '"huge.png"' in message


@pytest.mark.parametrize("data", [b"hello, this is a text file\n", b"%PDF-1.4\n%\xe2\xe3\n",
                                  b"\x89PNG\r\n\x1a\n"])
def test_not_an_image(data):
    message = refusal(data, "notes.txt")
    assert "not an image" in message and "PNG, JPEG" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt):
    data = encode(noise(), fmt)
    message = refusal(data[:len(data) // 2])
    assert "damaged or cut short" in message


@pytest.mark.parametrize("fmt", ["TGA", "ICO"])
def test_unsupported_format(fmt):
    message = refusal(encode(Image.new("RGB", (16, 16), RED), fmt))
    assert f"a {fmt} image" in message and "PNG, JPEG" in message


@pytest.mark.parametrize("side", [20_000,    # Pillow itself raises DecompressionBombError
                                  10_000,    # Pillow only warns
                                  7_000])    # within Pillow's limit, over ours
def test_decompression_bomb_refused_from_the_header(side):
    assert side * side > MAX_PIXELS
    data = handmade_png(side, side, 1, 0, b"\x00\x00")     # header only claims the size
    assert len(data) < 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refusal(data)
    assert not caught                                       # Pillow's warning is caught too
    assert "megapixels" in message                          # not "damaged": never decoded


def test_long_file_name_is_shortened():
    message = refusal(b"", "a" * 300 + ".png")
    assert "a" * 37 + "..." in message


# ---------------------------------------------------------------- other sources

@pytest.mark.parametrize("as_path", [str, Path])
def test_a_path_is_read_like_its_bytes(tmp_path, as_path):
    source = noise((12, 7))
    file = tmp_path / "cat.png"
    file.write_bytes(encode(source, "PNG"))
    image = load_image(as_path(file))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.asarray(source))


def test_a_path_checks_and_names_the_file_like_an_upload(tmp_path):
    file = tmp_path / "notes.png"
    file.write_bytes(b"hello, this is a text file\n")
    with pytest.raises(ImageError, match='"notes.png" is not an image'):
        load_image(file)
    with pytest.raises(ImageError, match='"upload.png" is not an image'):
        load_image(file, "upload.png")


def test_a_missing_path_says_the_file_was_not_found(tmp_path):
    missing = tmp_path / "chelsea.png"
    with pytest.raises(FileNotFoundError) as caught:
        load_image(str(missing))
    assert str(caught.value).startswith(f"Image file not found: {str(missing)!r}")


def test_a_pil_image_is_made_upright_rgb():
    rgba = Image.new("RGBA", (5, 3), (255, 0, 0, 0))              # fully transparent red
    image = load_image(rgba)
    assert image.mode == "RGB" and image.size == (5, 3) and pixel(image) == WHITE
    grey = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))   # "I;16"
    assert [pixel(load_image(grey), x) for x in range(3)] == [BLACK, (128,) * 3, WHITE]


def test_anything_else_is_refused_with_what_is_taken():
    with pytest.raises(TypeError, match="bytes, its path or a PIL image; got ndarray"):
        load_image(np.zeros((4, 4, 3), dtype=np.uint8))


# ------------------------------------------------------------------- conversions

def test_rgb_png_unchanged():
    source = noise((20, 10))
    image = load_image(encode(source, "PNG"))
    assert image.mode == "RGB" and image.size == (20, 10)
    assert np.array_equal(np.asarray(image), np.asarray(source))


@pytest.mark.parametrize("fmt, options", [("WEBP", {"lossless": True}), ("BMP", {}),
                                          ("TIFF", {}), ("GIF", {})])
def test_other_formats(fmt, options):
    image = load_image(encode(Image.new("RGB", (6, 4), BLUE), fmt, **options))
    assert image.size == (6, 4) and pixel(image) == BLUE


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    source = Image.fromarray(values)
    assert source.mode == "I;16"
    image = load_image(encode(source, "PNG"))
    assert [pixel(image, x) for x in range(3)] == [BLACK, (128, 128, 128), WHITE]


def test_16_bit_big_endian_tiff():
    source = Image.fromarray(np.full((2, 2), 32768, dtype=">u2"))
    assert source.mode == "I;16B"
    assert pixel(load_image(encode(source, "TIFF"))) == (128, 128, 128)


def test_16_bit_rgb_png():
    row = b"\x00" + struct.pack(">HHH", 32768, 0, 65535) * 2     # filter byte, 2 pixels
    image = load_image(handmade_png(2, 2, 16, 2, row * 2))
    assert pixel(image) == (128, 0, 255)


@pytest.mark.parametrize("mode, values", [("F", np.float32), ("I", np.int32)])
def test_float_and_32_bit_are_stretched_min_to_max(mode, values):
    source = Image.fromarray(np.array([[-1000, 500, 2000]], dtype=values))
    assert source.mode == mode
    image = load_image(encode(source, "TIFF"))
    assert [pixel(image, x)[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg():
    source = Image.new("CMYK", (8, 8), (0, 255, 255, 0))              # red in CMYK
    image = load_image(encode(source, "JPEG", quality=95))
    assert np.allclose(pixel(image, 4, 4), RED, atol=8)


def test_rgba_transparency_goes_over_white():
    source = Image.new("RGBA", (3, 1), (255, 0, 0, 255))
    source.putpixel((1, 0), (0, 0, 0, 0))                           # fully transparent
    source.putpixel((2, 0), (0, 0, 0, 128))                         # half-transparent black
    image = load_image(encode(source, "PNG"))
    assert pixel(image, 0) == RED and pixel(image, 1) == WHITE
    assert np.allclose(pixel(image, 2), 127, atol=1)


def test_grey_with_alpha():
    source = Image.new("LA", (2, 1), (0, 255))
    source.putpixel((1, 0), (0, 0))
    image = load_image(encode(source, "PNG"))
    assert pixel(image, 0) == BLACK and pixel(image, 1) == WHITE


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparent_colour(fmt):
    source = Image.new("P", (2, 1), 1)
    source.putpalette([0, 0, 0, 0, 0, 255])
    source.putpixel((0, 0), 0)
    source.info["transparency"] = 0
    image = load_image(encode(source, fmt, transparency=0))
    assert pixel(image, 0) == WHITE and pixel(image, 1) == BLUE


def test_palette_without_transparency():
    source = Image.new("P", (2, 1), 0)
    source.putpalette([0, 255, 0])
    assert pixel(load_image(encode(source, "PNG"))) == (0, 255, 0)


def test_grey_and_bilevel():
    assert pixel(load_image(encode(Image.new("L", (2, 2), 77), "PNG"))) == (77, 77, 77)
    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    image = load_image(encode(bilevel, "PNG"))
    assert pixel(image, 0) == BLACK and pixel(image, 1) == WHITE


@pytest.mark.parametrize("fmt, options", [("GIF", {"duration": 100}), ("PNG", {}),
                                          ("WEBP", {"lossless": True}), ("MPO", {})])
def test_animation_gives_its_first_frame(fmt, options):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    assert np.allclose(pixel(load_image(data), 4, 4), RED, atol=4)


def test_exif_orientation_is_applied():
    source = Image.new("RGB", (40, 20), BLACK)
    source.paste(RED, (0, 0, 10, 10))                               # mark the top-left
    exif = Image.Exif()
    exif[0x0112] = 6                                                # "rotate 90 cw to view"
    image = load_image(encode(source, "JPEG", exif=exif, quality=95))
    assert image.size == (20, 40)
    assert np.allclose(pixel(image, 15, 5), RED, atol=16)           # now top-right
    assert np.allclose(pixel(image, 5, 5), BLACK, atol=16)
    assert np.allclose(pixel(image, 15, 35), BLACK, atol=16)


# ------------------------------------------------------------- the working image

def test_to_working_size_keeps_the_aspect_ratio():
    assert to_working_size(noise((300, 150)), 64).size == (64, 32)
    assert to_working_size(noise((150, 300)), 64).size == (32, 64)
    assert to_working_size(noise((1000, 3)), 64).size == (64, 1)


def test_to_working_size_caps():
    assert to_working_size(noise((600, 400)), 10_000).size == (MAX_WORKING_SIZE, 85)
    assert to_working_size(noise((600, 400)), 1).size == (MIN_WORKING_SIZE, 5)
    assert to_working_size(noise((600, 400))).size == (MAX_WORKING_SIZE, 85)


def test_enlarging_to_working_size_copies_pixels():
    source = noise((5, 3))
    image = to_working_size(source, 20)
    assert image.size == (20, 12)
    assert np.array_equal(np.asarray(image)[::4, ::4], np.asarray(source))


def test_to_tensor():
    image = Image.new("RGB", (5, 3), (255, 0, 51))
    x = to_tensor(image)
    assert x.shape == (1, 3, 3, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    x = to_tensor(noise((7, 4)))
    assert 0 <= x.min() and x.max() <= 1


# ---------------------------------------------------------------------- display

def test_enlarge():
    source = noise((3, 2))
    big = enlarge(source, 4)
    assert big.size == (12, 8)
    assert big.getpixel((7, 5)) == source.getpixel((1, 1))
    with pytest.raises(ValueError):
        enlarge(source, 0)


@pytest.mark.parametrize("box", [(-3, -3, 4, 4), (6, 6, 13, 13), (0, 0, 10, 10),
                                 (20, 20, 27, 27), (4, 4, 5, 5)])
def test_draw_box_at_the_borders(box):
    shown = enlarge(Image.new("RGB", (10, 10), BLACK), 4)
    boxed = draw_box(shown, box, (10, 10), colour=RED, width=2)
    assert boxed.size == shown.size and shown.getcolors() == [(1600, BLACK)]
    top, left, bottom, right = box
    if top >= 10:                                                   # entirely outside
        assert boxed.getcolors() == [(1600, BLACK)]
        return
    corner = (max(left, 0) * 4, max(top, 0) * 4)                    # clipped top-left
    far = (min(right * 4, 40) - 1, min(bottom * 4, 40) - 1)         # clipped bottom-right
    assert boxed.getpixel(corner) == RED and boxed.getpixel(far) == RED


def clicked(width, height, image_width, image_height):
    """(height, width, 2): the working (row, col) a click on each display pixel selects."""
    return np.array([[display_to_image(x, y, width, height, image_width, image_height)
                      for x in range(width)] for y in range(height)])


@pytest.mark.parametrize("working, shown", [((5, 7), (17, 23)), ((36, 48), (375, 500)),
                                            ((4, 4), (12, 12)), ((9, 6), (5, 3))])
def test_display_rectangles_are_the_clicks_that_select_them(working, shown):
    # a working pixel is drawn on exactly the display pixels a click on selects it from
    hits = clicked(shown[1], shown[0], working[1], working[0])
    for r, c in [(0, 0), (working[0] - 1, working[1] - 1), (working[0] // 2, 1)]:
        top, left, bottom, right = display_rectangle((r, c, r + 1, c + 1), working, shown) \
            or (0, 0, 0, 0)
        selects = (hits == (r, c)).all(axis=-1)                     # (Hd, Wd)
        drawn = np.zeros_like(selects)
        drawn[top:bottom, left:right] = True
        np.testing.assert_array_equal(drawn, selects)
    assert display_rectangle((-4, -4, 0, 0), working, shown) is None
    assert display_rectangle((-4, -4, 99, 99), working, shown) == (0, 0, *shown)


def test_draw_box_at_a_fractional_ratio():
    shown = Image.new("RGB", (500, 375), BLACK)                     # a 48 x 36 working image
    boxed = np.asarray(draw_box(shown, (10, 20, 13, 22), (36, 48), colour=RED, width=1))
    ys, xs = np.nonzero((boxed == RED).all(axis=-1))
    hits = clicked(500, 375, 48, 36)
    assert tuple(hits[ys.min(), xs.min()]) == (10, 20)              # its corners select
    assert tuple(hits[ys.max(), xs.max()]) == (12, 21)              # the box's corners
    assert tuple(hits[ys.min() - 1, xs.min() - 1]) == (9, 19)       # one pixel out: not
    assert tuple(hits[ys.max() + 1, xs.max() + 1]) == (13, 22)


@pytest.mark.parametrize("size", [(500, 375), (256, 256), (1000, 3), (333, 517), (31, 17)])
def test_to_display_keeps_the_shape_of_the_working_image(size):
    picture = noise(size)
    for longest in (512, DISPLAY, 100):
        shown = to_display(picture, longest)
        assert shown.mode == "RGB" and max(shown.size) == longest
        for working_size in (16, 48, 128):
            working = to_working_size(picture, working_size)
            check_aspect((working.height, working.width), (shown.height, shown.width))
    assert to_display(picture, max(size)) is picture                # already that size


def test_to_display_enlarges_by_the_click_mapping():
    working = np.asarray(noise((24, 18)))                           # (18, 24, 3)
    shown = np.asarray(to_display(working, 500))                    # not a whole ratio
    assert shown.shape == (375, 500, 3)
    hits = clicked(500, 375, 24, 18)
    np.testing.assert_array_equal(shown, working[hits[..., 0], hits[..., 1]])


def test_to_display_reduces_smoothly():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[::2] = 255                                              # one-pixel stripes
    shown = np.asarray(to_display(stripes, 100))
    assert shown.shape == (100, 100, 3)
    assert 100 < shown.mean() < 155 and shown.std() < 20            # averaged: grey


def test_check_aspect_refuses_another_shape():
    check_aspect((36, 48), (375, 500))
    check_aspect((1, 64), (2, 768))
    with pytest.raises(ValueError, match="500x500 pixels .* not the shape of the 48x36"):
        check_aspect((36, 48), (500, 500))
    with pytest.raises(ValueError, match="not the shape"):
        check_aspect((48, 36), (375, 500))                          # turned a quarter


def test_display_to_image_corners():
    # a 32 x 16 (width x height) working image shown at 400 x 200 by the browser
    def click(x, y):
        return display_to_image(x, y, 400, 200, image_width=32, image_height=16)
    assert click(0, 0) == (0, 0)
    assert click(399.9, 0) == (0, 31)
    assert click(0, 199.9) == (15, 0)
    assert click(399.9, 199.9) == (15, 31)
    assert click(400, 200) == (15, 31)                              # on the far edge
    assert click(-5, 1000) == (15, 0)                               # clipped
    assert click(200, 100) == (8, 16)
    with pytest.raises(ValueError):
        display_to_image(1, 1, 0, 200, 32, 16)


# ---------------------------------------------------------------------- gallery

def test_gallery_loads_every_item():
    items = gallery()
    assert len(items) == len(images.PHOTOS) + len(scenes()) + 100
    sample = images._cifar10_sample()
    for label, load in items.items():
        image = load()
        assert image.mode == "RGB"
        if label.startswith("Photo"):
            assert max(image.size) == 256
        elif label.startswith("Scene"):
            assert image.size == (SIZE, SIZE)
        else:
            index = int(label.split("#")[1].split(":")[0])
            assert label.endswith(sample.classes[sample.labels[index]])
            assert np.array_equal(np.asarray(image).transpose(2, 0, 1),
                                  sample.images[index].numpy())
