"""The atlas on Ray Data vs the local atlas on the same images; driver memory vs N; 1 vs 2 actors.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_atlas_ray.py --data ../shared/data/fer2013/fer2013.tar.gz \\
        --limit 1024

Throughput: in one process, ``compute_atlas`` (local) and ``compute_atlas_ray`` (a local Ray with ``--cpus``
CPUs started once, before the clock) on the same ``--limit`` PrivateTest faces. A Ray run's wall time includes
starting its actors (each imports Keras and builds the model once); the steady rate counts the images of the
partials after the first one over the time from the first partial to the last. The statistics of both runs are
checked equal.
Memory: the ``featuremaps atlas --engine ray`` command in a child process for ``--limit`` and ``--limit / 10``
images; the driver's own peak resident memory (VmHWM, polled) is reported, not its Ray workers'.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def driver_peak_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS of the process itself (not its children), polled from /proc, and its wall time."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024.0)
        except OSError:
            pass
        time.sleep(0.2)
    if p.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return peak, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.tar.gz")
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--model", default="emotion")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=1024)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-one-actor", action="store_true")
    a = ap.parse_args()

    import numpy as np
    import ray

    from featuremaps import models
    from featuremaps.atlas import compute_atlas, open_source
    from featuremaps.atlas.ray import compute_atlas_ray

    load = partial(models.load, a.model, weights=a.weights)
    lm = load()
    src = open_source(a.data, a.split, lm.classes)
    n = min(a.limit, len(src))
    bs = a.batch_size
    compute_atlas(lm, src, batch_size=bs, limit=bs)  # warm-up (graph tracing)
    t0 = time.perf_counter()
    local = compute_atlas(lm, src, batch_size=bs, limit=n)
    t_local = time.perf_counter() - t0
    print(f"images: {n} ({a.split}, batch {bs}, {len(local.layers)} conv layers, model {lm.name})")
    print(f"local compute_atlas      : {t_local:7.1f} s  {n / t_local:6.1f} img/s")

    t0 = time.perf_counter()
    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(f"ray.init(num_cpus={a.cpus})     : {time.perf_counter() - t0:7.1f} s (not counted below)")
    rates = {}
    for actors in [2, 1] if not a.skip_one_actor else [2]:
        arrivals = []  # (time, images done) as partials reach the driver
        t0 = time.perf_counter()
        res = compute_atlas_ray(
            load,
            src,
            lm=lm,
            batch_size=bs,
            limit=n,
            actors=actors,
            progress=lambda i, _n, arrivals=arrivals: arrivals.append((time.perf_counter(), i)),
        )
        t = time.perf_counter() - t0
        # steady rate: images of the partials after the first one, over the time from the first to the last
        (t1, i1), (t2, i2) = arrivals[0], arrivals[-1]
        steady = (i2 - i1) / max(1e-9, t2 - t1)
        rates[actors] = (n / t, steady)
        same = all(
            np.allclose(res.means[j], local.means[j], rtol=1e-5, atol=1e-7)
            and (res.top_idx[j] == local.top_idx[j]).all()
            and (np.argsort(-res.si[j], kind="stable") == np.argsort(-local.si[j], kind="stable")).all()
            for j in range(len(local.layers))
        )
        print(
            f"ray, {actors} actor(s)    : {t:7.1f} s  {n / t:6.1f} img/s wall (first partial after {t1 - t0:.1f} s;"
            f" steady {steady:6.1f} img/s over {len(arrivals)} partials); statistics equal to local: {same}"
        )
    ray.shutdown()
    r2, s2 = rates[2]
    print(f"ray (2 actors) / local throughput: {r2 * t_local / n:.2f}x wall, {s2 * t_local / n:.2f}x steady")
    if 1 in rates:
        print(f"2 actors / 1 actor throughput   : {r2 / rates[1][0]:.2f}x wall, {s2 / rates[1][1]:.2f}x steady")
    if a.skip_memory:
        return
    base = [sys.executable, "-m", "featuremaps.cli", "atlas", "--data", a.data, "--split", a.split]
    base += ["--model", a.model, "--batch-size", str(bs), "--engine", "ray", "--layers", "C1,C13"]
    base += ["--weights", a.weights] if a.weights else []
    with tempfile.TemporaryDirectory() as tmp:
        for label, lim in (("tenth", max(1, n // 10)), ("full", n)):
            mb, secs = driver_peak_mb([*base, "--limit", str(lim), "--out", f"{tmp}/{label}"])
            print(f"featuremaps atlas --engine ray --limit {lim:5d}: driver peak RSS {mb:7.1f} MB, wall {secs:6.1f} s")


if __name__ == "__main__":
    main()
