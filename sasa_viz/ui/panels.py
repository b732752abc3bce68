"""The explorer's panels under the picture, as one table: `PANELS` maps each panel's name
(in the order the page offers them) to the function that draws it from a `Shown`, the
selected pixel and how it is drawn. Adding a panel is one function and one entry here.
"""
from functools import partial
from typing import Callable, Dict, NamedTuple

import streamlit as st

from sasa_viz.drawing import export, overlay
from sasa_viz.inspection import explain
from sasa_viz.inspection.trace import LayerTrace
from sasa_viz.ui import drawings, sidebar
from sasa_viz.ui.sources import PixelView


class Shown(NamedTuple):
    """What every panel draws from: the pixel (recorded or hypothetical), its layer, the
    head chosen in the sidebar (or "all heads"), and how weights are drawn."""
    view: PixelView
    layer: LayerTrace
    head: object                # an int, or "all heads"
    stretch: bool               # weight grids stretched to their numbers, else from 0
    drawing: overlay.Drawing    # weights on the picture: filled or outlined

    @property
    def hypothetical(self) -> bool:
        return self.view.without_position


def weights(shown: Shown) -> None:
    view, layer = shown.view, shown.layer
    strip, tables = drawings.weights_drawings(view, layer.heads, shown.stretch, shown.drawing)
    st.image(strip, output_format="PNG", width="content")
    st.caption("Every head's weights on the picture, and their mean, on one colour scale"
               + (" (hypothetical)." if shown.hypothetical else "."))
    st.html(tables)
    st.caption(("Hypothetical softmax(q·k) weights" if shown.hypothetical
                else "Softmax weights")
               + " of every head at this pixel (rows: dy, columns: dx; red outline: the "
               "pixel itself; "
               + ("grey x: outside the image, left out of the softmax)."
                  if layer.padding == "mask" else
                  "dashed: outside the image, zero key and value, still in the softmax)."))


def logits(shown: Shown) -> None:
    head = sidebar.pick_panel_head(shown.layer, shown.head)
    st.markdown(f"**Head {head}**: where its weights come from.")
    st.html(drawings.logits_html(shown.view, head, shown.stretch))
    st.caption(f"Head {head}: logit = q·k + q_row·r_row(dy) + q_col·r_col(dx)"
               + (" with the position parts dropped, a hypothetical. " if shown.hypothetical
                  else ". ")
               + "The row part is the same along each row, the column part along each "
               "column: that is all position can say.")


def heads(shown: Shown) -> None:
    st.image(drawings.head_maps_png(shown.view.recorded()), width="stretch")
    st.caption("Red square: the selected pixel.")
    if shown.hypothetical:
        st.caption("The whole layer as the model computed it: dropping the position term "
                   "changes only the selected pixel's panels.")


def kernels(shown: Shown) -> None:
    head = sidebar.pick_panel_head(shown.layer, shown.head)
    channel = sidebar.pick_channel(shown.layer, head)
    drawn, has_twin = drawings.kernels_html(shown.view, channel)
    st.markdown(f"**Head {head}, output channel {channel}**")
    st.html(drawn)
    st.info("The convolution applies the same kernel at every pixel. Attention's "
            f"effective kernel (head {head}'s weights times W_V, shown as the size over "
            f"input channels for output channel {channel}) changes as you click around."
            + (" Here with the hypothetical softmax(q·k) weights." if shown.hypothetical
               else "")
            + ("" if has_twin else " This layer has no convolutional twin."))


def equation(shown: Shown) -> None:
    head = sidebar.pick_panel_head(shown.layer, shown.head)
    channel = sidebar.pick_channel(shown.layer, head)
    written = explain.output_terms(shown.view.pixel(), channel)
    st.markdown(f"**Head {written.head}, output channel {channel}**")
    st.latex(explain.format_equation(written, latex=True))
    st.caption(f"Channel {channel} belongs to head {written.head}: "
               f"{explain.output_sentence(written)}.")


def reach(shown: Shown) -> None:
    """Which image pixels the selected pixel draws on, through every layer before it."""
    png, said = drawings.reach_drawing(shown.view.recorded())
    st.image(png, width="content")
    st.markdown("\n".join(f"- {sentence}" for sentence in said))
    st.caption("Rollout: the recorded weights (mean over heads) composed back through the "
               "layers, half through each residual shortcut, convolutions and pools as even "
               "averages over their windows. Gradient: how much each input pixel moves the "
               "sum of this pixel's output channels (|d/dx| over RGB), exact. Yellow: every "
               "pixel the layers' windows could reach; red: the pixel. As recorded, whatever "
               "the sidebar's position switch says.")


def sweep(shown: Shown) -> None:
    """The window and its weights moving along the selected pixel's row or column, drawn
    when asked (a sweep is one frame per feature pixel: too slow to redo on every click)."""
    view, head, drawing = shown.view, shown.head, shown.drawing
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
               f"{sidebar.whose(head)}, as "
               f"recorded; every frame on one colour scale.")
    st.download_button("Sweep (animated GIF, for slides)", gif,
                       f"{export.file_stem(name, view.pixel())}-sweep-{along}.gif",
                       mime="image/gif", key="download_sweep", on_click="ignore")


def downloads(shown: Shown) -> None:
    """Files are made only when their button is pressed."""
    view = shown.view
    head = sidebar.pick_panel_head(shown.layer, shown.head)
    channel = sidebar.pick_channel(shown.layer, head)
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


PANELS: Dict[str, Callable[[Shown], None]] = {
    "Weights": weights,
    "Logits": logits,
    "Heads": heads,
    "Convolution vs attention": kernels,
    "Output equation": equation,
    "Reach": reach,
    "Sweep": sweep,
    "Downloads": downloads,
}
