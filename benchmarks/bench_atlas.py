"""Atlas throughput vs a plain ``model.predict`` on the same images, and atlas peak memory vs dataset size.

    .venv/bin/python benchmarks/bench_atlas.py --data fer2013/ --weights none   # or FEATUREMAPS_FER2013=...

Throughput: in one process, ``featuremaps.atlas.compute_atlas`` (reading the PNGs, preprocessing, the forward
pass, running class means and top-9 tables) against ``model.predict`` on the same images already in memory,
alternated ``--repeat`` times; the best time of each is reported. Memory: the full ``featuremaps atlas``
command (pictures and files included) in a child process for the whole split and for a tenth of it, peak
resident memory read from ``os.wait4``'s rusage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from fer_data import fer2013_path  # benchmarks/fer_data.py: the script's own folder is on sys.path

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def child_peak_mb(cmd: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return ru.ru_maxrss / 1024.0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="FER2013 folder, CSV or .tar.gz (default: $FEATUREMAPS_FER2013)")
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--model", default="emotion")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-memory", action="store_true")
    a = ap.parse_args()
    a.data = fer2013_path(a.data)

    import numpy as np

    from featuremaps import models
    from featuremaps.atlas import compute_atlas, open_source
    from featuremaps.atlas.stats import to_input

    lm = models.load(a.model, weights=a.weights)
    src = open_source(a.data, a.split, lm.classes)
    ids = src.subset(a.limit)
    n = ids.size
    shape = lm.resolve_input_shape(src.image(int(ids[0])).shape[:2])
    x, _ = to_input(lm, [src.image(int(i)) for i in ids], shape)
    lm.model.predict(x[: a.batch_size], batch_size=a.batch_size, verbose=0)  # warm-up (graph tracing)
    compute_atlas(lm, src, batch_size=a.batch_size, limit=a.batch_size)
    t_pred, t_atlas = [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        lm.model.predict(x, batch_size=a.batch_size, verbose=0)
        t_pred.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = compute_atlas(lm, src, batch_size=a.batch_size, limit=a.limit)
        t_atlas.append(time.perf_counter() - t0)
    assert res.images == n
    bp, ba = min(t_pred), min(t_atlas)
    print(
        f"images: {n} ({a.split}, input {'x'.join(map(str, shape))}, batch {a.batch_size}, "
        f"{len(res.layers)} conv layers)"
    )
    print(f"model.predict  : {bp:7.2f} s  {n / bp:7.1f} img/s   (runs: {' '.join(f'{t:.1f}' for t in t_pred)})")
    print(f"compute_atlas  : {ba:7.2f} s  {n / ba:7.1f} img/s   (runs: {' '.join(f'{t:.1f}' for t in t_atlas)})")
    print(f"atlas / predict throughput: {bp / ba:.2f}x")
    del x
    if a.skip_memory:
        return
    full = len(src) if a.limit is None else a.limit
    base = [
        sys.executable,
        "-m",
        "featuremaps.cli",
        "atlas",
        "--data",
        a.data,
        "--split",
        a.split,
        "--model",
        a.model,
        "--batch-size",
        str(a.batch_size),
    ] + (["--weights", a.weights] if a.weights else [])
    with tempfile.TemporaryDirectory() as tmp:
        for label, lim in (("tenth", max(1, full // 10)), ("full", full)):
            mb, secs = child_peak_mb([*base, "--limit", str(lim), "--out", f"{tmp}/{label}"])
            print(f"featuremaps atlas --limit {lim:5d}: peak RSS {mb:7.1f} MB, wall {secs:6.1f} s")
    _ = np


if __name__ == "__main__":
    main()
