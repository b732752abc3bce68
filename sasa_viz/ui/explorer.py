"""The explorer: click a pixel and see local self-attention at work.

A thin page: the forward pass and its trace are cached per image, size, model and
device (`common.cached_trace`); a click only changes which slice of that trace is drawn.
"""
import numpy as np
import streamlit as st

from sasa_viz import explain, export, figures, html, overlay
from sasa_viz.choices import class_names, class_note
from sasa_viz.numbers import percent
from sasa_viz.statistics import describe_layer, layer_statistics
from sasa_viz.ui import common

# st.latex, not $$ in Markdown: there a line of the formula starting with "+ " is a list
EQUATION = (r"y_{ij} = \sum_{(a,b) \in \mathcal{N}_k(i,j)} \mathrm{softmax}_{ab}\left("
            r"q_{ij}^\top k_{ab} + q_{ij}^\top r_{a-i,\,b-j}\right) v_{ab}")

EXPLANATION = r"""
- The pixel's **query** $q_{ij}$ is compared with the **key** $k_{ab}$ of every neighbour in
  its $k \times k$ window (**content**), and with an embedding of the neighbour's relative
  position (**position**), split into a row part $r_{a-i}$ and a column part $r_{b-j}$.
- The softmax turns these logits into **weights** that sum to 1 over the neighbours inside
  the image; the output is the weighted sum of the neighbours' **values** $v_{ab}$.
- Each head does this with its own slice of the channels. Unlike a convolution, whose
  kernel is the same at every pixel, the weights depend on the content: click around.
"""


def main() -> None:
    st.title("Local self-attention, one pixel at a time")
    with st.expander("What am I looking at?"):
        st.markdown("Each attention layer computes, for every pixel $(i, j)$ of its feature "
                    "map,")
        st.latex(EQUATION)
        st.markdown(EXPLANATION)
    image, choice, device, traced = common.pick_traced()
    common.open_on_telling_view(choice, device, traced)

    name, layer = common.pick_layer(traced)
    head = common.pick_head(name, layer, allow_all=True)
    channel = common.pick_channel(layer)
    drop_position = st.sidebar.toggle("Drop the position term", key="drop_position",
                                      disabled=layer.position == "none",
                                      help="Recompute this pixel's softmax from q.k alone.")
    st.info(f"**{name}** on this image: {layer_sentence(choice, device, image, name)}")

    left, right = st.columns([3, 2])
    with right:
        px = common.selected_pixel(image, layer)
        if drop_position and layer.position != "none":
            px = explain.without_position(px)
        pinned = pin_controls(layer, px)
        classes = class_names(common.cached_model(choice, device))
        st.markdown(f"**Top 5 of {choice.name}**")
        st.html(html.predictions_table(explain.top_k(traced.logits[0], classes)))
        st.caption(class_note(classes))
    hypothetical = "" if px.counterfactual is None else ", hypothetical"
    with left:
        common.clickable_attention(image, layer, px, head, "hypothetical" if hypothetical else "")
    if pinned is not None:
        compare_pixels(image, layer, pinned, px, head)

    if px.counterfactual is not None:
        change = explain.relative_change(px.recorded.output, px.output)
        st.warning(f"Hypothetical, not what the model computed: {explain.WITHOUT_POSITION}. "
                   f"The pixel's panels and downloads below show this counterfactual; its "
                   f"output differs from the recorded one by {percent(change)} (relative L2).")

    panel = st.segmented_control("Panel", common.PANELS, default="Weights", key="panel",
                                 label_visibility="collapsed") or "Weights"
    chosen = list(range(layer.heads)) if head == "all heads" else [head]
    show_head = chosen[0]
    if panel == "Weights":
        st.image(overlay.head_strip(image, layer, px), output_format="PNG")
        st.caption("Every head's weights on the picture, and their mean, on one colour scale"
                   + (" (hypothetical)." if hypothetical else "."))
        st.html(html.weights_panel(px, chosen))
        st.caption(("Hypothetical softmax(q·k) weights" if hypothetical else "Softmax weights")
                   + " of every neighbour (rows: dy, columns: dx; red outline: the pixel "
                   "itself; "
                   + ("grey x: outside the image, left out of the softmax)."
                      if layer.padding == "mask" else
                      "dashed: outside the image, zero key and value, still in the softmax)."))
    elif panel == "Logits":
        st.html(html.logits_panel(px, show_head))
        st.caption(f"Head {show_head}: logit = q·k + q_row·r_row(dy) + q_col·r_col(dx)"
                   + (" with the position parts dropped, a hypothetical. " if hypothetical
                      else ". ")
                   + "The row part is the same along each row, the column part along each "
                   "column: that is all position can say.")
    elif panel == "Heads":
        st.image(head_maps_png(choice, device, image, name), width="stretch")
        if hypothetical:
            st.caption("The whole layer as the model computed it: dropping the position "
                       "term changes only the selected pixel's panels.")
    elif panel == "Convolution vs attention":
        conv = twin_kernel(choice, device, name, channel)
        effective = explain.effective_kernel(layer, px, channel)
        st.html(html.kernels_panel(effective.numpy(), None if conv is None else conv.numpy(),
                                   px.cell, hypothetical, px.valid.numpy()))
        st.info("The convolution applies the same kernel at every pixel. Attention's "
                "effective kernel (its weights times W_V, shown as the size over input "
                "channels for output channel "
                f"{channel}) changes as you click around."
                + (" Here with the hypothetical softmax(q·k) weights." if hypothetical else "")
                + ("" if conv is not None else " This layer has no convolutional twin."))
    elif panel == "Output equation":
        equation = explain.output_terms(px, channel)
        st.latex(explain.format_equation(equation, latex=True))
        st.caption(f"Channel {channel} belongs to head {equation.head}: "
                   f"{explain.output_sentence(equation)}.")
    elif panel == "Sweep":
        sweep(choice, device, image, name, layer, px, head)
    else:
        downloads(layer, px, image, name, show_head, channel,
                  twin_kernel(choice, device, name, channel))


@st.cache_data(max_entries=64, show_spinner=False)
def layer_sentence(choice, device: str, image: np.ndarray, name: str) -> str:
    layer = common.cached_trace(choice, device, image).layers[name]
    return describe_layer(layer_statistics(layer))


def pin_controls(layer, px):
    """A button that pins the selected pixel (image row and column) for comparison, or
    unpins it -> the pinned pixel's PixelTrace at this layer, or None."""
    pinned = st.session_state.get("pinned")
    if pinned is None:
        if st.button("Pin this pixel", help="Keep it, then click elsewhere to compare."):
            st.session_state["pinned"] = pinned = (st.session_state["pixel_row"],
                                                   st.session_state["pixel_col"])
    elif st.button(f"Unpin image pixel {pinned}"):
        st.session_state["pinned"] = pinned = None
    return None if pinned is None else layer.pixel(*layer.feature_pixel(*pinned))


def compare_pixels(image, layer, pinned, px, head) -> None:
    """The pinned and the selected pixel's recorded attention side by side, on one scale."""
    whose = None if head == "all heads" else head
    pixels = (pinned, px.recorded)
    scale = overlay.default_scale(layer, 256)
    vmax = max(overlay.attention_overlay(image, layer, p, whose, scale).vmax for p in pixels)
    columns = st.columns(3)
    for column, p, title in zip(columns, pixels, ("Pinned", "Selected")):
        shown = overlay.attention_overlay(image, layer, p, whose, scale, vmax=vmax)
        entropy = explain.entropy_of(p.weights, p.valid, layer.padding)        # (heads,)
        entropy = entropy.mean() if whose is None else entropy[whose]
        column.image(shown.image, output_format="PNG", caption=f"{title}: feature pixel ({p.row}, {p.col}); "
                     f"largest weight {shown.weights.max():.3f}, entropy "
                     f"{float(entropy):.2f} nats")
    columns[2].image(overlay.colour_bar(0.0, vmax, length=200, label="Weight, one scale"),
                     output_format="PNG")
    columns[2].caption("Both as the model computed them, for "
                       + ("the mean over heads." if whose is None else f"head {whose}."))


@st.cache_data(max_entries=16, show_spinner="Drawing the sweep...")
def sweep_gif(choice, device: str, image: np.ndarray, name: str, head, along: str,
              index: int) -> bytes:
    layer = common.cached_trace(choice, device, image).layers[name]
    whose = None if head == "all heads" else head
    scale = overlay.default_scale(layer, SWEEP_SIDE)
    return overlay.sweep_gif(overlay.sweep_frames(image, layer, whose, along, index, scale))


SWEEP_SIDE = 256    # pixels, the longer side of a sweep's frames


def sweep(choice, device: str, image, name: str, layer, px, head) -> None:
    """The window and its weights moving along the selected pixel's row or column, drawn
    when asked (a sweep is one frame per feature pixel: too slow to redo on every click)."""
    along = st.radio("Move the window along", ["row", "col"], horizontal=True,
                     key="sweep_along", format_func={"row": "its row", "col": "its column"}.get)
    index = px.row if along == "row" else px.col
    wanted = (name, str(head), along, index)
    if st.button("Play the sweep", help="One frame per feature pixel (about a second)."):
        st.session_state["sweep_for"] = wanted
    if st.session_state.get("sweep_for") != wanted:
        st.caption(f"Press play to watch {name}'s window travel along feature-map "
                   f"{'row' if along == 'row' else 'column'} {index}.")
        return
    gif = sweep_gif(choice, device, image, name, head, along, index)
    st.image(gif)
    st.caption(f"Feature-map {'row' if along == 'row' else 'column'} {index} of {name}, "
               f"{'the mean over heads' if head == 'all heads' else f'head {head}'}, as "
               f"recorded; every frame on one colour scale.")
    st.download_button("Sweep (animated GIF, for slides)", gif,
                       f"{export.file_stem(name, px)}-sweep-{along}.gif", mime="image/gif",
                       key="download_sweep", on_click="ignore")


def twin_kernel(choice, device: str, name: str, channel: int):
    """The conv twin's (C_in, 3, 3) kernel for `channel` at layer `name`, or None."""
    conv = explain.twin_conv(common.twin_model(choice, device), name)
    return None if conv is None else explain.conv_kernel(conv, channel)


@st.cache_data(max_entries=16, show_spinner="Drawing the head maps...")
def head_maps_png(choice, device: str, image: np.ndarray, name: str) -> bytes:
    layer = common.cached_trace(choice, device, image).layers[name]
    return export.figure_png(figures.head_maps_figure(layer, image), dpi=110)


def downloads(layer, px, image, name: str, head: int, channel: int, conv) -> None:
    """Files are made only when their button is pressed."""
    stem = export.file_stem(name, px)
    figure, trace = "Pixel figure", "Pixel trace"
    if px.counterfactual is not None:
        figure, trace = "Pixel figure, hypothetical", "Pixel trace, recorded + hypothetical"
        st.write("Hypothetical: the figure shows the pixel without the position term; the "
                 "traces keep the recorded numbers under their names and add the "
                 f"hypothetical ones as NAME_{px.counterfactual.name}.")
    st.write("For slides and notebooks: the figures of this pixel, and its trace.")
    first, second, third = st.columns(3)
    first.download_button(
        f"{figure} (PNG)", key="download_figure", file_name=f"{stem}.png",
        mime="image/png", on_click="ignore",
        data=lambda: export.figure_png(figures.pixel_figure(layer, px, head, channel, image,
                                                             conv)))
    second.download_button(f"{trace} (NPZ)", lambda: export.pixel_npz(px), f"{stem}.npz",
                           mime="application/octet-stream", key="download_npz",
                           on_click="ignore")
    third.download_button(f"{trace} (CSV)", lambda: export.pixel_csv(px), f"{stem}.csv",
                          mime="text/csv", key="download_csv", on_click="ignore")


main()
