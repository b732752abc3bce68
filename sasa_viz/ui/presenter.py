"""The presenter view a page offers at its top: the sidebar and the title hidden, the type
larger, so that a page fits a projector's 1280x720."""
import streamlit as st

PRESENTER_CSS = """<style>
section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] {display:none}
div.block-container {padding-top:1.5rem; max-width:100%}
div[data-testid="stMarkdownContainer"] p {font-size:1.25rem}
</style>"""


def presenter_toggle() -> bool:
    """A toggle that hides the sidebar and the title and enlarges the type (for a
    projector) -> whether it is on. Kept across pages."""
    presenting = st.toggle("Presenter view", key="presenter",
                           help="Hide the sidebar and the title, larger type (for a projector).")
    if presenting:
        st.html(PRESENTER_CSS)
    return presenting
