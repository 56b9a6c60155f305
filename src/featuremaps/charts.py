"""Small charts drawn with NumPy and the drawing layer (no pyplot state): the confusion matrix, training curves,
the atlas' class x channel heatmap."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from featuremaps.draw import (
    BG,
    INK,
    MUTED,
    Canvas,
    colorbar_height,
    fit_text,
    fit_text_keep_end,
    font,
    line_height,
    nice_ticks,
    text_width,
    title_block,
)
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


#: line colours of the curves (matplotlib's tab10 blue and orange)
CURVE_COLOURS = ((31, 119, 180), (255, 127, 14))


def render_curves(
    history: list[dict],
    panels=(("loss", "loss"), ("accuracy", "accuracy")),
    series=(("", "train (augmented)"), ("val_", "PublicTest")),
    size: tuple[int, int] = (440, 320),
) -> np.ndarray:
    """Training curves, one panel per metric (``loss``, ``accuracy``), train and validation in each: RGB uint8.

    ``history`` is a list of per-epoch dicts (``{"epoch": 1, "loss": ..., "val_loss": ..., ...}``), as
    ``featuremaps train`` keeps in ``state.json``. Drawn with Pillow: no matplotlib needed.

    Example::

        save_png("curves.png", render_curves(state["history"]))
    """
    pw, ph = size
    fs = 12
    canvas = Image.new("RGB", (pw * len(panels), ph), BG)
    d = ImageDraw.Draw(canvas)
    epochs = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    left, right, top, bottom = 52, 14, 28, 58
    for p, (key, title) in enumerate(panels):
        x0 = p * pw
        ax0, ax1, ay0, ay1 = x0 + left, x0 + pw - right, top, ph - bottom
        ys = {prefix: [float(h.get(prefix + key, np.nan)) for h in history] for prefix, _ in series}
        vals = np.array([v for s in ys.values() for v in s], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        e0, e1 = (min(epochs), max(epochs)) if epochs else (0.0, 1.0)
        if e1 - e0 < 1e-9:
            e0, e1 = e0 - 1, e1 + 1

        def px(e, v, e0=e0, e1=e1, lo=lo, hi=hi, ax0=ax0, ax1=ax1, ay0=ay0, ay1=ay1):
            return (ax0 + (e - e0) / (e1 - e0) * (ax1 - ax0), ay1 - (v - lo) / (hi - lo) * (ay1 - ay0))

        d.text((x0 + left, 6), title, fill=INK, font=font(fs + 2))
        for v in nice_ticks(lo, hi):
            y = px(e0, v)[1]
            d.line([(ax0, y), (ax1, y)], fill=(232, 232, 232))
            t = f"{v:.3g}"
            d.text((ax0 - 6 - text_width(t, fs - 1), y - fs // 2), t, fill=MUTED, font=font(fs - 1))
        for v in nice_ticks(e0, e1, n=min(6, max(1, int(e1 - e0)))):
            if abs(v - round(v)) > 1e-9:  # epochs are whole numbers
                continue
            x = px(v, lo)[0]
            d.line([(x, ay1), (x, ay1 + 4)], fill=MUTED)
            t = str(int(round(v)))
            d.text((x - text_width(t, fs - 1) / 2, ay1 + 6), t, fill=MUTED, font=font(fs - 1))
        d.rectangle([ax0, ay0, ax1, ay1], outline=MUTED)
        d.text(((ax0 + ax1) / 2 - text_width("epoch", fs - 1) / 2, ay1 + 20), "epoch", fill=MUTED, font=font(fs - 1))
        for (prefix, _label), colour in zip(series, CURVE_COLOURS, strict=False):
            pts = [px(e, v) for e, v in zip(epochs, ys[prefix], strict=True) if np.isfinite(v)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for x, y in pts:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        lx = ax0
        for (_, label), colour in zip(series, CURVE_COLOURS, strict=False):
            d.line([(lx, ph - 14), (lx + 16, ph - 14)], fill=colour, width=3)
            d.text((lx + 20, ph - 14 - fs // 2 - 1), label, fill=INK, font=font(fs - 1))
            lx += 32 + text_width(label, fs - 1)
    return np.asarray(canvas)


def render_class_heatmap(
    means: np.ndarray,
    si: np.ndarray,
    preferred: np.ndarray,
    rows: list[str],
    layer: str,
    images: int,
    cmap: str = "viridis",
) -> np.ndarray:
    """Class x channel heatmap of one layer (the atlas'): channels sorted by preferred class then selectivity.

    Colour is a channel's class mean divided by its largest class mean (the numeric colour bar below reads
    0 to 1); a grey strip under it shows each channel's selectivity index, red lines separate the groups of
    channels that prefer each class.

    Args:
        means: (K classes, C channels) class means (NaN for a class without images).
        si: (C,) selectivity indices in [0, 1]; preferred: (C,) each channel's preferred class row.
        rows: the K row labels (``"happy (120)"``); layer: ``"C5 block2_conv2"``; images: how many were read.
    """
    pref = preferred
    K, C = means.shape
    order = np.lexsort((-si, pref))
    m = np.nan_to_num(means[:, order])
    top = m.max(axis=0)
    scaled = np.where(top > 0, m / np.where(top > 0, top, 1), 0.0)
    cw = max(1, min(16, 1024 // C))
    rh = 22
    fs = 13
    names = list(rows)
    label_w = min(200, max(90, max(text_width(t, fs - 1) for t in names) + 12))
    strip_note = "strip: white = SI 0, black = SI 1; red lines separate preferred classes"
    finite = means[np.isfinite(means)]
    span = f" (class means span {finite.min():.3g} to {finite.max():.3g})" if finite.size else ""
    bar_label = f"class mean / channel's largest{span}"
    # wide enough for the map and for every line under it (a few channels must not cut the legend)
    width = max(
        label_w + C * cw + 16,
        560,
        label_w + text_width(strip_note, fs - 1) + 12,
        label_w + 200 + 8 + text_width(bar_label, fs - 1) + 12,
    )
    tb = title_block(
        width - 12,
        f"{layer}: mean activation per class of {C} channels",
        f"{images} images; channels sorted by preferred class, then selectivity; "
        "each channel scaled to its largest class mean",
        size=fs + 4,
        sub_size=fs,
    )
    head_h = tb.height + 12
    ys = head_h + K * rh + 6  # selectivity strip (darker = more selective)
    foot = line_height(fs - 1) + 10 + colorbar_height(fs - 1) + 8
    height = ys + 14 + 6 + foot
    c = Canvas.blank(height, width)
    lut = colormap(cmap)
    block = apply_colormap(np.repeat(np.repeat(scaled, rh, axis=0), cw, axis=1), lut)
    c.paste(block, (label_w, head_h))
    strip = (255 - np.clip(si[order], 0, 1) * 255).astype(np.uint8)
    c.rgb[ys : ys + 14, label_w : label_w + C * cw] = np.repeat(strip, cw)[None, :, None]
    for k in range(1, K):  # class-group boundaries
        x = label_w + int(np.searchsorted(pref[order], k)) * cw
        c.rgb[head_h - 4 : ys + 14, x : x + 1] = (255, 80, 80)
    tb.draw(c, 6, 4)
    for k, name in enumerate(names):
        c.text((6, head_h + k * rh + 4), fit_text_keep_end(name, fs - 1, label_w - 8), fs - 1)
    c.text((6, ys), "selectivity", fs - 2, MUTED)
    y = ys + 20
    c.text((label_w, y), strip_note, fs - 1, MUTED)
    y += line_height(fs - 1) + 6
    c.colorbar(label_w, y, 200, lut, 0.0, 1.0, size=fs - 1, label=bar_label)
    return c.rgb
