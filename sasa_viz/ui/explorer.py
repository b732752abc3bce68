"""The explorer: click a pixel and see local self-attention at work.

A thin page: the forward pass and its trace are cached per image, size, model and
device (`sources.Source`), and so is every drawing of a pixel (`sources.PixelView`), in
`drawings`; the panels under the picture are one table, `panels.PANELS`. A click reruns
only `pixel_panels`, an st.fragment: the pixel inputs, the picture and the chosen panel;
the sidebar, the title and the layer's sentence stay as they are.
"""
import streamlit as st

from sasa_viz.choices import class_names, class_note
from sasa_viz.drawing import overlay
from sasa_viz.inspection import explain
from sasa_viz.inspection.network import human_name
from sasa_viz.inspection.trace import LayerTrace
from sasa_viz.numbers import relative
from sasa_viz.ui import drawings, network_map, panels, picture, sidebar
from sasa_viz.ui.presenter import presenter_toggle
from sasa_viz.ui.sources import PixelView, Source

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
    source, traced = sidebar.pick_traced()
    sidebar.open_on_telling_view(source)

    name, layer = sidebar.pick_layer(traced)
    if not presenting:
        network_map.show_network_map(traced, source.model(), name)
    head = sidebar.pick_head(name, layer, allow_all=True)
    drop_position = st.sidebar.toggle("Drop the position term", key="drop_position",
                                      disabled=layer.position == "none",
                                      help="Recompute this pixel's softmax from q.k alone.")
    drawing = sidebar.pick_drawing()
    stretch = st.sidebar.toggle("Stretch the weights' colour scales", key="stretch",
                                help="Off: every weight grid runs from 0 to its largest "
                                     "weight, so a uniform head looks uniform. On: from the "
                                     "smallest to the largest, to see small differences.")
    st.info(f"**{human_name(name)}** ({name}) on this image: "
            f"{drawings.layer_sentence(source, name)}")
    pixel_panels(source, layer, head, drop_position and layer.position != "none", stretch,
                 drawing, drawings.top5_html(source), class_note(class_names(source.model())))


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
        view = picture.selected_pixel(source, layer, drop_position)
        pinned = pin_controls(view, layer)
        weights.html(drawings.pixel_weights_html(view, head, stretch))
    with left:
        picture.clickable_attention(view, head, drawing)
    if pinned is not None:
        compare_pixels(pinned, view, head)

    px = view.pixel()
    if px.counterfactual is not None:
        change = explain.relative_change(px.recorded.output, px.output)
        st.warning(f"Hypothetical, not what the model computed: {explain.WITHOUT_POSITION}. "
                   f"The pixel's panels and downloads below show this counterfactual; its "
                   f"output differs from the recorded one by {relative(change)} (relative L2: "
                   f"|y' - y| / |y|).")

    st.session_state.setdefault("panel", "Weights")
    panel = st.segmented_control("Panel", list(panels.PANELS), key="panel",
                                 label_visibility="collapsed") or "Weights"
    panels.PANELS[panel](panels.Shown(view, layer, head, stretch, drawing))
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
    for column, (drawn, caption) in zip(columns, pictures):
        column.image(drawn, output_format="PNG", caption=caption)
    columns[2].image(bar, output_format="PNG")
    columns[2].caption(f"Both as the model computed them, for {sidebar.whose(head)}.")


main()
