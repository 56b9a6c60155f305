"""The explorer's "what it looks for" panel: a channel's job in the background, and the page's requests meanwhile.

For each model: the latency of a hover (``/api/images/a0/layers/C2/channels/1/value``) with nothing else running
(the baseline), then a job for channel 0 of ``--layer`` (``POST /api/patterns/...``) with a hover every 0.2 s while
it runs: the job's time and seconds a step, the hovers' latency during it (each waits for at most one step on the
model thread), and a second ``POST`` of the same channel (the cache). In-process (FastAPI's TestClient), the
images of ``examples/``.

    PYTHONPATH=src python benchmarks/bench_explore_patterns.py                         # emotion C8, 256 steps
    PYTHONPATH=src python benchmarks/bench_explore_patterns.py --model vgg16 --weights none --layer C13 --steps 32

Target (issue 25): VGG16's ``block5_conv3`` at 224 px shows progress rather than blocking the page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench_explore_page import machine, uptime  # benchmarks/ is the script's folder: first on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
HOVER = "/api/images/a0/layers/C2/channels/1/value?y=1&x=1"


def ms(values: list[float]) -> str:
    v = sorted(values)
    p90 = v[min(len(v) - 1, round(0.9 * (len(v) - 1)))]
    return f"median {1000 * statistics.median(v):.0f} ms, p90 {1000 * p90:.0f}, max {1000 * v[-1]:.0f} (n={len(v)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="emotion")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--layer", default="C8")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--hovers", type=int, default=30, help="baseline hovers")
    a = ap.parse_args()

    from fastapi.testclient import TestClient

    from featuremaps import models
    from featuremaps.explore.app import create_app

    print(machine())
    print("before:", uptime())
    lm = models.load(a.model, weights=a.weights)
    c = TestClient(create_app(lm, sorted((ROOT / "examples").glob("*.png"))))
    c.get(HOVER)  # the image's analysis, once
    base = []
    for _ in range(a.hovers):
        t = time.perf_counter()
        assert c.get(HOVER).status_code == 200
        base.append(time.perf_counter() - t)
    path = f"/api/patterns/{a.layer}/0?steps={a.steps}"
    t0 = time.perf_counter()
    c.post(path)
    during, seen = [], 0
    while True:
        s = c.get(path).json()
        if s["state"] not in ("queued", "running"):
            break
        seen = max(seen, s["done"])
        t = time.perf_counter()
        assert c.get(HOVER).status_code == 200
        during.append(time.perf_counter() - t)
        time.sleep(0.2)
    total = time.perf_counter() - t0
    t = time.perf_counter()
    again = c.post(path).json()
    cached = time.perf_counter() - t
    print("after:", uptime())
    print(f"{lm.name} {s['layer']} {s['name']} F1, {a.steps} steps at {'x'.join(map(str, s['size']))}: {s['state']}")
    print(f"  job {total:.1f} s ({s.get('seconds', total):.1f} s on its thread, {total / a.steps:.3f} s a step)")
    print(f"  objective {s.get('first', float('nan')):.3g} -> {s.get('value', float('nan')):.3g}")
    print(f"  hover alone: {ms(base)}")
    ratio = statistics.median(during) / statistics.median(base)
    print(f"  hover during the job: {ms(during)} (ratio of medians {ratio:.1f})")
    print(f"  the same channel again: {1000 * cached:.1f} ms, {again['state']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
