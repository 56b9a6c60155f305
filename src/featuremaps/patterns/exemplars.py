"""Dataset exemplars: for each channel, the images of a dataset it responds to most, cropped to the receptive
field of the position where it responds most (Olah et al., "Feature Visualization", Distill 2017: "dataset
examples"). People predict a channel's response better from such real top images than from synthetic ones
(Borowski et al., "Exemplary natural images explain CNN activations better than state-of-the-art feature
visualization", ICLR 2021), so every visualization is shown beside them.

A channel's score on an image is the largest value of its map (after the activation, as the forward pass gives
the maps); the crop is the receptive field (:mod:`featuremaps.receptive`) of that position, on the image as the
model was fed (fitted to its input size). Where the framework gives no receptive field (TorchScript) the whole
image is the crop. The images stream through in batches; only each channel's top ``k`` are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from featuremaps.images import fit_to
from featuremaps.receptive import Field, crop, crop_box, peaks

#: images per forward pass
BATCH = 64


@dataclass
class Exemplar:
    """One top image of a channel: ``crop`` uint8 (h, w, C) in the model's pixels (receptive field around
    the maximum), ``value`` the channel's largest activation on the image, ``source`` where it came from,
    ``box`` ``{top, left, bottom, right}`` of the crop in the fitted image."""

    crop: np.ndarray
    value: float
    source: str
    box: dict


@dataclass
class Scan:
    """What a pass over the data found for one layer: per channel its top exemplars (best first) and the
    channel's mean activation over all images (``means``, (C,))."""

    exemplars: dict[int, list[Exemplar]]
    means: np.ndarray
    images: int


def scan(
    ad,
    layer: str,
    channels: list[int] | None,
    images: Iterable[tuple[np.ndarray, str]],
    shape: tuple[int, int, int],
    preprocess: Callable[[np.ndarray], np.ndarray],
    field: Field | None,
    k: int = 4,
    progress: Callable[[int], None] | None = None,
    fit: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Scan:
    """The top ``k`` images of each of ``channels`` (None: every channel) of conv ``layer``.

    Args:
        ad: the model's adapter (forward passes only: ONNX models too)
        layer: the conv layer's name
        channels: 0-based channels to keep exemplars for (None: all)
        images: ``(uint8 image, source)`` pairs, any size (fitted to ``shape`` by a centre crop)
        shape: the model's input (H, W, C)
        preprocess: the model's preprocessing of 0-255 pixels
        field: the layer's receptive field (None: the whole image is the crop)
        k: exemplars per channel
        progress: called with the number of images seen so far after every batch
        fit: an image as the model takes it (default: :func:`fit_to` ``shape``, a centre crop)
    """
    h, w, c = shape
    best: dict[int, list[tuple[float, int, int, int]]] = {}  # channel -> [(value, image number, y, x)]
    kept: dict[int, tuple[np.ndarray, str]] = {}  # image number -> (fitted pixels, source) of kept images
    total, seen = None, 0
    batch, sources = [], []

    def flush():
        nonlocal total, seen
        x = np.stack(batch)
        maps, _ = ad.forward(preprocess(x.copy()), [layer])
        a = maps[layer]  # (B, h', w', C)
        total = a.mean(axis=(0, 1, 2), dtype=np.float64) * len(a) + (0 if total is None else total)
        top, ys, xs = peaks(a)  # (B, C) each
        for ch in range(a.shape[-1]) if channels is None else channels:
            rows = best.setdefault(ch, [])
            rows.extend((float(top[b, ch]), seen + b, int(ys[b, ch]), int(xs[b, ch])) for b in range(len(a)))
            rows.sort(key=lambda r: -r[0])
            del rows[k:]
        for b in range(len(a)):
            kept[seen + b] = (x[b], sources[b])
        wanted = {r[1] for rows in best.values() for r in rows}
        for i in [i for i in kept if i not in wanted]:
            del kept[i]
        seen += len(a)
        batch.clear()
        sources.clear()
        if progress is not None:
            progress(seen)

    for img, src in images:
        batch.append(fit_to(img, (h, w), c) if fit is None else fit(img))
        sources.append(src)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    out: dict[int, list[Exemplar]] = {}
    for ch, rows in best.items():
        out[ch] = []
        for value, i, y, x in rows:
            pixels, src = kept[i]
            box = crop_box(field, y, x, h, w)
            out[ch].append(Exemplar(crop(pixels, box), value, src, box))
    means = np.zeros(0, np.float32) if total is None else (total / max(seen, 1)).astype(np.float32)
    return Scan(out, means, seen)
