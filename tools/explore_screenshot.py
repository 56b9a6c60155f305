"""Screenshot of the real explorer page (docs/explore.png): the server in a thread, headless Debian chromium.

PYTHONPATH=src python tools/explore_screenshot.py [--model emotion] [--image examples/astronaut.png]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from featuremaps import models
from featuremaps.explore.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="emotion")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--image", default=str(ROOT / "examples" / "astronaut.png"))
    ap.add_argument("--query", default="layer=C3&channel=5&cam=1&method=gradcam&sort=mean")
    ap.add_argument("--out", default=str(ROOT / "docs" / "explore.png"))
    a = ap.parse_args()
    lm = models.load(a.model, weights=a.weights)
    app = create_app(lm, [Path(a.image)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/?image=a0&{a.query}")
        page.wait_for_selector("#grid .cell", timeout=120_000)
        page.wait_for_selector("#camimg:not([hidden])", timeout=120_000)
        page.wait_for_selector("#caminfo:has-text('gradcam at')", timeout=120_000)
        tile = page.locator("#grid .cell .tile").nth(5)
        box = tile.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
        page.wait_for_selector("#hover[data-value]", timeout=60_000)
        time.sleep(0.5)
        page.screenshot(path=a.out, full_page=False)
        browser.close()
    server.should_exit = True
    print(f"wrote {a.out}; console errors: {errors or 'none'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
