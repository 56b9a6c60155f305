"""Grad-CAM cost relative to one forward pass, in one process (warm-up, then the median of several runs).

    python benchmarks/bench_cam.py                 # VGG16 (weights=None) at 224x224
    python benchmarks/bench_cam.py --scorecam      # + Score-CAM on VGG16 (512 masked passes: minutes)

Prints: one forward pass (``model(x, training=False)``), featuremaps' Grad-CAM (model cut at the last conv
layer: body forward + head forward/backward), the textbook way (``tf.GradientTape`` over the whole model,
``keras.io`` Grad-CAM example), Grad-CAM++ and LayerCAM per image; Score-CAM per image on the 48x48
emotion VGG-16 (and on VGG16 with --scorecam).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def timed(fn, repeat: int, warmup: int = 2) -> float:
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
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scorecam", action="store_true", help="also time Score-CAM on VGG16 (slow)")
    args = ap.parse_args()

    import keras
    import numpy as np

    from featuremaps.cam import CamEngine, compute_cam
    from featuremaps.emotion.model import build_emotion_vgg16

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None)
    x = np.random.default_rng(0).uniform(-100, 100, (224, 224, 3)).astype(np.float32)
    xb = x[None]
    rows = []
    fwd = timed(lambda: model(xb, training=False), args.repeat)
    rows.append(("VGG16 forward pass", fwd))
    for m in ("gradcam", "gradcam++", "layercam"):
        rows.append((f"VGG16 {m} (featuremaps)", timed(lambda m=m: compute_cam(model, x, m), args.repeat)))
    # the CLI and the explorer build one engine per model, layer and input size and reuse it for every image:
    # the per-image cost; compute_cam above builds the engine (the cut graph, its compiled gradient) every call.
    # A new image every call: the engine keeps the body's outputs of the last image (one gradient per class).
    engine = CamEngine(model, x.shape)
    images = itertools.cycle([x + i for i in range(4)])
    rows.append(
        (
            "VGG16 gradcam, engine reused (per image in cam/report/explore)",
            timed(lambda: engine.run(next(images), "gradcam"), args.repeat),
        )
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        conv = model.get_layer("block5_conv3")
        grad_model = keras.Model(model.inputs, [conv.output, model.output])

        def textbook():
            with tf.GradientTape() as tape:
                a, preds = grad_model(xb)
                score = preds[:, int(tf.argmax(preds[0]))]
            g = tape.gradient(score, a)
            w = tf.reduce_mean(g, axis=(0, 1, 2))
            return tf.nn.relu(a[0] @ w[:, None]).numpy()

        rows.append(("VGG16 gradcam, textbook GradientTape on the whole model", timed(textbook, args.repeat)))
    if args.scorecam:
        rows.append(("VGG16 scorecam", timed(lambda: compute_cam(model, x, "scorecam"), 1, warmup=0)))
    emo = build_emotion_vgg16()
    xe = np.random.default_rng(0).uniform(0, 1, (48, 48, 1)).astype(np.float32)
    t_emo = timed(lambda: emo(xe[None], training=False), args.repeat)
    rows.append(("emotion VGG-16 48x48 forward pass", t_emo))
    for m in ("gradcam", "gradcam++", "layercam", "scorecam"):
        rep = 3 if m == "scorecam" else args.repeat
        rows.append((f"emotion VGG-16 {m}", timed(lambda m=m: compute_cam(emo, xe, m), rep, warmup=1)))
    emo_engine = CamEngine(emo, xe.shape)
    faces = itertools.cycle([np.roll(xe, i, axis=0) for i in range(4)])
    emo_reused = timed(lambda: emo_engine.run(next(faces), "gradcam"), args.repeat)

    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    rows.append(("emotion VGG-16 gradcam, engine reused (per image)", emo_reused))
    for name, t in rows:
        base = fwd if name.startswith("VGG16") else t_emo
        print(f"{name:<66} {t * 1000:9.1f} ms  {t / base:6.2f}x forward")


if __name__ == "__main__":
    main()
