"""Overview + 13 layer PNGs (render_overview/render_layer + io.save_png) vs the classic Matplotlib way
(one subplot per map, fig.savefig) at the same pixel sizes, on the maps VGG16 (weights=None) computes for
examples/chelsea.png (16 per layer). Also times PNG zlib levels and strategies (io.PNG_COMPRESS_LEVEL/TYPE).

    .venv/bin/python benchmarks/bench_render.py [--repeats 5] [--mpl-repeats 2]

Target: ours >= 30x faster than Matplotlib.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vgg16_rows(k=16):
    """The maps `featuremaps show examples/chelsea.png --model vgg16 --weights none` draws (13 x 16)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from featuremaps import models
    from featuremaps.extractor import FeatureExtractor
    from featuremaps.images import load_image
    from featuremaps.pipeline import prepare
    from featuremaps.render import rows_from

    lm = models.load("vgg16", weights="none")
    prep = prepare(lm, load_image(ROOT / "examples" / "chelsea.png"))
    results, _ = FeatureExtractor(lm.model, prep.x.shape, maps=k)(prep.x[None])
    return rows_from(results), prep.shown


def ours(rows, image, out: Path, level: int, strategy: int | None = None, row_filter: int | None = None):
    from featuremaps import io
    from featuremaps.render import render_layer, render_overview

    io.PNG_COMPRESS_LEVEL = level
    if strategy is not None:
        io.PNG_COMPRESS_TYPE = strategy
    if row_filter is not None:
        io.PNG_FILTER = row_filter
    sizes = {}
    with io.png_writer() as save:  # as featuremaps show does: encoding overlaps the next render
        ov = render_overview(rows, image, title="vgg16 - bench", subtitle="first 16 maps")
        save(out / "overview.png", ov)
        sizes["overview"] = ov.shape[:2]
        for r in rows:
            img = render_layer(r, image=image)
            save(out / "layers" / f"{r.label}.png", img)
            sizes[r.label] = img.shape[:2]
    return sizes


def pillow_way(rows, image, out: Path):
    """Same pictures, encoded by Pillow (what io.save_png did before its own encoder)."""
    from PIL import Image

    from featuremaps.render import render_layer, render_overview

    (out / "layers").mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_overview(rows, image)).save(out / "overview.png", compress_level=1)
    for r in rows:
        Image.fromarray(render_layer(r, image=image)).save(out / "layers" / f"{r.label}.png", compress_level=1)


def matplotlib_way(rows, sizes, out: Path, dpi=100):
    """What tutorials do: a subplot per map, imshow + title, axis off, savefig, at our pixel sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = sizes["overview"]
    fig, axes = plt.subplots(len(rows), 16, figsize=(w / dpi, h / dpi), dpi=dpi)
    for i, r in enumerate(rows):
        for j in range(16):
            axes[i, j].imshow(r.maps[..., j], cmap="viridis")
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(f"F{j + 1}", fontsize=8)
    fig.savefig(out / "overview_mpl.png", dpi=dpi)
    plt.close(fig)
    for r in rows:
        h, w = sizes[r.label]
        k = r.maps.shape[-1]
        cols = math.ceil(math.sqrt(k))
        fig, axes = plt.subplots(math.ceil(k / cols), cols, figsize=(w / dpi, h / dpi), dpi=dpi)
        for j, ax in enumerate(axes.ravel()):
            ax.imshow(r.maps[..., j], cmap="viridis")
            ax.set_title(f"F{j + 1}", fontsize=8)
            ax.set_axis_off()
        fig.suptitle(f"{r.label} {r.name}")
        fig.savefig(out / f"{r.label}_mpl.png", dpi=dpi)
        plt.close(fig)


def timed(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mpl-repeats", type=int, default=2)
    args = ap.parse_args()
    import zlib

    from featuremaps import io

    chosen = (io.PNG_COMPRESS_LEVEL, io.PNG_COMPRESS_TYPE, io.PNG_FILTER)
    rows, image = vgg16_rows()
    names = {-1: "default", zlib.Z_FILTERED: "filtered", zlib.Z_HUFFMAN_ONLY: "huffman", zlib.Z_RLE: "rle"}
    filters = {0: "none", 1: "sub", 2: "up"}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        sizes = ours(rows, image, d / "warm", *chosen)  # warm-up: fonts, colormap tables, cv2 import
        print("PNG zlib level / strategy / row filter: overview + 13 layer PNGs (render + encode), total bytes")
        results = {}
        for cfg in [
            (1, -1, 0),
            (3, -1, 0),
            (6, -1, 0),
            (9, -1, 0),
            (1, zlib.Z_RLE, 0),
            (1, -1, 2),
            (1, zlib.Z_RLE, 2),
            (1, -1, 1),
            (0, -1, 0),
        ]:
            tag = f"l{cfg[0]}{names[cfg[1]]}{filters[cfg[2]]}"
            t = timed(lambda c=cfg, tg=tag: ours(rows, image, d / tg, *c), args.repeats)
            nbytes = sum(p.stat().st_size for p in (d / tag).rglob("*.png"))
            results[cfg] = t
            print(
                f"  level {cfg[0]} {names[cfg[1]]:8s} filter {filters[cfg[2]]:4s}: {t * 1000:7.0f} ms "
                f"{nbytes / 1e6:6.2f} MB"
            )
        io.PNG_COMPRESS_LEVEL, io.PNG_COMPRESS_TYPE, io.PNG_FILTER = chosen
        pil = timed(lambda: pillow_way(rows, image, d / "pil"), args.repeats)
        nbytes = sum(p.stat().st_size for p in (d / "pil").rglob("*.png"))
        print(f"  Pillow encoder (level 1, adaptive filters):  {pil * 1000:7.0f} ms {nbytes / 1e6:6.2f} MB")
        (d / "mpl").mkdir()
        t_mpl = timed(lambda: matplotlib_way(rows, sizes, d / "mpl"), args.mpl_repeats)
        mpl_bytes = sum(p.stat().st_size for p in (d / "mpl").glob("*.png"))
    t = results[chosen]
    print(f"overview {sizes['overview'][1]}x{sizes['overview'][0]} px + 13 layer PNGs, 16 maps each")
    print(f"featuremaps (level {chosen[0]} {names[chosen[1]]}, filter {filters[chosen[2]]})  {t * 1000:8.0f} ms")
    print(f"matplotlib subplots       {t_mpl * 1000:8.0f} ms  ({mpl_bytes / 1e6:.2f} MB)")
    print(f"speed-up {t_mpl / t:.1f}x (target >= 30x) {'PASS' if t_mpl / t >= 30 else 'FAIL'}")


if __name__ == "__main__":
    main()
