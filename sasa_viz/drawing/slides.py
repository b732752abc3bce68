"""Slides: one idea on a 16:9 page in large type, for a projector and for a PDF.

A `Slide` is a title, a few sentences (`points`) and what is drawn beside them
(`shown`): pictures (`Picture`), window grids (`grids.Panel`, drawn as the explorer's
figures draw them, in larger type) and blocks of text (`Text`), side by side. The same
Slide is what the Lesson page shows, its PNG download and a page of the lesson's PDF, so
a screen and its export never differ.

    png = slide_png(Slide("Content: q·k", ("The query meets each key.",), (panel,)))
    pdf = slides_pdf([slide_1, slide_2])      # one page per slide
"""
import io
import textwrap
from dataclasses import dataclass, replace
from typing import Callable, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image

from sasa_viz.drawing import figures
from sasa_viz.drawing.grids import Panel

WIDTH, HEIGHT = 16.0, 9.0       # inches: 16:9
DPI = 120                       # a PNG of 1920 x 1080
TITLE_POINTS = 30
POINTS = 19                     # the sentences, unless they need smaller type to fit
SMALLEST_POINTS = 14
GRID_POINTS = 17                # a grid's title; its numbers at most this, ticks smaller
NOTE_POINTS = 12                # the footer
MIDDLE = 0.58                   # grids and pictures are centred this far up their area
CAPTION = 0.06                  # of the height, under a picture
PICTURE_SHARE = 1.5             # a picture is this much wider than a grid beside it
CELL_POINTS = 30                # a grid cell narrower than this has no numbers written
TEXT_COLUMN = 0.36              # share of the width the sentences take


@dataclass(frozen=True)
class Picture:
    """An image on a slide, with a caption under it."""
    image: Image.Image
    caption: str = ""


@dataclass(frozen=True)
class Text:
    """A block of text on a slide (an equation, a small table), in a fixed-width font
    when `mono`."""
    text: str
    mono: bool = True
    points: float = POINTS - 2


Shown = Union[Picture, Panel, Text]


@dataclass(frozen=True)
class Slide:
    """One screen of a lesson."""
    title: str
    points: Tuple[str, ...]             # sentences, each computed from what is shown
    shown: Tuple[Shown, ...] = ()       # drawn side by side, right of the sentences
    footer: str = ""                    # where the numbers come from (model, layer, pixel)


def slide_figure(slide: Slide) -> Figure:
    """The slide as a 16:9 matplotlib Figure (WIDTH x HEIGHT inches)."""
    fig = Figure(figsize=(WIDTH, HEIGHT))
    fig.text(0.03, 0.95, slide.title, fontsize=TITLE_POINTS, weight="bold", va="top")
    left = 0.03 if slide.shown else 0.06
    column = TEXT_COLUMN if slide.shown else 0.88
    _fit_points(fig, slide.points, (left, 0.82, column, 0.82 - 0.07))
    if slide.footer:
        fig.text(0.03, 0.025, slide.footer, fontsize=NOTE_POINTS, color="#555555")
    if slide.shown:
        _draw_shown(fig, slide.shown, (left + column + 0.02, 0.08, 0.97, 0.84))
    return fig


def _fit_points(fig: Figure, points: Sequence[str], box: Tuple[float, float, float, float]):
    """The sentences, wrapped to the column `box` (left, top, width, height in figure
    fractions) in the largest type from POINTS down to SMALLEST_POINTS that fits it."""
    def paragraphs(size: int) -> str:
        wrap = int(box[2] * WIDTH * 72 / (0.55 * size))          # characters a line
        return "\n\n".join(textwrap.fill(point, wrap) for point in points)
    _fitted(fig, paragraphs, box, range(POINTS, SMALLEST_POINTS - 1, -1), linespacing=1.3)


def _fitted(fig: Figure, text_at: Callable[[int], str], box: Tuple[float, float, float, float],
            sizes: Sequence[int], **options):
    """Text (`text_at(size)`) at the top left of `box` (left, top, width, height in figure
    fractions), in the first of `sizes` (points) at which it fits the box, else the last."""
    left, top, width, height = box
    renderer = FigureCanvasAgg(fig).get_renderer()
    for size in sizes:
        text = fig.text(left, top, text_at(size), fontsize=size, va="top", **options)
        extent = text.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        if (extent.y0 >= top - height and extent.x1 <= left + width) or size == sizes[-1]:
            return
        text.remove()


def _draw_shown(fig: Figure, shown: Sequence[Shown], box: Tuple[float, float, float, float]):
    """Draw the items side by side in `box` (left, bottom, right, top, in figure
    fractions), each as wide as its share: a panel one share a grid, a picture
    PICTURE_SHARE, a text one."""
    left, bottom, right, top = box
    shares = [len(item.grids) if isinstance(item, Panel) else
              PICTURE_SHARE if isinstance(item, Picture) else 1 for item in shown]
    unit = (right - left) / sum(shares)
    for item, share in zip(shown, shares):
        width = unit * share
        area = (left, bottom, width, top - bottom)
        if isinstance(item, Panel):
            _draw_panel(fig, item, area)
        elif isinstance(item, Picture):
            _draw_picture(fig, item, area)
        else:
            _draw_text(fig, item, area)
        left += width


def _draw_panel(fig: Figure, panel: Panel, area: Tuple[float, float, float, float]):
    """The panel's grids in a row over the area's upper part, their colour bar under;
    without their numbers where cells are too small to write them at SMALLEST points."""
    left, bottom, width, height = area
    n = len(panel.grids)
    side = min(width / n * 0.86, height * HEIGHT / WIDTH * 0.70)   # square in inches
    side_in = side * WIDTH
    middle = bottom + height * MIDDLE
    K = max(panel.grids[0].values.shape)
    if panel.numbers and side_in * 72 / K < CELL_POINTS:
        panel = replace(panel, numbers=False)
    for k, grid in enumerate(panel.grids):
        centre = left + width * (k + 0.5) / n
        ax = fig.add_axes((centre - side / 2, middle - side * WIDTH / HEIGHT / 2, side,
                           side * WIDTH / HEIGHT))
        image = figures.draw_grid(ax, panel, grid, side_in, GRID_POINTS)
    bar = fig.add_axes((left + width * 0.15, bottom + height * 0.08, width * 0.7, 0.025))
    figures.panel_bar(fig, image, panel, GRID_POINTS - 1, cax=bar, orientation="horizontal")


def _draw_picture(fig: Figure, picture: Picture, area: Tuple[float, float, float, float]):
    """The picture as large as the area allows at its aspect, its middle level with the
    grids' (MIDDLE), its caption under it."""
    left, bottom, width, height = area
    caption = CAPTION if picture.caption else 0.0
    w, h = picture.image.size
    shown_w = min(width * 0.96, (height - caption) * HEIGHT / WIDTH * w / h)  # fractions
    shown_h = shown_w * WIDTH / HEIGHT * h / w
    image_bottom = min(max(bottom + height * MIDDLE - shown_h / 2, bottom + caption),
                       bottom + height - shown_h)
    ax = fig.add_axes((left + (width - shown_w) / 2, image_bottom, shown_w, shown_h))
    ax.imshow(np.asarray(picture.image.convert("RGB")), interpolation="lanczos")
    ax.set_axis_off()
    if picture.caption:
        fig.text(left + width / 2, image_bottom - 0.01, textwrap.fill(picture.caption, 48),
                 ha="center", va="top", fontsize=POINTS - 4)


def _draw_text(fig: Figure, text: Text, area: Tuple[float, float, float, float]):
    """The text from the top of the area, in its size or smaller until it fits."""
    left, bottom, width, height = area
    _fitted(fig, lambda size: text.text, (left, bottom + height * 0.9, width, height * 0.9),
            range(round(text.points), SMALLEST_POINTS - 5, -1),
            family="monospace" if text.mono else None, linespacing=1.35)


def slide_png(slide: Slide, dpi: int = DPI) -> bytes:
    """The slide as a PNG, 16:9 (1920 x 1080 at the default dpi)."""
    buffer = io.BytesIO()
    slide_figure(slide).savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def slides_pdf(slides: Sequence[Slide]) -> bytes:
    """A PDF of the slides, one 16:9 page each, in order."""
    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        for slide in slides:
            pdf.savefig(slide_figure(slide), facecolor="white")
    return buffer.getvalue()
