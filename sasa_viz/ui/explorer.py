"""The explorer: click a pixel and see local self-attention at work.

A thin page: the forward pass and its trace are cached per image, size, model and
device (`common.Source`), and so is every drawing of a pixel (`common.PixelView`), in
`drawings`. A
click reruns only `pixel_panels`, an st.fragment: the pixel inputs, the picture and the
chosen panel; the sidebar, the title and the layer's sentence stay as they are.
"""
from functools import partial

import streamlit as st

from sasa_viz.choices import class_names, class_note
from sasa_viz.drawing import export, overlay
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import LayerTrace
from sasa_viz.numbers import relative
from sasa_viz.ui import common, drawings
from sasa_viz.ui.common import PixelView, Source

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
    presenting = presenter_toggle()
    if not presenting:
        st.title("Local self-attention, one pixel at a time")
        with st.expander("What am I looking at?"):
            st.markdown("Each attention layer computes, for every pixel $(i, j)$ of its "
                        "feature map,")
            st.latex(EQUATION)
            st.markdown(EXPLANATION)
    source, traced = common.pick_traced()
    common.open_on_telling_view(source)

    name, layer = common.pick_layer(traced)
    head = common.pick_head(name, layer, allow_all=True)
    drop_position = st.sidebar.toggle("Drop the position term", key="drop_position",
                                      disabled=layer.position == "none",
                                      help="Recompute this pixel's softmax from q.k alone.")
    drawing = common.pick_drawing()
    stretch = st.sidebar.toggle("Stretch the weights' colour scales", key="stretch",
                                help="Off: every weight grid runs from 0 to its largest "
                                     "weight, so a uniform head looks uniform. On: from the "
                                     "smallest to the largest, to see small differences.")
    st.info(f"**{name}** on this image: {drawings.layer_sentence(source, name)}")
    pixel_panels(source, layer, head, drop_position and layer.position != "none", stretch,
                 drawing, drawings.top5_html(source), class_note(class_names(source.model())))


def presenter_toggle() -> bool:
    """A toggle at the top of the page that hides the sidebar and the title, so that on a
    projector (1280x720) the picture, its colour bar and the pixel's weights fit on one
    screen."""
    presenting = st.toggle("Presenter view", key="presenter",
                           help="Hide the sidebar and the title (for a projector).")
    if presenting:
        st.html(PRESENTER_CSS)
    return presenting


PRESENTER_CSS = """<style>
section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] {display:none}
div.block-container {padding-top:1.5rem; max-width:100%}
</style>"""


@st.fragment
def pixel_panels(source: Source, layer: LayerTrace, head, drop_position: bool, stretch: bool,
                 drawing: overlay.Drawing, top5: str, classes: str) -> None:
    """Everything a click changes: the pixel, the picture, its weights, the pin and the
    chosen panel. A click, a typed pixel, a pin or another panel reruns this alone, with
    the arguments of the last full run (`top5`: the model's top 5 on the image, HTML;
    `classes`: what it can name at all)."""
    left, right = st.columns([3, 2])
    with right:
        weights = st.container()          # first, level with the picture's top
        view = common.selected_pixel(source, layer, drop_position)
        pinned = pin_controls(view, layer)
        weights.html(drawings.pixel_weights_html(view, head, stretch))
    with left:
        common.clickable_attention(view, head, drawing)
    if pinned is not None:
        compare_pixels(pinned, view, head)

    px = view.pixel()
    hypothetical = px.counterfactual is not None
    if hypothetical:
        change = explain.relative_change(px.recorded.output, px.output)
        st.warning(f"Hypothetical, not what the model computed: {explain.WITHOUT_POSITION}. "
                   f"The pixel's panels and downloads below show this counterfactual; its "
                   f"output differs from the recorded one by {relative(change)} (relative L2: "
                   f"|y' - y| / |y|).")

    panel = st.segmented_control("Panel", common.PANELS, default="Weights", key="panel",
                                 label_visibility="collapsed") or "Weights"
    if panel == "Weights":
        strip, tables = drawings.weights_drawings(view, layer.heads, stretch, drawing)
        st.image(strip, output_format="PNG", width="content")
        st.caption("Every head's weights on the picture, and their mean, on one colour scale"
                   + (" (hypothetical)." if hypothetical else "."))
        st.html(tables)
        st.caption(("Hypothetical softmax(q·k) weights" if hypothetical else "Softmax weights")
                   + " of every head at this pixel (rows: dy, columns: dx; red outline: the "
                   "pixel itself; "
                   + ("grey x: outside the image, left out of the softmax)."
                      if layer.padding == "mask" else
                      "dashed: outside the image, zero key and value, still in the softmax)."))
    elif panel == "Logits":
        shown = common.pick_panel_head(layer, head)
        st.markdown(f"**Head {shown}**: where its weights come from.")
        st.html(drawings.logits_html(view, shown, stretch))
        st.caption(f"Head {shown}: logit = q·k + q_row·r_row(dy) + q_col·r_col(dx)"
                   + (" with the position parts dropped, a hypothetical. " if hypothetical
                      else ". ")
                   + "The row part is the same along each row, the column part along each "
                   "column: that is all position can say.")
    elif panel == "Heads":
        st.image(drawings.head_maps_png(view.recorded()), width="stretch")
        st.caption("Red square: the selected pixel.")
        if hypothetical:
            st.caption("The whole layer as the model computed it: dropping the position "
                       "term changes only the selected pixel's panels.")
    elif panel == "Convolution vs attention":
        shown = common.pick_panel_head(layer, head)
        channel = common.pick_channel(layer, shown)
        drawn, has_twin = drawings.kernels_html(view, channel)
        st.markdown(f"**Head {shown}, output channel {channel}**")
        st.html(drawn)
        st.info("The convolution applies the same kernel at every pixel. Attention's "
                f"effective kernel (head {shown}'s weights times W_V, shown as the size over "
                f"input channels for output channel {channel}) changes as you click around."
                + (" Here with the hypothetical softmax(q·k) weights." if hypothetical else "")
                + ("" if has_twin else " This layer has no convolutional twin."))
    elif panel == "Output equation":
        shown = common.pick_panel_head(layer, head)
        channel = common.pick_channel(layer, shown)
        equation = explain.output_terms(px, channel)
        st.markdown(f"**Head {equation.head}, output channel {channel}**")
        st.latex(explain.format_equation(equation, latex=True))
        st.caption(f"Channel {channel} belongs to head {equation.head}: "
                   f"{explain.output_sentence(equation)}.")
    elif panel == "Sweep":
        sweep(view, head, drawing)
    else:
        shown = common.pick_panel_head(layer, head)
        downloads(view, shown, common.pick_channel(layer, shown))
    st.markdown(f"**Top 5 of {source.choice.name}**")
    st.html(top5)
    st.caption(classes)


def pin_controls(view: PixelView, layer: LayerTrace):
    """A button that pins the selected pixel (image row and column) for comparison, or
    unpins it -> the pinned pixel's view at this layer, as recorded, or None."""
    pinned = st.session_state.get("pinned")
    if pinned is None:
        if st.button("Pin this pixel", help="Keep it, then click elsewhere to compare."):
            st.session_state["pinned"] = pinned = (st.session_state["pixel_row"],
                                                   st.session_state["pixel_col"])
    elif st.button(f"Unpin image pixel {pinned}"):
        st.session_state["pinned"] = pinned = None
    if pinned is None:
        return None
    row, col = layer.feature_pixel(*pinned)
    return view._replace(row=row, col=col, without_position=False)


def compare_pixels(pinned: PixelView, selected: PixelView, head) -> None:
    """The pinned and the selected pixel's recorded attention side by side, on one scale."""
    pictures, bar = drawings.comparison(pinned, selected.recorded(), head)
    columns = st.columns(3)
    for column, (picture, caption) in zip(columns, pictures):
        column.image(picture, output_format="PNG", caption=caption)
    columns[2].image(bar, output_format="PNG")
    columns[2].caption("Both as the model computed them, for "
                       + ("the mean over heads." if head == "all heads" else f"head {head}."))


def sweep(view: PixelView, head, drawing: overlay.Drawing) -> None:
    """The window and its weights moving along the selected pixel's row or column, drawn
    when asked (a sweep is one frame per feature pixel: too slow to redo on every click)."""
    name = view.layer
    along = st.radio("Move the window along", ["row", "col"], horizontal=True,
                     key="sweep_along", format_func={"row": "its row", "col": "its column"}.get)
    index = view.row if along == "row" else view.col
    wanted = (name, str(head), along, index)
    if st.button("Play the sweep", help="One frame per feature pixel (about a second)."):
        st.session_state["sweep_for"] = wanted
    if st.session_state.get("sweep_for") != wanted:
        st.caption(f"Press play to watch {name}'s window travel along feature-map "
                   f"{'row' if along == 'row' else 'column'} {index}.")
        return
    gif = drawings.sweep_gif(view.source, name, head, along, index, drawing)
    st.image(gif)
    st.caption(f"Feature-map {'row' if along == 'row' else 'column'} {index} of {name}, "
               f"{'the mean over heads' if head == 'all heads' else f'head {head}'}, as "
               f"recorded; every frame on one colour scale.")
    st.download_button("Sweep (animated GIF, for slides)", gif,
                       f"{export.file_stem(name, view.pixel())}-sweep-{along}.gif",
                       mime="image/gif", key="download_sweep", on_click="ignore")


def downloads(view: PixelView, head: int, channel: int) -> None:
    """Files are made only when their button is pressed."""
    px, name = view.pixel(), view.layer
    stem = export.file_stem(name, px)
    figure, trace = "Pixel figure", "Pixel trace"
    if px.counterfactual is not None:
        figure, trace = "Pixel figure, hypothetical", "Pixel trace, recorded + hypothetical"
        st.write("Hypothetical: the figure shows the pixel without the position term; the "
                 "traces keep the recorded numbers under their names and add the "
                 f"hypothetical ones as NAME_{px.counterfactual.name}.")
    st.write(f"For slides and notebooks: the figure of this pixel (**head {head}**, output "
             f"channel {channel}), and its trace (every head).")
    first, second, third = st.columns(3)
    first.download_button(
        f"{figure} (PNG)", key="download_figure", file_name=f"{stem}.png",
        mime="image/png", on_click="ignore", data=partial(pixel_figure_png, view, head,
                                                          channel))
    second.download_button(f"{trace} (NPZ)", lambda: export.pixel_npz(px), f"{stem}.npz",
                           mime="application/octet-stream", key="download_npz",
                           on_click="ignore")
    third.download_button(f"{trace} (CSV)", lambda: export.pixel_csv(px), f"{stem}.csv",
                          mime="text/csv", key="download_csv", on_click="ignore")


def pixel_figure_png(view: PixelView, head: int, channel: int) -> bytes:
    """The slide-ready figure of the pixel, made when its download button is pressed."""
    from sasa_viz.drawing import figures  # matplotlib's figures: only when drawn (0.5 s)
    conv = drawings.twin_kernel(view.source, view.layer, channel)
    layer, px = view.traced()
    return export.figure_png(figures.pixel_figure(layer, px, head, channel, view.source.image,
                                                  conv))


main()
