"""Lucid's recipe against the naive one, measured: what the Fourier image and the transforms buy.

    python benchmarks/patterns_recipe.py [--data fer2013.tar.gz] [--steps 256] [--figure docs/patterns_recipe.png]

Olah, Mordvintsev & Schubert (Distill 2017, "The Enemy of Feature Visualization") show that plain gradient ascent
on the pixels (the keras.io example's and tf-keras-vis' default) ends in high-frequency patterns a network
responds to but no natural image has, and that a decorrelated Fourier parameterisation with transformation
robustness (Lucid's and lucent's default, featuremaps' recipe) gives images whose statistics are closer to natural
ones. ImageNet weights cannot be downloaded here, so instead of setting our VGG16 beside Lucid's pictures, this
script measures the paper's two claims on the trained emotion model, for the channels of the README's figure
(C3, C8, C13), with the same channels, steps, learning rate and seed on both sides:

* **high-frequency energy**: the share of an image's spectral power (mean removed) above half the Nyquist
  frequency, for the recipe, the naive ascent and FER2013 faces (the natural reference; ``--data``, else
  ``$FEATUREMAPS_FER2013``; without data, crops of the example photos);
* **robustness**: the channel's objective on the image shifted by 2 px and scaled by 0.95, as a share of the
  objective on the image itself: a pattern the network responds to only at one exact pixel alignment is
  fragile, one it sees wherever it is survives.

Naive: a pixel image ``x = sigmoid(p)`` (so it stays in [0, 1], as the recipe's), ``p`` from a grey start
with small noise, Adam at 0.05 (the recipe's), no transforms. ``--figure`` draws both for each channel.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)

#: the README figure's channels (docs/patterns_emotion.png): 4 of C3, C8 and C13 each
CHANNELS = {
    "block2_conv1": [3, 90, 56, 24],
    "block4_conv1": [387, 438, 46, 136],
    "block5_conv3": [133, 0, 250, 38],
}


def high_frequency_share(images: np.ndarray) -> np.ndarray:
    """(N,) the share of each (N, H, W[, C]) image's power above half the Nyquist frequency, mean removed."""
    x = images.mean(axis=-1) if images.ndim == 4 else images
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[1])[:, None]
    fx = np.fft.fftfreq(x.shape[2])[None, :]
    high = np.sqrt(fy**2 + fx**2) > 0.25  # cycles per pixel; Nyquist is 0.5
    return (power * high).sum(axis=(1, 2)) / np.maximum(power.sum(axis=(1, 2)), 1e-12)


def shifted(images: np.ndarray, shift: int = 2, scale: float = 0.95) -> np.ndarray:
    """Each image moved by ``shift`` px down and right and scaled by ``scale`` about its centre (edges repeated)."""
    from PIL import Image

    out = []
    for x in images:
        h, w = x.shape[:2]
        a = 1 / scale
        cy, cx = (h - 1) / 2, (w - 1) / 2
        coeffs = (a, 0, cx - a * (cx + shift), 0, a, cy - a * (cy + shift))
        chans = [
            np.asarray(
                Image.fromarray(x[..., k].astype(np.float32), "F").transform(
                    (w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
                )
            )
            for k in range(x.shape[-1])
        ]
        out.append(np.stack(chans, axis=-1))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def naive(ad, targets, shape, preprocess, steps: int, seed: int) -> np.ndarray:
    """Plain gradient ascent on ``sigmoid(p)`` pixels, no transforms, Adam at the recipe's rate."""
    from featuremaps.patterns.optimise import Adam
    from featuremaps.patterns.transforms import Preprocessing

    rng = np.random.default_rng(seed)
    p = (rng.normal(0, 0.01, (len(targets), *shape))).astype(np.float32)
    pre = Preprocessing(preprocess, shape[-1])  # the model's own preprocessing of [0, 1] pixels, and its adjoint
    adam = Adam()
    for _ in range(steps):
        x = 1 / (1 + np.exp(-p))
        g = pre.adjoint(ad.gradients(pre.forward(x), targets).gradient)
        adam.ascend(p, (g * x * (1 - x)).astype(np.float32))
    return 1 / (1 + np.exp(-p))


def natural(data: str | None, n: int = 256) -> tuple[np.ndarray, str]:
    """Up to ``n`` natural images in [0, 1] (48x48 gray): FER2013 PrivateTest faces, else example photo crops."""
    path = data or os.environ.get("FEATUREMAPS_FER2013")
    if path and os.path.exists(path):
        from featuremaps.emotion import data as fer

        faces = fer.load(path, limit=n // 7 + 1)["PrivateTest"].x[:n]
        return faces[..., None].astype(np.float32) / 255.0, f"{len(faces)} FER2013 PrivateTest faces"
    from pathlib import Path

    from featuremaps.images import fit_to, load_image

    rng = np.random.default_rng(0)
    out = []
    for name in ("astronaut.png", "chelsea.png"):
        photo = load_image(Path(__file__).resolve().parents[1] / "examples" / name).mean(axis=-1)
        for _ in range(n // 2):
            s = int(rng.integers(48, min(photo.shape) // 2))
            y, x = rng.integers(0, photo.shape[0] - s), rng.integers(0, photo.shape[1] - s)
            out.append(fit_to(photo[y : y + s, x : x + s], (48, 48)) / 255.0)
    return np.stack(out)[..., None].astype(np.float32), f"{len(out)} crops of the example photos (no FER2013)"


def figure(rows: list[tuple[str, np.ndarray, np.ndarray, list[str]]], steps: int) -> np.ndarray:
    """Per layer a row of channel pairs (naive above, recipe below)."""
    from featuremaps.draw import Canvas, title_block
    from featuremaps.patterns.figure import image_rgb
    from featuremaps.render import fit_square

    cell, gap, label, margin = 96, 6, 70, 12
    n = max(len(r[1]) for r in rows)
    width = 2 * margin + label + n * (cell + gap)
    head = title_block(
        width - 2 * margin,
        "the naive recipe vs Lucid's, emotion VGG-16",
        [
            f"top of each pair: pixel-space ascent, no transforms; below: Fourier image + transforms "
            f"(featuremaps' default); {steps} Adam steps at 0.05, seed 0, the same channels",
        ],
    )
    block = 2 * cell + 3 * gap + 16
    canvas = Canvas.blank(margin + head.height + gap + len(rows) * block + margin, width)
    y = head.draw(canvas, margin, margin) + gap
    for name, naive_images, recipe_images, titles in rows:
        canvas.text((margin, y + cell // 2), name, 13)
        canvas.text((margin, y + cell + gap + cell // 2), "recipe", 11)
        canvas.text((margin, y + cell // 2 + 18), "naive", 11)
        for k, (a, b) in enumerate(zip(naive_images, recipe_images, strict=True)):
            x = margin + label + k * (cell + gap)
            canvas.paste(fit_square(image_rgb(a), cell), (x, y))
            canvas.paste(fit_square(image_rgb(b), cell), (x, y + cell + gap))
            canvas.text((x, y + 2 * cell + 2 * gap), titles[k], 11)
        y += block
    return canvas.rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="FER2013 (folder, CSV or .tar.gz) for the natural reference")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--figure", default=None, help="write the side-by-side figure (PNG) here")
    args = ap.parse_args()

    from featuremaps import models
    from featuremaps.frameworks import adapter
    from featuremaps.patterns.optimise import optimise
    from featuremaps.targets import ChannelMean

    lm = models.load("emotion", None)
    ad = adapter(lm.model)
    shape = (48, 48, 1)
    faces, described = natural(args.data)
    nat = high_frequency_share(faces)
    labels = {c.name: c.label for c in ad.conv_layers(shape)}
    print(f"natural reference: {described}: high-frequency share median {np.median(nat):.4f}")
    print(f"{'layer':<16} {'':>7} {'objective':>10} {'after shift':>12} {'kept':>6} {'high-freq share':>16}")
    rows = []
    for layer, chans in CHANNELS.items():
        targets = [ChannelMean(layer, k) for k in chans]
        recipe = optimise(ad, targets, shape, lm.preprocess_fn, steps=args.steps, seed=0, precision="float32").images
        plain = naive(ad, targets, shape, lm.preprocess_fn, args.steps, seed=0)
        for what, images in (("naive", plain), ("recipe", recipe)):
            value = ad.gradients(lm.preprocess_fn(images * 255.0), targets).value
            moved = ad.gradients(lm.preprocess_fn(shifted(images) * 255.0), targets).value
            kept = np.median(moved / np.maximum(value, 1e-6))
            hf = np.median(high_frequency_share(images))
            print(
                f"{labels[layer] + ' ' + layer:<16} {what:>7} {np.median(value):>10.3g} {np.median(moved):>12.3g} "
                f"{kept:>6.2f} {hf:>16.4f}"
            )
        rows.append((labels[layer], plain, recipe, [f"F{k + 1}" for k in chans]))
    if args.figure:
        from featuremaps.io import save_png

        save_png(args.figure, figure(rows, args.steps))
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
