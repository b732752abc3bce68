"""Drawing what the inspection finds: grids of numbers, the attention on the picture,
figures for slides, and the images they are drawn on.

    grids    what a per-pixel panel shows, decided once for both renderers
    html     the panels as HTML tables (the app)
    figures  the panels and maps as matplotlib figures (slides, the command line)
    overlay  attention drawn on the photograph
    reach    a pixel's reach (rollout, gradient, theoretical window) on the photograph
    images   uploads and gallery pictures, working and display sizes
    scenes   simple pictures drawn by code, with their objects' masks
    slides   16:9 slides in large type (PNG, PDF): the Lesson's
    export   PNG, NPZ and CSV files of a pixel

Imports: sasa_viz.inspection, sasa_viz.models, sasa_viz.attention, sasa_viz.files,
sasa_viz.numbers. No Streamlit.
"""
