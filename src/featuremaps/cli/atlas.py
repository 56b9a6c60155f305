"""``featuremaps atlas``: channel x class statistics and top images over a labelled dataset."""

from __future__ import annotations

import importlib
import logging
from functools import partial
from pathlib import Path

from featuremaps import models
from featuremaps.atlas import (
    compute_atlas,
    duplicate_note,
    most_selective,
    open_source,
    preferred_class,
    write_atlas,
)
from featuremaps.cli.loading import check_layers, model_options
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean, kept_note
from featuremaps.errors import UserError
from featuremaps.io import check_replaceable, check_writable


def _ray_engine(args):
    """The Ray module, or one line saying how to get Ray (it is an optional extra)."""
    if args.gpus_per_actor < 0:
        raise UserError(f"--gpus-per-actor {args.gpus_per_actor:g} is negative; pass 0 (CPU), 0.5, 1, ...")
    try:
        return importlib.import_module("featuremaps.atlas.ray")
    except ImportError as e:
        if (e.name or "").split(".")[0] not in ("ray", "pyarrow"):
            raise
        raise UserError(f"--engine ray needs Ray ({e.name} is not installed); pip install 'featuremaps[ray]'") from None


def run(args) -> int:
    out = check_replaceable(Path(args.out))  # only a folder featuremaps made is replaced; fail before any work
    check_writable(out.parent if out.exists() else out)  # /proc, a read-only disk: before any model or data
    if args.engine != "ray" and (args.address or args.actors or args.gpus_per_actor):
        raise UserError("--address, --actors and --gpus-per-actor need --engine ray; add it or drop them")
    engine = _ray_engine(args) if args.engine == "ray" else None
    if engine is not None and args.address and args.address != "auto":
        engine.check_address(args.address, engine.CONNECT_TIMEOUT_S)  # before minutes of model loading
    progress = Progress("atlas ")  # on a terminal, says what the seconds before the bar are spent on
    load_model = partial(models.load, **model_options(args))
    progress.status(f"loading the model {clean(args.model or 'emotion')}")
    lm = load_model()
    data = fer_data(args.data)
    progress.status(f"reading {clean(data)}")
    source = open_source(data, args.split, lm.classes, args.path_column, args.label_column)
    source.max_pixels = args.max_pixels
    if len(source) == 0:
        raise UserError(f"the dataset {source.description} has no images; check --data and --split")

    check_layers(lm, args.layers)
    progress.status(f"{len(source)} images; starting the first batch")
    common = {
        "layers": args.layers,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "input_shape": args.input_shape,
        "progress": progress,
    }
    if engine is None:
        res = compute_atlas(lm, source, **common)
    else:
        for name in ("ray", "ray.data"):  # Ray's start-up and execution notes (ray.data configures its own)
            logging.getLogger(name).setLevel(logging.ERROR)
        res = engine.compute_atlas_ray(
            load_model,
            source,
            lm=lm,
            actors=args.actors,
            gpus_per_actor=args.gpus_per_actor,
            address=args.address,
            **common,
        )
    if res.skipped:
        shown = "; ".join(res.bad[:3])
        more = f"; ... ({res.skipped - 3} more, in atlas.json)" if res.skipped > 3 else ""
        progress.warn(f"skipped {res.skipped} unreadable image(s): {shown}{more}")
    if res.resized:
        progress.note(f"{res.resized} of {res.images} images were resized to {res.resized_to} (the model's input)")
    if res.duplicates:
        progress.warn(clean(duplicate_note(res, source)))
    kept: list[str] = []
    write_atlas(res, source, out, lm, kept)
    if kept:
        progress.note(kept_note(out, kept))
    for j, c in enumerate(res.layers):
        best = [int(ch) for ch in most_selective(res, j, 3)]
        if preferred_class(res, j, best[0]) is None:
            print(f"  {c.label} {clean(c.name)}: no channel prefers a class (largest SI {res.si[j][best[0]]:.3f})")
            continue
        # channels are F-numbers, 1-based, as in every figure
        tops = ", ".join(
            f"F{ch + 1} SI {res.si[j][ch]:.2f} ({preferred_class(res, j, ch) or 'no class'})" for ch in best
        )
        print(f"  {c.label} {clean(c.name)}: {tops}")
    print(f"atlas of {res.images} images: {clean(out / 'index.html')}")
    return 1 if res.skipped else 0  # as every batch command: 1 = some items skipped, each named
