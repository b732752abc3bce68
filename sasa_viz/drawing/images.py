"""Images for the app: from whatever a user uploads to a checked RGB picture, and from
that picture to the small working image the models look at.

`load_image(data, name)` turns uploaded bytes (or a file's path, or a PIL image) into a
PIL image in mode "RGB", or raises `ImageError`, whose message is one short sentence a
student can act on. It refuses, in this order and before decoding any pixels where it
can:

1. empty files and files over MAX_UPLOAD_BYTES;
2. bytes Pillow cannot identify as an image;
3. formats outside ALLOWED_FORMATS (Pillow reads many more, e.g. TGA or ICO);
4. more than MAX_PIXELS pixels, judged from the header, so a small file that would
   decompress to a huge picture (a "decompression bomb") is never decoded;
5. files whose pixel data is broken or cut short (decoding is forced with `load()`:
   Pillow otherwise decodes lazily and a truncated file would fail later).

It then turns the image upright (EXIF orientation), keeps the first frame of an
animation and converts any pixel format to 8-bit RGB, compositing transparency over
white. The working image, the tensor and the picture as shown are made from there:

    image = load_image(uploaded.getvalue(), uploaded.name)    # or load_image("cat.png")
    small = to_working_size(image, 64)          # longer side 64 px
    x = to_tensor(small)                        # (1, 3, H, W) in [0, 1]
    shown = to_display(image)                   # the picture itself, longer side 768 px
    shown = draw_box(shown, (10, 12, 17, 19), (small.height, small.width))

The picture is shown at its own resolution, the working image's pixels mapped onto it
by fractions of its height and width (see "display" below), so a photo stays sharp
while the model sees (and a click selects) working pixels.

Boxes are (top, left, bottom, right) in working-image pixels, bottom and right
excluded, like Python slices: rows top..bottom-1, columns left..right-1.
"""
import io
import math
import os
import warnings
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torch import Tensor

from sasa_viz.drawing.scenes import scene_image, scenes
from sasa_viz.models.data import SAMPLE_PATH, Cifar10, load_sample

MAX_UPLOAD_BYTES = 20 * 1024 * 1024     # 20 MB
MAX_PIXELS = 40_000_000                 # 40 megapixels, e.g. 8000 x 5000
MAX_WORKING_SIZE = 128                  # longest side of the image the models see
MIN_WORKING_SIZE = 8
DISPLAY = 768                           # longest side of a picture as shown (to_display)

# Pillow's format names; "MPO" is what Pillow calls the JPEGs many cameras write.
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")
ALLOWED_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PHOTOS = {  # file in samples/photos/ (attribution in SOURCES.md there) -> gallery label
    "astronaut.png": "Photo: astronaut Eileen Collins",
    "chelsea.png": "Photo: Chelsea the cat",
    "coffee.png": "Photo: a cup of coffee",
    "rocket.jpg": "Photo: Falcon 9 rocket launch",
}

Box = Tuple[int, int, int, int]         # (top, left, bottom, right), end-exclusive
ImageSource = Union[bytes, str, os.PathLike, Image.Image]   # what load_image takes


class ImageError(ValueError):
    """An upload the app cannot use. The message is a short sentence for the student:
    what is wrong and what to do about it."""


# ------------------------------------------------------------------------- loading

def load_image(source: ImageSource, name: str = "") -> Image.Image:
    """An image file's bytes, its path (str or pathlib.Path) or a PIL image -> an upright
    8-bit RGB image, or ImageError with a friendly message (FileNotFoundError for a path
    with no file).

    Bytes and files go through every check of the module doc; a PIL image, decoded
    already, is only turned upright and converted. `name` (e.g. the uploaded file's
    name) is used only in messages; a path's file name is used when it is not given.

        load_image(uploaded.getvalue(), uploaded.name)
        load_image("chelsea.png")
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Image file not found: {str(path)!r} (relative "
                                    f"paths start in {Path.cwd()}).")
        source, name = path.read_bytes(), name or path.name
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_image takes an image file's bytes, its path or a PIL "
                        f"image; got {type(source).__name__}.")
    return _decode(bytes(source), _describe(name))


def _decode(data: bytes, file: str) -> Image.Image:
    """An image file's bytes -> an upright 8-bit RGB image, or ImageError (module doc)."""
    _check_file_size(data, file)
    with warnings.catch_warnings():
        # Pillow only warns between its own limit and twice that; make it an error too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                _check_header(image, file)
                image.load()                                # decode now, inside the try
                return _to_rgb(ImageOps.exif_transpose(image))
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(_too_many_pixels(file)) from None
        except UnidentifiedImageError:
            raise ImageError(f"{file} is not an image Pillow can read ({ALLOWED_NAMES}). "
                             "Try another file.") from None
        except Exception as error:
            # Pillow's decoders report broken data with many exception types (OSError,
            # SyntaxError, EOFError, struct.error, ...): to a student they mean the same.
            raise ImageError(f"{file} could not be decoded: it may be damaged or cut "
                             "short. Try saving or downloading it again.") from error


def _describe(name: str) -> str:
    """How messages refer to the upload: its name, shortened, or 'This file'."""
    if not name:
        return "This file"
    return f'"{name}"' if len(name) <= 40 else f'"{name[:37]}..."'


def _check_file_size(data: bytes, file: str) -> None:
    """Refuse empty uploads and uploads over MAX_UPLOAD_BYTES."""
    if len(data) == 0:
        raise ImageError(f"{file} is empty (0 bytes). Choose an image file "
                         f"({ALLOWED_NAMES}).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"{file} is {len(data) / 2**20:.1f} MB, over the "
                         f"{MAX_UPLOAD_BYTES // 2**20} MB limit. Try a smaller image.")


def _check_header(image: Image.Image, file: str) -> None:
    """Refuse, from the header alone, formats we do not accept and too many pixels."""
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(f"{file} is a {image.format} image, which the app does not "
                         f"accept. Use {ALLOWED_NAMES}.")
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(_too_many_pixels(file))


def _too_many_pixels(file: str) -> str:
    """The message for an image over MAX_PIXELS."""
    return (f"{file} has more than {MAX_PIXELS // 10**6} megapixels. "
            "Shrink it and try again.")


# ---------------------------------------------------------------------- converting

def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> "RGB": deep modes scaled to 8 bits, transparency over white."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8_bit_grey(image)
    if image.has_transparency_data:      # RGBA, LA, PA, or a palette/tRNS transparent colour
        image = _over_white(image)
    return image.convert("RGB")


def _to_8_bit_grey(image: Image.Image) -> Image.Image:
    """16-bit ("I;16*"), 32-bit integer ("I") or float ("F") greyscale -> "L".

    16-bit values are scaled from their full range 0..65535, so mid-grey stays mid-grey
    (Pillow's own convert would clip everything above 255 to white). "I" and "F" have no
    fixed range, so they are stretched from their minimum to their maximum.
    """
    pixels = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        low, high = 0, 65535
    else:
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = pixels.min(), pixels.max()
    scaled = (pixels - low) / max(high - low, 1e-12) * 255       # a flat image -> black
    return Image.fromarray(np.round(scaled).astype(np.uint8))   # "L"


def _over_white(image: Image.Image) -> Image.Image:
    """Composite an image with transparency over a white background."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba)


# --------------------------------------------------------------- the working image

def to_working_size(image: Image.Image, size: int = MAX_WORKING_SIZE) -> Image.Image:
    """Resize so the longer side is `size` pixels, keeping the aspect ratio.

    `size` is clamped to MIN_WORKING_SIZE..MAX_WORKING_SIZE. Shrinking uses Lanczos
    (antialiased: fine detail is averaged away instead of aliasing into false patterns).
    Enlarging uses nearest neighbour, which invents no new colours: every working pixel
    is a copy of an original one, so the model sees exactly the uploaded pixels.
    """
    size = min(max(size, MIN_WORKING_SIZE), MAX_WORKING_SIZE)
    scale = size / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale < 1:
        return image.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image.resize(new_size, Image.Resampling.NEAREST)


def to_tensor(image: Image.Image) -> Tensor:
    """RGB image -> (1, 3, H, W) float32 tensor with values in [0, 1]."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255   # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).contiguous()


# ------------------------------------------------------------------------- display
#
# A working image of H x W pixels is shown over a picture of Hd x Wd display pixels of
# the same aspect (the upload at its own resolution, or the working image enlarged).
# Display row y shows working row floor(y * H / Hd), the row a click there maps back to
# (display_to_image), so working row r covers display rows display_start(r, H, Hd) ..
# display_start(r + 1, H, Hd) - 1, and the same for columns: whole squares at a whole
# ratio, blocks one display pixel apart in size at any other.

def to_display(picture: Union[Image.Image, np.ndarray], longest: int = DISPLAY
               ) -> Image.Image:
    """The picture as shown: RGB, its longer side `longest` pixels, the aspect kept (and
    rounded as `to_working_size` rounds it); the picture itself when already that size.

    picture: a PIL image (the upload or gallery photo at its own resolution) or an
    (H, W, 3) uint8 array (the working image). Enlarging copies pixels in blocks, by the
    display mapping above, so the blocks are the working pixels a click selects; reducing
    uses Lanczos, as `to_working_size` does."""
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(np.asarray(picture, dtype=np.uint8))
    picture = picture if picture.mode == "RGB" else picture.convert("RGB")
    scale = longest / max(picture.size)
    width, height = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))
    if (width, height) == picture.size:
        return picture
    if scale < 1:
        return picture.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    rows = display_index(picture.height, height)                     # (height,)
    cols = display_index(picture.width, width)                       # (width,)
    pixels = np.asarray(picture).take(rows, 0).take(cols, 1)         # (height, width, 3)
    return Image.fromarray(pixels)


def display_index(count: int, shown: int) -> np.ndarray:
    """(shown,) int: the working row (of `count`) each of `shown` display rows shows;
    the same for columns."""
    return np.arange(shown) * count // shown


def display_start(index: int, count: int, shown: int) -> int:
    """The first of `shown` display rows that shows working row `index` of `count`
    (`shown` for index == count: the end of the last row); the same for columns."""
    return -(-index * shown // count)                                # ceil(index*shown/count)


def display_rectangle(box: Box, image_size: Tuple[int, int], shown: Tuple[int, int]
                      ) -> Optional[Box]:
    """`box` (working-image pixels of an image of image_size = (H, W)) -> the display
    pixels (top, left, bottom, right), end-exclusive, that show it on a picture of
    shown = (Hd, Wd); clipped to the picture, None when nothing of it is on it."""
    (H, W), (Hd, Wd) = image_size, shown
    top, left, bottom, right = (min(max(v, 0), n) for v, n in zip(box, (H, W, H, W)))
    rectangle = (display_start(top, H, Hd), display_start(left, W, Wd),
                 display_start(bottom, H, Hd), display_start(right, W, Wd))
    return rectangle if rectangle[0] < rectangle[2] and rectangle[1] < rectangle[3] else None


def check_aspect(image_size: Tuple[int, int], shown: Tuple[int, int]) -> None:
    """ValueError unless a picture of shown = (Hd, Wd) pixels has the aspect of a
    working image of image_size = (H, W), up to the rounding of a working pixel and a
    display pixel on the shorter side (to_working_size and to_display round it)."""
    (H, W), (Hd, Wd) = image_size, shown
    long, short, long_shown, short_shown = (W, H, Wd, Hd) if W >= H else (H, W, Hd, Wd)
    if abs(short_shown * long / long_shown - short) > 1 + long / long_shown:
        raise ValueError(f"the picture is {Wd}x{Hd} pixels (width x height), which is not "
                         f"the shape of the {W}x{H} working image; draw on the picture "
                         f"the working image was made from (images.to_display of it).")


def enlarge(image: Image.Image, scale: int) -> Image.Image:
    """Nearest-neighbour upscale by a whole factor, so each pixel shows as a square."""
    if scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    return image.resize((image.width * scale, image.height * scale),
                        Image.Resampling.NEAREST)


def draw_box(image: Image.Image, box: Box, image_size: Tuple[int, int], colour="red",
             width: int = 2) -> Image.Image:
    """A copy of a displayed picture with `box` (pixels of the working image of
    image_size = (H, W)) outlined, on the display pixels that show it.

    The box may reach past the image (a window at the border): it is clipped, and the
    outline, drawn inside the box, stays visible along the image edge.
    """
    outlined = image.copy()
    rectangle = display_rectangle(box, image_size, (image.height, image.width))
    if rectangle is not None:                   # nothing to draw if entirely outside
        top, left, bottom, right = rectangle
        ImageDraw.Draw(outlined).rectangle((left, top, right - 1, bottom - 1),
                                           outline=colour, width=width)
    return outlined


def display_to_image(x: float, y: float, display_width: float, display_height: float,
                     image_width: int, image_height: int) -> Tuple[int, int]:
    """A click at (x, y) on an image shown at display_width x display_height (the
    browser may have resized it) -> the (row, col) of the working-image pixel under it,
    clipped to the image. A click on any display pixel that `to_display` and
    `display_rectangle` give to a working pixel maps back to that pixel."""
    if min(display_width, display_height, image_width, image_height) <= 0:
        raise ValueError("display and image sizes must be positive")
    row = math.floor(y * image_height / display_height)
    col = math.floor(x * image_width / display_width)
    return min(max(row, 0), image_height - 1), min(max(col, 0), image_width - 1)


# ------------------------------------------------------------------------- gallery

def gallery() -> Dict[str, Callable[[], Image.Image]]:
    """Sample images: label -> a function that loads it (nothing is decoded until
    called). The four photos first, then the scenes drawn by code (`scenes`, labelled
    like "Scene: red disc on a sky"), then the 100 CIFAR-10 validation images, labelled
    like "CIFAR-10 #3: airplane"."""
    items = {label: partial(_load_photo, file) for file, label in PHOTOS.items()}
    items.update({label: partial(scene_image, label) for label in scenes()})
    sample = _cifar10_sample()
    for index, label in enumerate(sample.labels.tolist()):
        items[f"CIFAR-10 #{index}: {sample.classes[label]}"] = partial(_cifar10_image, index)
    return items


def _load_photo(file: str) -> Image.Image:
    """A gallery photo, through the same checks as an upload."""
    return load_image(SAMPLES / "photos" / file)


@lru_cache(maxsize=1)
def _cifar10_sample() -> Cifar10:
    """The bundled CIFAR-10 sample (300 KB), read once."""
    return load_sample(SAMPLE_PATH)


def _cifar10_image(index: int) -> Image.Image:
    """One 32x32 CIFAR-10 sample image as RGB."""
    pixels = _cifar10_sample().images[index].numpy().transpose(1, 2, 0)   # (H, W, 3)
    return Image.fromarray(pixels)                                        # "RGB"
