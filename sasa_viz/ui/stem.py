"""The spatially-aware attention stem: this model's stem beside the paper's, the mixture
weights p(a, b, m) drawn and said in words, and its attention at a clicked pixel."""
import streamlit as st

from sasa_viz.attention import stem
from sasa_viz.choices import model_choices
from sasa_viz.drawing import html
from sasa_viz.models import data
from sasa_viz.models.catalogue import IMAGENET_SIZE, config_for
from sasa_viz.ui import picture, sidebar, sources

PAPER_MODEL = "sasa-full-resnet50"     # the paper's stem, as this project builds it


@st.fragment
def attention_at_the_pixel(source: sources.Source, layer) -> None:
    """The stem's attention at the selected pixel; a click reruns only this."""
    st.header("Its attention at a pixel")
    px = picture.pick_pixel(source, layer, sidebar.ALL_HEADS).pixel()
    st.html(html.weights_panel(px, list(range(layer.heads))))
    K = layer.kernel_size
    st.caption(f"The stem's window is the pixel's own {K}x{K} block, the block the {K}x{K} "
               f"max pool after it reduces to one pixel, so the pixel (red outline) sits "
               f"where it is in its block, at cell {px.cell}, not in the middle. Pixels of "
               f"other blocks never take part.")


st.title("The attention stem")
st.markdown(
    "At the input a single pixel says little, so the paper's full-attention models start "
    "with a stem whose **values depend on where a pixel sits in its window**: a mixture "
    "of m value matrices, $v_{ab} = (\\sum_m p(a,b,m) W_V^m) x_{ab}$ with "
    "$p(a,b,m) = \\mathrm{softmax}_m((\\mathrm{emb}_{row}(a) + \\mathrm{emb}_{col}(b))"
    "\\cdot \\nu_m)$, shared by all heads. The windows are the blocks of the max pool "
    "that follows: each pixel attends over its own block with content logits "
    "$q \\cdot k$ alone, so position enters only through p.")
image, chosen = sidebar.pick_image()
device = sidebar.pick_device()
choice = model_choices(stem="attention")[0]           # a shipped one when there is one
if not choice.trained:
    st.warning(f"No trained full-attention model is shipped yet: this is the "
               f"**untrained** {choice.name} (random weights), so the patterns below "
               f"show the mechanism, not what training learns.")
model = sidebar.model_or_stop(choice, device)
paper = config_for(PAPER_MODEL)
st.info(f"**{choice.name}** has a CIFAR-10 adaptation of the paper's stem. " + " ".join(
    stem.compare_with_paper(model.stem, data.IMAGE_SIZE, paper.stem_kernel_size,
                            paper.stem_pool, IMAGENET_SIZE)))
source = sources.Source.of(choice, device, image, chosen)
layer = source.trace().layers["stem.attention"]
p = layer.value_mixture.numpy()                                   # (K, K, m)

st.header("Mixture weights p(a, b, m)")
st.caption(f"One grid per value matrix m: how much of W_V^m a pixel at cell (a, b) of "
           f"its block uses. Each cell's {p.shape[-1]} weights are probabilities: they "
           f"sum to 1.")
st.html(html.mixture_panel(p))
st.markdown("\n".join(f"- {use.sentence}" for use in stem.describe_mixture(p)))
st.caption(f"A matrix takes a cell where its p there is over {stem.TAKES_ABOVE} (most of "
           f"that cell's value matrix); it is unused where its p stays under "
           f"{stem.UNUSED_BELOW} in every cell.")
attention_at_the_pixel(source, layer)
