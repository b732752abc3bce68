"""A guided walk through one attention layer at one pixel, with the real numbers at every
step: input -> q, k, v -> logits -> softmax -> weighted sum -> output."""
import numpy as np
import streamlit as st

from sasa_viz.drawing import html
from sasa_viz.inspection import explain
from sasa_viz.numbers import number_format, sentence_format
from sasa_viz.ui import picture, sidebar, sources


def vector(values, label: str, limit: int = 16) -> None:
    """A vector's first entries as a one-row table, in one format, and its length."""
    values = np.asarray(values, dtype=float)
    fmt = number_format(values[:limit])
    shown = {f"{label}[{n}]": fmt(v) for n, v in enumerate(values[:limit])}
    st.dataframe([shown], hide_index=True)
    more = f", first {limit} of {len(values)} shown" if len(values) > limit else ""
    unit = f" (in units of {fmt.unit})" if fmt.unit else ""
    length = np.linalg.norm(values)
    st.caption(f"{len(values)} numbers{unit}, length "
               f"{sentence_format([length]).text(length)}{more}.")


@st.fragment
def walk(source: sources.Source, layer, head: int) -> None:
    """The steps at the selected pixel of `layer` (a LayerTrace); a click reruns only this."""
    px = picture.pick_pixel(source, layer, head).pixel()
    name = layer.name
    d = layer.q.shape[1]
    i, j = px.row, px.col
    st.info(f"Layer {name}, head {head} of {layer.heads} (its channels "
            f"{head * d}-{head * d + d - 1}), feature pixel ({i}, {j}).")

    st.header("1. The input")
    st.markdown(f"The layer receives a feature vector x_ij at every pixel: "
                f"{layer.input.shape[0]} numbers computed by the layers before it.")
    vector(layer.input[:, i, j], "x")

    st.header("2. Query, keys and values")
    st.markdown(
        "Three 1x1 projections of the same input: the **query** q = W_Q x asks a question, "
        "each neighbour's **key** k = W_K x is matched against it, and its **value** "
        f"v = W_V x is what it hands over. Head {head} uses {d} of the channels of each.")
    vector(px.q[head], "q")
    vector(px.keys[head, :, px.cell[0], px.cell[1]], "k (the pixel itself)")

    st.header("3. Logits: content plus position")
    st.markdown(
        "For each neighbour: the content logit q·k (does its content match the question?) "
        "plus the position logit q·r, made of a **row part** (depends only on dy) and a "
        "**column part** (depends only on dx).")
    st.dataframe(explain.neighbour_table(px, head), hide_index=True)

    st.header("4. Softmax: logits become weights")
    st.markdown("exp(logit), divided by the sum over the neighbours inside the image: the "
                f"weights are positive and add up to {float(px.weights[head].sum()):.6f}.")
    st.html(html.weights_panel(px, [head]))

    st.header("5. The weighted sum of the values")
    channel = head * d
    st.markdown(f"Each output channel is the weights times the neighbours' values; for "
                f"channel {channel}, the largest terms first:")
    st.latex(explain.format_equation(explain.output_terms(px, channel), latex=True))

    st.header("6. The output")
    st.markdown(f"The heads' {d}-number results are concatenated into y_ij "
                f"({px.output.shape[0]} numbers): the attention's output at this pixel.")
    vector(px.output, "y")


st.title("Walkthrough: one pixel through one attention layer")
source, traced = sidebar.pick_traced()
name, layer = sidebar.pick_layer(traced)
walk(source, layer, sidebar.pick_head(name, layer))
