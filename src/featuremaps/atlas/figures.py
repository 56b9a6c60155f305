"""The atlas' pictures of a layer beside its heatmap (which the result draws itself, :meth:`AtlasResult.heatmap`):
the top images of its most selective channels, and the names and notes that go with them."""

from __future__ import annotations

import numpy as np

from featuremaps.atlas.crops import fitted
from featuremaps.atlas.sources import Source
from featuremaps.atlas.stats import SHOW_CHANNELS, SI_FLOOR, TOP_K, AtlasResult, most_selective
from featuremaps.draw import (
    INK,
    MUTED,
    Canvas,
    fit_text,
    line_height,
    title_block,
)
from featuremaps.receptive import crop, whole_box
from featuremaps.render import fit_square

TILE_BG = (236, 236, 236)  # around a crop that is not square
OUTLINE = (220, 30, 30)  # the crop's box on the whole image's thumbnail
THUMB = 26  # side of the whole image's thumbnail beside the caption, px


def crop_text(res: AtlasResult, j: int) -> str:
    """The subtitle's words on the tiles of layer ``j``: cropped, or whole images and why."""
    tc = None if res.crops is None else res.crops[j]
    if tc is None:
        return "whole images"
    if tc.note:
        return f"whole images: the receptive field is unknown ({tc.note})"
    h, w = res.input_shape[:2]
    boxes = [b for v in tc.boxes.values() for b in v if b is not None]
    if boxes and all(b == whole_box(h, w) for b in boxes):
        return "cropped to the receptive field around the channel's maximum (at this layer it covers the whole image)"
    approx = f" ({tc.approximate})" if tc.approximate else ""
    return (
        f"cropped to the receptive field around the channel's maximum{approx}; beside the caption, the whole image "
        "with the crop outlined"
    )


def _thumbnail(whole: np.ndarray, box: dict, side: int) -> np.ndarray:
    """The whole (fitted) image in a ``side`` square with ``box`` outlined."""
    pic = fit_square(whole, side).copy()
    sy, sx = pic.shape[0] / whole.shape[0], pic.shape[1] / whole.shape[1]
    t, b = int(box["top"] * sy), min(pic.shape[0] - 1, int((box["bottom"] + 1) * sy))
    lft, r = int(box["left"] * sx), min(pic.shape[1] - 1, int((box["right"] + 1) * sx))
    pic[t, lft : r + 1] = pic[b, lft : r + 1] = OUTLINE
    pic[t : b + 1, lft] = pic[t : b + 1, r] = OUTLINE
    return pic


def render_top_images(res: AtlasResult, j: int, source: Source, n: int = SHOW_CHANNELS) -> np.ndarray:
    """For the ``n`` most selective channels of layer j: their 9 most activating images with labels, each cut
    to the receptive field around the channel's maximum where ``res.crops`` has its box
    (:func:`featuremaps.atlas.add_crops`), with the whole image as a thumbnail beside its caption."""

    chans = most_selective(res, j, n)
    side, fs = 72, 12
    label_w = 170
    width = label_w + TOP_K * (side + 4) + 8
    cl = res.layers[j]
    tb = title_block(
        width - 12,
        f"{cl.label} {cl.name}: the {TOP_K} images that activate each of the most selective channels most",
        f"ranked by the channel's spatial mean activation; {crop_text(res, j)}; caption: true class and activation",
        size=fs + 4,
        sub_size=fs,
    )
    head_h = tb.height + 10
    row_h = side + max(2 * line_height(fs - 1), THUMB + 2) + 6
    height = head_h + len(chans) * row_h + 6
    c = Canvas.blank(height, width)
    tb.draw(c, 6, 4)
    h, w = res.input_shape[:2]
    for r, ch in enumerate(chans):
        y0 = head_h + r * row_h
        c.text((6, y0 + 4), f"F{int(ch) + 1}", fs + 2, INK)
        c.text((6, y0 + 24), f"SI {res.si[j][ch]:.2f}", fs, MUTED)
        c.text(
            (6, y0 + 42), fit_text(f"prefers {preferred_class(res, j, ch) or 'no class'}", fs, label_w - 8), fs, MUTED
        )
        boxes = None if res.crops is None else res.crops[j].boxes.get(int(ch))
        for t, idx in enumerate(res.top_idx[j][ch]):
            if idx < 0:
                continue
            x0 = label_w + t * (side + 4)
            box = None if boxes is None else boxes[t]
            im = source.image(int(idx))
            whole = fitted([im], res.input_shape, res.centre)[0].clip(0, 255).round().astype(np.uint8) if box else im
            pic = fit_square(crop(whole, box) if box else whole, side)
            c.fill((x0, y0), (side, side), TILE_BG)
            c.paste(pic, (x0 + (side - pic.shape[1]) // 2, y0 + (side - pic.shape[0]) // 2))
            cap_w = side
            if box and box != whole_box(h, w):
                cap_w = side - THUMB - 2
                c.paste(_thumbnail(whole, box, THUMB), (x0 + side - THUMB, y0 + side + 2))
            lab = source.classes[int(source.labels[idx])]
            c.text((x0, y0 + side + 1), fit_text(lab, fs - 1, cap_w), fs - 1, (60, 60, 60))
            val = fit_text(f"{float(res.top_vals[j][ch, t]):.2g}", fs - 1, cap_w)
            c.text((x0, y0 + side + 1 + line_height(fs - 1)), val, fs - 1, MUTED)
    return c.rgb


def preferred_class(res: AtlasResult, j: int, ch: int) -> str | None:
    """The class channel ``ch`` of layer ``j`` responds to most, or None when its selectivity is under
    :data:`SI_FLOOR` (its class means are all but equal: no class to name)."""
    if not res.si[j][ch] >= SI_FLOOR:
        return None
    return res.classes[int(res.preferred[j][ch])]


def duplicate_note(res: AtlasResult, source: Source, n: int = 3) -> str:
    """One line naming the photos filed under more than one class (empty when there are none)."""
    if not res.duplicates:
        return ""

    def pair(group) -> str:  # two copies from two different classes (the point of the warning), then a count
        first = group[0]
        other = next((g for g in group[1:] if g[1] != first[1]), group[1])
        more = f" (+{len(group) - 2} more copies)" if len(group) > 2 else ""
        return " = ".join(f"{source.sources[i]} ({res.classes[lab]})" for i, lab in (first, other)) + more

    shown = "; ".join(pair(group) for group in res.duplicates[:n])
    more = f"; ... ({len(res.duplicates) - n} more, in atlas.json)" if len(res.duplicates) > n else ""
    return (
        f"{len(res.duplicates)} photo(s) are in more than one class: {shown}{more}. Each copy counts in its class, "
        "which pulls the class means together; remove the copies from all but the right class"
    )
