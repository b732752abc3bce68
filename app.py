"""sasa-viz: `streamlit run app.py`. The pages live in sasa_viz/ui/."""
import streamlit as st
import torch

# One server, a whole class: every session runs its page in a thread of its own, and the
# sessions share the machine's cores. Torch's worker threads on top would make each
# session's forward pass fight the others for the same cores (and lose time waiting for
# each other), so each session computes with one.
torch.set_num_threads(1)

st.set_page_config(page_title="sasa-viz: stand-alone self-attention", layout="wide")
page = st.navigation([
    st.Page("sasa_viz/ui/explorer.py", title="Explorer", icon=":material/ads_click:",
            default=True),
    st.Page("sasa_viz/ui/lesson.py", title="Lesson", icon=":material/slideshow:",
            url_path="lesson"),
    st.Page("sasa_viz/ui/walkthrough.py", title="Walkthrough", icon=":material/school:",
            url_path="walkthrough"),
    st.Page("sasa_viz/ui/position.py", title="Position", icon=":material/open_with:",
            url_path="position"),
    st.Page("sasa_viz/ui/stem.py", title="Stem", icon=":material/grid_view:",
            url_path="stem"),
    st.Page("sasa_viz/ui/cost.py", title="Cost", icon=":material/calculate:",
            url_path="cost"),
])
# What a reader chose in the sidebar holds on every page: Streamlit forgets a widget's value
# when a page without that widget runs, unless the value is written back first.
for key in ("image_source", "gallery_item", "size", "model", "device", "pixel_row",
            "pixel_col", "presenter", "drawing_mode", "opacity", "stretch", "panel"):
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]
page.run()
