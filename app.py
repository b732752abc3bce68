"""sasa-viz: `streamlit run app.py`. The pages live in sasa_viz/ui/."""
import streamlit as st

st.set_page_config(page_title="sasa-viz: stand-alone self-attention", layout="wide")
page = st.navigation([
    st.Page("sasa_viz/ui/explorer.py", title="Explorer", icon=":material/ads_click:",
            default=True),
    st.Page("sasa_viz/ui/walkthrough.py", title="Walkthrough", icon=":material/school:",
            url_path="walkthrough"),
    st.Page("sasa_viz/ui/position.py", title="Position", icon=":material/open_with:",
            url_path="position"),
    st.Page("sasa_viz/ui/stem.py", title="Stem", icon=":material/grid_view:",
            url_path="stem"),
    st.Page("sasa_viz/ui/cost.py", title="Cost", icon=":material/calculate:",
            url_path="cost"),
])
page.run()
