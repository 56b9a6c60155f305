"""Training-step variants beside the recipe's, each in its own process (issue 23 part 2: what could make a step
faster), one after the other:

    python benchmarks/bench_train_variants.py [--arch vgg16] [--side 44] [--batch 128] [--precision bfloat16]
                                              [--variants plain,keras-bn,xla,bn-bf16,no-bn] [--steps 4]

* ``plain``: the recipe's compile (BN form, SGD Nesterov), as ``featuremaps train`` runs it: BN is
  :class:`featuremaps.emotion.norm.FusedBatchNormalization` (one fused kernel on TensorFlow);
* ``keras-bn``: the same with Keras' own ``BatchNormalization`` (the recipe before the fused layer);
* ``xla``: the same with ``model.compile(jit_compile=True)`` (XLA on TensorFlow and JAX, ``torch.compile`` on torch);
* ``bn-bf16``: Keras' BatchNormalization in bfloat16 instead of the mixed policy's float32 (VGG-16 only);
* ``no-bn``: no BatchNormalization at all (VGG-16 only): an upper bound of what BN costs, not a recipe.

The backend is ``KERAS_BACKEND``'s. Prints per variant the compile (first step) time and the fastest and median
of ``--steps`` timed steps in images/s, and for the VGG-16 variants a forward pass's rate. ``ONEDNN_VERBOSE=1``
in the environment shows which oneDNN kernels a step runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time


def one(arch: str, side: int, batch: int, precision: str, variant: str, steps: int) -> dict:
    import keras
    import numpy as np

    import featuremaps.emotion.model as em

    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, 1), dtype=np.float32)
    y = rng.integers(0, 7, batch)
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    if variant in ("bn-bf16", "no-bn") and arch != "vgg16":
        raise SystemExit(f"--variants {variant} is for the VGG-16")
    if variant == "keras-bn":  # Keras' own layer, as the recipe ran before the fused one
        em.FusedBatchNormalization = keras.layers.BatchNormalization
    if variant == "bn-bf16":  # Keras' layer in bfloat16
        em.FusedBatchNormalization = functools.partial(keras.layers.BatchNormalization, dtype="bfloat16")
    if arch == "vgg16":
        m = em.build_emotion_vgg16(input_shape=(side, side, 1), batch_norm=variant != "no-bn")
    else:
        m = em.build_emotion_model(arch, input_shape=(side, side, 1), batch_norm=True)
    m.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        jit_compile=variant == "xla",
    )
    t = time.perf_counter()
    m.train_on_batch(x, y)
    first = time.perf_counter() - t
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        m.train_on_batch(x, y)
        ts.append(time.perf_counter() - t)
    fw = []
    for _ in range(3):
        t = time.perf_counter()
        m.predict_on_batch(x)
        fw.append(time.perf_counter() - t)
    ts.sort()
    return {
        "variant": variant,
        "first_s": first,
        "best": batch / ts[0],
        "median": batch / ts[len(ts) // 2],
        "forward": batch / min(fw),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vgg16", choices=["vgg16", "resnet", "mobilenet"])
    ap.add_argument("--side", type=int, default=44)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--variants", default="plain,keras-bn,xla,bn-bf16,no-bn")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.arch, a.side, a.batch, a.precision, a.one, a.steps)))
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"{a.arch} {a.side}x{a.side} batch {a.batch} {a.precision} on {backend}; load {os.getloadavg()[0]:.2f}")
    print(f"{'variant':<9} {'first step':>10} {'best img/s':>10} {'median':>8} {'forward img/s':>13}")
    for v in a.variants.split(","):
        cmd = [sys.executable, __file__, "--one", v, "--arch", a.arch, "--side", str(a.side), "--batch", str(a.batch)]
        cmd += ["--precision", a.precision, "--steps", str(a.steps)]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        try:
            d = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"{v:<9} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        print(f"{v:<9} {d['first_s']:>9.1f}s {d['best']:>10.1f} {d['median']:>8.1f} {d['forward']:>13.1f}")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
