"""``featuremaps evaluate``: accuracy, per-class metrics and confusion matrices of an emotion model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from featuremaps import __version__
from featuremaps.charts import render_confusion
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean
from featuremaps.emotion import data as fer
from featuremaps.emotion.evaluate import evaluate, load_for_eval
from featuremaps.emotion.model import EMOTIONS
from featuremaps.errors import UserError
from featuremaps.io import check_output_folder, save_json, save_png


def _own_output(folder: Path) -> bool:
    """A folder ``evaluate`` wrote: its ``metrics.json`` has a ``"featuremaps"`` key (or, written before that
    key existed, evaluate's own keys)."""
    p = folder / "metrics.json"
    if p.is_symlink() or not p.is_file():
        return False
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and ("featuremaps" in obj or {"model", "data", "tta", "classes"} <= obj.keys())


def run(args) -> int:
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        raise UserError(f"--split '{args.splits}' names no split; use one or more of {', '.join(fer.SPLITS)}")
    bad = [s for s in splits if s not in fer.SPLITS]
    if bad:
        raise UserError(f"unknown split '{clean(bad[0])}'; use {', '.join(fer.SPLITS)}")
    data_path = fer_data(args.data)
    # only into a new or empty folder or one holding evaluate's own output; before minutes of loading
    out = check_output_folder(args.out, _own_output, "a folder of evaluate's output (its metrics.json)")
    model, source = load_for_eval(args.model)
    status = Progress("evaluate ")
    status.status(f"reading {clean(data_path)}")
    data = fer.load(data_path, skip_bad=args.skip_bad)
    if data.skipped:
        status.warn(f"skipped {len(data.skipped)} bad entries (first: {clean(data.skipped[0])})")
    results = evaluate(model, data, splits, tta=args.tta, progress=lambda s: Progress(f"evaluate {s} "))
    report = {
        "featuremaps": __version__,
        "model": source,
        "data": str(data_path),
        "tta": bool(args.tta),
        "classes": list(EMOTIONS),
    }
    for s, m in results.items():
        tag = " (TTA)" if args.tta else ""
        print(f"{s}{tag}: accuracy {m['accuracy']:.2%} on {int(m['support'].sum())} faces")
        print(f"  {'class':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'n':>6}")
        for i, c in enumerate(EMOTIONS):
            print(f"  {c:<10}{m['precision'][i]:>10.3f}{m['recall'][i]:>8.3f}{m['f1'][i]:>8.3f}{m['support'][i]:>6d}")
        png = out / f"confusion_{s}.png"
        save_png(png, render_confusion(m["confusion"], list(EMOTIONS), f"{s}{tag}: accuracy {m['accuracy']:.2%}"))
        report[s] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in m.items()}
    save_json(out / "metrics.json", report)
    print(f"confusion matrices and metrics.json in {clean(out)}")
    return 0
