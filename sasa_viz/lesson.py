"""The paper's argument as a lesson: ten steps, each one idea on one 16:9 slide, on the
reader's own image, model, layer, head and pixel, every sentence computed from the
numbers on the slide.

    lesson = Lesson.of("sasa-cifar10", model, image, "stages.1.1.spatial", 7, (15, 9),
                       twin=conv_model, stem_model=full_attention_model)
    frames = step_frames(lesson, 4)       # step 5 (softmax and sum) in its builds
    pdf = lesson_pdf(lesson)              # every step's last frame, one page each

A step may build up over several frames where one picture would hide the order of
operations (the query meeting each key row by row, the logits becoming weights, the
weights summing the values); its last frame is the whole slide, the one a PDF page and
a PNG export show. `STEPS` lists them with the explorer panel that shows the same thing.
"""
import io
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch.nn as nn
from PIL import Image
from torch import Tensor

from sasa_viz.attention.stem import describe_mixture
from sasa_viz.choices import layer_label
from sasa_viz.drawing import export, figures, grids, images, overlay
from sasa_viz.drawing.grids import LOGITS_CMAP, WEIGHTS_CMAP, Grid, make_panel
from sasa_viz.drawing.reach import reach_overlay, reach_panels
from sasa_viz.drawing.scenes import Scene
from sasa_viz.drawing.slides import Picture, Slide, Text, slides_pdf
from sasa_viz.inspection import cost, experiments, explain
from sasa_viz.inspection.network import human_name
from sasa_viz.inspection.objects import ObjectSeeking, object_seeking
from sasa_viz.inspection.reach import describe, theoretical_sides
from sasa_viz.inspection.reach import reach as reaching
from sasa_viz.inspection.trace import LayerTrace, PixelTrace, Trace, trace
from sasa_viz.models.catalogue import IMAGENET_SIZE, config_for
from sasa_viz.models.data import IMAGE_SIZE
from sasa_viz.numbers import NATS, WEIGHT, significant

PAPER_STEM_MODEL = "sasa-full-resnet50"      # the paper's stem, as sasa_viz builds it
COST_CHANNELS = 128                          # the paper's example: d_in = d_out = 128


class Lesson(NamedTuple):
    """What every step is computed from: an attention model on one image, the chosen
    layer, head and image pixel, and the models the convolution and stem steps compare."""
    name: str                       # the model's catalogue name, e.g. "sasa-cifar10"
    model: nn.Module
    image: Tensor                   # (1, 3, H, W) in [0, 1]: the working image
    traced: Trace                   # the model on it
    backdrop: Image.Image           # the picture drawn under the model's grid
    layer: str                      # an attention layer of `traced`
    head: int
    pixel: Tuple[int, int]          # image pixel (row, col)
    twin: Optional[nn.Module]       # the conv twin, or None
    stem_model: Optional[nn.Module]  # a full-attention model, for its stem, or None
    stem: Optional[LayerTrace]      # its stem on the same image
    scene: Optional[Scene] = None   # when the image is a generated scene: its object

    @classmethod
    def of(cls, name: str, model: nn.Module, image: Tensor, layer: str, head: int,
           pixel: Tuple[int, int], twin: Optional[nn.Module] = None,
           stem_model: Optional[nn.Module] = None, backdrop: Optional[Image.Image] = None,
           traced: Optional[Trace] = None, scene: Optional[Scene] = None) -> "Lesson":
        """A lesson on `image` (1, 3, H, W); traces what it is not given."""
        traced = trace(model, image) if traced is None else traced
        stem = None if stem_model is None else trace(stem_model, image).layers["stem.attention"]
        if backdrop is None:
            backdrop = images.to_display(
                (image[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy())
        return cls(name, model, image, traced, backdrop, layer, head, pixel, twin,
                   stem_model, stem, scene)

    @property
    def found(self) -> LayerTrace:
        return self.traced.layers[self.layer]

    def at(self) -> PixelTrace:
        """The chosen pixel of the chosen layer."""
        return self.found.pixel(*self.found.feature_pixel(*self.pixel))

    def footer(self) -> str:
        layer, px = self.found, self.at()
        return (f"{self.name} · {layer_label(self.layer, layer)} · head "
                f"{self.head} · image pixel {self.pixel}, feature pixel ({px.row}, {px.col})")


@dataclass(frozen=True)
class Step:
    title: str                                        # as the page's step list names it
    frames: Callable[[Lesson], Tuple[Slide, ...]]     # its builds, the whole slide last
    panel: str                                        # the explorer panel that shows it


# --- 1 and 2: a fixed kernel against one built at each pixel -------------------------------

def contrasting_pixel(layer: LayerTrace, head: int, row: int, col: int) -> Tuple[int, int]:
    """The feature pixel whose weights, for `head`, differ most from those at (row, col)
    (L1 distance of the K x K weights; only pixels with a full window when there are
    any): the second pixel the first two steps compare."""
    weights = layer.weights[head]                                    # (K, K, H, W)
    distance = (weights - weights[:, :, row:row + 1, col:col + 1]).abs().sum((0, 1))
    full = layer.valid.all(0).all(0)                                 # (H, W)
    if full.any():
        distance = distance.masked_fill(~full, -1.0)
    i, j = divmod(int(distance.flatten().argmax()), distance.shape[1])
    return i, j


def _two_pixels(lesson: Lesson) -> Tuple[PixelTrace, PixelTrace]:
    layer, first = lesson.found, lesson.at()
    return first, layer.pixel(*contrasting_pixel(layer, lesson.head, first.row, first.col))


def _boxes(lesson: Lesson, pixels: List[PixelTrace], side: int) -> Image.Image:
    """The backdrop with a side x side window (feature pixels) around each pixel, A in
    red, B in yellow."""
    layer, picture = lesson.found, lesson.backdrop
    for px, colour in zip(pixels, ("red", "yellow")):
        half = side // 2
        box = layer.box(px.row - half, px.col - half, px.row + half + 1, px.col + half + 1)
        picture = images.draw_box(picture, box, layer.image_size, colour, 3)
    return picture


def convolution(lesson: Lesson) -> Tuple[Slide, ...]:
    a, b = _two_pixels(lesson)
    channel = lesson.head * lesson.found.q.shape[1]
    conv = explain.twin_conv(lesson.twin, lesson.layer)
    if conv is None:
        return (Slide("1. A convolution: one kernel everywhere", (
            "This layer has no convolutional twin to compare (the attention stem, or a "
            "model without one).",), footer=lesson.footer()),)
    kernel = explain.conv_kernel(conv, channel)                       # (C_in, 3, 3)
    norms = grids.kernel_panel(kernel, "", (1, 1))
    C_out, C_in = conv.weight.shape[:2]
    frames = []
    for shown in ([a], [a, b]):
        names = ["pixel A (red)", "pixel B (yellow)"][:len(shown)]
        panel = replace(norms, grids=tuple(replace(norms.grids[0], title=name)
                                           for name in names))
        points = [f"The conv twin's layer here has one 3x3 kernel per output channel "
                  f"({C_in} x 3 x 3 numbers each, {C_out} channels), learned once.",
                  f"At A, feature pixel ({a.row}, {a.col}), output channel {channel} "
                  f"weighs its 9 neighbours as drawn: the size of each neighbour's "
                  f"{C_in} weights."]
        if len(shown) == 2:
            points.append(f"At B, ({b.row}, {b.col}), it uses the same numbers: whatever the "
                          f"neighbourhood shows, the kernel does not change.")
        frames.append(Slide("1. A convolution: one kernel everywhere", tuple(points),
                            (Picture(_boxes(lesson, shown, 3), "the 3x3 windows"), panel),
                            lesson.footer()))
    return tuple(frames)


def attention_kernel(lesson: Lesson) -> Tuple[Slide, ...]:
    a, b = _two_pixels(lesson)
    layer, head = lesson.found, lesson.head
    vmax = float(max(a.weights[head].max(), b.weights[head].max()))
    frames = []
    for shown in ([a], [a, b]):
        pictures = [Picture(overlay.attention_overlay(lesson.backdrop, layer, px, head,
                                                      vmax=vmax).image, name)
                    for px, name in zip(shown, ("A", "B"))]
        panel = make_panel([Grid(px.weights[head].numpy(), f"pixel {name}",
                                 px.valid.numpy(), px.cell) for px, name in zip(shown, "AB")],
                           WEIGHTS_CMAP, "softmax weight", layer.padding, fmt=WEIGHT,
                           stretch=False)
        points = [f"Head {head} computes a new set of weights at every pixel, from the "
                  f"pixel's query and its neighbours' keys."]
        points += [f"At {name} its largest weight, {WEIGHT(w)}, goes to the neighbour at "
                   f"(dy, dx) = {offset}." for name, (w, offset) in
                   zip("AB", (_largest(px, head) for px in shown))]
        if len(shown) == 2:
            change = float((a.weights[head] - b.weights[head]).abs().sum())
            points.append(f"The two kernels differ by {WEIGHT(change / 2)} of their weight "
                          f"(half the L1 distance; 0: the same, 1: nothing shared).")
        frames.append(Slide("2. Attention: each pixel builds its own kernel", tuple(points),
                            (*pictures, panel), lesson.footer()))
    return tuple(frames)


def _largest(px: PixelTrace, head: int) -> Tuple[float, Tuple[int, int]]:
    """The head's largest weight at px and the (dy, dx) of its neighbour."""
    a, b = divmod(int(px.weights[head].argmax()), px.weights.shape[-1])
    return float(px.weights[head, a, b]), tuple(int(d) for d in px.offsets[:, a, b])


# --- 3 to 5: the logits, the softmax and the sum ------------------------------------------------

def _grid(values: Tensor, title: str, px: PixelTrace, shown: Optional[np.ndarray] = None
          ) -> Grid:
    """A K x K grid of px, NaN (blank) where `shown` (K, K) bool is False."""
    values = values.numpy().astype(float)
    if shown is not None:
        values = np.where(shown, values, np.nan)
    return Grid(values, title, px.valid.numpy(), px.cell)


def content(lesson: Lesson) -> Tuple[Slide, ...]:
    px, head = lesson.at(), lesson.head
    K, d = px.weights.shape[-1], px.q.shape[1]
    logits = px.logits_content[head]
    full = make_panel([_grid(logits, "content q·k", px)], LOGITS_CMAP, "q·k",
                      px.padding, diverging=True)
    inside = px.valid.numpy()
    high = _extreme(px, logits, max)
    low = _extreme(px, logits, min)
    own = float(logits[px.cell])
    frames = []
    for rows in range(1, K + 1):
        shown = np.zeros((K, K), bool)
        shown[:rows] = True
        panel = replace(full, grids=(_grid(logits, "content q·k", px, shown),))
        points = [f"The pixel's query q ({d} numbers) meets the key k of each neighbour, "
                  f"row by row: q·k is large where the neighbour's content answers the "
                  f"query.", f"Rows dy = {int(px.offsets[0, 0, 0])} to "
                  f"{int(px.offsets[0, rows - 1, 0])} done: {int((shown & inside).sum())} of "
                  f"{int(inside.sum())} neighbours."]
        if rows == K:
            points[1] = (f"Largest q·k: {full.fmt.text(high[0])} at (dy, dx) = {high[1]}; "
                         f"smallest {full.fmt.text(low[0])} at {low[1]}; the pixel itself "
                         f"{full.fmt.text(own)}.")
        frames.append(Slide("3. Content: the query meets each key", tuple(points), (panel,),
                            lesson.footer()))
    return tuple(frames)


def _extreme(px: PixelTrace, values: Tensor, pick) -> Tuple[float, Tuple[int, int]]:
    """(value, (dy, dx)) of the largest (pick=max) or smallest inside cell of values."""
    cells = [(float(values[a, b]), (a, b)) for a, b in zip(*np.nonzero(px.valid.numpy()))]
    value, (a, b) = pick(cells)
    return value, tuple(int(d) for d in px.offsets[:, a, b])


def position(lesson: Lesson) -> Tuple[Slide, ...]:
    px, head, layer = lesson.at(), lesson.head, lesson.found
    title = "4. Position: a row part plus a column part"
    if layer.position == "none":
        return (Slide(title, ("This layer has no position term: its logits are q·k "
                              "alone.",), footer=lesson.footer()),)
    row, col = px.logits_row[head], px.logits_col[head]
    parts = [_grid(row, "row part q·r(dy)", px), _grid(col, "column part q·r(dx)", px),
             _grid(row + col, "position q·r", px)]
    full = make_panel(parts, LOGITS_CMAP, "q·r", px.padding, diverging=True)
    fmt = full.fmt
    inside = px.valid
    spread = {name: float(values[inside].std()) for name, values in
              (("position", row + col), ("content", px.logits_content[head]))}
    words = ("relative" if layer.position == "relative" else "absolute")
    points = [f"The query also meets an embedding of each neighbour's {words} position: "
              f"a row part that depends only on dy and a column part only on dx.",
              f"Row part from {fmt.text(float(row[inside].min()))} to "
              f"{fmt.text(float(row[inside].max()))}; column part from "
              f"{fmt.text(float(col[inside].min()))} to {fmt.text(float(col[inside].max()))}.",
              f"Across the window the position logits vary by "
              f"{significant(spread['position'])} (standard deviation), the content logits "
              f"by {significant(spread['content'])}."]
    return tuple(Slide(title, tuple(points[:n + 1]) if n < 2 else tuple(points),
                       (replace(full, grids=full.grids[:n + 1]),), lesson.footer())
                 for n in range(3))


def softmax_and_sum(lesson: Lesson) -> Tuple[Slide, ...]:
    px, head = lesson.at(), lesson.head
    d = px.q.shape[1]
    channel = head * d
    title = "5. Softmax, then the weighted sum"
    logits = make_panel([_grid(px.logits[head], "logit = q·k + q·r", px)], LOGITS_CMAP,
                        "logit", px.padding, diverging=True)
    weights = make_panel([_grid(px.weights[head], "weight", px)], WEIGHTS_CMAP,
                         "softmax weight", px.padding, fmt=WEIGHT, stretch=False)
    top_logit, (dy, dx) = _extreme(px, px.logits[head], max)
    a, b = divmod(int(px.logits[head].masked_fill(~px.valid, -math.inf).argmax()),
                  px.weights.shape[-1])
    n = int(px.valid.sum())
    total = float(px.weights[head].sum())
    equation = explain.output_terms(px, channel)
    first = (f"Each neighbour's logit is its content plus its position part; the largest, "
             f"{significant(top_logit)}, at (dy, dx) = ({dy}, {dx}).")
    second = (f"softmax: exp(logit) divided by the sum over the {n} neighbours inside the "
              f"map. That neighbour gets {WEIGHT(float(px.weights[head, a, b]))}; the "
              f"weights add up to {total:.3f}.")
    third = (f"Output channel {channel} (head {head}) is the weighted sum of the neighbours'"
             f" values: {explain.output_sentence(equation)}, the number the model computed.")
    text = Text(explain.format_equation(equation, max_terms=4).replace(" + ", "\n  + "))
    return (Slide(title, (first,), (logits,), lesson.footer()),
            Slide(title, (first, second), (logits, weights), lesson.footer()),
            Slide(title, (first, second, third), (weights, text), lesson.footer()))


# --- 6: heads ----------------------------------------------------------------------------------

def heads(lesson: Lesson) -> Tuple[Slide, ...]:
    rows = []
    entropies = []
    for name, layer in lesson.traced.layers.items():
        px = layer.pixel(*layer.feature_pixel(*lesson.pixel))
        entropy = explain.entropy_of(px.weights, px.valid, px.padding)      # (heads,)
        ceiling = math.log(int(px.valid.sum()))
        rows.append((name, human_name(name), px))
        entropies += [(float(e) / ceiling, float(e), name, h) for h, e in enumerate(entropy)]
    sharpest, blurriest = min(entropies), max(entropies)
    seeking = [] if lesson.scene is None else object_view(lesson.traced, lesson.scene)
    figure = figures.layers_heads_figure(rows, (lesson.layer, lesson.head))
    points = ["Every layer has several heads, each with its own query, key and value "
              "channels: each looks for something else at the same pixel.",
              f"Here the most selective is head {sharpest[3]} of {human_name(sharpest[2])} "
              f"(entropy {NATS(sharpest[1])} nats, {sharpest[0]:.0%} of an even spread), the "
              f"most even head {blurriest[3]} of {human_name(blurriest[2])} "
              f"({NATS(blurriest[1])} nats, {blurriest[0]:.0%}).",
              "Rows: layers, input to output; the chosen head is outlined in red."]
    if seeking:
        layer, found = seeking
        points.append(f"On this scene, in {human_name(layer)}: {found.sentence}")
    return (Slide("6. Heads look for different things", tuple(points),
                  (Picture(_picture(figure)),), lesson.footer()),)


def _picture(figure) -> Image.Image:
    """A matplotlib figure as an image to put on a slide."""
    return Image.open(io.BytesIO(export.figure_png(figure, dpi=110)))


def object_view(traced: Trace, scene: Scene) -> Optional[Tuple[str, ObjectSeeking]]:
    """The layer, head and pixel outside the scene's object whose weight on it most
    exceeds the object's share of the window, over every layer that has pixels on and
    off the object (`objects.object_seeking`); None when none has."""
    found = []
    for name, layer in traced.layers.items():
        mask = scene_mask(scene, layer.image_size)
        try:
            found.append((name, object_seeking(layer, mask, scene.object_name)))
        except ValueError:                      # no pixel on the object, or none off it
            continue
    return max(found, key=lambda f: f[1].weight - f[1].window_share, default=None)


def scene_mask(scene: Scene, size: Tuple[int, int]) -> np.ndarray:
    """The scene's object mask for a working image of `size` (H, W): as drawn where its
    side is a whole multiple of the image's (`objects` averages it over each pixel),
    else resized to (H, W), nearest pixel."""
    H, W = size
    h, w = scene.mask.shape
    if h % H == 0 and w % W == 0 and h // H == w // W:
        return scene.mask
    mask = Image.fromarray(scene.mask.astype(np.uint8) * 255)
    return np.asarray(mask.resize((W, H), Image.Resampling.NEAREST)) > 127


# --- 7: why position matters ---------------------------------------------------------------

def why_position(lesson: Lesson) -> Tuple[Slide, ...]:
    layer, px = lesson.found, lesson.at()
    title = "7. Why relative position: shift and shuffle"
    rolled = experiments.roll_layer_input(lesson.model, layer, layer.stride, 0)
    shown = [(rolled.layer, "this layer")] + ([(rolled.twin, "its absolute twin")]
                                              if rolled.twin is not None else [])
    scale = (0.0, max(float(r.difference.max()) for r, _ in shown) or 1.0)
    maps = figures.maps_figure([(r.difference, f"{label}: weight change", "magma", scale)
                                for r, label in shown], hatched=rolled.layer.reach)
    picture = Picture(_picture(maps), "hatched: windows that meet the border or "
                                              "the seam")
    shift = [_shift_sentence(rolled)]
    shuffled = experiments.permute_neighbourhood(px)
    shuffle = ("Shuffle the neighbours around the pixel. " +
               experiments.permutation_sentence(shuffled))
    return (Slide(title, tuple(shift), (picture,), lesson.footer()),
            Slide(title, (*shift, shuffle), (picture,), lesson.footer()))


def _shift_sentence(rolled: experiments.LayerShift) -> str:
    """How many of the pixels whose window is clear of the border and the seam keep
    their weights when the layer's input rolls one feature pixel down, and how many of
    them its absolute twin keeps."""
    clear = ~rolled.layer.reach
    kept, count = rolled.layer.count(clear)
    said = (f"Roll the layer's input one pixel down: at {kept} of the {count} pixels whose "
            f"window is clear of the border and the seam its weights roll along unchanged "
            f"({experiments.WITHIN})")
    if rolled.twin is None:
        return said + "."
    return said + f"; its absolute twin's at {rolled.twin.count(clear)[0]} of them."


# --- 8: the stem ---------------------------------------------------------------------------

def stem(lesson: Lesson) -> Tuple[Slide, ...]:
    title = "8. The spatially-aware stem"
    if lesson.stem is None:
        return (Slide(title, ("No full-attention model to show: its stem is what this "
                              "step draws.",), footer=lesson.footer()),)
    p = lesson.stem.value_mixture.numpy()                              # (K, K, m)
    paper = config_for(PAPER_STEM_MODEL)
    K = lesson.stem.kernel_size
    points = [f"At the input one pixel says little, so the full-attention model's first "
              f"layer mixes {p.shape[-1]} value matrices by where a pixel sits in its "
              f"{K}x{K} block: p(a, b, m)."]
    points += [use.sentence for use in describe_mixture(p)]
    footer = (f"the full-attention model's stem, a CIFAR-scale adaptation: {K}x{K} blocks at "
              f"{IMAGE_SIZE} px (the paper's: {paper.stem_kernel_size}x"
              f"{paper.stem_kernel_size} at {IMAGENET_SIZE} px); the Stem page compares them")
    return (Slide(title, tuple(points), (grids.mixture_panel(p),), footer),)


# --- 9: cost -------------------------------------------------------------------------------

def costs(lesson: Lesson) -> Tuple[Slide, ...]:
    title = "9. Cost: a wide window for the price of a 3x3 convolution"
    d = COST_CHANNELS
    k = cost.crossover_k(d, d)
    points = (f"A 3x3 convolution with {d} channels in and out costs "
              f"{cost.conv_madds(3, d, d):,} multiply-adds per pixel; the widest attention "
              f"window that costs no more is {k}x{k} ({cost.attention_madds(k, d, d):,}; "
              f"{k + 2}x{k + 2}: {cost.attention_madds(k + 2, d, d):,}).",
              "The window multiplies only d_out, never d_in x d_out: attention can afford "
              "to look far.")
    plot = Picture(_picture(figures.cost_figure(d, d)))
    table = Text(table1_text(), points=19)
    footer = "counted by sasa_viz.inspection.cost"
    return (Slide(title, points, (plot,), footer),
            Slide(title, points + ("Table 1 of the paper, counted on the models sasa_viz "
                                   "builds (224x224 input):",), (table,), footer))


@lru_cache(maxsize=1)
def table1_text() -> str:
    """`cost.table1()` as a fixed-width table: parameters and FLOPS against the paper's."""
    rows = cost.table1()
    lines = [f"{'model':<19}{'params M':>9}{'paper':>7}{'GFLOPS':>8}{'paper':>7}"]
    lines += [f"{r['model']:<19}{r['params (M)']:>9.1f}{r['params, paper (M)']:>7.1f}"
              f"{r['FLOPS (B)']:>8.2f}{r['FLOPS, paper (B)']:>7.2f}" for r in rows]
    return "\n".join(lines)


# --- 10: reach -----------------------------------------------------------------------------

def reach(lesson: Lesson) -> Tuple[Slide, ...]:
    title = "10. How far a pixel reaches through the network"
    y, x = lesson.pixel
    mine = reaching(lesson.model, lesson.image, lesson.layer, y, x, lesson.traced)
    sides = ", ".join(str(side) for _, side in theoretical_sides(lesson.model))
    growth = (f"Stacked windows see further at every layer: the windows of this model's "
              f"layers span {sides} image pixels in theory.")
    first = (f"Attention rollout composes the recorded weights back through the layers; the "
             f"gradient of the pixel's output says exactly which input pixels move it. "
             f"{describe(mine)}")
    pictures = (Picture(reach_overlay(lesson.backdrop, mine, "rollout"), "attention rollout"),
                Picture(reach_overlay(lesson.backdrop, mine), "gradient (effective "
                                                              "receptive field)"))
    frames = [Slide(title, (growth, first), pictures, lesson.footer())]
    if explain.twin_conv(lesson.twin, lesson.layer) is not None:
        theirs = reaching(lesson.twin, lesson.image, lesson.layer, y, x)
        frames.append(Slide(title, (growth, first, f"The conv twin, at the same place. "
                                                   f"{describe(theirs)}"),
                            (Picture(reach_panels(lesson.backdrop, mine, theirs),
                                     "yellow: the theoretical window; red: the pixel"),),
                            lesson.footer()))
    return tuple(frames)


STEPS: List[Step] = [
    Step("A convolution: one kernel everywhere", convolution, "Convolution vs attention"),
    Step("Attention: each pixel builds its own kernel", attention_kernel, "Weights"),
    Step("Content: q·k", content, "Logits"),
    Step("Position: q·r, a row part and a column part", position, "Logits"),
    Step("Softmax and the weighted sum", softmax_and_sum, "Output equation"),
    Step("Heads look for different things", heads, "Heads"),
    Step("Why relative position: shift and shuffle", why_position, "Weights"),
    Step("The spatially-aware stem", stem, "Weights"),
    Step("Cost: the 19x19 crossover and Table 1", costs, "Weights"),
    Step("How far a pixel reaches", reach, "Reach"),
]


def step_frames(lesson: Lesson, step: int) -> Tuple[Slide, ...]:
    """The frames of step `step` (0-based), the whole slide last."""
    return STEPS[step].frames(lesson)


def lesson_slides(lesson: Lesson) -> List[Slide]:
    """Every step's whole slide, in order: what the PDF pages show."""
    return [step.frames(lesson)[-1] for step in STEPS]


def lesson_pdf(lesson: Lesson) -> bytes:
    """The lesson as a PDF, one 16:9 page a step."""
    return slides_pdf(lesson_slides(lesson))
