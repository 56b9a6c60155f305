"""Writing a :class:`~featuremaps.patterns.compute.Patterns` result: one folder, whole or not at all
(:func:`featuremaps.io.atomic_dir`): ``patterns.png`` (the figure), ``patterns.npz`` (one float32 (H, W, C)
image in [0, 1] per channel under ``<layer>/F<k>``, per class under ``class/<name>``: the pixels as the model
sees them before its preprocessing; with several images per channel the first under that key, the others under
``<layer>/F<k>/2``, ``<layer>/F<k>/3``, ...) and ``manifest.json`` (the objective, steps, seed, each channel's final
objective value, and with exemplars the best one's value beside the visualization's).
"""

from __future__ import annotations

from pathlib import Path

from featuremaps import __version__
from featuremaps.io import atomic_dir, save_json, save_npz, save_png


def manifest(p) -> dict:
    """``manifest.json``'s content."""
    rows = []
    for r in p.rows:
        row = {"key": r.key, "title": r.title}
        if r.layer is not None:
            row.update(layer=r.layer.name, label=r.layer.label, channel=f"F{r.channel + 1}")
        if r.class_index is not None:
            row["class_index"] = r.class_index
        if r.value is not None:
            row.update(value=r.value, start_value=float(r.history[0]), max=r.max)
        if r.more:
            row["images"] = [r.key] + [f"{r.key}/{i + 2}" for i in range(len(r.more))]
            row["values"] = [r.value, *r.more_values]
        if r.diversity is not None:
            row["diversity"] = r.diversity
        if r.exemplars:
            row["best_exemplar_max"] = r.exemplars[0].value
            row["exemplars"] = [{"source": e.source, "max": e.value, "box": e.box} for e in r.exemplars]
        rows.append(row)
    out = {
        "featuremaps": __version__,
        "model": p.model,
        "source": p.source,
        "random_weights": p.random_weights,
        "objective": p.objective,
        "steps": p.steps,
        "seed": p.seed,
        "precision": p.precision,
        "images_per_channel": p.images,
        "diversity": _diversity(p),
        "input_shape": list(p.shape),
        "patterns": rows,
        "notes": p.notes,
    }
    if p.data:
        out["data"] = {
            "description": p.data,
            "images": p.images_scanned,
            "skipped": p.skipped,
            "face_crop": p.face_crop,
            "scanned_whole": p.scanned_whole,
        }
    if p.kernels is not None:
        out["kernels"] = {"layer": p.kernels_layer.name, "label": p.kernels_layer.label, "count": len(p.kernels)}
    return out


def _diversity(p) -> dict:
    """The diversity term as the manifest records it: its weight, the layer it reads and what it is."""
    out = {"weight": p.diversity}
    if p.diversity:
        out["term"] = "minus the mean pairwise cosine of the images' Gram matrices (channels x channels), in [-1, 0]"
        if p.diversity_layer is not None:  # classes: the last conv
            out.update(layer=p.diversity_layer.name, label=p.diversity_layer.label)
        else:
            out["layer"] = "each channel's own"
    return out


def write_patterns(p, folder: str | Path, kept: list[str] | None = None) -> Path:
    """Write ``folder`` (replacing a patterns folder featuremaps wrote there); returns ``folder/patterns.png``.
    ``kept`` collects the user's own files found in a replaced folder and kept."""
    folder = Path(folder)
    with atomic_dir(folder, kept=kept) as tmp:
        save_png(tmp / "patterns.png", p.figure())
        arrays = p.arrays()
        if arrays:
            save_npz(tmp / "patterns.npz", **arrays)
        save_json(tmp / "manifest.json", manifest(p))
    return folder / "patterns.png"
