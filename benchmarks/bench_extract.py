"""Extraction of all 13 conv layers of VGG16 (weights=None, 224x224, 16 maps each, selection in the graph)
vs one plain forward pass of the same model, same calling convention (direct call, warm-up, median of N).

    .venv/bin/python benchmarks/bench_extract.py [--repeats 9] [--select first]

Target: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import time

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--select", default="first")
    ap.add_argument("--maps", type=int, default=16)
    args = ap.parse_args()

    import keras
    import numpy as np

    from featuremaps.extractor import FeatureExtractor

    model = keras.applications.VGG16(weights=None)
    x = np.random.default_rng(0).uniform(-120, 130, (1, 224, 224, 3)).astype(np.float32)
    fx = FeatureExtractor(model, (224, 224, 3), maps=args.maps, select=args.select)
    assert len(fx.layers) == 13

    def plain():
        keras.ops.convert_to_numpy(model(x, training=False))

    def extract():
        fx(x)

    for f in (plain, extract):  # warm-up (tracing, allocations)
        f()
        f()
    times = {"plain": [], "extract": []}
    for _ in range(args.repeats):  # interleaved, so background load hits both alike
        for name, f in (("plain", plain), ("extract", extract)):
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    p, e = statistics.median(times["plain"]), statistics.median(times["extract"])
    print(
        f"VGG16 224x224, {len(fx.layers)} conv layers, {args.maps} maps ({args.select}), "
        f"median of {args.repeats}, keras {keras.__version__} / {keras.backend.backend()}"
    )
    print(f"plain forward pass     {p * 1000:8.1f} ms")
    print(f"FeatureExtractor call  {e * 1000:8.1f} ms")
    print(f"ratio {e / p:.3f} (target <= 1.05) {'PASS' if e / p <= 1.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
