"""The teaching pages, driven by AppTest: each renders on the default image and shows
what it is there to show."""
import re

import pytest
from streamlit.testing.v1 import AppTest

from sasa_viz.attention.stem import describe_mixture
from sasa_viz.choices import class_note, keep_choice, load_model, model_choices
from sasa_viz.inspection import cost
from sasa_viz.inspection.cost import stem_convention
from sasa_viz.models.data import CIFAR10_CLASSES
from sasa_viz.models.pretrained import list_pretrained
from tests.helpers import APP, pixel_text, sidebar_selectbox

pytestmark = pytest.mark.slow          # see pytest.ini
SUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def open_page(page, **state):
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        app.session_state[key] = value
    app.switch_page(f"sasa_viz/ui/{page}.py").run()
    assert not app.exception, app.exception[0].value
    return app


def shown_label(box) -> str:
    """What a selectbox shows: the label of its current option."""
    return box.options[box.index]


# --- keeping the reader's choices -----------------------------------------------------------

def test_keep_choice_keeps_what_still_exists_and_says_what_replaces_the_rest():
    layers = ["stages.0.0.spatial", "stages.1.1.spatial"]
    assert keep_choice("stages.1.1.spatial", layers) == ("stages.1.1.spatial", None)
    assert keep_choice(None, layers) == ("stages.0.0.spatial", None)      # nothing wanted yet
    chosen, note = keep_choice("stem.attention", layers, lambda n: f"layer {n}",
                               "in this model")
    assert chosen == "stages.0.0.spatial"
    assert note == ("layer stem.attention is not available in this model: showing layer "
                    "stages.0.0.spatial.")
    assert keep_choice(7, [0, 1, 2, 3], lambda h: f"head {h}")[1] == \
        "head 7 is not available: showing head 0."


def test_the_layer_and_head_are_kept_by_name_across_resolutions():
    app = open_page("explorer", layer="stages.1.1.spatial", head=4)
    for size, side in [(48, 12), (64, 16), (32, 8)]:
        app.select_slider(key="size").set_value(size).run()
        assert not app.exception, app.exception[0].value
        layer, head = sidebar_selectbox(app, "Layer"), sidebar_selectbox(app, "Head")
        assert (layer.value, head.value) == ("stages.1.1.spatial", 4)
        assert shown_label(layer).startswith(f"stage 2, block 2 ({side}×{side} map")
        assert shown_label(layer).endswith(" · stages.1.1.spatial")
        assert map_size(app) == f"{side}x{side} map"
        assert not app.sidebar.info


def map_size(app) -> str:
    """The "HxW map" the pixel sentence gives, from the current trace."""
    return re.search(r"\d+x\d+ map", pixel_text(app)).group()


def test_labels_follow_a_new_image():
    app = open_page("explorer", layer="stages.1.1.spatial")
    for photo in ["Photo: Chelsea the cat", "Photo: astronaut Eileen Collins"]:
        app.selectbox(key="gallery_item").set_value(photo).run()
        label = shown_label(sidebar_selectbox(app, "Layer"))
        assert label.startswith(f"stage 2, block 2 ({map_size(app).replace('x', '×')}")
    assert map_size(app) == "8x8 map"


def test_a_layer_missing_from_the_model_falls_back_visibly_and_comes_back():
    app = open_page("explorer", layer="stem.attention")        # only the full-attention model's
    assert sidebar_selectbox(app, "Layer").value == "stages.0.0.spatial"
    assert ("layer stem.attention is not available in this model: showing layer "
            "stages.0.0.spatial.") in [i.value for i in app.sidebar.info]
    full = next(c for c in model_choices() if c.name == "sasa-full-cifar10")
    app.selectbox(key="model").set_value(full).run()
    assert sidebar_selectbox(app, "Layer").value == "stem.attention"
    assert not app.sidebar.info


def test_a_head_missing_from_the_layer_falls_back_visibly():
    app = open_page("walkthrough", layer="stages.0.0.spatial", head="all heads")
    assert sidebar_selectbox(app, "Head").value == 0
    assert any("all heads is not available" in i.value for i in app.sidebar.info)


# --- what the explorer says ------------------------------------------------------------------

def test_the_top5_says_the_model_knows_only_cifar10s_classes():
    app = open_page("explorer")
    note = class_note(list(CIFAR10_CLASSES))
    assert "CIFAR-10's 10 classes" in note and "airplane" in note and "truck" in note
    assert note in [c.value for c in app.caption]


def test_a_dropped_position_term_is_labelled_hypothetical_beside_the_recorded_output():
    app = open_page("explorer", layer="stages.0.0.spatial", drop_position=True,
                    panel="Output equation", channel=3)
    caption = next(c.value for c in app.caption if c.value.startswith("Channel 3"))
    assert "hypothetical output" in caption and "recorded (traced) output" in caption
    assert any("Hypothetical" in w.value for w in app.warning)
    assert r"\begin{aligned}" in app.get("latex")[-1].value


def test_cost_page_marks_the_paper_crossover_and_table1():
    app = open_page("cost")
    said = app.success[0].value
    assert "147,456 multiply-adds per pixel; the widest attention window that costs no more " \
        "is 19x19 (144,000; 21x21 would cost 164,736)" in said
    assert cost.attention_madds(19, 128, 128) <= cost.conv_madds(3, 128, 128) \
        < cost.attention_madds(21, 128, 128)
    table = app.dataframe[0].value
    assert len(table) == 9 and set(table["model"]) >= {"sasa-resnet50", "conv-resnet26"}
    assert " ".join(stem_convention().sentences()) in [m.value for m in app.markdown]


def test_position_page_permutation_changes_only_with_the_position_term():
    app = open_page("position", pixel_row=16, pixel_col=16, layer="stages.0.0.spatial")
    metrics = {m.label: m.value for m in app.metric}
    without, with_ = (float(metrics[label].replace("×10", "e").translate(SUPERSCRIPT))
                      for label in ("output change without the position term",
                                    "output change with it"))
    assert without <= 1e-6 < with_
    said = next(c.value for c in app.caption if c.value.startswith("Without the position"))
    assert "did not move" in said and f"moved by {metrics['output change with it']}" in said


def test_position_page_border_differs_at_a_corner():
    app = open_page("position", pixel_row=0, pixel_col=0, layer="stages.0.0.spatial")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["output difference (relative L2)"] != "0"
    outside = next(c.value for c in app.caption if c.value.startswith("Zero padding"))
    assert "of this pixel's attention" in outside and "falls outside the image" in outside


def test_position_page_says_what_its_shift_maps_show():
    """stages.1.1 is 8x8: rolled one feature pixel down, 8 pixels keep their 7x7 window
    clear of the border and the seam, while through the layers before it every pixel's
    view meets them; the page says both in the library's counted sentences."""
    app = open_page("position", layer="stages.1.1.spatial", dy=4, dx=0)
    shown = " ".join(m.value for m in app.markdown)
    assert "unchanged (to within 1×10⁻⁶) at 8 of the 8 pixels whose 7x7 window" in shown
    assert "is unchanged at 0 of those 8 pixels" in shown                 # the absolute twin
    assert "0 of 64 pixels are unchanged" in shown and "none can show equivariance" in shown


def test_position_page_shift_is_a_multiple_of_the_stride_at_every_layer():
    app = open_page("position", layer="stages.0.0.spatial", dy=10, dx=2)
    app.session_state["layer"] = "stages.2.1.spatial"          # stride 8
    app.select_slider(key="size").set_value(16).run()
    assert not app.exception, app.exception[0].value
    assert (app.number_input(key="dy").value, app.number_input(key="dx").value) == (8, 0)


def test_stem_page_labels_an_untrained_stem_and_shows_the_mixture():
    app = open_page("stem")
    html = "".join(str(e.proto) for e in app.get("html"))
    assert "m = 3" in html
    warned = " ".join(w.value for w in app.warning)
    assert ("untrained" in warned) == ("sasa-full-cifar10" not in list_pretrained())


def test_stem_page_says_what_the_stem_is_and_what_its_p_does():
    """The stem is labelled a CIFAR-10 adaptation, with its 2x2 blocks and ReLU beside
    the paper's 4x4, and the mixture's sentences are those of the model's own p."""
    app = open_page("stem")
    label = app.info[0].value
    assert "CIFAR-10 adaptation" in label and "224×224" in label and "32×32" in label
    assert "attention in 2×2 blocks, then batch norm, a ReLU and a 2×2 max pool" in label
    p = load_model(model_choices(stem="attention")[0], "cpu").stem.value_mixture()
    bullets = "\n".join(f"- {use.sentence}" for use in describe_mixture(p))
    assert bullets in [m.value for m in app.markdown]


@pytest.mark.parametrize("layer", ["stages.0.0.spatial", "stages.2.1.spatial"])
def test_walkthrough_goes_through_every_step(layer):
    app = open_page("walkthrough", layer=layer, head=1)
    assert [h.value[:2] for h in app.header] == ["1.", "2.", "3.", "4.", "5.", "6."]
    assert any("add up to 1.000000" in m.value for m in app.markdown)
    assert app.get("latex")


@pytest.mark.parametrize("page", ["lesson", "walkthrough", "position", "stem", "cost"])
def test_every_page_works_on_an_uploaded_image(page):
    from tests.helpers import encode, noise
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state["image_source"] = "Upload"
    app.switch_page(f"sasa_viz/ui/{page}.py").run()
    if page != "cost":                          # the cost page takes no image
        app.file_uploader(key="upload").set_value(("mine.png", encode(noise((48, 40)), "PNG"),
                                                   "image/png"))
        app.run()
        assert app.number_input(key="pixel_col").max == 31     # 48 wide -> 32 at 32 px
    assert not app.exception and not app.error


def shown_text(app) -> str:
    """Everything a page says: its text elements and its HTML."""
    kinds = (app.markdown, app.caption, app.info, app.success, app.warning, app.error,
             app.metric, app.get("html"))
    return "\n".join(str(getattr(e, "value", None) or e.proto) for kind in kinds
                     for e in kind)


@pytest.mark.parametrize("model", [0, 1])
def test_no_page_shows_a_percentage_above_100(model):
    """Shares are written as percentages, and a share never exceeds 100%: a relative
    change is written as a number, a position share is bounded."""
    choice = model_choices()[model]
    said = []
    for page in ("walkthrough", "position", "stem", "cost"):
        said.append(shown_text(open_page(page, model=choice)))
    app = open_page("explorer", model=choice, drop_position=True)
    for panel in ("Weights", "Logits", "Heads", "Convolution vs attention",
                  "Output equation", "Reach", "Sweep", "Downloads"):
        app.session_state["panel"] = panel
        app.run()
        said.append(shown_text(app))
    shares = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*%", "\n".join(said))]
    assert shares and max(shares) <= 100, max(shares)


# --- the lesson ---------------------------------------------------------------------------

def lesson_place(app) -> tuple:
    return app.session_state["lesson_step"], app.session_state["lesson_frame"]


def click(app, label: str):
    next(b for b in app.button if b.label == label).click().run()
    assert not app.exception, app.exception[0].value
    return app


def test_the_lesson_opens_on_the_disc_where_a_head_seeks_it():
    from sasa_viz.drawing import scenes
    from sasa_viz.drawing.images import to_tensor, to_working_size
    from sasa_viz.inspection.trace import trace
    from sasa_viz.lesson import object_view
    app = open_page("lesson")
    assert app.session_state["gallery_item"] == "Scene: red disc on a sky"
    scene = scenes.scene("Scene: red disc on a sky")
    model = load_model(model_choices()[0], "cpu")
    traced = trace(model, to_tensor(to_working_size(scene.image, 32)))
    layer, found = object_view(traced, scene)
    assert (app.session_state["layer"], app.session_state["head"]) == (layer, found.head)
    row, col = traced.layers[layer].image_pixel(found.row, found.col)
    assert (app.session_state["pixel_row"], app.session_state["pixel_col"]) == (row, col)


def test_next_and_previous_walk_every_build_of_every_step():
    from sasa_viz.lesson import STEPS
    app = open_page("lesson")
    assert lesson_place(app) == (0, 0)
    places = [lesson_place(app)]
    while lesson_place(app)[0] < 2:
        places.append(lesson_place(click(app, "Next")))
    assert places[:3] == [(0, 0), (0, 1), (1, 0)]            # step 1 has two builds
    assert places[-1] == (2, 0)
    assert lesson_place(click(app, "Previous")) == (1, 1)    # back to step 2's whole slide
    app.selectbox(key="lesson_step").set_value(len(STEPS) - 1).run()
    assert lesson_place(app) == (len(STEPS) - 1, 0)
    assert app.get("image")                                  # the slide


def test_the_explorer_link_opens_the_panel_of_the_step():
    app = open_page("lesson", lesson_step=2)
    click(app, "Open in the explorer (Logits)")
    assert app.session_state["panel"] == "Logits"
    assert any("Head" in m.value for m in app.markdown)      # the explorer's Logits panel


def test_the_pdf_is_made_when_asked_for():
    def downloads(app):
        return [b.label for b in app.get("download_button")]
    app = open_page("lesson")
    assert downloads(app) == ["This slide (PNG)"]
    click(app, "Make the lesson's PDF")
    assert downloads(app) == ["This slide (PNG)", "Download the PDF"]


def test_the_image_and_model_chosen_on_one_page_hold_on_every_page():
    app = open_page("lesson")
    click(app, "Open in the explorer (Convolution vs attention)")
    assert app.session_state["gallery_item"] == "Scene: red disc on a sky"
    assert app.session_state["panel"] == "Convolution vs attention"
    app.sidebar.selectbox(key="gallery_item").set_value("CIFAR-10 #3: airplane").run()
    app.select_slider(key="size").set_value(64).run()
    app.number_input(key="pixel_row").set_value(40).run()
    for page in ("walkthrough", "cost", "position", "lesson", "explorer"):
        app.switch_page(f"sasa_viz/ui/{page}.py").run()
        assert not app.exception, app.exception[0].value
        assert (app.session_state["gallery_item"], app.session_state["size"],
                app.session_state["pixel_row"]) == ("CIFAR-10 #3: airplane", 64, 40), page
