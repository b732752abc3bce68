"""Why attention is cheap in parameters: a k x k convolution against an attention layer,
and Table 1 computed live from sasa_viz.models."""
import streamlit as st

from sasa_viz.drawing import figures
from sasa_viz.inspection import cost
from sasa_viz.models.catalogue import IMAGENET_SIZE
from sasa_viz.ui import drawings

CHANNELS = [16, 32, 64, 128, 256, 512]


st.title("What attention costs")
st.markdown(
    "A k x k convolution has k² d_in d_out weights and as many multiply-adds per output "
    "pixel. An attention layer has 3 d_in d_out weights (W_Q, W_K, W_V) plus k d_out for "
    "the relative embeddings, and costs 3 d_in d_out + 2 k² d_out + k d_out multiply-adds "
    "per pixel: the window only multiplies d_out, not d_in d_out. So attention can afford "
    "a much wider window than a convolution.")
left, right = st.columns(2)
d_in = left.select_slider("d_in (input channels)", CHANNELS, value=128, key="cost_d_in")
d_out = right.select_slider("d_out (output channels)", CHANNELS, value=128, key="cost_d_out")
heads = left.select_slider("heads", [h for h in (1, 2, 4, 8, 16) if d_out % h == 0],
                           value=8 if d_out % 8 == 0 else 1, key="cost_heads")
conv_k = right.select_slider("convolution k", [3, 5, 7], value=3, key="cost_conv_k")
st.pyplot(figures.cost_figure(d_in, d_out, heads, conv_k))
crossover = cost.crossover_k(d_in, d_out, conv_k, heads)
wider = crossover + 2
st.success(f"With d_in = {d_in} and d_out = {d_out}, a {conv_k}x{conv_k} convolution costs "
           f"{cost.conv_madds(conv_k, d_in, d_out):,} multiply-adds per pixel; the widest "
           f"attention window that costs no more is {crossover}x{crossover} "
           f"({cost.attention_madds(crossover, d_in, d_out, heads):,}; {wider}x{wider} would "
           f"cost {cost.attention_madds(wider, d_in, d_out, heads):,}). The paper: at d = 128 "
           "a 3x3 convolution costs about as much as a 19x19 attention layer. The number of "
           "heads does not change the cost.")

st.header("Table 1, counted live")
st.markdown(f"Parameters and FLOPS ({IMAGENET_SIZE}x{IMAGENET_SIZE} input, a "
            f"multiply-add counted as 2) of the paper's ImageNet models as built by "
            f"`sasa_viz.models`, beside the paper's Table 1.")
st.dataframe(drawings.live_table1(), hide_index=True)
st.subheader("How the attention stem is counted")
st.markdown(" ".join(drawings.live_stem_convention()))
