"""The batched input gradient on Keras/TensorFlow, three ways, side by side in one process:

    python benchmarks/bench_gradients.py [--layer block5_conv3] [--batch 16] [--repeat 10]

One ``adapter.gradients`` batch of the emotion VGG-16 (16 random faces, each its own channel of ``--layer``):
XLA-compiled (what every graph took before session 5, and what graphs with strided convolutions still take:
``gradients.needs_xla``), graph mode with oneDNN (stride-1 graphs now) and the bfloat16 copy of the net
(``precision="bfloat16"``, ``patterns --precision auto`` on CPUs with bfloat16 arithmetic). Medians, in rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", default="block5_conv3")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from featuremaps import models
    from featuremaps.frameworks import adapter
    from featuremaps.frameworks.keras.gradients import _tf_weighted_step
    from featuremaps.targets import ChannelMean, target_weights

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("bench_gradients.py: error: compares TensorFlow's paths; run with KERAS_BACKEND=tensorflow")
    ad = adapter(models.load("emotion", None).model)
    x = np.random.default_rng(0).random((a.batch, 48, 48, 1), dtype=np.float32)
    targets = [ChannelMean(a.layer, k) for k in range(a.batch)]
    ad.gradients(x, targets)
    g = next(v for k, v in ad._objectives.items() if k[1] == "batch")
    w = tf.constant(target_weights(targets, tuple(int(d) for d in g.net.outputs[0].shape[1:])))
    xla = _tf_weighted_step(g.net, jit=True)
    ways = {
        "XLA": lambda: [t.numpy() for t in xla(tf.constant(x), w)],
        "graph mode (oneDNN)": lambda: ad.gradients(x, targets),
        "bfloat16 copy": lambda: ad.gradients(x, targets, precision="bfloat16"),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for f in ways.values():  # compile
        f(), f()
    for _ in range(a.repeat):
        for k, f in ways.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    print(f"emotion VGG-16, {a.batch} faces, input gradient of {a.layer}; load {os.getloadavg()[0]:.2f}")
    base = statistics.median(times["XLA"])
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"{k:<20} {m * 1000:8.1f} ms  {base / m:5.2f}x XLA's speed")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
