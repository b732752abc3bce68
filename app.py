"""sasa-viz: `streamlit run app.py`. The pages live in sasa_viz/ui/."""
import streamlit as st

st.set_page_config(page_title="sasa-viz: stand-alone self-attention", layout="wide")
page = st.navigation([
    st.Page("sasa_viz/ui/explorer.py", title="Explorer", icon=":material/ads_click:",
            default=True),
])
page.run()
