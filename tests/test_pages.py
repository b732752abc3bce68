"""The teaching pages, driven by AppTest: each renders on the default image and shows
what it is there to show."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sasa_viz.pretrained import list_pretrained

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page, **state):
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        app.session_state[key] = value
    app.switch_page(f"sasa_viz/ui/{page}.py").run()
    assert not app.exception, app.exception[0].value
    return app


def test_cost_page_marks_the_paper_crossover_and_table1():
    app = open_page("cost")
    assert "a 19x19 attention window" in app.success[0].value
    table = app.dataframe[0].value
    assert len(table) == 9 and set(table["model"]) >= {"sasa-resnet50", "conv-resnet26"}


def test_position_page_permutation_changes_only_with_the_position_term():
    app = open_page("position", pixel_row=16, pixel_col=16, layer="stages.0.0.spatial")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["output change without the position term"] == "0.00%"
    assert metrics["output change with it"] != "0.00%"


def test_position_page_border_differs_at_a_corner():
    app = open_page("position", pixel_row=0, pixel_col=0, layer="stages.0.0.spatial")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["output difference (relative L2)"] != "0.00%"


def test_stem_page_labels_an_untrained_stem_and_shows_the_mixture():
    app = open_page("stem")
    html = "".join(str(e.proto) for e in app.get("html"))
    assert "m = 3" in html
    warned = " ".join(w.value for w in app.warning)
    assert ("untrained" in warned) == ("sasa-full-cifar10" not in list_pretrained())


@pytest.mark.parametrize("layer", ["stages.0.0.spatial", "stages.2.1.spatial"])
def test_walkthrough_goes_through_every_step(layer):
    app = open_page("walkthrough", layer=layer, head=1)
    assert [h.value[:2] for h in app.header] == ["1.", "2.", "3.", "4.", "5.", "6."]
    assert any("add up to 1.000000" in m.value for m in app.markdown)
    assert app.get("latex")


@pytest.mark.parametrize("page", ["walkthrough", "position", "stem", "cost"])
def test_every_page_works_on_an_uploaded_image(page):
    from tests.image_files import encode, noise
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state["image_source"] = "Upload"
    app.switch_page(f"sasa_viz/ui/{page}.py").run()
    if page != "cost":                          # the cost page takes no image
        app.file_uploader(key="upload").set_value(("mine.png", encode(noise((48, 40)), "PNG"),
                                                   "image/png"))
        app.run()
        assert app.number_input(key="pixel_col").max == 31     # 48 wide -> 32 at 32 px
    assert not app.exception and not app.error
