"""``featuremaps evaluate``: accuracy, per-class metrics and confusion matrices of an emotion model."""

from __future__ import annotations

from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean
from featuremaps.emotion import data as fer
from featuremaps.emotion.evaluate import check_output, evaluate, load_for_eval, write_evaluation
from featuremaps.emotion.model import EMOTIONS
from featuremaps.errors import UserError


def run(args) -> int:
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits:
        raise UserError(f"--split '{args.splits}' names no split; use one or more of {', '.join(fer.SPLITS)}")
    bad = [s for s in splits if s not in fer.SPLITS]
    if bad:
        raise UserError(f"unknown split '{clean(bad[0])}'; use {', '.join(fer.SPLITS)}")
    data_path = fer_data(args.data)
    # only into a new or empty folder or one holding evaluate's own output; before minutes of loading
    out = check_output(args.out)
    model, source = load_for_eval(args.model)
    status = Progress("evaluate ")
    status.status(f"reading {clean(data_path)}")
    data = fer.load(data_path, skip_bad=args.skip_bad)
    if data.skipped:
        status.warn(f"skipped {len(data.skipped)} bad entries (first: {clean(data.skipped[0])})")
    results = evaluate(model, data, splits, tta=args.tta, progress=lambda s: Progress(f"evaluate {s} "))
    for s, m in results.items():
        tag = " (TTA)" if args.tta else ""
        print(f"{s}{tag}: accuracy {m['accuracy']:.2%} on {int(m['support'].sum())} faces")
        print(f"  {'class':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'n':>6}")
        for i, c in enumerate(EMOTIONS):
            print(f"  {c:<10}{m['precision'][i]:>10.3f}{m['recall'][i]:>8.3f}{m['f1'][i]:>8.3f}{m['support'][i]:>6d}")
    write_evaluation(out, results, model=source, data=data_path, tta=args.tta)
    print(f"confusion matrices and metrics.json in {clean(out)}")
    return 0
