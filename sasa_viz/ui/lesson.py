"""The Lesson: the paper's argument in steps (`sasa_viz.lesson.STEPS`), one slide each,
on the image, model, layer, head and pixel of the sidebar, with Previous / Next through
each step's builds, a link to the explorer panel that shows the same thing, and the
slide as a PNG or the whole lesson as a PDF. A thin page: the slides are computed and
drawn by `sasa_viz.lesson` and `sasa_viz.drawing.slides`, cached per step here.
"""
from typing import Optional, Tuple

import streamlit as st
from PIL import Image

from sasa_viz import lesson
from sasa_viz.choices import model_choices
from sasa_viz.drawing import images, scenes, slides
from sasa_viz.ui import network_map, picture, sidebar, sources
from sasa_viz.ui.presenter import presenter_toggle
from sasa_viz.ui.sources import Source

OPENING_IMAGE = next(iter(scenes.scenes()))   # a red disc on a sky: heads seek its edge
SLIDE_WIDTH = 960          # CSS pixels in the presenter view: with the controls, 720 high
STEP, FRAME = "lesson_step", "lesson_frame"


@st.cache_resource(max_entries=16, show_spinner="Preparing the lesson...",
                   hash_funcs={Source: Source.key})
def lesson_of(source: Source, layer: str, head: int, pixel: Tuple[int, int]) -> lesson.Lesson:
    """The lesson on the source, its conv twin and a full-attention model's stem, shared
    read-only between sessions."""
    stem_choice = model_choices(stem="attention")[0]
    return lesson.Lesson.of(
        source.choice.name, source.model(), images.to_tensor(Image.fromarray(source.image)),
        layer, head, pixel, sidebar.twin_model(source.choice, source.device),
        sources.cached_model(stem_choice, source.device), source.picture(), source.trace(),
        shown_scene())


def shown_scene() -> Optional[scenes.Scene]:
    """The gallery scene the sidebar shows, or None (a photo, a CIFAR image, an upload)."""
    state = st.session_state
    label = state.get("gallery_item")
    if state.get("image_source", "Gallery") != "Gallery" or label not in scenes.scenes():
        return None
    return scenes.scene(label)


def open_on_the_object(source: Source, traced) -> None:
    """A new session on a scene opens where a head seeks its object most
    (`lesson.object_view`), else where the image shows attention best."""
    if "layer" in st.session_state:
        return
    scene = shown_scene()
    found = None if scene is None else lesson.object_view(traced, scene)
    if found is None:
        sidebar.open_on_telling_view(source)
        return
    name, seeking = found
    row, col = traced.layers[name].image_pixel(seeking.row, seeking.col)
    st.session_state.update(layer=name, head=seeking.head, pixel_row=row, pixel_col=col,
                            pixel_shape=source.image.shape[:2])


@st.cache_resource(max_entries=64, show_spinner="Preparing this step...",
                   hash_funcs={Source: Source.key})
def step_slides(source: Source, layer: str, head: int, pixel: Tuple[int, int],
                step: int) -> Tuple[slides.Slide, ...]:
    """The frames of one step, shared read-only between sessions."""
    return lesson.step_frames(lesson_of(source, layer, head, pixel), step)


@sources.cache_drawing(max_size=sources.DRAWINGS, show_spinner="Drawing the slide...")
def slide_png(source: Source, layer: str, head: int, pixel: Tuple[int, int], step: int,
              frame: int) -> bytes:
    return slides.slide_png(step_slides(source, layer, head, pixel, step)[frame])


def move(by: int, frames: int) -> None:
    """Next (by=1) or Previous (by=-1): through the step's `frames` builds, then to the
    next step's first build (or the previous step's whole slide)."""
    state = st.session_state
    step, frame = state[STEP], state[FRAME] + by
    if 0 <= frame < frames:
        state[FRAME] = frame
    elif 0 <= step + by < len(lesson.STEPS):
        state[STEP] = step + by
        state[FRAME] = 0 if by > 0 else -1     # -1: the previous step's last build


def navigation(frames: int) -> None:
    """Previous, the step picker and Next, in one row."""
    state = st.session_state
    step, frame = state[STEP], state[FRAME]
    back, pick, forward = st.columns([1, 5, 1], vertical_alignment="center")
    back.button("Previous", on_click=move, args=(-1, frames), width="stretch",
                disabled=step == 0 and frame == 0, shortcut="Left", help="Key: ←")
    forward.button("Next", on_click=move, args=(1, frames), width="stretch", type="primary",
                   disabled=step == len(lesson.STEPS) - 1 and frame == frames - 1,
                   shortcut="Right", help="Key: →")
    pick.selectbox("Step", range(len(lesson.STEPS)), key=STEP, on_change=_first_build,
                   label_visibility="collapsed",
                   format_func=lambda n: f"Step {n + 1} of {len(lesson.STEPS)}: "
                                         f"{lesson.STEPS[n].title}")


def _first_build() -> None:
    st.session_state[FRAME] = 0


def explorer_link(step: lesson.Step) -> None:
    """A button that opens the explorer on this layer, head and pixel, on the panel
    that shows what this step does."""
    if st.button(f"Open in the explorer ({step.panel})", icon=":material/ads_click:"):
        st.session_state["panel"] = step.panel
        st.switch_page("sasa_viz/ui/explorer.py")


@sources.cache_drawing(max_entries=4, show_spinner="Drawing every step for the PDF...")
def lesson_pdf(source: Source, layer: str, head: int, pixel: Tuple[int, int]) -> bytes:
    return lesson.lesson_pdf(lesson_of(source, layer, head, pixel))


def pdf_button(source: Source, layer: str, head: int, pixel: Tuple[int, int]) -> None:
    """"Make the PDF" (every step drawn: seconds), then its download button, for as long
    as the lesson shows the same image, model, layer, head and pixel."""
    made_for = (source.choice, source.digest, source.image.shape, layer, head, pixel)
    if st.session_state.get("lesson_pdf_for") == made_for:
        st.download_button("Download the PDF", lesson_pdf(source, layer, head, pixel),
                           "sasa-lesson.pdf", "application/pdf", on_click="ignore",
                           icon=":material/download:")
    elif st.button("Make the lesson's PDF", help="Every step's whole slide, a page each."):
        st.session_state["lesson_pdf_for"] = made_for
        st.rerun()


presenting = presenter_toggle()
if not presenting:
    st.title("Lesson: stand-alone self-attention, step by step")
st.session_state.setdefault("gallery_item", OPENING_IMAGE)
source, traced = sidebar.pick_traced()
open_on_the_object(source, traced)
name, layer = sidebar.pick_layer(traced)
head = sidebar.pick_head(name, layer)
with st.sidebar:
    pixel = picture.pixel_selection(source.image)
if not presenting:
    network_map.show_network_map(traced, source.model(), name)

st.session_state.setdefault(STEP, 0)
st.session_state.setdefault(FRAME, 0)
frames = step_slides(source, name, head, pixel, st.session_state[STEP])
st.session_state[FRAME] = min(st.session_state[FRAME], len(frames) - 1) % len(frames)
navigation(len(frames))
step, frame = st.session_state[STEP], st.session_state[FRAME]
png = slide_png(source, name, head, pixel, step, frame)
st.image(png, width=SLIDE_WIDTH if presenting else "stretch")
build, link, one, everything = st.columns([2, 3, 2, 2], vertical_alignment="center")
build.caption(f"Build {frame + 1} of {len(frames)}" if len(frames) > 1 else "One build")
with link:
    explorer_link(lesson.STEPS[step])
one.download_button("This slide (PNG)", png, f"sasa-lesson-step-{step + 1}.png", "image/png",
                    on_click="ignore")
with everything:
    pdf_button(source, name, head, pixel)
