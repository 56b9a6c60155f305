"""``featuremaps compare-classes``: the same channels for one face per class through one model, and its files.

Per layer, one row per face (by default the first PrivateTest face of each FER2013 emotion), each channel on one
colour scale across the faces, with the true and predicted class of each face.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from featuremaps import __version__
from featuremaps.compare import GAP, maps_block, scaled
from featuremaps.draw import (
    INK,
    MUTED,
    Canvas,
    colorbar_height,
    fit_text,
    fit_text_keep_end,
    line_height,
    title_block,
    zero_maps,
)
from featuremaps.emotion import data as fer
from featuremaps.errors import UserError
from featuremaps.extractor import feature_extractor, parse_select
from featuremaps.faces import NoFaceError
from featuremaps.html import esc, img_tag, page
from featuremaps.io import atomic_dir, safe_name, save_json, save_png, save_text
from featuremaps.pipeline import fitted_size, model_title, percent, prediction_of, prepare
from featuremaps.render import colormap, fit_size, resize_rgb


def faces_from_fer(path, split: str = "PrivateTest") -> tuple[list[np.ndarray], list[str], list[str]]:
    """The first face of each class in ``split``: RGB arrays, their class names and where they come from."""
    data = fer.load(path, limit=1)
    s = data[split]
    faces, labels, sources = [], [], []
    for ci, cls in enumerate(data.classes):
        idx = np.flatnonzero(s.y == ci)
        if idx.size == 0:
            continue
        i = int(idx[0])
        faces.append(np.repeat(s.x[i][..., None], 3, axis=2))
        labels.append(cls)
        sources.append(s.sources[i])
    if len(faces) < 2:
        raise UserError(f"{path}: fewer than 2 classes have a {split} face; check the --data path")
    return faces, labels, sources


def render_classes(
    row_maps: list[np.ndarray],
    faces: list[np.ndarray],
    labels: list[str],
    preds: list[str],
    channels,
    *,
    title: str,
    subtitle: str,
    cmap: str = "viridis",
) -> np.ndarray:
    """One layer: a row per face (face, true and predicted class, then the same k channels).

    Each channel is on one colour scale across the faces (0 on the colour bar is the channel's smallest
    value over all faces, 1 its largest); a channel that is zero for a face is hatched and labelled.
    """

    stack = np.stack(row_maps)  # (n, H, W, k): each channel scaled over all faces
    lo, hi = stack.min(axis=(0, 1, 2)), stack.max(axis=(0, 1, 2))
    k = stack.shape[-1]
    side = 64
    fs = 13
    label_w = 190
    width = max(label_w + k * (side + GAP) + 8, 520)
    tb = title_block(width - 12, title, subtitle, size=fs + 4, sub_size=fs)
    head_h = tb.height + 10 + line_height(fs) + 4
    row_h = side + GAP + 4
    foot_h = colorbar_height(fs - 1) + 12
    height = head_h + len(faces) * row_h + foot_h
    c = Canvas.blank(height, width)
    tb.draw(c, 6, 4)
    for j, ch in enumerate(channels):
        c.text(
            (label_w + j * (side + GAP) + 2, head_h - line_height(fs) - 2), fit_text(f"F{int(ch) + 1}", fs, side), fs
        )
    for i, (face, lab, pr) in enumerate(zip(faces, labels, preds, strict=True)):
        y0 = head_h + i * row_h
        h, w = fit_size(*face.shape[:2], side)
        c.paste(resize_rgb(face, (h, w)), (4, y0))
        c.paste(maps_block(scaled(stack[i], lo, hi), k, side, cmap, zero=zero_maps(stack[i])), (label_w, y0))
        c.text((side + 12, y0 + 8), fit_text(lab, fs + 2, label_w - side - 16), fs + 2, INK)
        c.text((side + 12, y0 + 30), fit_text_keep_end(f"pred: {pr}", fs - 1, label_w - side - 16), fs - 1, MUTED)
    label = "0 = channel's min, 1 = its max over all faces"
    c.colorbar(label_w, height - foot_h + 4, 160, colormap(cmap), 0.0, 1.0, size=fs - 1, label=label)
    return c.rgb


def top_channels(r, k: int, mode: str):
    """LayerMaps ``r`` (all channels) cut to the ``k`` channels with the largest spatial mean or max, averaged
    over the batch, the same channels for every image (in channel order)."""
    score = r.maps.mean(axis=(1, 2)) if mode == "top-mean" else r.maps.max(axis=(1, 2))  # (B, C)
    keep = np.sort(np.argsort(-score.mean(axis=0), kind="stable")[: min(k, r.maps.shape[-1])])
    chans = np.broadcast_to(keep, (r.maps.shape[0], keep.size)).copy()
    return replace(r, maps=np.ascontiguousarray(r.maps[..., keep]), channels=chans)


def compare_classes(
    lm,
    faces: list[np.ndarray],
    labels: list[str],
    *,
    layers="all",
    maps: int = 8,
    cmap: str = "viridis",
    resize: str = "crop",
    select="first",
    sources: list[str] | None = None,
):
    """Python API: ``(pictures [(ConvLayer, RGB)], predictions [str], notes [str])`` of the faces.

    ``sources`` (the image files, default ``labels``) name an image in which the emotion model finds no face.

    ``select`` picks the same channels for every face, like ``show --select``: ``first`` (channels
    0..maps-1), ``top-mean`` / ``top-max`` (the ``maps`` channels with the largest spatial mean / max,
    averaged over the faces) or a channel list like ``"F1,F6,F10"`` (or 0-based ``[0, 5, 9]``).

    Example::

        >>> pics, preds, notes = compare_classes(lm, faces, labels, layers="C1-C3", maps=8, select="top-mean")
    """
    mode, _ = parse_select(select)
    preps = []
    for f, src in zip(faces, sources or labels, strict=True):
        try:
            preps.append(prepare(lm, f, resize=resize))  # photos: the face, as in show; FER faces pass as is
        except NoFaceError:
            raise NoFaceError(
                f"no face found in {src}; compare-classes needs one face per class: crop the photo to the face or "
                "pick another"
            ) from None
    shape = preps[0].x.shape
    notes = []
    size = fitted_size(lm, shape)  # a --crop emotion model: faces fitted to 48 px, then their centre cut
    resized = [f"{lab} {f.shape[1]}x{f.shape[0]}" for f, lab in zip(faces, labels, strict=True) if f.shape[:2] != size]
    if resized:
        notes.append(f"resized to {size[1]}x{size[0]}: {', '.join(resized)}")
    top = mode in ("top-mean", "top-max")  # ranked over all faces at once, so every face shows the same channels
    fx = feature_extractor(
        lm.model, shape, layers=layers, maps=None if top else maps, select="first" if top else select
    )
    results, preds = fx(np.stack([p.x for p in preps]))
    if top:
        results = [top_channels(r, maps, mode) for r in results]
    pred_text = []
    for i in range(len(faces)):
        d = prediction_of(lm, preds[i] if preds is not None else None, top=1)
        random = getattr(lm, "random_weights", False)
        top = f"{d[0]['class']} {percent(d[0]['probability'])}" if d else None
        pred_text.append(top or ("random weights" if random else "n/a"))
    shown = [p.shown for p in preps]
    pics = []
    for r in results:
        title = (
            f"{r.conv.label} {r.conv.name} {'x'.join(map(str, r.shape))}: the same {r.maps.shape[-1]} "
            f"channels for {len(faces)} faces" + (f" (chosen by {mode}, over all faces)" if top else "")
        )
        sub = f"{model_title(lm)}; rows: true class, predicted class" + (f"; {notes[0]}" if notes else "")
        pics.append(
            (
                r.conv,
                render_classes(
                    [r.maps[i] for i in range(len(faces))],
                    shown,
                    labels,
                    pred_text,
                    r.channels[0],
                    title=title,
                    subtitle=sub,
                    cmap=cmap,
                ),
            )
        )
    return pics, pred_text, notes


def write_compare_classes(
    folder: Path,
    lm,
    pics,
    labels: list[str],
    sources: list[str],
    preds: list[str],
    notes: list[str],
    inputs=(),
    kept=None,
) -> list[str]:
    """Write ``folder`` (whole or not at all): one PNG per layer, ``index.html`` and ``manifest.json``; returns
    the PNG names. ``inputs`` (the faces' files) are never replaced; ``kept`` collects the user's files left."""
    files = []
    with atomic_dir(folder, inputs=list(inputs), kept=kept) as tmp:
        for conv, pic in pics:
            name = f"C{conv.index:02d}_{safe_name(conv.name)}.png"
            save_png(tmp / name, pic)
            files.append(name)
        body = "".join(
            f'<div class="layer" id="{esc(conv.label)}">{img_tag(pic, conv.name)}</div>' for conv, pic in pics
        )
        nav = "".join(f'<a href="#{esc(c.label)}">{esc(c.label)}</a>' for c, _ in pics)
        save_text(
            tmp / "index.html",
            page(
                f"featuremaps compare-classes: {model_title(lm)}", f'<section class="image">{body}</section>', nav=nav
            ),
        )
        save_json(
            tmp / "manifest.json",
            {
                "featuremaps": __version__,
                "model": lm.name,
                "source": lm.source,
                "faces": [
                    {"label": lab, "source": src, "predicted": pr}
                    for lab, src, pr in zip(labels, sources, preds, strict=True)
                ],
                "layers": [{"label": c.label, "name": c.name, "png": f} for (c, _), f in zip(pics, files, strict=True)],
                "notes": notes,
            },
        )
    return files
