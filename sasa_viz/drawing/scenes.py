"""Simple pictures drawn by code, each with a mask of its object, for watching heads seek
objects and edges (`inspection.objects`):

    load = scenes()["Scene: red disc on a sky"]     # nothing is drawn until called
    s = load()                                      # a Scene
    s.image, s.mask                                 # 128x128 RGB; (128, 128) bool
    object_seeking(layer, s.mask, s.object_name)    # "Head 2 at pixel (5, 0), ..."

Every scene is the same on every call (the texture's noise has a fixed seed). They are
drawn at SIZE = 128 pixels, without antialiasing, so each pixel is either the object's
colour or not and the mask is exactly the object's pixels. Straight edges lie on
multiples of 16 pixels, so at the 32-pixel working size (a quarter) they fall between
working pixels and between the feature pixels of the stride-4 maps, and every scene
leaves 32-pixel blocks free of the object, so even the coarsest map (stride 8 at 32
pixels) has feature pixels wholly outside it.
"""
from functools import partial
from typing import Callable, Dict, NamedTuple, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128                      # the side of every scene, in pixels
SKY, GROUND, RED = (120, 180, 240), (70, 140, 60), (220, 30, 30)
BLACK, WHITE, YELLOW = (20, 20, 20), (240, 240, 240), (250, 220, 30)

Box = Tuple[int, int, int, int]             # PIL's (left, top, right, bottom), inclusive


class Scene(NamedTuple):
    """A drawn picture and where its object is."""
    label: str                  # as the gallery lists it, e.g. "Scene: red disc on a sky"
    image: Image.Image          # RGB, SIZE x SIZE
    mask: np.ndarray            # (SIZE, SIZE) bool, True on the object's pixels
    description: str            # one sentence: what is drawn and which part is the object
    object_name: str            # the object in a sentence, e.g. "the disc"


def _with_object(background: Image.Image, shape: str, boxes: Sequence[Box],
                 colour: Tuple[int, int, int]) -> Tuple[Image.Image, np.ndarray]:
    """A copy of `background` with the object drawn on it, an ImageDraw `shape`
    ("ellipse", "rectangle") filling each box in `colour`, and its (SIZE, SIZE) mask."""
    image, mask = background.copy(), Image.new("L", background.size, 0)
    for box in boxes:
        getattr(ImageDraw.Draw(image), shape)(box, fill=colour)
        getattr(ImageDraw.Draw(mask), shape)(box, fill=255)
    return image, np.asarray(mask) > 0


def _plain(colour: Tuple[int, int, int]) -> Image.Image:
    """A SIZE x SIZE picture of one colour."""
    return Image.new("RGB", (SIZE, SIZE), colour)


def _disc_on_sky() -> Tuple[Image.Image, np.ndarray]:
    """A red disc of radius 20, centred at row 48, in a sky over ground from row 96."""
    background = _plain(SKY)
    ImageDraw.Draw(background).rectangle((0, 96, SIZE - 1, SIZE - 1), fill=GROUND)
    return _with_object(background, "ellipse", [(44, 28, 83, 67)], RED)


def _vertical_bars() -> Tuple[Image.Image, np.ndarray]:
    """Two black bars 16 pixels wide, at columns 16..31 and 80..95, on white."""
    bars = [(left, 0, left + 15, SIZE - 1) for left in (16, 80)]
    return _with_object(_plain(WHITE), "rectangle", bars, BLACK)


def _checkerboard() -> Tuple[Image.Image, np.ndarray]:
    """Black and white squares of 32 pixels, black at the top left corner."""
    side = 32
    squares = [(x, y, x + side - 1, y + side - 1) for y in range(0, SIZE, side)
               for x in range(0, SIZE, side) if (x + y) // side % 2 == 0]
    return _with_object(_plain(WHITE), "rectangle", squares, BLACK)


def _square_on_noise() -> Tuple[Image.Image, np.ndarray]:
    """A yellow 32-pixel square at rows and columns 48..79 on bluish noise, in blocks of
    4 pixels (one pixel each at the 32-pixel working size), seed 0."""
    rng = np.random.default_rng(0)
    noise = rng.integers(40, 160, (SIZE // 4, SIZE // 4, 3), dtype=np.uint8)   # (32, 32, 3)
    noise[..., 2] = np.maximum(noise[..., 2], 120)                             # blue enough
    texture = Image.fromarray(noise).resize((SIZE, SIZE), Image.Resampling.NEAREST)
    return _with_object(texture, "rectangle", [(48, 48, 79, 79)], YELLOW)


# label -> (how it is drawn, its description, its object in a sentence), gallery order
_SCENES: Dict[str, Tuple[Callable[[], Tuple[Image.Image, np.ndarray]], str, str]] = {
    "Scene: red disc on a sky": (
        _disc_on_sky, "A red disc in a blue sky over green ground; the object is the disc.",
        "the disc"),
    "Scene: vertical bars": (
        _vertical_bars, "Two black vertical bars on white; the object is the bars.",
        "the bars"),
    "Scene: checkerboard": (
        _checkerboard, "A checkerboard of 4 x 4 black and white squares; the object is "
        "the black squares.", "the black squares"),
    "Scene: yellow square on noise": (
        _square_on_noise, "A yellow square on a texture of bluish noise; the object is "
        "the square.", "the square"),
}


def scene(label: str) -> Scene:
    """The scene `label` (a key of `scenes()`), drawn anew."""
    draw, description, object_name = _SCENES[label]
    image, mask = draw()
    return Scene(label, image, mask, description, object_name)


def scene_image(label: str) -> Image.Image:
    """The picture of the scene `label`, as the gallery shows it."""
    return scene(label).image


def scenes() -> Dict[str, Callable[[], Scene]]:
    """label -> a function that draws that Scene (nothing is drawn until called), in the
    gallery's order."""
    return {label: partial(scene, label) for label in _SCENES}
