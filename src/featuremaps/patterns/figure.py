"""``patterns.png``: a row per channel (its F-number and values, the visualization (N images side by side with
``images``), its exemplars), grouped by layer, under a title that names the model (and says "random weights"
when it has them); the first layer's filters below with ``kernels``. Arrays in, an RGB array out
(:mod:`featuremaps.draw`, the one drawing layer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featuremaps.display import as_rgb
from featuremaps.draw import MUTED, SUB_SIZE, Canvas, fmt_number, line_height, title_block
from featuremaps.render import fit_square

#: side of a visualization or exemplar cell, px
CELL = 128
#: side of one first-layer kernel, px
KERNEL_CELL = 30
MARGIN = 12
LABEL_W = 92
GAP = 6


def _fit(rgb: np.ndarray, side: int = CELL) -> np.ndarray:
    """``rgb`` (any image array) in a ``side`` square, aspect kept (:func:`featuremaps.render.fit_square`)."""
    return fit_square(as_rgb(rgb), side)


def image_rgb(x: np.ndarray) -> np.ndarray:
    """A (H, W, C) float image in [0, 1] as RGB uint8."""
    return as_rgb((np.clip(x, 0, 1) * 255).round().astype(np.uint8))


def _groups(rows) -> list:
    """Rows grouped by layer (classes: one group), in order: ``[(layer or None, rows)]``."""
    groups = []
    for r in rows:
        key = None if r.layer is None else r.layer.label
        if not groups or groups[-1][0] != key:
            groups.append((key, r.layer, []))
        groups[-1][2].append(r)
    return [(layer, rows) for _, layer, rows in groups]


def _info(r) -> list[str]:
    info = []
    if r.value is not None:
        info.append(f"obj {fmt_number(r.value)}")
    if r.max is not None:
        info.append(f"max {fmt_number(r.max)}")
    if r.diversity is not None:
        info.append(f"div {fmt_number(r.diversity)}")
    return info


def patterns_figure(p) -> np.ndarray:
    """The figure of a :class:`~featuremaps.patterns.compute.Patterns` result: with exemplars a row per channel
    (F-number and values, visualization, exemplars); without, the visualizations in a grid, each under its
    F-number (or class) and values."""
    k = max((len(r.exemplars) for r in p.rows), default=0)
    n = max([len(r.images()) for r in p.rows] + [1])  # images per channel, side by side
    vis = n * CELL + (n - 1) * GAP  # the visualizations' width
    lh = line_height(SUB_SIZE)
    if k:
        width = 2 * MARGIN + LABEL_W + vis + GAP * 3 + k * (CELL + GAP)
    else:
        most = max(len(rows) for _, rows in _groups(p.rows)) if p.rows else 1
        width = 2 * MARGIN + min(most, max(1, 6 // n)) * (vis + GAP * (2 if n > 1 else 1))
    width = max(width, 560)
    step = vis + GAP * (2 if n > 1 else 1)  # a grid tile's pitch (a wider gap between channels of N images)
    per_line = max(1, (width - 2 * MARGIN + GAP) // step)
    per_kernel_line = max(1, (width - 2 * MARGIN) // (KERNEL_CELL + 2))
    what = "class" if p.rows and p.rows[0].layer is None else "channel"
    # without gradients (exemplars only) the note says so; there is no objective to name
    passes = f" in {p.precision}" if p.precision != "float32" else ""
    subtitle = (
        [f"what each {what} looks for: {p.objective}, {p.steps} Adam steps{passes}, seed {p.seed}"] if p.steps else []
    )
    if p.steps and n > 1:
        layer = f" of {p.diversity_layer.label} (the last conv)" if p.diversity_layer is not None else ""
        subtitle.append(
            f"{n} images per {what}, pushed apart by the diversity term{layer} (weight {fmt_number(p.diversity)}; "
            "div = minus their mean Gram cosine, -1 to 0)"
            if p.diversity
            else f"{n} images per {what} from different random starts (no diversity term)"
        )
    if p.data:
        beside = "beside it " if p.steps else ""
        subtitle.append(
            f"{beside}the top {k} of {p.images_scanned} images of {Path(p.data).name}, cropped to the receptive "
            "field around the channel's maximum"
        )
    subtitle += p.notes
    tb = title_block(width - 2 * MARGIN, f"featuremaps patterns: {p.model}", subtitle)
    row_h = CELL + lh + GAP * 2  # a channel's row: the cell, the exemplars' captions
    tile_h = lh + 2 + CELL + GAP * 2  # a grid tile: its title line, the cell
    height = MARGIN + tb.height + GAP
    for _, rows in _groups(p.rows):
        height += lh + GAP + (row_h * len(rows) if k else tile_h * -(-len(rows) // per_line))
    if p.kernels is not None:
        height += lh * 2 + GAP + -(-len(p.kernels) // per_kernel_line) * (KERNEL_CELL + 2)
    c = Canvas.blank(height + MARGIN, width)
    y = tb.draw(c, MARGIN, MARGIN) + GAP
    for layer, rows in _groups(p.rows):
        c.text((MARGIN, y), "classes" if layer is None else f"{layer.label} {layer.name}", SUB_SIZE + 1)
        y += lh + GAP
        if not k:
            for i, r in enumerate(rows):
                x, ty = MARGIN + (i % per_line) * step, y + (i // per_line) * tile_h
                w = c.text((x, ty), r.title, SUB_SIZE + 1)
                c.text((x + w + 6, ty + 2), "  ".join(_info(r)), SUB_SIZE - 2, MUTED)
                _cell(c, r, x, ty + lh + 2)
            y += tile_h * -(-len(rows) // per_line)
            continue
        for r in rows:
            c.text((MARGIN, y), r.title, SUB_SIZE + 3)
            c.lines((MARGIN, y + lh + 6), _info(r), SUB_SIZE - 1, MUTED)
            x = MARGIN + LABEL_W
            _cell(c, r, x, y)
            x += vis + GAP * 3
            for e in r.exemplars:
                pic = _fit(e.crop)
                c.paste(pic, (x + (CELL - pic.shape[1]) // 2, y + (CELL - pic.shape[0]) // 2))
                c.text((x + CELL // 2, y + CELL + 2), f"max {fmt_number(e.value)}", SUB_SIZE - 2, MUTED, "center")
                x += CELL + GAP
            y += row_h
    if p.kernels is not None:
        layer = p.kernels_layer
        head = f"{layer.label} {layer.name}: the first layer's {len(p.kernels)} filters (grey = 0)"
        c.text((MARGIN, y), head, SUB_SIZE + 1)
        y += lh * 2
        for i, kern in enumerate(p.kernels):
            pic = _fit(kern, KERNEL_CELL)
            xy = (MARGIN + (i % per_kernel_line) * (KERNEL_CELL + 2), y + (i // per_kernel_line) * (KERNEL_CELL + 2))
            c.paste(pic, xy)
    return c.rgb


def _cell(c: Canvas, r, x: int, y: int) -> None:
    """The visualization(s) of row ``r`` at (x, y), side by side, or a grey cell saying there is none (no
    gradients)."""
    if r.image is not None:
        for i, im in enumerate(r.images()):
            c.paste(_fit(image_rgb(im)), (x + i * (CELL + GAP), y))
        return
    c.fill((x, y), (CELL, CELL), (236, 236, 236))
    c.text((x + CELL // 2, y + CELL // 2 - line_height(SUB_SIZE) // 2), "no gradients", SUB_SIZE - 1, MUTED, "center")
