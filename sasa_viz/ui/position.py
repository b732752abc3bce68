"""What the position term buys: translation equivariance, content vs position at one
pixel, permutation, and what happens at the border."""
import streamlit as st
import torch
from PIL import Image

from sasa_viz import experiments, explain, export, figures, html, images
from sasa_viz.models import create
from sasa_viz.numbers import percent, sentence_format
from sasa_viz.ui import common
from sasa_viz.ui.common import PixelView, Source


@st.cache_data(max_entries=16, show_spinner="Running the model on both images...")
def shift_result(source: Source, layer: str, dy: int, dx: int, absolute: bool):
    model = absolute_twin(source.choice.name) if absolute else source.model()
    x = images.to_tensor(Image.fromarray(source.image))
    return experiments.shift_equivariance(model, x, layer, dy, dx)


@st.cache_resource(max_entries=2)
def absolute_twin(name: str):
    """The same architecture with absolute position embeddings, untrained, on the CPU."""
    torch.manual_seed(0)
    return create(name, position="absolute").eval()


@st.cache_data(max_size=common.DRAWINGS, show_spinner="Drawing the maps...")
def shift_maps_png(source: Source, layer: str, dy: int, dx: int) -> bytes:
    """The weight on itself at every feature pixel, original and shifted, and how much
    the maps differ (the model's, and an absolute-position twin's beside it), PNG."""
    result = shift_result(source, layer, dy, dx, False)
    maps = [(result.original, "weight on itself, original", "viridis"),
            (result.shifted, "weight on itself, shifted image", "viridis"),
            (result.difference, difference_title(result.difference, source.choice.name),
             "magma")]
    if source.trace().layers[layer].position == "relative":
        absolute = shift_result(source, layer, dy, dx, True)
        maps.append((absolute.difference,
                     difference_title(absolute.difference, "absolute position (untrained)"),
                     "magma"))
    return export.figure_png(figures.maps_figure(maps))


@st.cache_data(max_size=common.DRAWINGS, show_spinner=False)
def border_pixels(view: PixelView) -> dict:
    """{"mask": px, "zeros": px}: the pixel with the layer run both ways at the border."""
    layer, _ = view.traced()
    return experiments.border_comparison(view.source.model(), layer, view.row, view.col)


def shift_input(column, label: str, key: str, side: int, step: int) -> int:
    """A shift in image pixels, a multiple of the layer's stride `step` that leaves part
    of the image in place; kept (rounded down to fit) across layers and sizes."""
    largest = max(0, (side - 1) // step * step)
    wanted = st.session_state.get(key, 2 * step)
    st.session_state[key] = min(wanted // step * step, largest)
    return int(column.number_input(label, 0, largest, step=step, key=key))


def difference_title(difference, label: str) -> str:
    """e.g. "|difference|, sasa-cifar10" over "median 0, max 0.17"."""
    median, top = (sentence_format([v], significant=2).text(v)
                   for v in (float(difference.median()), float(difference.max())))
    return f"|difference|, {label}\nmedian {median}, max {top}"


@st.fragment
def at_the_pixel(source: Source, layer, head: int) -> None:
    """Sections 2 and 3, at the selected pixel of `layer` (a LayerTrace); a click reruns
    only these."""
    st.header("2. Content, position, both")
    view = common.pick_pixel(source, layer)
    px = view.pixel()
    st.html(html.logits_panel(px, head))
    st.markdown(
        "**Permutation.** Shuffle the neighbours around this pixel's window (the pixel "
        "itself stays): each carries its content logit and value along, while position "
        "logits stay with the offsets.")
    seed = st.number_input("shuffle", 0, 1000, 0, key="shuffle_seed")
    shuffled = experiments.permute_neighbourhood(px, int(seed)).outputs

    first, second = st.columns(2)
    for column, term, label in [
            (first, "without position", "output change without the position term"),
            (second, "with position", "output change with it")]:
        change = explain.relative_change(shuffled[term], shuffled[term + " permuted"])
        column.metric(label, f"{change:.2%}")
    st.caption("Without position the layer sees a set of neighbours: the order does not "
               "matter. With relative embeddings it does.")

    st.header("3. The border: masking vs zero padding")
    st.markdown(
        "Public re-implementations zero-pad: out-of-image neighbours have key and value 0 "
        "but still take part in the softmax with logit q·r, pulling the output towards 0. "
        "This project masks them out. The same layer, on the same input, both ways, at the "
        "selected pixel (pick a corner to see the difference):")
    both = border_pixels(view)
    outside = explain.outside_weight(both["zeros"])
    left, right = st.columns(2)
    for column, padding in zip((left, right), ("mask", "zeros")):
        column.markdown(f"**padding = \"{padding}\"**")
        column.html(html.weights_panel(both[padding], [head]))
    left.caption("Masked: the cells outside the image (grey x) take no weight.")
    right.caption(f"Zero padding: **{percent(outside[head])} of this pixel's attention** "
                  f"(head {head}; {percent(outside.mean())} over all heads) **falls outside "
                  "the image**, on the dashed cells, whose zero values pull the output "
                  "towards 0.")
    st.metric("output difference (relative L2)",
              f"{explain.relative_change(both['mask'].output, both['zeros'].output):.2%}")


st.title("Position: relative, absolute, none")
source, traced = common.pick_traced()
name, layer = common.pick_layer(traced)
head = common.pick_head(name, layer)

st.header("1. Shift the image, and the attention shifts with it")
st.markdown(
    "With relative embeddings a layer only knows *offsets*, so it is translation-"
    "equivariant: roll the image and its attention maps roll along, exactly, except where "
    "a window reaches the border or the seam where the roll wraps around. Absolute "
    "embeddings know *where* a pixel is, and break this everywhere.")
left, right = st.columns(2)
dy = shift_input(left, "shift down (pixels)", "dy", source.image.shape[0], layer.stride)
dx = shift_input(right, "shift right (pixels)", "dx", source.image.shape[1], layer.stride)
st.image(shift_maps_png(source, name, dy, dx), width="stretch")
st.caption("Difference: the largest change of any weight at each feature pixel between "
           "the shifted image's maps and the original maps shifted by "
           f"{shift_result(source, name, dy, dx, False).feature_shift} feature pixels. Each "
           "map has its own colour scale, printed under it: relative embeddings change "
           "nothing away from the border and the seam, absolute ones change the weights "
           "everywhere (compare the medians).")

at_the_pixel(source, layer, head)
