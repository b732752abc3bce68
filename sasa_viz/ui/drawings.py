"""What the pages draw and compute, cached for the whole server.

Each is computed once for everything it shows (a `Source`, a `PixelView`, a head...) and
handed to every session that shows the same (st.cache_data: each gets its own copy). They
live here, not in the page script: Streamlit runs a page script afresh on every run, and
a cached function defined there would be made again each time (reading and tokenising
its source for the cache's key: a tenth of an image switch's server time).
"""
from typing import List, Tuple

from PIL import Image

from sasa_viz.choices import ModelChoice, class_names
from sasa_viz.drawing import export, grids, html, images, overlay
from sasa_viz.inspection import cost, experiments, explain
from sasa_viz.inspection.statistics import describe_layer, layer_statistics
from sasa_viz.numbers import NATS, WEIGHT
from sasa_viz.ui import picture, sidebar, sources
from sasa_viz.ui.sources import PixelView, Source


@sources.cache_drawing(max_entries=64, show_spinner=False)
def layer_sentence(source: Source, name: str) -> str:
    """What layer `name` does on this image (`statistics.describe_layer`): in the layer
    the explorer opens on, the head it names as the most selective is the one opened on."""
    return describe_layer(layer_statistics(source.trace().layers[name]))


@sources.cache_drawing(max_entries=64, show_spinner=False)
def top5_html(source: Source) -> str:
    classes = class_names(source.model())
    return html.predictions_table(explain.top_k(source.trace().logits[0], classes))


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def pixel_weights_html(view: PixelView, head, stretch: bool) -> str:
    """The grid of `head`'s weights at the pixel ("all heads": their mean), HTML: beside
    the picture, so both fit on one screen."""
    px = view.pixel()
    if head == sidebar.ALL_HEADS:
        return html.mean_weights_panel(px, stretch)
    return html.weights_panel(px, [head], stretch)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def weights_drawings(view: PixelView, heads: int, stretch: bool, drawing: overlay.Drawing
                     ) -> Tuple[bytes, str]:
    """Every head's weights on the picture and their mean (PNG), and the grids of every
    head's weights and their mean (HTML); `heads`: how many the layer has."""
    layer, px = view.traced()
    strip = overlay.head_strip(view.source.picture(), layer, px, drawing=drawing)
    return picture.png(strip), html.weights_panel(px, list(range(heads)), stretch)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def logits_html(view: PixelView, head: int, stretch: bool) -> str:
    return html.logits_panel(view.pixel(), head, stretch)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def kernels_html(view: PixelView, channel: int) -> Tuple[str, bool]:
    """Attention's effective kernel at the pixel beside the conv twin's (HTML), and
    whether there is a twin."""
    layer, px = view.traced()
    conv = twin_kernel(view.source, view.layer, channel)
    effective = explain.effective_kernel(layer, px, channel)
    whose = f", head {channel // layer.q.shape[1]}, channel {channel}"
    drawn = html.kernels_panel(effective.numpy(), None if conv is None else conv.numpy(),
                               px.cell, whose + grids.hypothetical(px), px.valid.numpy())
    return drawn, conv is not None


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner="Drawing the head maps...")
def head_maps(source: Source, name: str):
    """Every head's entropy and offset maps of the layer (PNG), drawn once per layer,
    and where their cells are (`figures.MapCells`)."""
    from sasa_viz.drawing import figures  # matplotlib's figures: only when drawn (0.5 s)
    return figures.head_maps_png(source.trace().layers[name], source.image)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def head_maps_png(view: PixelView) -> bytes:
    """The head maps with the selected pixel marked on every map."""
    from sasa_viz.drawing import figures
    png, cells = head_maps(view.source, view.layer)
    return figures.mark_pixel(png, cells, (view.row, view.col))


COMPARED = 320      # pixels, the longer side of each of two compared pictures


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def comparison(pinned: PixelView, selected: PixelView, head
               ) -> Tuple[List[Tuple[bytes, str]], bytes]:
    """([(PNG, caption) of the pinned and the selected pixel], the colour bar's PNG)."""
    whose = sidebar.drawn_head(head)
    layer, first = pinned.traced()
    image = images.to_display(pinned.source.picture(), COMPARED)
    pixels = (first, selected.pixel())
    vmax = max(overlay.attention_overlay(image, layer, p, whose).vmax for p in pixels)
    pictures = []
    for p, title in zip(pixels, ("Pinned", "Selected")):
        shown = overlay.attention_overlay(image, layer, p, whose, vmax=vmax)
        entropy = explain.entropy_of(p.weights, p.valid, layer.padding)        # (heads,)
        entropy = entropy.mean() if whose is None else entropy[whose]
        pictures.append((picture.png(shown.image),
                         f"{title}: feature pixel ({p.row}, {p.col}); largest weight "
                         f"{WEIGHT(shown.weights.max())}, entropy {NATS(entropy)} nats"))
    bar = overlay.colour_bar(0.0, vmax, length=200, label="Weight, one scale")
    return pictures, picture.png(bar)


@sources.cache_drawing(max_entries=16, show_spinner="Drawing the sweep...")
def sweep_gif(source: Source, name: str, head, along: str, index: int,
              drawing: overlay.Drawing) -> bytes:
    layer = source.trace().layers[name]
    whose = sidebar.drawn_head(head)
    frames = overlay.sweep_frames(source.picture(), layer, whose, along, index,
                                  drawing=drawing)
    return overlay.sweep_gif(frames, cmap=drawing.cmap)


def twin_kernel(source: Source, name: str, channel: int):
    """The conv twin's (C_in, 3, 3) kernel for `channel` at layer `name`, or None."""
    conv = explain.twin_conv(sidebar.twin_model(source.choice, source.device), name)
    return None if conv is None else explain.conv_kernel(conv, channel)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner="Following the pixel back "
                                                                "through the layers...")
def reach_drawing(view: PixelView) -> Tuple[bytes, List[str]]:
    """Where the pixel draws from in the image (`inspection.reach`): its attention
    rollout and gradient beside the conv twin's gradient at the same image pixel (PNG),
    and each in a sentence; without a twin layer, the attention's two alone."""
    from sasa_viz.drawing import reach as drawn          # imports matplotlib's colour maps
    from sasa_viz.inspection import reach
    source, name = view.source, view.layer
    y, x = source.trace().layers[name].image_pixel(view.row, view.col)
    image = images.to_tensor(Image.fromarray(source.image))
    mine = reach.reach(source.model(), image, name, y, x, source.trace())
    said = [f"Attention: {reach.describe(mine)}"]
    twin = sidebar.twin_model(source.choice, source.device)
    theirs = None
    if explain.twin_conv(twin, name) is not None:
        theirs = reach.reach(twin, image, name, y, x)
        said.append(f"Its conv twin: {reach.describe(theirs)}")
    return picture.png(drawn.reach_panels(source.picture(), mine, theirs)), said


# --- the Position page ---------------------------------------------------------------

@sources.cache_drawing(max_entries=16, show_spinner="Rolling the layer's input...")
def layer_shift(source: Source, layer: str, dy: int, dx: int) -> experiments.LayerShift:
    """The layer, and its absolute twin, on the layer's recorded input and on it rolled."""
    traced = source.trace().layers[layer]
    return experiments.roll_layer_input(source.model(), traced, dy, dx)


@sources.cache_drawing(max_entries=16, show_spinner="Running the model on the rolled image...")
def image_shift(source: Source, layer: str, dy: int, dx: int) -> experiments.ShiftResult:
    """The model on the image and on the image rolled, compared at `layer`."""
    x = images.to_tensor(Image.fromarray(source.image))
    return experiments.shift_equivariance(source.model(), x, layer, dy, dx,
                                          view_extent(source, layer))


def view_extent(source: Source, layer: str) -> experiments.Extent:
    """How far the layer's input looks into an image of the source's size."""
    return model_view_extent(source.choice, source.device, layer, max(source.image.shape[:2]))


@sources.cache_drawing(max_entries=64, show_spinner="Measuring how far the layer's input looks...")
def model_view_extent(choice: ModelChoice, device: str, layer: str,
                      side: int) -> experiments.Extent:
    """`experiments.view_extent`: the model's, whatever the image (a random probe)."""
    return experiments.view_extent(sources.cached_model(choice, device), layer, side)


@sources.cache_drawing(max_entries=64, show_spinner=False)
def shift_sentences(source: Source, layer: str, dy: int, dx: int) -> Tuple[str, str]:
    """What the layer's rolled input and the rolled image show, in words."""
    return (experiments.layer_shift_sentence(layer_shift(source, layer, dy, dx)),
            experiments.image_shift_sentence(image_shift(source, layer, dy, dx),
                                             view_extent(source, layer)))


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner="Drawing the maps...")
def shift_maps_png(source: Source, layer: str, dy: int, dx: int) -> Tuple[bytes, bytes]:
    """How much the weights change at every feature pixel when the layer's own input is
    rolled (the layer's, and its absolute twin's beside it) and when the whole image is,
    PNG each: one colour scale for all three, the pixels whose view meets the border or
    the seam hatched."""
    from sasa_viz.drawing import figures  # matplotlib's figures: only when drawn (0.5 s)
    rolled, whole = layer_shift(source, layer, dy, dx), image_shift(source, layer, dy, dx)
    shown = [(result, label) for result, label in [
        (rolled.layer, "the layer, input rolled"),
        (rolled.twin, "its absolute twin, input rolled"),
        (whole, "the whole image rolled")] if result is not None]
    scale = (0.0, max(float(result.difference.max()) for result, _ in shown) or 1.0)
    maps = [(result.difference, difference_title(result, label), "magma", scale)
            for result, label in shown]
    return (export.figure_png(figures.maps_figure(maps[:-1], hatched=rolled.layer.reach)),
            export.figure_png(figures.maps_figure(maps[-1:], hatched=whole.reach)))


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner=False)
def border_pixels(view: PixelView) -> dict:
    """{"mask": px, "zeros": px}: the pixel with the layer run both ways at the border."""
    layer, _ = view.traced()
    return experiments.border_comparison(view.source.model(), layer, view.row, view.col)


def difference_title(result: experiments.ShiftResult, label: str) -> str:
    """e.g. "the whole image rolled" over "49 of 256 unchanged to within 1×10⁻⁶"."""
    kept, pixels = result.count()
    return f"{label}\n{kept} of {pixels} unchanged {experiments.WITHIN}"


# --- the Cost page -------------------------------------------------------------------

@sources.cache_drawing(show_spinner="Counting the parameters and FLOPS of nine ImageNet ResNets...")
def live_table1():
    return cost.table1()


@sources.cache_drawing(show_spinner="Counting the full-attention ResNets' stems both ways...")
def live_stem_convention() -> List[str]:
    """How the attention stem is counted, in sentences (`cost.stem_convention`)."""
    return cost.stem_convention().sentences()
