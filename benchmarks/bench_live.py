"""`featuremaps explore`'s live camera in Chromium with a fake camera: sustained fps, frame-to-drawn latency, RSS.

The real server in a thread (as `featuremaps explore` serves it: UVICORN_OPTIONS), Debian's headless chromium
driven by Playwright, its fake camera playing a YUV4MPEG2 clip of examples/astronaut.png (a face; it loops). The
page is started with its camera button and measured from its own ``window.featuremapsLive``: frames drawn, and
each frame's time from the page grabbing it from the video to the frame after its grid is in place. After
``--warmup`` frames:

1. the bundled emotion model (face crop + one forward pass a frame): ``--frames`` frames (600), sustained fps,
   median and p90 latency, the server's median time a frame, and the server process's RSS at the start and end
   of the window (and its maximum, sampled each second);
2. the same with a Grad-CAM of each frame at C13 (a backward pass more a frame): ``--cam-frames`` frames;
3. VGG16 at 224 px (``--weights none``, random weights: the speed is the same): ``--vgg-frames`` frames.

    PYTHONPATH=src python benchmarks/bench_live.py [--frames 600] [--cam-frames 100] [--vgg-frames 60]

Targets (issue 27), on 2 cores: the emotion model >= 10 fps sustained and <= 100 ms median frame-to-drawn; RSS
flat over the 600 frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_explore_page import machine, uptime  # benchmarks/ is the script's folder: first on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_live(browser, lm, frames: int, warmup: int, timeout: float, query: str = "", name: str = "") -> dict:
    """Start the camera on a fresh server for ``lm`` (the page opened with ``query``); measure ``frames`` frames
    after ``warmup``."""
    from featuremaps.explore.app import create_app, serve_in_thread

    server, port = serve_in_thread(create_app(lm, []))
    url = f"http://127.0.0.1:{port}/"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(int(timeout * 1000))
    try:
        page.goto(url + (f"?{query}" if query else ""))
        page.wait_for_selector("#layers li")
        page.click("[data-testid=camera]")
        page.wait_for_function(f"() => window.featuremapsLive.frames >= {warmup}")
        start = page.evaluate("window.featuremapsLive.frames")
        t0, rss0, peak = time.perf_counter(), rss_mb(), 0.0
        end = t0 + timeout
        while True:
            done = page.evaluate("window.featuremapsLive.frames")
            peak = max(peak, rss_mb())
            if done >= start + frames or time.perf_counter() > end:
                break
            time.sleep(0.2 if frames < 100 else 1.0)
        elapsed = time.perf_counter() - t0
        state = page.evaluate("({...window.featuremapsLive, latencies: window.featuremapsLive.latencies.slice()})")
        rss1 = rss_mb()
    finally:
        page.close()
        server.should_exit = True
    n = state["frames"] - start
    lat = sorted(state["latencies"][-n:]) if n > 0 else [float("nan")]
    return {
        "model": name or lm.name,
        "frames": n,
        "fps": n / elapsed,
        "median": statistics.median(lat),
        "p90": lat[min(len(lat) - 1, round(0.9 * (len(lat) - 1)))],
        "server": state["serverMs"],
        "label": state["label"],
        "dropped": state["dropped"],
        "rss": (rss0, rss1, max(peak, rss1)),
        "errors": errors,
        "phases": state.get("phases", {}),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600, help="frames measured for the emotion model")
    ap.add_argument("--vgg-frames", type=int, default=60, help="frames measured for VGG16 224 px (0: skip)")
    ap.add_argument("--cam-frames", type=int, default=100, help="frames with a Grad-CAM each (0: skip)")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--image", default=str(ROOT / "examples" / "astronaut.png"))
    a = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from featuremaps import models
    from featuremaps.explore.live import y4m_clip
    from featuremaps.images import load_image

    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is not installed (apt-get install chromium)")
        return 2
    print(f"machine: {machine()}")
    print(f"before: {uptime()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        clip = Path(tmp) / "camera.y4m"
        clip.write_bytes(y4m_clip(load_image(a.image), frames=36))
        flags = [
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ]
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        print(f"page: {chromium} {browser.version}; camera: a {Path(a.image).name} clip (y4m, 30 fps, looped)")
        emotion = models.load("emotion")
        rows.append(run_live(browser, emotion, a.frames, a.warmup, timeout=600))
        if a.cam_frames:
            q, name = "layer=C13&cam=1&method=gradcam", "emotion_vgg16, Grad-CAM at C13 each frame"
            rows.append(run_live(browser, emotion, a.cam_frames, a.warmup, timeout=600, query=q, name=name))
        if a.vgg_frames:
            vgg = models.load("vgg16", weights="none")
            rows.append(run_live(browser, vgg, a.vgg_frames, min(a.warmup, 5), timeout=600))
        browser.close()
    print()
    print(
        "| model | frames | sustained fps | median frame-to-drawn ms | p90 ms | server ms/frame | dropped | "
        "RSS start -> end (max) MB | prediction |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        r0, r1, rmax = r["rss"]
        print(
            f"| {r['model']} | {r['frames']} | {r['fps']:.1f} | {r['median']:.0f} | {r['p90']:.0f} | "
            f"{r['server']:.0f} | {r['dropped']} | {r0:.0f} -> {r1:.0f} ({rmax:.0f}) | {r['label']} |"
        )
    print()
    print(f"after: {uptime()}")
    e = rows[0]
    ok = e["fps"] >= 10 and e["median"] <= 100
    print(
        f"target: emotion model >= 10 fps and <= 100 ms median: {'met' if ok else 'NOT met'} "
        f"({e['fps']:.1f} fps, {e['median']:.0f} ms); RSS over the window {e['rss'][1] - e['rss'][0]:+.0f} MB"
    )
    for r in rows:
        print(f"{r['model']}: where a frame's time goes in the page (medians, ms): {r['phases']}")
    for r in rows:
        if r["errors"]:
            print(f"console errors ({r['model']}): {r['errors'][:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
