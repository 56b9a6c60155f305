"""The atlas' files: ``atlas.json`` (a summary per layer), ``atlas.npz``, ``index.html`` and the pictures, written
whole through :mod:`featuremaps.io`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from featuremaps import __version__
from featuremaps.atlas.figures import (
    SHOW_CHANNELS,
    duplicate_note,
    most_selective,
    preferred_class,
    render_top_images,
)
from featuremaps.atlas.sources import Source
from featuremaps.atlas.stats import SI_FLOOR, AtlasResult
from featuremaps.html import esc, page
from featuremaps.io import atomic_dir, safe_name, save_json, save_npz, save_png, save_text, unique_names
from featuremaps.pipeline import model_title

LIST_CHANNELS = 10  # most selective channels listed in atlas.json / index.html, per layer


def summary(res: AtlasResult, source: Source, j: int) -> dict:
    c = res.layers[j]
    chans = most_selective(res, j, LIST_CHANNELS)
    show = set(most_selective(res, j, SHOW_CHANNELS).tolist())
    items = []
    for ch in chans:
        it = {
            "channel": int(ch),
            "selectivity": float(res.si[j][ch]),
            "preferred_class": preferred_class(res, j, ch),
            "class_means": {
                k: (None if math.isnan(v) else float(v)) for k, v in zip(res.classes, res.means[j][:, ch], strict=True)
            },
        }
        if int(ch) in show:
            boxes = _boxes(res, j, int(ch))
            it["top_images"] = [
                {
                    "index": int(i),
                    "source": source.sources[int(i)],
                    "label": res.classes[int(source.labels[i])],
                    "activation": float(v),
                    "box": box,
                }
                for i, v, box in zip(res.top_idx[j][ch], res.top_vals[j][ch], boxes, strict=True)
                if i >= 0
            ]
        items.append(it)
    return {
        "label": c.label,
        "name": c.name,
        "channels": int(res.means[j].shape[1]),
        "mean_selectivity": float(np.mean(res.si[j])),
        "most_selective": items,
    }


def _boxes(res: AtlasResult, j: int, ch: int) -> list[dict | None]:
    """The crop box of each top image of channel ``ch`` of layer ``j`` (None where it has none)."""
    got = None if res.crops is None else res.crops[j].boxes.get(ch)
    return list(got) if got is not None else [None] * res.top_idx[j].shape[1]


def box_array(res: AtlasResult, j: int) -> np.ndarray:
    """(C, k, 4) int32 ``top, left, bottom, right`` of every channel's top images; -1 where none was located
    (channels not drawn, empty slots)."""
    out = np.full((*res.top_idx[j].shape, 4), -1, np.int32)
    for ch in range(out.shape[0]):
        for t, b in enumerate(_boxes(res, j, ch)):
            if b is not None:
                out[ch, t] = (b["top"], b["left"], b["bottom"], b["right"])
    return out


def write_atlas(res: AtlasResult, source: Source, out: Path, lm, kept: list[str] | None = None) -> Path:
    """Write the atlas folder ``out`` whole; the user's entries of the folder it replaces are kept (their
    paths appended to ``kept``), only the files featuremaps wrote there before are replaced."""

    layers = [summary(res, source, j) for j in range(len(res.layers))]
    keys = unique_names(safe_name(c.name) for c in res.layers)  # "a b" and "a_b" must not share a key
    for j, (item, key) in enumerate(zip(layers, keys, strict=True)):
        item["npz_prefix"] = key
        if res.crops is not None and res.crops[j].note:
            item["crops"] = f"whole images: {res.crops[j].note}"
        elif res.crops is not None and res.crops[j].approximate:
            item["crops"] = f"approximate: {res.crops[j].approximate}"
    with atomic_dir(out, kept=kept) as tmp:
        arrays = {"classes": np.asarray(res.classes), "counts": res.counts}
        body = [
            f'<p class="note">{esc(model_title(lm))} over {res.images} images of {esc(source.description)}; '
            f"per class: {esc(', '.join(f'{k} {n}' for k, n in zip(res.classes, res.counts, strict=True)))}"
            "</p>"
        ]
        if res.duplicates:
            body.append(f'<p class="note warn">{esc(duplicate_note(res, source))}</p>')
        for j, c in enumerate(res.layers):
            key = f"C{c.index:02d}_{safe_name(c.name)}"
            save_png(tmp / "heatmaps" / f"{key}.png", res.heatmap(j))
            save_png(tmp / "top" / f"{key}.png", render_top_images(res, j, source))
            for name, a in (
                ("means", res.means[j]),
                ("selectivity", res.si[j]),
                ("preferred", res.preferred[j]),
                ("top_index", res.top_idx[j]),
                ("top_activation", res.top_vals[j]),
                ("top_box", box_array(res, j)),
            ):
                arrays[f"{keys[j]}/{name}"] = a
            rows = "".join(
                f'<tr><td class="num">F{it["channel"] + 1}</td><td class="num">{it["selectivity"]:.3f}</td>'
                f"<td>{esc(it['preferred_class'] or 'no class')}</td></tr>"
                for it in layers[j]["most_selective"]
            )
            body.append(
                f'<div class="layer wide" id="{esc(c.label)}"><div class="meta"><h3>{esc(c.label)} '
                f'<code>{esc(c.name)}</code></h3><table><tr><th>channel</th><th class="num">SI</th>'
                f'<th>prefers</th></tr>{rows}</table></div><div class="scroll">'
                f'<img src="heatmaps/{key}.png" alt="{esc(c.name)} heatmap"><br>'
                f'<img src="top/{key}.png" alt="{esc(c.name)} top images"></div></div>'
            )
        save_npz(tmp / "atlas.npz", **arrays)
        save_json(
            tmp / "atlas.json",
            {
                "featuremaps": __version__,
                "model": lm.name,
                "source": lm.source,
                "data": source.description,
                "images": res.images,
                "resized": res.resized,
                "unreadable": res.skipped,
                "unreadable_images": res.bad,
                "duplicates": [
                    [{"index": i, "source": source.sources[i], "label": res.classes[lab]} for i, lab in group]
                    for group in res.duplicates
                ],
                "input_shape": list(res.input_shape),
                "classes": res.classes,
                "counts": res.counts,
                "selectivity_index": "(mu_max - mu_rest) / "
                "(mu_max + mu_rest) over class means of the channel's spatial mean",
                "top_images": "the drawn channels' top images; box: {top, left, bottom, right}, inclusive pixels of "
                f"the image as the model was fed ({res.fed}), the receptive field "
                "around the channel's maximum on it (the whole image where the field is unknown; null: not located)",
                "preferred_class": f"null where the selectivity index is under {SI_FLOOR} (class means all but equal)",
                "layers": layers,
            },
        )
        nav = "".join(f'<a href="#{esc(c.label)}">{esc(c.label)}</a>' for c in res.layers)
        save_text(
            tmp / "index.html",
            page(
                f"featuremaps atlas: {model_title(lm)}",
                f'<section class="image">{"".join(body)}</section>',
                nav=nav,
                local_images=True,
            ),
        )
    return out
