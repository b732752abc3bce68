"""A grid's cells are coloured in one call per grid (`grids.Scale.colours`, for the
explorer's speed): the same colours as one value at a time."""
import re

import numpy as np
from matplotlib.colors import to_hex

from sasa_viz.drawing import grids, html


def test_a_grids_colours_are_its_values_colours_one_by_one():
    values = np.array([[-2.0, -0.5, 0.0], [0.25, np.nan, 1.0], [3.0, 1e-9, -1e-9]])
    for scale in (grids.stretched(values, grids.WEIGHTS_CMAP),
                  grids.symmetric(values, grids.LOGITS_CMAP)):
        colours = scale.colours(values)
        for a, b in zip(*np.nonzero(np.isfinite(values))):
            assert to_hex(colours[a, b]) == to_hex(scale.colour(values[a, b]))
            assert grids.text_colour(colours[a, b]) == scale.text_colour(values[a, b])


def test_every_cell_of_a_table_has_its_values_colour():
    values = np.linspace(-1, 1, 9).reshape(3, 3)
    panel = grids.make_panel([grids.Grid(values, "g")], grids.LOGITS_CMAP, "logit",
                             diverging=True)
    table = html.grid_table(panel, panel.grids[0])
    cells = re.findall(r"background:(#[0-9a-f]{6});color:(\w+);", table)
    assert cells == [(to_hex(panel.scale.colour(v)), panel.scale.text_colour(v))
                     for v in values.flatten()]
