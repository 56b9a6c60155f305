"""Small charts drawn with NumPy + Pillow (no pyplot state): the confusion matrix and probability bars."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from featuremaps.render import BG, INK, MUTED, _fit_text, _text_width, apply_colormap, colormap, font


def render_confusion(matrix: np.ndarray, classes: list[str], title: str = "", cell: int = 64) -> np.ndarray:
    """Rows are true classes, columns predicted; colour is the row-normalised rate, text the count and rate."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    rates = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    fs = 13
    left, top = 90, 60
    width, height = left + n * cell + 20, top + n * cell + 50
    canvas = np.full((height, width, 3), BG, np.uint8)
    colours = apply_colormap(rates, colormap("viridis"))
    for i in range(n):
        for j in range(n):
            y0, x0 = top + i * cell, left + j * cell
            canvas[y0 + 1 : y0 + cell - 1, x0 + 1 : x0 + cell - 1] = colours[i, j]
    pil = Image.fromarray(canvas)
    d = ImageDraw.Draw(pil)
    d.text((6, 6), _fit_text(title, fs + 3, width - 12), fill=INK, font=font(fs + 3))
    d.text((left, top - fs - 22), "predicted", fill=MUTED, font=font(fs))
    for j, c in enumerate(classes):
        t = _fit_text(c, fs - 1, cell - 2)
        d.text((left + j * cell + (cell - _text_width(t, fs - 1)) // 2, top - fs - 4), t, fill=INK, font=font(fs - 1))
    for i, c in enumerate(classes):
        d.text((6, top + i * cell + cell // 2 - fs // 2), _fit_text(c, fs, left - 10), fill=INK, font=font(fs))
        for j in range(n):
            ink = (255, 255, 255) if rates[i, j] < 0.6 else (0, 0, 0)  # viridis is dark below ~0.6
            t1, t2 = f"{m[i, j]}", f"{rates[i, j]:.0%}"
            x = left + j * cell
            d.text(
                (x + (cell - _text_width(t1, fs)) // 2, top + i * cell + cell // 2 - fs - 1),
                t1,
                fill=ink,
                font=font(fs),
            )
            d.text(
                (x + (cell - _text_width(t2, fs - 2)) // 2, top + i * cell + cell // 2 + 2),
                t2,
                fill=ink,
                font=font(fs - 2),
            )
    d.text((6, height - 30), "rows: true class (colour = share of the row)", fill=MUTED, font=font(fs - 1))
    return np.asarray(pil)
