"""The Streamlit app's pages (`app.py` lists them) over the library: `sources` (what a page
traces and the caches a class shares), `sidebar` (the pickers), `picture` (the clickable
picture), `drawings` (every drawing, cached), `panels` (the explorer's panels, one table)
and one script per page. The only part of sasa_viz that imports Streamlit; it may import
every other part (docs/ARCHITECTURE.md)."""
