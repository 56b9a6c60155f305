"""`featuremaps explore` server-side costs, VGG16 (weights=None, headless as `show` loads it) at 224x224:

1. layer switch for an image already seen: GET /api/images/{id}/layers/C1 + its grid.png (all 64 channels),
   median, through FastAPI's TestClient (in-process: the app's own time, no network, no browser);
2. first complete view of a new image (upload already received): summary (the one forward pass, all layers,
   all channels), input.png, C1's JSON and grid.png, vs what `show` spends on C1: prepare + FeatureExtractor
   (C1, 16 maps) + render_layer + encode_png, measured in the same process;
3. server memory (RSS) over N uploads of distinct images, each viewed, with the cache bound (--cache-mb).

    PYTHONPATH=src python benchmarks/bench_explore.py [--repeats 5] [--switches 30] [--uploads 100] [--cache-mb 256]
        [--upload-mb 16]

Targets: 1. <= 50 ms; 2. <= 1.3x; 3. RSS flat (last - after the cache filled, within the cache bound's noise).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def photo(seed: int) -> bytes:
    """examples/chelsea.png, shifted and tinted per seed: every upload is a new image (new bytes, new maps)."""
    import numpy as np
    from PIL import Image

    from featuremaps.images import load_image

    rgb = load_image(ROOT / "examples" / "chelsea.png").astype(np.int16)
    rgb = np.roll(rgb, seed * 7, axis=1) + (seed % 13) - 6
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--switches", type=int, default=30)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--cache-mb", type=int, default=256)
    ap.add_argument("--upload-mb", type=int, default=None, help="decoded uploads kept, MiB (default: --cache-mb)")
    a = ap.parse_args()

    from fastapi.testclient import TestClient

    from featuremaps import models
    from featuremaps.explore.app import create_app
    from featuremaps.extractor import FeatureExtractor
    from featuremaps.images import load_image
    from featuremaps.io import encode_png
    from featuremaps.pipeline import prepare
    from featuremaps.render import render_layer, rows_from

    lm = models.load("vgg16", weights="none", random_head=False)
    app = create_app(lm, [], cache_bytes=a.cache_mb * 2**20, upload_bytes=(a.upload_mb or a.cache_mb) * 2**20)
    c = TestClient(app)

    def upload(seed):
        r = c.post("/api/images", content=photo(seed), headers={"X-Filename": f"p{seed}.png"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def first_view(image_id, parts=None):
        for url in ("", "/input.png", "/layers/C1", "/layers/C1/grid.png"):
            t0 = time.perf_counter()
            r = c.get(f"/api/images/{image_id}{url}")
            assert r.status_code == 200, r.text
            if parts is not None:
                parts.setdefault(url or "/ (forward + stats)", []).append(time.perf_counter() - t0)

    def show_layer(fx, rgb):
        """What `show` spends on one image for C1: prepare, extract, render_layer(C1), encode the PNG."""
        prep = prepare(lm, rgb)
        results, _ = fx(prep.x[None])
        encode_png(render_layer(rows_from(results)[0], image=prep.shown))

    # show (C1 only, 16 maps; and `show`'s default: all layers, 16 maps, drawing C1) and the explorer's first
    # complete view of a new image, interleaved so that both see the same load; two warm-ups each
    rgb = load_image(ROOT / "examples" / "chelsea.png")
    shape = prepare(lm, rgb).x.shape
    fx_c1 = FeatureExtractor(lm.model, shape, layers="C1", maps=16)
    fx_all = FeatureExtractor(lm.model, shape, layers="all", maps=16)
    show_t, show_all_t, first_t, parts = [], [], [], {}
    for i in range(a.repeats + 2):
        t0 = time.perf_counter()
        show_layer(fx_c1, rgb)
        t1 = time.perf_counter()
        show_layer(fx_all, rgb)
        t2 = time.perf_counter()
        image_id = upload(1000 + i)
        t3 = time.perf_counter()
        first_view(image_id, parts if i >= 2 else None)
        t4 = time.perf_counter()
        if i >= 2:  # the first two: graph builds and the compiled step's trace
            show_t.append(t1 - t0)
            show_all_t.append(t2 - t1)
            first_t.append(t4 - t3)

    # --- layer switch: to C1 (64 channels, 224x224) from another layer, image already seen
    switch_t = []
    for i in range(a.switches):
        other = f"C{2 + i % 12}"
        c.get(f"/api/images/{image_id}/layers/{other}")
        c.get(f"/api/images/{image_id}/layers/{other}/grid.png")
        t0 = time.perf_counter()
        assert c.get(f"/api/images/{image_id}/layers/C1").status_code == 200
        assert c.get(f"/api/images/{image_id}/layers/C1/grid.png").status_code == 200
        switch_t.append(time.perf_counter() - t0)
    ex = app.state.explorer
    direct_t = []
    for _ in range(a.switches):
        t0 = time.perf_counter()
        ex.layer_view(image_id, "C1")
        ex.grid_png(image_id, "C1")
        direct_t.append(time.perf_counter() - t0)

    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    print(f"show C1 (prepare + extract C1, 16 maps + render_layer + PNG): median {med(show_t) * 1e3:.0f} ms")
    print(f"show default (all 13 layers, 16 maps; drawing C1): median {med(show_all_t) * 1e3:.0f} ms")
    print(
        f"explore first complete view (forward, all 13 layers x all channels, stats, input.png, C1 JSON + "
        f"64-map grid): median {med(first_t) * 1e3:.0f} ms -> {med(first_t) / med(show_t):.2f}x show C1 "
        f"(target <= 1.3x), {med(first_t) / med(show_all_t):.2f}x show default"
    )
    print("  of which: " + ", ".join(f"{k} {med(v) * 1e3:.0f} ms" for k, v in parts.items()))
    print(
        f"explore layer switch to C1 (JSON + grid.png, 64 maps), image seen: median {med(switch_t) * 1e3:.1f} ms "
        f"via TestClient, {med(direct_t) * 1e3:.1f} ms in the Explorer (target <= 50 ms)"
    )

    # --- memory over many uploads
    rss = [rss_mb()]
    t0 = time.perf_counter()
    for i in range(a.uploads):
        image_id = upload(i)
        first_view(image_id)
        rss.append(rss_mb())
    fill = min(len(rss) - 1, 10)
    print(
        f"memory over {a.uploads} uploads (cache {a.cache_mb} MiB, {ex.cache.evictions} evictions, "
        f"{time.perf_counter() - t0:.0f} s): RSS start {rss[0]:.0f} MiB, after {fill} {rss[fill]:.0f} MiB, "
        f"max {max(rss):.0f} MiB, last {rss[-1]:.0f} MiB; growth after {fill}: {rss[-1] - rss[fill]:+.0f} MiB; "
        f"cache holds {len(ex.cache)} images, {ex.cache.nbytes / 2**20:.0f} MiB"
    )
    print("RSS every 10 uploads (MiB): " + " ".join(f"{rss[i]:.0f}" for i in range(0, len(rss), 10)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
