"""Render time of every figure: the feature-map grids without PNG encoding (bench_render.py times them with
it, against Matplotlib), the confusion matrix, the CAM panel, compare's models and classes pictures, the
atlas heatmap and top-images pictures.

Synthetic inputs of the CLI's usual sizes (7 classes, 5 models x 6 rows, a 512-channel layer), no model,
no files: only the renderers, through their public signatures, so the same script times an older checkout
(``PYTHONPATH=/path/to/old/src``) for a before/after table.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_figures.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def timed(f, n):
    f()  # warm-up: fonts, glyph caches
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def figures():
    from featuremaps.atlas import AtlasResult, render_top_images
    from featuremaps.cam_files import render_panel
    from featuremaps.charts import render_confusion
    from featuremaps.compare import ModelRun, render_models
    from featuremaps.compare_classes import render_classes
    from featuremaps.extractor import LayerMaps
    from featuremaps.layers import ConvLayer

    rng = np.random.default_rng(0)
    conf = rng.integers(0, 200, (7, 7))
    face = rng.integers(0, 256, (176, 176, 3), dtype=np.uint8)
    probs = rng.random(7).astype(np.float32)
    probs /= probs.sum()
    cam_rows = [
        (
            m,
            [
                SimpleNamespace(
                    heatmap=rng.random((6, 6), dtype=np.float32),
                    heatmap_up=rng.random((176, 176), dtype=np.float32),
                    class_name=c,
                    class_index=i,
                    probability=float(probs[i]),
                    probs=probs,
                )
                for i, c in enumerate(CLASSES)
            ],
        )
        for m in ("gradcam", "gradcam++")
    ]

    def run(name, depth, side):
        results = []
        for i in range(depth):
            s = max(1, side >> (i * 5 // depth))
            results.append(
                LayerMaps(
                    ConvLayer(i + 1, f"block{i}_conv", None),
                    (s, s, 64),
                    rng.random((1, s, s, 8), dtype=np.float32),
                    np.arange(8)[None],
                    rng.random((1, 4), dtype=np.float32),
                )
            )
        lm = SimpleNamespace(name=name)
        img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        return ModelRun(lm, img, (side, side, 3), results, [{"class": "tabby", "probability": 0.41}])

    runs = [run(n, d, 224) for n, d in (("vgg16", 13), ("resnet50", 53), ("mobilenet", 27), ("a", 8), ("b", 5))]
    labels = [f"depth {t}%" for t in (0, 20, 40, 60, 80, 100)]
    picks = [[round(t / 5 * (r.depth - 1)) for r in runs] for t in range(6)]
    faces = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in CLASSES]
    row_maps = [rng.random((24, 24, 8), dtype=np.float32) for _ in CLASSES]
    C = 512
    res = AtlasResult(
        CLASSES,
        np.full(7, 100),
        [ConvLayer(13, "block5_conv3", None)],
        [rng.random((7, C), dtype=np.float32)],
        [rng.random(C, dtype=np.float32)],
        [rng.integers(0, 7, C)],
        [rng.random((C, 9), dtype=np.float32)],
        [rng.integers(0, 700, (C, 9))],
        700,
        0,
        (48, 48, 1),
    )
    source = SimpleNamespace(
        image=lambda i: faces[i % 7][..., 0], labels=np.arange(700) % 7, classes=CLASSES, sources=[""] * 700
    )
    from featuremaps.render import Row, render_layer, render_overview

    grid_rows = []
    for i, s in enumerate([224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3):
        m = np.maximum(rng.normal(size=(s, s, 16)).astype(np.float32), 0)
        if i > 8:
            m[..., :3] = 0  # dead channels, as deep layers of random networks have
        grid_rows.append(Row(f"C{i + 1}", f"block{i}_conv", (s, s, 64), m, np.arange(16)))
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)

    def grids():
        out = render_overview(grid_rows, image, title="vgg16 - bench", subtitle="first 16 maps")
        for r in grid_rows:
            render_layer(r, image=image)
        return out

    return {
        "overview + 13 layer grids (render only)": grids,
        "confusion matrix (7 classes)": lambda: render_confusion(conf, CLASSES, title="emotion on PrivateTest"),
        "cam panel (2 methods x 7 classes)": lambda: render_panel(
            face, cam_rows, title="emotion - face.png - C13 block5_conv3", subtitle="score: logit"
        ),
        "compare models (5 models x 6 rows)": lambda: render_models(
            runs, labels, picks, norm="shared", title="cat.png through 5 networks", subtitle="first 8 maps"
        ),
        "compare classes (7 faces x 8 maps)": lambda: render_classes(
            row_maps, faces, CLASSES, [f"{c} 40%" for c in CLASSES], range(8), title="C3 conv", subtitle="emotion"
        ),
        "atlas heatmap (7 x 512)": lambda: res.heatmap(0),
        "atlas top images (6 x 9)": lambda: render_top_images(res, 0, source),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per figure, median reported (default 5)")
    args = ap.parse_args()
    for name, f in figures().items():
        t = timed(f, args.repeats)
        shape = f().shape
        print(f"{name:40s} {t * 1000:7.1f} ms  {shape[1]}x{shape[0]} px")


if __name__ == "__main__":
    main()
