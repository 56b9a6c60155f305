"""Small charts drawn with NumPy and the drawing layer (no pyplot state): the confusion matrix."""

from __future__ import annotations

import numpy as np

from featuremaps.draw import INK, MUTED, Canvas, fit_text, line_height, text_width, title_block
from featuremaps.render import apply_colormap, colormap


def render_confusion(matrix: np.ndarray, classes: list[str], title: str = "", cell: int = 64) -> np.ndarray:
    """Rows are true classes, columns predicted; colour is the row-normalised rate, text the count and rate.

    Example::

        >>> rgb = render_confusion(np.array([[8, 2], [1, 9]]), ["cat", "dog"], title="test split")
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    rates = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    fs = 13
    left = min(160, max(90, max((text_width(c, fs) for c in classes), default=0) + 14))
    width = max(left + n * cell + 20, 360)
    tb = title_block(width - 12, title, size=fs + 3)
    top = 6 + tb.height + line_height(fs) + line_height(fs - 1) + 10
    foot = line_height(fs - 1) + 12
    height = top + n * cell + foot
    c = Canvas.blank(height, width)
    colours = apply_colormap(rates, colormap("viridis"))
    for i in range(n):
        for j in range(n):
            y0, x0 = top + i * cell, left + j * cell
            c.rgb[y0 + 1 : y0 + cell - 1, x0 + 1 : x0 + cell - 1] = colours[i, j]
    tb.draw(c, 6, 6)
    c.text((left, top - line_height(fs - 1) - line_height(fs) - 6), "predicted", fs, MUTED)
    for j, name in enumerate(classes):
        c.text(
            (left + j * cell + cell // 2, top - line_height(fs - 1) - 3),
            fit_text(name, fs - 1, cell - 2),
            fs - 1,
            INK,
            align="center",
        )
    for i, name in enumerate(classes):
        c.text((6, top + i * cell + cell // 2 - fs // 2), fit_text(name, fs, left - 10), fs, INK)
        for j in range(n):
            ink = (255, 255, 255) if rates[i, j] < 0.6 else (0, 0, 0)  # viridis is dark below ~0.6
            x = left + j * cell + cell // 2
            c.text((x, top + i * cell + cell // 2 - fs - 1), f"{m[i, j]}", fs, ink, align="center")
            c.text((x, top + i * cell + cell // 2 + 2), f"{rates[i, j]:.0%}", fs - 2, ink, align="center")
    c.text((6, height - foot + 4), "rows: true class (colour = share of the row)", fs - 1, MUTED)
    return c.rgb
