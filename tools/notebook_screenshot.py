"""Screenshot of the executed tour notebook as Jupyter shows it (docs/notebook_tour.png): nbconvert renders
examples/tour.ipynb (with its committed outputs) to HTML with JupyterLab's look, headless Debian chromium
takes the picture. Nothing is fetched: the page's MathJax/require scripts from a CDN are blocked.

Needs nbconvert (``pip install nbconvert``) and the dev extra (playwright); Debian's ``chromium``.

PYTHONPATH=src python tools/notebook_screenshot.py [--cells 0-4] [--height 0] [--out docs/notebook_tour.png]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notebook", default=str(ROOT / "examples" / "tour.ipynb"))
    ap.add_argument("--cells", default="0-4", help="first-last cell index (0-based) to keep in the picture")
    ap.add_argument("--width", type=int, default=980)
    ap.add_argument("--height", type=int, default=0, help="cut the page at this height (0: the whole page)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "notebook_tour.png"))
    a = ap.parse_args()
    nb = nbformat.read(a.notebook, as_version=4)
    lo, hi = (int(v) for v in a.cells.split("-"))
    nb.cells = nb.cells[lo : hi + 1]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "tour.html"
        page.write_text(body, encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            tab = browser.new_page(viewport={"width": a.width, "height": a.height or 800}, device_scale_factor=1)
            tab.route("http*://**", lambda route: route.abort())  # offline: no CDN
            tab.goto(page.as_uri(), wait_until="load")
            tab.wait_for_timeout(300)
            if a.height:
                tab.screenshot(path=a.out, clip={"x": 0, "y": 0, "width": a.width, "height": a.height})
            else:
                tab.screenshot(path=a.out, full_page=True)
            browser.close()
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
