"""``featuremaps patterns``: what a channel looks for (feature visualization, exemplars, first-layer filters)."""

from __future__ import annotations

from pathlib import Path

from featuremaps.cli.loading import model_options
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean, kept_note
from featuremaps.errors import UserError
from featuremaps.io import check_replaceable, check_writable
from featuremaps.patterns import find_patterns, write_patterns


def run(args) -> int:
    out = check_replaceable(Path(args.out))  # only a folder featuremaps made is replaced; fail before any work
    check_writable(out.parent if out.exists() else out)
    if args.model_arg and args.model and args.model_arg != args.model:
        raise UserError(f"two models given ({args.model_arg} and --model {args.model}); give one")
    args.model = args.model_arg or args.model
    data = None
    if args.data is not None:
        data = fer_data(None) if args.data.lower() == "fer2013" and not Path(args.data).exists() else args.data
    progress = Progress("patterns ")
    progress.status(f"loading the model {clean(args.model or 'emotion')}")
    res = find_patterns(
        args.model,
        layers=args.layers,
        channels=args.channels,
        target_classes=args.target_class,
        objective=args.objective,
        data=data,
        split=args.split,
        limit=args.limit,
        exemplars=args.exemplars,
        kernels=args.kernels,
        steps=args.steps,
        seed=args.seed,
        size=args.size,
        progress=progress,
        images=args.images,
        diversity=args.diversity,
        precision=args.precision,
        face_crop=args.face_crop,
        random_head=args.target_class is None,
        **{k: v for k, v in model_options(args).items() if k != "spec"},
    )
    for note in res.notes:
        progress.note(clean(note))
    if res.skipped:
        more = f"; ... ({len(res.skipped) - 3} more, in manifest.json)" if len(res.skipped) > 3 else ""
        progress.warn(f"skipped {len(res.skipped)} unreadable image(s) of --data: {'; '.join(res.skipped[:3])}{more}")
    kept: list[str] = []
    png = write_patterns(res, out, kept)
    if kept:
        progress.note(kept_note(out, kept))
    for r in res.rows:
        where = f"{r.layer.label} {clean(r.layer.name)} " if r.layer is not None else "class "
        parts = []
        if r.value is not None:
            parts.append(f"objective {r.history[0]:.3g} -> {r.value:.3g}")
        if r.more_values:
            parts.append(f"images 2-{len(r.more_values) + 1}: {', '.join(f'{v:.3g}' for v in r.more_values)}")
        if r.diversity is not None:
            parts.append(f"diversity {r.diversity:.3g}")
        if r.max is not None and r.exemplars:
            parts.append(f"max {r.max:.3g} (best exemplar {r.exemplars[0].value:.3g})")
        print(f"  {where}{clean(r.title)}: {', '.join(parts) or 'exemplars only'}")
    print(f"patterns of {clean(res.model)}: {clean(png)}")
    return 1 if res.skipped else 0  # as every batch command: 1 = some items skipped, each named
