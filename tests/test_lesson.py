"""The lesson: every step builds, fits its 16:9 slide, and says what its numbers are;
the PNG and the PDF exports."""
import re

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from sasa_viz import lesson
from sasa_viz.choices import ModelChoice, load_model
from sasa_viz.drawing import slides
from sasa_viz.drawing.grids import Panel
from sasa_viz.numbers import WEIGHT


@pytest.fixture(scope="module")
def taught():
    """A lesson on an untrained sasa-cifar10 (with its twin and a full-attention model)
    on a random 32 x 32 image, at a pixel inside the map."""
    model = load_model(ModelChoice("sasa-cifar10", False), "cpu")
    twin = load_model(ModelChoice("conv-cifar10", False), "cpu")
    full = load_model(ModelChoice("sasa-full-cifar10", False), "cpu")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return lesson.Lesson.of("sasa-cifar10", model, image, "stages.0.1.spatial", 2, (13, 9),
                            twin, full)


@pytest.fixture(scope="module")
def every_frame(taught):
    return [lesson.step_frames(taught, n) for n in range(len(lesson.STEPS))]


def all_text(slide: slides.Slide) -> str:
    return " ".join((slide.title, *slide.points, slide.footer))


def test_at_least_eight_steps_each_with_a_whole_slide_last(taught, every_frame):
    assert len(lesson.STEPS) >= 8
    whole = lesson.lesson_slides(taught)
    assert [frames[-1].title for frames in every_frame] == [s.title for s in whole]
    for n, frames in enumerate(every_frame):
        assert frames and all(f.title.startswith(f"{n + 1}. ") for f in frames)
        assert frames[-1].points and frames[-1].shown


def test_every_slide_fits_its_page(every_frame):
    """No text runs off the 16:9 page or into the footer, and the sentences stay left of
    what is drawn."""
    for frames in every_frame:
        for slide in frames:
            figure = slides.slide_figure(slide)
            renderer = FigureCanvasAgg(figure).get_renderer()
            width, height = figure.bbox.width, figure.bbox.height
            for text in figure.texts:
                box = text.get_window_extent(renderer)
                assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, \
                    (slide.title, text.get_text()[:60])
                if text.get_text() not in (slide.footer, slide.title) and box.x0 < width / 3:
                    assert box.y0 > 0.06 * height, (slide.title, "runs into the footer")
                    assert box.x1 < (slides.TEXT_COLUMN + 0.05) * width, slide.title
            assert all(ax.get_position().x0 > slides.TEXT_COLUMN for ax in figure.axes), \
                slide.title


def test_the_second_pixel_differs_most_from_the_first(taught):
    layer, head = taught.found, taught.head
    px = taught.at()
    found = lesson.contrasting_pixel(layer, head, px.row, px.col)
    H, W = layer.size
    best, where = -1.0, None
    for i in range(H):
        for j in range(W):
            if bool(layer.valid[..., i, j].all()):
                distance = float((layer.weights[head, :, :, i, j]
                                  - layer.weights[head, :, :, px.row, px.col]).abs().sum())
                if distance > best:
                    best, where = distance, (i, j)
    assert found == where


def test_the_kernel_steps_say_the_weights_they_draw(taught, every_frame):
    conv_step, attention_step = every_frame[0][-1], every_frame[1][-1]
    head, px = taught.head, taught.at()
    b = taught.found.pixel(*lesson.contrasting_pixel(taught.found, head, px.row, px.col))
    assert f"({b.row}, {b.col})" in all_text(conv_step)
    for pixel in (px, b):
        a, c = divmod(int(pixel.weights[head].argmax()), pixel.weights.shape[-1])
        dy, dx = pixel.offsets[:, a, c].tolist()
        assert f"{WEIGHT(float(pixel.weights[head].max()))}, goes to the neighbour at " \
               f"(dy, dx) = ({dy}, {dx})" in all_text(attention_step)
    panel = next(item for item in attention_step.shown if isinstance(item, Panel))
    np.testing.assert_allclose(panel.grids[1].values, b.weights[head].numpy())


def test_content_builds_row_by_row(taught, every_frame):
    frames = every_frame[2]
    K = taught.found.kernel_size
    assert len(frames) == K
    for rows, frame in enumerate(frames, 1):
        values = frame.shown[0].grids[0].values
        assert np.isfinite(values[:rows]).all() and np.isnan(values[rows:]).all()
    np.testing.assert_allclose(frames[-1].shown[0].grids[0].values,
                               taught.at().logits_content[taught.head].numpy())


def test_position_parts_are_the_recorded_row_and_column_logits(taught, every_frame):
    px, head = taught.at(), taught.head
    row, col, total = every_frame[3][-1].shown[0].grids
    np.testing.assert_allclose(row.values, px.logits_row[head].numpy())
    np.testing.assert_allclose(col.values, px.logits_col[head].numpy())
    np.testing.assert_allclose(total.values, (px.logits_row + px.logits_col)[head].numpy())
    assert (row.values == row.values[:, :1]).all()          # depends on dy alone
    assert (col.values == col.values[:1, :]).all()          # on dx alone


def test_softmax_step_ends_in_the_recorded_output(taught, every_frame):
    px, head = taught.at(), taught.head
    channel = head * px.q.shape[1]
    whole = every_frame[4][-1]
    assert "add up to 1.000" in all_text(whole)
    recorded = float(px.output[channel])
    said = re.search(r"recorded output y_ij\[c\] = (-?[\d.]+)", all_text(whole))
    assert said and abs(float(said.group(1)) - recorded) < 1e-3
    weights = next(item for item in whole.shown if isinstance(item, Panel))
    np.testing.assert_allclose(weights.grids[0].values, px.weights[head].numpy())


def test_heads_step_names_the_most_selective_head_here(taught, every_frame):
    from sasa_viz.inspection import explain
    from sasa_viz.inspection.network import human_name
    best = None
    for name, layer in taught.traced.layers.items():
        px = layer.pixel(*layer.feature_pixel(*taught.pixel))
        share = explain.entropy_of(px.weights, px.valid, px.padding) / np.log(int(px.valid.sum()))
        head = int(share.argmin())
        if best is None or float(share[head]) < best[0]:
            best = (float(share[head]), name, head)
    assert f"most selective is head {best[2]} of {human_name(best[1])}" in \
        all_text(every_frame[5][-1])


def test_shift_step_counts_the_unchanged_pixels(taught, every_frame):
    from sasa_viz.inspection import experiments
    layer = taught.found
    rolled = experiments.roll_layer_input(taught.model, layer, layer.stride, 0)
    kept, clear = rolled.layer.count(~rolled.layer.reach)
    assert kept == clear > 0                   # relative position: equivariant
    text = all_text(every_frame[6][-1])
    assert f"at {kept} of the {clear} pixels" in text
    assert f"absolute twin's at {rolled.twin.count(~rolled.layer.reach)[0]} of them" in text


def test_stem_step_describes_the_mixture_it_draws(taught, every_frame):
    from sasa_viz.attention.stem import describe_mixture
    whole = every_frame[7][-1]
    p = taught.stem.value_mixture.numpy()
    np.testing.assert_allclose(whole.shown[0].grids[0].values, p[:, :, 0])
    for use in describe_mixture(p):
        assert use.sentence in whole.points


def test_png_is_16_by_9_and_the_pdf_has_a_page_per_step(taught):
    from PIL import Image
    import io
    png = slides.slide_png(lesson.lesson_slides(taught)[0])
    assert Image.open(io.BytesIO(png)).size == (1920, 1080)
    pdf = lesson.lesson_pdf(taught)
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == len(lesson.STEPS)
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", pdf)
    assert float(box.group(1)) / float(box.group(2)) == pytest.approx(16 / 9)


def test_no_slide_says_a_percentage_above_100(every_frame):
    said = " ".join(all_text(slide) for frames in every_frame for slide in frames)
    shares = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*%", said)]
    assert shares and max(shares) <= 100
