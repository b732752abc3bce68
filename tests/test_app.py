"""The explorer page, driven by Streamlit's AppTest: clicks are injected through the
session state (as the image component's callback sets it), uploads through the uploader."""
import io
import re

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from sasa_viz.choices import load_model, model_choices, opening_view
from sasa_viz.drawing import images
from sasa_viz.inspection.network import human_name
from sasa_viz.inspection.trace import trace
from sasa_viz.models.catalogue import attention_layers
from sasa_viz.ui.sources import WORKING_SIZES
from tests.helpers import (
    APP,
    bomb_png,
    encode,
    html_of,
    noise,
    pixel_text,
    run,
    sidebar_selectbox,
)

pytestmark = pytest.mark.slow          # see pytest.ini

@pytest.fixture(scope="module")
def app():
    return run()


def test_opens_on_a_gallery_image_with_a_model_and_shows_the_device(app):
    assert not app.error
    assert app.session_state["model"] == model_choices()[0]
    assert any("Running on **cpu**" in c.value for c in app.sidebar.caption)
    assert re.search(r"head \d+ \(entropy", html_of(app))
    labels = [o for o in app.selectbox(key="model").options]
    assert any("(untrained)" in label for label in labels)


def test_every_attention_layer_can_be_chosen(app):
    model = load_model(app.session_state["model"])
    options = sidebar_selectbox(app, "Layer").options
    assert [o.split(" · ")[-1] for o in options] == list(attention_layers(model))


def test_a_click_selects_the_feature_pixel_of_the_layer(app):
    run(app, pixel_row=5, pixel_col=9, layer="stages.0.0.spatial")
    assert "Image pixel **(5, 9)** is feature pixel **(2, 4)**" in pixel_text(app)
    run(app, layer="stages.1.1.spatial")            # 8x8 map: 4x4 image pixels each
    assert "feature pixel **(1, 2)**" in pixel_text(app)


def test_the_selection_survives_panels_and_layers(app):
    run(app, pixel_row=20, pixel_col=3, panel="Logits", layer="stages.0.0.spatial")
    run(app, panel="Heads", layer="stages.2.0.spatial")
    run(app, panel="Weights")
    assert (app.session_state["pixel_row"], app.session_state["pixel_col"]) == (20, 3)
    assert "Image pixel **(20, 3)**" in pixel_text(app)


def test_weights_shown_are_the_traced_weights(app):
    run(app, pixel_row=12, pixel_col=17, layer="stages.0.0.spatial", panel="Weights",
        head="all heads", drop_position=False)
    label = app.session_state["gallery_item"]
    image = images.to_working_size(images.gallery()[label](), app.session_state["size"])
    model = load_model(app.session_state["model"])
    px = trace(model, images.to_tensor(image)).layers["stages.0.0.spatial"].pixel(6, 8)
    page = html_of(app)
    for h in range(px.weights.shape[0]):
        assert f"dy=0, dx=0: {float(px.weights[h, 3, 3]):.6g}" in page
        assert f"dy=-3, dx=2: {float(px.weights[h, 0, 5]):.6g}" in page


def test_dropping_the_position_term_shows_content_only_weights(app):
    run(app, pixel_row=12, pixel_col=17, layer="stages.0.0.spatial", drop_position=True,
        panel="Weights", head="all heads")
    warning = " ".join(w.value for w in app.warning)
    assert "Hypothetical" in warning and "softmax(q·k) only" in warning
    run(app, drop_position=False)
    assert not app.warning


@pytest.mark.parametrize("panel", ["Weights", "Logits", "Heads", "Convolution vs attention",
                                   "Output equation", "Sweep", "Downloads"])
def test_every_panel_renders(app, panel):
    run(app, panel=panel, head=0, channel=5)
    if panel in ("Logits", "Convolution vs attention", "Output equation"):
        assert any(m.value.startswith("**Head 0") for m in app.markdown)
    if panel == "Output equation":
        assert app.get("latex")
    if panel == "Downloads":
        assert len(app.get("download_button")) == 3
    if panel == "Sweep":                       # drawn when asked, then kept for this pixel
        assert not app.get("download_button")
        next(b for b in app.button if b.label == "Play the sweep").click().run()
        assert [b.proto.label for b in app.get("download_button")] == [
            "Sweep (animated GIF, for slides)"]
        run(app, pixel_col=app.session_state["pixel_col"])
        assert app.get("download_button")


def test_a_new_session_opens_on_the_most_selective_head_and_its_sentence_agrees():
    fresh = run()
    model = load_model(fresh.session_state["model"])
    traced = trace(model, images.to_tensor(Image.fromarray(fresh_image(fresh))))
    view = opening_view(traced)
    assert (fresh.session_state["layer"], fresh.session_state["head"]) == \
        (view.layer, view.head)
    assert (fresh.session_state["pixel_row"], fresh.session_state["pixel_col"]) == \
        (view.row, view.col)
    said = next(i.value for i in fresh.info
                if i.value.startswith(f"**{human_name(view.layer)}** ({view.layer}) on "
                                      f"this image: "))
    assert f"Head {view.head} is the most selective" in said


def test_the_channel_always_belongs_to_the_head_shown(app):
    """The kernel and the equation show the head the picture shows: choosing head 5
    moves channel 0 (head 0's) to head 5's first channel."""
    run(app, layer="stages.0.0.spatial", head=0, channel=3, panel="Output equation")
    d = load_model(app.session_state["model"]).stages[0][0].spatial.head_dim
    assert app.session_state["channel"] == 3
    run(app, head=3)
    assert app.session_state["channel"] == 3 * d
    assert any(f"Channel {3 * d} belongs to head 3" in c.value for c in app.caption)
    run(app, panel="Convolution vs attention")
    assert f"attention at this pixel, head 3, channel {3 * d}" in html_of(app)


def test_with_all_heads_a_one_head_panel_has_its_own_head_picker(app):
    run(app, layer="stages.0.0.spatial", head="all heads", panel="Logits", panel_head=2)
    picker = app.selectbox(key="panel_head")
    assert picker.value == 2 and len(picker.options) == 4
    assert any(m.value.startswith("**Head 2**") for m in app.markdown)
    assert any(c.value.startswith("Head 2: logit") for c in app.caption)
    run(app, panel="Output equation")
    assert any("belongs to head 2" in c.value for c in app.caption)
    run(app, panel="Weights")
    assert "panel_head" not in [box.key for box in app.selectbox]


def test_the_pixel_keeps_its_place_when_the_resolution_changes(app):
    run(app, size=32, pixel_row=13, pixel_col=17)
    run(app, size=128)
    assert (app.session_state["pixel_row"], app.session_state["pixel_col"]) == (54, 70)
    run(app, size=32)
    assert (app.session_state["pixel_row"], app.session_state["pixel_col"]) == (13, 17)


def test_presenter_view_hides_the_sidebar_and_the_title(app):
    run(app, presenter=False)
    assert app.title and "stSidebar" not in html_of(app)
    run(app, presenter=True)
    assert not app.title and "stSidebarCollapsedControl" in html_of(app)
    run(app, presenter=False)


def fresh_image(app) -> np.ndarray:
    """The working image the page used (the default gallery image at the default size)."""
    picture = images.gallery()[app.session_state["gallery_item"]]()
    return np.asarray(images.to_working_size(picture, app.session_state["size"]))


def test_a_pinned_pixel_is_shown_beside_the_selected_one(app):
    run(app, pixel_row=4, pixel_col=4, layer="stages.0.0.spatial", head=1, pinned=None)
    assert not any("Pinned" in str(i.proto) for i in app.get("image"))
    next(b for b in app.button if b.label == "Pin this pixel").click().run()
    run(app, pixel_row=20, pixel_col=20)
    captions = " ".join(str(i.proto) for i in app.get("image"))
    assert "Pinned: feature pixel (2, 2)" in captions and "Selected: feature pixel (10, 10)" \
        in captions
    next(b for b in app.button if b.label.startswith("Unpin")).click().run()
    assert app.session_state["pinned"] is None


def rgba_with_hole():
    image = Image.new("RGBA", (30, 20), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    return encode(image, "PNG")


def exif_rotated():
    image = noise((40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif)


def animated_gif():
    frames = [Image.new("RGB", (24, 24), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


GOOD = {
    "16-bit.png": lambda: encode(Image.fromarray(np.full((20, 30), 30000, np.uint16)), "PNG"),
    "cmyk.jpg": lambda: encode(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG"),
    "rgba.png": rgba_with_hole,
    "grey.png": lambda: encode(Image.new("L", (30, 20), 128), "PNG"),
    "palette.png": lambda: encode(noise((30, 20)).convert("P"), "PNG"),
    "animated.gif": animated_gif,
    "rotated.jpg": exif_rotated,
    "photo.webp": lambda: encode(noise((30, 20)), "WEBP"),
    "photo.bmp": lambda: encode(noise((30, 20)), "BMP"),
}
BAD = {
    "notes.txt": lambda: b"this is not an image\n",
    "empty.png": lambda: b"",
    "truncated.png": lambda: encode(noise(), "PNG")[:600],
    "bomb.png": bomb_png,
}


@pytest.mark.parametrize("name", GOOD)
def test_unusual_but_valid_images_are_converted_and_explored(name):
    app = AppTest.from_file(APP, default_timeout=120)
    run(app, image_source="Upload")
    app.file_uploader(key="upload").set_value((name, GOOD[name](), "application/octet-stream"))
    run(app)
    assert not app.error
    size = app.session_state["size"]
    rows = app.number_input(key="pixel_row")
    cols = app.number_input(key="pixel_col")
    expected = (size, size // 2) if name == "rotated.jpg" else (size * 2 // 3, size)
    if name != "animated.gif":                     # a square GIF
        assert (rows.max + 1, cols.max + 1) == expected


def test_an_upload_is_kept_only_at_the_working_sizes_and_as_shown_read_only():
    """However large the upload, the session and the shared cache keep at most 1.3 MB of
    it: the working images the models see and the picture drawn under the model's grid,
    which no page can write to."""
    app = AppTest.from_file(APP, default_timeout=120)
    run(app, image_source="Upload")
    app.file_uploader(key="upload").set_value(("big.png", encode(noise((1200, 900)), "PNG"),
                                               "image/png"))
    run(app)
    kept = app.session_state["last_picture"]
    assert [max(kept.working[size].shape[:2]) for size in kept.working] == WORKING_SIZES
    assert kept.backdrop.shape == (480, 640, 3)                  # 1200 x 900, longer side 640
    arrays = [*kept.working.values(), kept.backdrop]
    assert not any(array.flags.writeable for array in arrays)
    assert sum(array.nbytes for array in arrays) <= 1_300_000


@pytest.mark.parametrize("name", BAD)
def test_bad_files_get_a_friendly_message_and_the_page_keeps_working(name):
    app = AppTest.from_file(APP, default_timeout=120)
    run(app, pixel_row=7, pixel_col=7)
    before = pixel_text(app)
    run(app, image_source="Upload")
    app.file_uploader(key="upload").set_value((name, BAD[name](), "application/octet-stream"))
    run(app)
    message = app.sidebar.error[0].value
    assert len(message) < 200 and "Traceback" not in message
    assert pixel_text(app) == before            # the previous image is still explored
