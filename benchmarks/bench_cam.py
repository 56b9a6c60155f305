"""Grad-CAM cost relative to one forward pass, in one process (warm-up, then the median of several runs).

    python benchmarks/bench_cam.py --repeat 5      # VGG16 (weights=None) at 224x224, Keras and torch
    python benchmarks/bench_cam.py --scorecam      # + Score-CAM on VGG16 (512 masked passes: minutes)

Each row is timed in turn with one forward pass (``model(x, training=False)``), and its ratio is to that
forward pass (a shared machine's load hits both alike). Rows: featuremaps' Grad-CAM as the Python API gives it
(``compute_cam(model, x)`` on a new image each call: its engine, the model cut at the last conv layer with its
compiled gradient, is kept between calls), the same with the engine built anew every call (the cache cleared:
a model's first call), an engine reused explicitly (what cam, report and explore do per image), the textbook
way (``tf.GradientTape`` over the whole model, ``keras.io`` Grad-CAM example), Grad-CAM++ and LayerCAM per
image; the 48x48 emotion VGG-16 the same way (and Score-CAM); torchvision's VGG16 (random weights) the same
way where torch is installed.
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


def against(forward, fn, repeat: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds of ``fn`` and of ``forward``, called in turn (``forward``, ``fn``, ``forward``...) after
    ``warmup`` calls of ``fn``: on a shared machine both see the same load, so their ratio holds where the
    absolute times do not."""
    for _ in range(warmup):
        fn()
    tf, tc = [], []
    for _ in range(repeat):
        for f, ts in ((forward, tf), (fn, tc)):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
    return statistics.median(tc), statistics.median(tf)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scorecam", action="store_true", help="also time Score-CAM on VGG16 (slow)")
    ap.add_argument("--no-torch", action="store_true", help="Keras only")
    args = ap.parse_args()

    import keras
    import numpy as np

    from featuremaps.cam import CamEngine, compute_cam
    from featuremaps.emotion.model import build_emotion_vgg16

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None)
    x = np.random.default_rng(0).uniform(-100, 100, (224, 224, 3)).astype(np.float32)
    xb = x[None]
    rows = []  # (name, seconds, seconds of the forward pass timed in turn with it)
    r = args.repeat

    def forward():
        return model(xb, training=False)

    timed(forward, 2, 0)
    # compute_cam keeps its engine between calls (cam.engine.ENGINES); a new image every call
    images = itertools.cycle([x + i for i in range(4)])
    for m in ("gradcam", "gradcam++", "layercam"):
        rows.append(
            (f"VGG16 {m}, compute_cam(model, x)", *against(forward, lambda m=m: compute_cam(model, next(images), m), r))
        )
    rows.append(("VGG16 gradcam, compute_cam, engine built every call", *against(forward, lambda: cold(model, x), r)))
    # the CLI and the explorer build one engine per model, layer and input size and reuse it for every image
    engine = CamEngine(model, x.shape)
    reused = against(forward, lambda: engine.run(next(images), "gradcam"), r)
    rows.append(("VGG16 gradcam, engine reused (per image in cam/report/explore)", *reused))
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

        rows.append(("VGG16 gradcam, textbook GradientTape on the whole model", *against(forward, textbook, r)))
    if args.scorecam:
        rows.append(("VGG16 scorecam", *against(forward, lambda: compute_cam(model, x, "scorecam"), 1, 0)))
    emo = build_emotion_vgg16()
    xe = np.random.default_rng(0).uniform(0, 1, (48, 48, 1)).astype(np.float32)

    def emo_forward():
        return emo(xe[None], training=False)

    timed(emo_forward, 2, 0)
    faces = itertools.cycle([np.roll(xe, i, axis=0) for i in range(4)])
    for m in ("gradcam", "gradcam++", "layercam", "scorecam"):
        rep, warm = (3, 1) if m == "scorecam" else (r, 2)
        cam = against(emo_forward, lambda m=m: compute_cam(emo, next(faces), m), rep, warm)
        rows.append((f"emotion VGG-16 {m}, compute_cam", *cam))
    rows.append(
        (
            "emotion VGG-16 gradcam, compute_cam, engine built every call",
            *against(emo_forward, lambda: cold(emo, xe), r),
        )
    )
    emo_engine = CamEngine(emo, xe.shape)
    rows.append(
        (
            "emotion VGG-16 gradcam, engine reused (per image)",
            *against(emo_forward, lambda: emo_engine.run(next(faces), "gradcam"), r),
        )
    )
    if not args.no_torch:
        rows += torch_rows(r)

    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, {os.cpu_count()} CPUs, load {load()}")
    print(f"{'':<66} {'time':>12} {'forward':>10}  ratio (each row timed in turn with its own forward pass)")
    for name, t, base in rows:
        print(f"{name:<66} {t * 1000:9.1f} ms {base * 1000:7.1f} ms  {t / base:6.2f}x forward")


def cold(model, x):
    """compute_cam as a model's first call: the engine cache emptied, so it builds the engine."""
    from featuremaps.cam import compute_cam
    from featuremaps.cam.engine import ENGINES

    ENGINES.clear()
    return compute_cam(model, x)


def torch_rows(repeat: int) -> list[tuple[str, float, float]]:
    """torchvision's VGG16 (random weights): the same rows, against its own forward pass."""
    try:
        import torch
    except ImportError:
        return []
    import numpy as np

    from featuremaps.cam import CamEngine, compute_cam
    from featuremaps.frameworks.torch import torchvision_models

    torch.manual_seed(0)
    net = torchvision_models().vgg16().eval()
    x = np.random.default_rng(0).uniform(-2, 2, (224, 224, 3)).astype(np.float32)
    xb = torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()

    def forward():
        with torch.inference_mode():
            return net(xb)

    timed(forward, 2, 0)
    images = itertools.cycle([x + i for i in range(4)])
    engine = CamEngine(net, x.shape)
    return [
        (
            "torch VGG16 gradcam, compute_cam(model, x)",
            *against(forward, lambda: compute_cam(net, next(images)), repeat),
        ),
        ("torch VGG16 gradcam, compute_cam, engine built every call", *against(forward, lambda: cold(net, x), repeat)),
        (
            "torch VGG16 gradcam, engine reused (per image)",
            *against(forward, lambda: engine.run(next(images), "gradcam"), repeat),
        ),
    ]


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
