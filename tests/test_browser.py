"""The app in a real browser: Debian's Chromium driven by Playwright.

Needs /usr/bin/chromium (`apt-get install chromium`; Playwright's own browser download
does not work here). Without it these tests skip with that message, except in CI
(CI=true), where .ci/run installs Chromium and a skip would hide a broken page.
"""
import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {CHROMIUM} is missing "
                    f"(.ci/run installs it with apt-get install chromium).", pytrace=False)
    pytest.skip(f"browser tests need Chromium at {CHROMIUM}: run `apt-get install chromium` "
                f"to enable them.", allow_module_level=True)

from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.server import Server  # noqa: E402

pytestmark = pytest.mark.slow          # see pytest.ini


@pytest.fixture(scope="module")
def server():
    """`streamlit run app.py` on a free port, answering (`tests.server.Server`)."""
    try:
        running = Server(timeout=60)
    except RuntimeError as error:
        pytest.fail(str(error))
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(server)
        yield page
        browser.close()


def no_exception(page):
    """No Python exception on the page, and no maths KaTeX could not typeset."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.locator(".katex-error")).to_have_count(0)


def sidebar_selectbox(page, label: str):
    return page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(
        has=page.get_by_text(label, exact=True))


def test_the_default_weights_are_written_so_that_they_differ(page):
    """The view a new session opens on (the model's most telling head)."""
    expect(page.get_by_text("Image pixel", exact=False)).to_be_visible(timeout=120_000)
    grid = page.locator("table").filter(has_text=re.compile(r"head \d+ \(entropy")).first
    expect(grid).to_be_visible(timeout=30_000)
    written = [t for t in grid.locator("td").all_inner_texts() if t != "x"]
    assert len(written) >= 16 and len(set(written)) > 1, written


def test_clicking_a_pixel_updates_the_panels(page, tmp_path):
    expect(page.get_by_text("Image pixel", exact=False)).to_be_visible(timeout=120_000)
    choose_layer(page, "stage 1, block 1 (16×16 map")         # 2x2 image pixels each
    frame = page.frame_locator("iframe[title*='streamlit_image_coordinates']")
    image = frame.locator("img")
    expect(image).to_be_visible(timeout=30_000)
    box = image.bounding_box()
    # the working image is 32 pixels wide by default: click inside pixel (row 4, col 26)
    page.mouse.click(box["x"] + box["width"] * 26.5 / 32, box["y"] + box["height"] * 4.5 / 32)
    expect(page.get_by_text("Image pixel (4, 26) is feature pixel (2, 13)",
                            exact=False)).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"head \d+")).first).to_be_visible()
    no_exception(page)
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)


def test_the_explanation_typesets_its_maths(page):
    page.get_by_text("What am I looking at?").click()
    expect(page.locator(".katex").first).to_be_visible(timeout=30_000)
    no_exception(page)
    page.get_by_text("What am I looking at?").click()


def test_every_panel_shows_without_an_exception(page):
    shows = {"Logits": "text=content q·k", "Heads": "[data-testid='stImage']",
             "Convolution vs attention": "text=attention at this pixel",
             "Output equation": ".katex >> visible=true", "Downloads": "text=Pixel trace (CSV)",
             "Sweep": "text=Move the window along",
             "Reach": "text=half of this pixel's gradient",
             "Weights": "text=Every head's weights on the picture"}
    for panel, selector in shows.items():
        page.get_by_test_id("stButtonGroup").get_by_text(panel, exact=True).click()
        expect(page.locator(selector).first).to_be_visible(timeout=30_000)
        no_exception(page)


def shows_layer(page, label: str) -> None:
    """Within a minute, the sidebar's one layer selectbox shows the option labelled
    `label`... (its combobox's value, which only the accessibility tree has as text).
    While a rerun replaces the widget (its key names its labels) the old one can linger
    beside the new one, and can appear between counting the boxes and reading one: wait
    until only one is left, and read again when a second appeared meanwhile."""
    boxes = sidebar_selectbox(page, "Layer")
    for _ in range(120):
        try:
            if boxes.count() == 1 and label in boxes.aria_snapshot(timeout=2_000):
                return
        except PlaywrightError:                   # a second box appeared while reading
            pass
        page.wait_for_timeout(500)
    pytest.fail(f"the layer selectbox does not show {label!r}: "
                f"{[boxes.nth(i).aria_snapshot() for i in range(boxes.count())]}")


def choose_layer(page, label: str):
    """Pick the layer whose option starts with `label` and wait until it is shown."""
    expect(page.get_by_text("Image pixel", exact=False)).to_be_visible(timeout=120_000)
    expect(sidebar_selectbox(page, "Layer")).to_have_count(1, timeout=60_000)
    sidebar_selectbox(page, "Layer").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(label))).click()
    shows_layer(page, label)


def test_a_new_resolution_keeps_the_chosen_layer(page):
    choose_layer(page, "stage 2, block 2 (8×8 map")
    slider = page.get_by_test_id("stSidebar").get_by_test_id("stSlider").filter(
        has_text="Working resolution").get_by_role("slider")
    slider.focus()
    page.keyboard.press("ArrowRight")                       # 32 -> 48 pixels
    shows_layer(page, "stage 2, block 2 (12×12 map")
    expect(page.get_by_text("12x12 map (one feature pixel", exact=False)).to_be_visible()
    no_exception(page)


@pytest.mark.parametrize("path, heading", [("walkthrough", "1. The input"),
                                           ("position", "1. Shift the input"),
                                           ("stem", "Mixture weights"),
                                           ("cost", "Table 1, counted live")])
def test_every_page_opens_without_an_exception(server, page, path, heading):
    page.goto(f"{server}/{path}")
    expect(page.get_by_text(heading, exact=False).first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
    no_exception(page)


def shown_step(page) -> str:
    """The number of the step the lesson's step box shows, once only one box is left
    (while a rerun replaces it, the old box can linger beside the new one)."""
    boxes = page.get_by_test_id("stSelectbox").filter(has_text="Step")
    for _ in range(120):
        try:
            if boxes.count() == 1:
                return re.search(r"Step (\d+) of", boxes.aria_snapshot(timeout=2_000)).group(1)
        except PlaywrightError:                   # a second box appeared while reading
            pass
        page.wait_for_timeout(500)
    pytest.fail(f"the lesson shows {boxes.count()} step boxes")


def test_the_lesson_goes_through_every_step_on_a_projector(server, page):
    """At 1280x720 in the presenter view: every build of every step shows its slide and
    the Previous/Next row inside the screen, without an exception; the PDF has a page a
    step."""
    from sasa_viz.lesson import STEPS
    page = page.context.browser.new_page(viewport={"width": 1280, "height": 720},
                                         accept_downloads=True)
    try:
        page.goto(f"{server}/lesson")
        slide = page.get_by_test_id("stImage").first
        expect(slide).to_be_visible(timeout=120_000)
        page.get_by_test_id("stCheckbox").filter(has_text="Presenter view").click()
        expect(page.get_by_test_id("stSidebar")).to_be_hidden(timeout=30_000)
        following = page.get_by_role("button", name=re.compile("^Next"))
        seen = set()
        for _ in range(100):
            expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
            no_exception(page)
            step = shown_step(page)
            seen.add(step)
            for element in (slide, following):
                box = element.bounding_box()
                assert box["y"] >= 0 and box["y"] + box["height"] <= 720, (step, box)
            if following.is_disabled():
                break
            following.click()
            page.wait_for_timeout(300)
        assert seen == {str(n) for n in range(1, len(STEPS) + 1)}
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
        page.get_by_role("button", name="Make the lesson's PDF").click()
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name=re.compile("Download the PDF")).click()
        pdf = Path(download.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF")
        assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == len(STEPS)
    finally:
        page.close()
