"""Screenshots of every page and every explorer panel, for reading by eye, as a student
and a lecturer would see them: at 1400x1000 and at a projector's 1280x720, for the
default photograph, a CIFAR-10 image and an upload; and the Lesson, every build of every
step, opened first on its own image.

    python benchmarks/screenshots.py --out /tmp/shots        # needs /usr/bin/chromium

Writes OUT/<image>-<width>x<height>-<page>.png (the explorer once per panel) and prints
each file with any exception the page showed. Not a test: it judges nothing.
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.server import Server  # noqa: E402
from sasa_viz.ui.panels import PANELS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWPORTS = [(1400, 1000), (1280, 720)]
PAGES = ["walkthrough", "position", "stem", "cost"]
IMAGES = {"astronaut": None, "cifar": "CIFAR-10 #3", "upload": "upload"}


def settle(page) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
    page.wait_for_timeout(700)


def choose_image(page, which: str, upload: Path) -> None:
    """Pick a gallery image by the start of its label, or upload `upload`."""
    sidebar = page.get_by_test_id("stSidebar")
    if which == "upload":
        sidebar.get_by_text("Upload", exact=True).click()
        settle(page)
        sidebar.locator('input[type="file"]').set_input_files(str(upload))
    else:
        box = sidebar.get_by_test_id("stSelectbox").filter(has_text="Gallery image")
        box.click()
        page.keyboard.type(which)
        page.keyboard.press("Enter")
    settle(page)


def shoot(page, path: Path) -> None:
    errors = page.get_by_test_id("stException").count()
    page.screenshot(path=str(path), full_page=False)
    print(path, f"({errors} exceptions)" if errors else "")


def lesson_tour(page, out: Path, prefix: str) -> None:
    """The Lesson page, then every build of every step in the presenter view (Next until
    it is disabled), then the presenter view off again."""
    page.get_by_test_id("stSidebarNav").get_by_text("Lesson", exact=True).click()
    settle(page)
    shoot(page, out / f"{prefix}-lesson.png")
    presenter = page.get_by_test_id("stCheckbox").filter(has_text="Presenter view")
    presenter.click()
    settle(page)
    for shot in range(60):
        shoot(page, out / f"{prefix}-lesson-presenter-{shot:02d}.png")
        following = page.get_by_role("button", name=re.compile("^Next"))
        if following.is_disabled():
            break
        following.click()
        settle(page)
    presenter.click()
    settle(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full-page", action="store_true",
                        help="also a whole-page screenshot of each explorer panel")
    parser.add_argument("--image", choices=list(IMAGES), action="append",
                        help="only these images (default: all)")
    parser.add_argument("--lesson-only", action="store_true",
                        help="only the Lesson page, opened first, on its own image")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    upload = args.out / "upload.png"
    from PIL import Image
    import numpy as np
    gradient = np.linspace(0, 255, 300, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(gradient, (200, 1)), np.tile(gradient[:200, None], (1, 300)),
                              np.full((200, 300), 90, np.uint8)], -1)).save(upload)
    server = Server(timeout=60)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            for width, height in VIEWPORTS:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(server.url + "/lesson")
                settle(page)
                lesson_tour(page, args.out, f"opening-{width}x{height}")
                page.close()
            for name, which in IMAGES.items():
                if args.lesson_only or args.image and name not in args.image:
                    continue
                for width, height in VIEWPORTS:
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.goto(server.url)
                    settle(page)
                    if which:
                        choose_image(page, which, upload)
                    size = f"{width}x{height}"
                    shoot(page, args.out / f"{name}-{size}-explorer.png")
                    presenter = page.get_by_test_id("stCheckbox").filter(has_text="Presenter view")
                    presenter.click()
                    settle(page)
                    shoot(page, args.out / f"{name}-{size}-explorer-presenter.png")
                    presenter.click()
                    settle(page)
                    for panel in PANELS:
                        page.get_by_test_id("stButtonGroup").get_by_text(panel, exact=True).click()
                        settle(page)
                        if panel == "Sweep":
                            page.get_by_role("button", name="Play the sweep").first.click()
                            settle(page)
                        shoot(page, args.out / f"{name}-{size}-explorer-{panel}.png")
                        if args.full_page:
                            page.screenshot(path=str(args.out / f"{name}-{size}-explorer-{panel}"
                                                     f"-full.png"), full_page=True)
                    lesson_tour(page, args.out, f"{name}-{size}")
                    for url in PAGES:
                        page.get_by_test_id("stSidebarNav").get_by_text(url.capitalize(),
                                                                       exact=True).click()
                        settle(page)
                        shoot(page, args.out / f"{name}-{size}-{url}.png")
                        page.screenshot(path=str(args.out / f"{name}-{size}-{url}-full.png"),
                                        full_page=True)
                    page.close()
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
