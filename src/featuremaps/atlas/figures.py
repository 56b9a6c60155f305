"""The atlas' pictures of a layer beside its heatmap (which the result draws itself, :meth:`AtlasResult.heatmap`):
the top images of its most selective channels, and the names and notes that go with them."""

from __future__ import annotations

import numpy as np

from featuremaps.atlas.sources import Source
from featuremaps.atlas.stats import SI_FLOOR, TOP_K, AtlasResult
from featuremaps.draw import (
    INK,
    MUTED,
    Canvas,
    fit_text,
    line_height,
    title_block,
)
from featuremaps.render import resize_rgb

SHOW_CHANNELS = 6  # most selective channels drawn with their top images, per layer


def most_selective(res: AtlasResult, j: int, n: int) -> np.ndarray:
    """Channels by selectivity; near-silent channels (largest class mean under 1% of the layer's) go last."""
    peak = np.nan_to_num(res.means[j]).max(axis=0)
    key = np.where(peak >= 0.01 * max(float(peak.max()), 1e-12), res.si[j], -1.0 + res.si[j] * 1e-3)
    return np.argsort(-key, kind="stable")[:n]


def render_top_images(res: AtlasResult, j: int, source: Source, n: int = SHOW_CHANNELS) -> np.ndarray:
    """For the ``n`` most selective channels of layer j: their 9 most activating images with labels."""

    chans = most_selective(res, j, n)
    side, fs = 72, 12
    label_w = 170
    width = label_w + TOP_K * (side + 4) + 8
    cl = res.layers[j]
    tb = title_block(
        width - 12,
        f"{cl.label} {cl.name}: the {TOP_K} images that activate each of the most selective channels most",
        "ranked by the channel's spatial mean activation; caption: true class and activation",
        size=fs + 4,
        sub_size=fs,
    )
    head_h = tb.height + 10
    row_h = side + 2 * line_height(fs - 1) + 6
    height = head_h + len(chans) * row_h + 6
    c = Canvas.blank(height, width)
    tb.draw(c, 6, 4)
    for r, ch in enumerate(chans):
        y0 = head_h + r * row_h
        c.text((6, y0 + 4), f"F{int(ch) + 1}", fs + 2, INK)
        c.text((6, y0 + 24), f"SI {res.si[j][ch]:.2f}", fs, MUTED)
        c.text(
            (6, y0 + 42), fit_text(f"prefers {preferred_class(res, j, ch) or 'no class'}", fs, label_w - 8), fs, MUTED
        )
        for t, idx in enumerate(res.top_idx[j][ch]):
            if idx < 0:
                continue
            im = source.image(int(idx))
            rgb = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im
            x0 = label_w + t * (side + 4)
            c.paste(resize_rgb(rgb, (side, side)), (x0, y0))
            lab = source.classes[int(source.labels[idx])]
            c.text((x0, y0 + side + 1), fit_text(lab, fs - 1, side), fs - 1, (60, 60, 60))
            c.text((x0, y0 + side + 1 + line_height(fs - 1)), f"{float(res.top_vals[j][ch, t]):.2g}", fs - 1, MUTED)
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
