"""``featuremaps patterns``: what one optimisation step costs beside the framework's own pass, and the wall time
of the issue's two workloads, in one process (one command, one table).

    python benchmarks/bench_patterns.py                    # (a), (b); (c) timed on 8 steps, 256 extrapolated
    python benchmarks/bench_patterns.py --vgg-steps 256     # (c) in full (VGG16 224 px: long on 2 cores)
    KERAS_BACKEND=jax python benchmarks/bench_patterns.py   # another Keras backend

(a) one step of :func:`featuremaps.patterns.optimise.optimise` (the Fourier image, a fresh random warp, the
    preprocessing, the adapter's batched gradient, the adjoints back to the spectrum, Adam) against the plain
    forward + backward of the same batch through the same layers (``adapter.gradients`` on a fixed batch: the
    framework's part of the step alone), emotion model, 16 channels of C8 (block4_conv1); target <= 1.3x;
(b) the emotion model, 16 channels of one layer, 256 steps (C8 and C13: C13 runs the whole network); target
    <= 60 s on 2 cores; in float32 and, where the CPU has bfloat16 arithmetic, in bfloat16 (``--precisions``);
(c) VGG16 at 224 px, block5_conv3, 16 channels (ImageNet weights where Keras has them cached, else random:
    the cost is the same);
(d) the diversity term's step (``--images 4``: 4 channels x 4 images of C8, the same batch of 16) against the
    plain step, whole ``optimise`` runs of a few steps, interleaved (one more forward and 33 ms of NumPy a step).
The load average is printed before and after: figures taken on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def per_step(fn, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15, help="steps timed for (a)")
    ap.add_argument("--steps", type=int, default=256, help="steps of (b)")
    ap.add_argument("--vgg-steps", type=int, default=8, help="steps of (c) timed (its 256-step time extrapolated)")
    ap.add_argument("--skip-vgg", action="store_true")
    ap.add_argument("--layers", default="block4_conv1,block5_conv3", help="emotion layers timed in (b)")
    ap.add_argument("--diversity-steps", type=int, default=16, help="steps of each (d) run (0: skip (d))")
    ap.add_argument(
        "--precisions",
        default=None,
        help="precisions of (b) and (c), side by side (default float32,bfloat16 where the CPU has bfloat16 "
        "arithmetic and Keras runs on TensorFlow, else float32)",
    )
    args = ap.parse_args()

    import keras
    import numpy as np

    from featuremaps import models
    from featuremaps.cpu import has_bf16
    from featuremaps.frameworks import adapter
    from featuremaps.patterns.image import FourierImage
    from featuremaps.patterns.optimise import Adam, optimise
    from featuremaps.patterns.transforms import Preprocessing, Warp
    from featuremaps.targets import ChannelMean

    precisions = (args.precisions or "").split(",") if args.precisions else ["float32"]
    if not args.precisions and has_bf16() and keras.backend.backend() == "tensorflow":
        precisions.append("bfloat16")
    print(f"machine: {os.cpu_count()} CPUs, Keras {keras.__version__} on {keras.backend.backend()}; {load()}")
    rows = []
    lm = models.load("emotion", None)
    ad = adapter(lm.model)
    shape = (48, 48, 1)
    targets = [ChannelMean("block4_conv1", k) for k in range(16)]

    # (a) the framework's pass alone vs a whole step
    rng = np.random.default_rng(0)
    image = FourierImage(16, *shape, seed=0)
    pre = Preprocessing(lm.preprocess_fn, shape[2])
    adam = Adam()
    fixed = pre.forward(image.forward())

    def plain():
        ad.gradients(fixed, targets)

    def step():
        x = image.forward()
        warp = Warp(rng, 16, *shape[:2])
        r = ad.gradients(pre.forward(warp.forward(x)), targets)
        adam.ascend(image.params, image.backward(warp.adjoint(pre.adjoint(r.gradient))))

    grad = ad.gradients(fixed, targets).gradient

    def numpy_part():  # the step without the framework's pass: what featuremaps adds
        x = image.forward()
        warp = Warp(rng, 16, *shape[:2])
        pre.forward(warp.forward(x))
        adam.ascend(image.params, image.backward(warp.adjoint(pre.adjoint(grad))))

    # interleaved rounds, so that a change of load touches both alike
    plains, steps, extra = [], [], []
    for _ in range(3):
        plains.append(per_step(plain, args.repeat // 3 or 1))
        steps.append(per_step(step, args.repeat // 3 or 1))
        extra.append(per_step(numpy_part, args.repeat // 3 or 1))
    p, s, e = statistics.median(plains), statistics.median(steps), statistics.median(extra)
    rows.append(("(a) emotion C8, 16 channels: forward + backward (adapter.gradients)", f"{p * 1000:.1f} ms"))
    rows.append(("(a) emotion C8, 16 channels: one optimisation step", f"{s * 1000:.1f} ms"))
    rows.append(("(a) step / plain pass (target <= 1.3)", f"{s / p:.2f}x"))
    rows.append(("(a) the step's NumPy part alone (image, warp, preprocessing, adjoints, Adam)", f"{e * 1000:.1f} ms"))
    rows.append(("(a) (plain pass + NumPy part) / plain pass", f"{(p + e) / p:.2f}x"))

    # (b) 16 channels, 256 steps, one layer
    for layer in args.layers.split(","):
        ts = [ChannelMean(layer, k) for k in range(16)]
        for precision in precisions:
            t = time.perf_counter()
            res = optimise(ad, ts, shape, lm.preprocess_fn, steps=args.steps, seed=0, precision=precision)
            dt = time.perf_counter() - t
            rise = float(np.mean(res.values - res.history[0]))
            what = f"(b) emotion {layer}, 16 channels, {args.steps} steps, {precision} (target <= 60 s)"
            rows.append((what, f"{dt:.1f} s"))
            rows.append((f"    mean objective rise {layer}, {precision} (final values in float32)", f"{rise:.3g}"))

    # (d) the diversity term's step vs the plain step, same batch
    if args.diversity_steps:
        groups = [ChannelMean("block4_conv1", k) for k in range(4) for _ in range(4)]
        n = args.diversity_steps

        def run(w):
            t = time.perf_counter()
            optimise(ad, groups, shape, lm.preprocess_fn, steps=n, seed=0, diversity=w, groups=4 if w else None)
            return (time.perf_counter() - t) / (n + 1)

        run(0.0), run(10.0)  # warm-up (compilation)
        plain_d, diverse = [], []
        for _ in range(3):
            plain_d.append(run(0.0))
            diverse.append(run(10.0))
        a, b = statistics.median(plain_d), statistics.median(diverse)
        rows.append(("(d) emotion C8, 4 channels x 4 images: plain step", f"{a * 1000:.1f} ms"))
        rows.append(("(d) ... with the diversity term (weight 10)", f"{b * 1000:.1f} ms"))
        rows.append(("(d) diversity step / plain step", f"{b / a:.2f}x"))

    # (c) VGG16 224 px block5_conv3
    if not args.skip_vgg:
        cached = (Path(keras.config.keras_home() if hasattr(keras.config, "keras_home") else "~/.keras").expanduser()
                  / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").is_file()  # fmt: skip
        vgg = keras.applications.VGG16(weights="imagenet" if cached else None, include_top=False)
        vad = adapter(vgg)
        ts = [ChannelMean("block5_conv3", k) for k in range(16)]
        from featuremaps.loaded import preprocess_fn

        caffe = preprocess_fn("caffe")
        for precision in precisions:
            optimise(vad, ts, (224, 224, 3), caffe, steps=1, seed=0, precision=precision)  # compile
            t = time.perf_counter()
            optimise(vad, ts, (224, 224, 3), caffe, steps=args.vgg_steps, seed=0, precision=precision)
            dt = (time.perf_counter() - t) / (args.vgg_steps + 1)  # + the final evaluation pass
            what = "ImageNet" if cached else "random"
            rows.append((f"(c) VGG16 ({what} weights) 224 px block5_conv3, 16 channels, {precision}: one step",
                         f"{dt:.2f} s"))  # fmt: skip
            note = "" if args.vgg_steps >= 256 else " (extrapolated)"
            rows.append((f"(c) ... 256 steps{note}", f"{dt * 257 / 60:.1f} min"))

    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
