"""Screenshot of the real explorer page (docs/explore.png): the server in a thread, headless Debian chromium.

PYTHONPATH=src python tools/explore_screenshot.py [--model emotion] [--image examples/astronaut.png]
PYTHONPATH=src python tools/explore_screenshot.py --live     # docs/explore-live.png: the camera, a fake one
    playing a clip of --image (Chromium's --use-file-for-fake-video-capture), after --frames answers
PYTHONPATH=src python tools/explore_screenshot.py --models emotion,vgg16 --weights none    # docs/explore-models.png
PYTHONPATH=src python tools/explore_screenshot.py --patterns    # docs/explore-patterns.png: "what it looks for"
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from featuremaps import models
from featuremaps.compare import distinct_names, load_compared
from featuremaps.explore.app import create_app, serve_in_thread
from featuremaps.explore.live import y4m_clip
from featuremaps.images import load_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="emotion")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--image", default=str(ROOT / "examples" / "astronaut.png"))
    ap.add_argument("--query", default="layer=C3&channel=5&cam=1&method=gradcam&sort=mean")
    ap.add_argument("--out", default=None, help="docs/explore.png (docs/explore-live.png with --live)")
    ap.add_argument("--live", action="store_true", help="the live camera (a fake one playing --image)")
    ap.add_argument("--live-query", default="layer=C3&cam=1&method=gradcam")
    ap.add_argument("--frames", type=int, default=40, help="--live: answers drawn before the screenshot")
    ap.add_argument("--models", default=None, help="models side by side (compare models), e.g. emotion,vgg16")
    ap.add_argument("--models-query", default="layer=C5&vs=m1")
    ap.add_argument("--patterns", action="store_true", help="the 'what it looks for' panel of a channel, computed")
    ap.add_argument("--patterns-query", default="layer=C8&channel=10&sort=index")
    a = ap.parse_args()
    if a.models:
        return side_by_side(a)
    lm = models.load(a.model, weights=a.weights)
    if a.patterns:
        return patterns_panel(a, lm)
    if a.live:
        return live(a, lm)
    a.out = a.out or str(ROOT / "docs" / "explore.png")
    app = create_app(lm, [Path(a.image)])
    server, port = serve_in_thread(app)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        # 1700 wide: the channel's view, its "what it looks for" panel and the CAM fit in one row, so the
        # grid starts inside the 1000 px (at 1500 the CAM wraps and pushes the grid below the window)
        page = browser.new_page(viewport={"width": 1700, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/?image=a0&{a.query}")
        page.wait_for_selector("#grid .cell", timeout=120_000)
        page.wait_for_selector("#camimg:not([hidden])", timeout=120_000)
        page.wait_for_selector("#caminfo:has-text('gradcam at')", timeout=120_000)
        # the CAM picture loaded: its height no longer moves what lies under it
        page.wait_for_function("() => document.getElementById('camimg').complete", timeout=60_000)
        tile = page.locator("#grid .cell .tile").nth(5)
        box = tile.bounding_box()
        x, y = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4
        view = page.viewport_size
        if not (0 <= x < view["width"] and 0 <= y < view["height"]):  # a mouse outside the window moves nothing
            browser.close()
            server.should_exit = True
            print(f"the tile to hover is at ({x:.0f}, {y:.0f}), outside the {view['width']}x{view['height']} window")
            return 1
        page.mouse.move(x, y)
        page.wait_for_selector("#hover[data-value]", timeout=60_000)
        time.sleep(0.5)
        page.screenshot(path=a.out, full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {a.out}; console errors: {errors or 'none'}")
    return 1 if errors else 0


def side_by_side(a) -> int:
    """``--models``: the same image through two models, the second beside the first (README's explore-models)."""
    out = a.out or str(ROOT / "docs" / "explore-models.png")
    loaded = distinct_names([load_compared(n, a.weights) for n in a.models.split(",")])
    app = create_app(loaded[0], [Path(a.image), ROOT / "examples" / "chelsea.png"], others=loaded[1:])
    server, port = serve_in_thread(app)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/?image=a0&{a.models_query}")
        page.wait_for_selector("#panelB:not([hidden]) #gridB .cell", timeout=180_000)
        page.wait_for_function("() => document.getElementById('inputB').complete", timeout=60_000)
        time.sleep(0.5)
        page.screenshot(path=out, full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {out}; console errors: {errors or 'none'}")
    return 1 if errors else 0


def patterns_panel(a, lm) -> int:
    """The panel of one channel after "compute": its pattern, objective and exemplars (both example images)."""
    out = a.out or str(ROOT / "docs" / "explore-patterns.png")
    server, port = serve_in_thread(create_app(lm, [Path(a.image), ROOT / "examples" / "chelsea.png"]))
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/?image=a0&{a.patterns_query}")
        page.wait_for_selector("[data-testid=patterns-panel][data-state=idle]", timeout=120_000)
        page.click("[data-testid=patterns-compute]")
        page.wait_for_selector("[data-testid=patterns-panel][data-state=done]", timeout=600_000)
        page.wait_for_function("() => document.querySelector('[data-testid=patterns-image]').complete")
        time.sleep(0.5)
        page.screenshot(path=out, full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {out}; console errors: {errors or 'none'}")
    return 1 if errors else 0


def live(a, lm) -> int:
    """The camera running on a fake device that plays a clip of ``a.image``; no image on the command line."""
    out = a.out or str(ROOT / "docs" / "explore-live.png")
    app = create_app(lm, [])
    server, port = serve_in_thread(app)
    errors = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        clip = Path(tmp) / "camera.y4m"
        clip.write_bytes(y4m_clip(load_image(a.image), frames=36))
        flags = [
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ]
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=flags)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/?{a.live_query}")
        page.wait_for_selector("#layers li", timeout=120_000)
        page.click("[data-testid=camera]")
        page.wait_for_function(f"() => window.featuremapsLive.frames >= {a.frames}", timeout=300_000)
        if "cam=1" in a.live_query:
            page.wait_for_selector("#liveheat:not([hidden])", timeout=120_000)
            page.wait_for_selector("#camimg:not([hidden])", timeout=120_000)
        time.sleep(0.3)
        state = page.evaluate("window.featuremapsLive")
        page.screenshot(path=out, full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {out}; live: {state['frames']} frames, {state['fps']} fps, {state['latencyMs']} ms, {state['label']}")
    print(f"console errors: {errors or 'none'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
