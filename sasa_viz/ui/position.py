"""What the position term buys: translation equivariance, content vs position at one
pixel, permutation, and what happens at the border."""
import streamlit as st

from sasa_viz.drawing import html
from sasa_viz.inspection import experiments, explain
from sasa_viz.numbers import percent, relative
from sasa_viz.ui import drawings, picture, sidebar
from sasa_viz.ui.sources import Source

RELATIVE = "Relative L2: |y' - y| / |y| over the pixel's output channels (0: unchanged)."


def shift_input(column, label: str, key: str, side: int, step: int, default: int) -> int:
    """A shift in image pixels, a multiple of the layer's stride `step` (`default` of
    them at first) short of the whole side; kept (rounded down to fit) across layers and
    sizes."""
    largest = max(0, (side - 1) // step * step)
    wanted = st.session_state.get(key, default * step)
    st.session_state[key] = min(wanted // step * step, largest)
    return int(column.number_input(label, 0, largest, step=step, key=key))


@st.fragment
def at_the_pixel(source: Source, layer, head: int) -> None:
    """Sections 2 and 3, at the selected pixel of `layer` (a LayerTrace); a click reruns
    only these."""
    st.header("2. Content, position, both")
    view = picture.pick_pixel(source, layer)
    px = view.pixel()
    st.html(html.logits_panel(px, head))
    st.markdown(
        "**Permutation.** Shuffle the neighbours around this pixel's window (the pixel "
        "itself stays): each carries its content logit and value along, while position "
        "logits stay with the offsets.")
    seed = st.number_input("shuffle", 0, 1000, 0, key="shuffle_seed")
    shuffled = experiments.permute_neighbourhood(px, int(seed))

    first, second = st.columns(2)
    changes = experiments.permutation_changes(shuffled)
    for column, term, label in [
            (first, "without position", "output change without the position term"),
            (second, "with position", "output change with it")]:
        column.metric(label, relative(changes[term]), help=RELATIVE)
    st.caption(experiments.permutation_sentence(shuffled))

    st.header("3. The border: masking vs zero padding")
    st.markdown(
        "Public re-implementations zero-pad: out-of-image neighbours have key and value 0 "
        "but still take part in the softmax with logit q·r, pulling the output towards 0. "
        "This project masks them out. The same layer, on the same input, both ways, at the "
        "selected pixel (pick a corner to see the difference):")
    both = drawings.border_pixels(view)
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
              relative(explain.relative_change(both["mask"].output, both["zeros"].output)),
              help=RELATIVE)


st.title("Position: relative, absolute, none")
source, traced = sidebar.pick_traced()
name, layer = sidebar.pick_layer(traced)
head = sidebar.pick_head(name, layer)

st.header("1. Shift the input, and the attention shifts with it")
st.markdown(
    "With relative embeddings a layer only knows *offsets*, so it is translation-"
    "equivariant: roll its input and its attention weights roll along (to float "
    "rounding) at every pixel whose window stays clear of the map's border and of the "
    "seam where the roll wraps around. Absolute embeddings know *where* a neighbour is. "
    "Below, how much the weights change at every feature pixel (the largest change of "
    "any weight, against the original weights rolled along), all on one colour scale; "
    "hatched: the pixels whose view meets the border or the seam.")
left, right = st.columns(2)
dy = shift_input(left, "shift down (pixels)", "dy", source.image.shape[0], layer.stride, 1)
dx = shift_input(right, "shift right (pixels)", "dx", source.image.shape[1], layer.stride, 0)
rolled_png, image_png = drawings.shift_maps_png(source, name, dy, dx)
rolled_text, image_text = drawings.shift_sentences(source, name, dy, dx)
left, right = st.columns([2, 1])
twin = ("; beside it an absolute twin: the same layer with absolute position logits of "
        "the same scale" if layer.position == "relative" else "")
left.markdown(f"**The layer on its own input.** Its input as recorded, rolled, through "
              f"this layer alone{twin}.")
left.image(rolled_png, width="stretch")
left.markdown(rolled_text)
right.markdown("**The whole image.** Roll the image instead, and whatever comes before "
               "this layer sees the border and the seam too.")
right.image(image_png, width="stretch")
right.markdown(image_text)

at_the_pixel(source, layer, head)
