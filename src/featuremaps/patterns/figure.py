"""``patterns.png``: a row per channel (its F-number and values, the visualization, its exemplars), grouped by
layer, under a title that names the model (and says "random weights" when it has them); the first layer's
filters below with ``kernels``. Arrays in, an RGB array out (:mod:`featuremaps.draw`, the one drawing layer).
"""

from __future__ import annotations

import numpy as np

from featuremaps.display import as_rgb
from featuremaps.draw import MUTED, SUB_SIZE, Canvas, fmt_number, line_height, title_block
from featuremaps.render import resize_rgb

#: side of a visualization or exemplar cell, px
CELL = 128
#: side of one first-layer kernel, px
KERNEL_CELL = 30
MARGIN = 12
LABEL_W = 92
GAP = 6


def _fit(rgb: np.ndarray, side: int = CELL) -> np.ndarray:
    """``rgb`` scaled to fit a ``side`` square, aspect kept (nearest-neighbour below 4x: small crops stay sharp)."""
    rgb = as_rgb(rgb)
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if s >= 1 and float(s).is_integer():
        return np.repeat(np.repeat(rgb, int(s), axis=0), int(s), axis=1)
    return resize_rgb(rgb, size)


def image_rgb(x: np.ndarray) -> np.ndarray:
    """A (H, W, C) float image in [0, 1] as RGB uint8."""
    return as_rgb((np.clip(x, 0, 1) * 255).round().astype(np.uint8))


def patterns_figure(p) -> np.ndarray:
    """The figure of a :class:`~featuremaps.patterns.compute.Patterns` result."""
    k = max((len(r.exemplars) for r in p.rows), default=0)
    width = max(2 * MARGIN + LABEL_W + CELL + (GAP * 2 + k * (CELL + GAP) if k else 0), 560)
    kernels = p.kernels
    per_row = max(1, (width - 2 * MARGIN) // (KERNEL_CELL + 2))
    subtitle = [f"what each {'class' if p.rows and p.rows[0].layer is None else 'channel'} looks for: "
                + (f"{p.objective}, {p.steps} Adam steps, seed {p.seed}" if p.steps else p.objective)]  # fmt: skip
    if p.data:
        subtitle.append(
            f"beside it the top {k} of {p.images_scanned} images of {p.data}, cropped to the receptive field "
            "around the channel's maximum"
        )
    subtitle += p.notes
    tb = title_block(width - 2 * MARGIN, f"featuremaps patterns: {p.model}", subtitle)
    lh = line_height(SUB_SIZE)
    row_h = CELL + lh + GAP * 2
    layers = []
    for r in p.rows:
        key = None if r.layer is None else r.layer.label
        if not layers or layers[-1][0] != key:
            layers.append((key, r.layer, []))
        layers[-1][2].append(r)
    height = MARGIN + tb.height + GAP + sum(lh + GAP + row_h * len(rows) for _, _, rows in layers)
    if kernels is not None:
        height += lh * 2 + GAP + -(-len(kernels) // per_row) * (KERNEL_CELL + 2)
    c = Canvas.blank(height + MARGIN, width)
    y = tb.draw(c, MARGIN, MARGIN) + GAP
    for _, layer, rows in layers:
        head = "classes" if layer is None else f"{layer.label} {layer.name}"
        c.text((MARGIN, y), head, SUB_SIZE + 1)
        y += lh + GAP
        for r in rows:
            x = MARGIN
            c.text((x, y), r.title, SUB_SIZE + 3)
            info = []
            if r.value is not None:
                info.append(f"obj {fmt_number(r.value)}")
            if r.max is not None:
                info.append(f"max {fmt_number(r.max)}")
            c.lines((x, y + lh + 6), info, SUB_SIZE - 1, MUTED)
            x += LABEL_W
            if r.image is not None:
                c.paste(_fit(image_rgb(r.image)), (x, y))
            else:
                c.fill((x, y), (CELL, CELL), (236, 236, 236))
                c.text((x + CELL // 2, y + CELL // 2 - lh // 2), "no gradients", SUB_SIZE - 1, MUTED, "center")
            x += CELL + GAP * 3
            for e in r.exemplars:
                pic = _fit(e.crop)
                c.paste(pic, (x + (CELL - pic.shape[1]) // 2, y + (CELL - pic.shape[0]) // 2))
                c.text((x + CELL // 2, y + CELL + 2), f"max {fmt_number(e.value)}", SUB_SIZE - 2, MUTED, "center")
                x += CELL + GAP
            y += row_h
    if kernels is not None:
        layer = p.kernels_layer
        c.text(
            (MARGIN, y),
            f"{layer.label} {layer.name}: the first layer's {len(kernels)} filters (grey = 0)",
            SUB_SIZE + 1,
        )
        y += lh * 2
        for i, kern in enumerate(kernels):
            pic = _fit(kern, KERNEL_CELL)
            c.paste(pic, (MARGIN + (i % per_row) * (KERNEL_CELL + 2), y + (i // per_row) * (KERNEL_CELL + 2)))
    return c.rgb
