"""``featuremaps train``: train a FER2013 emotion model, checkpointed every epoch.

The Keras backend is chosen before Keras is imported: a named ``--backend`` (or KERAS_BACKEND, or a resumed
run's own) while the arguments are parsed (:func:`featuremaps.cli.options.train_backend`); ``--backend auto``
and ``--precision auto`` here, by the speed probe (:mod:`featuremaps.emotion.probe`). So this module imports
the training code (and with it Keras) only once that is done.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from featuremaps.cli.options import fer_data, train_backend
from featuremaps.cli.progress import Progress, clean
from featuremaps.emotion import probe


def pick_configuration(args, data: str, progress: Progress) -> dict | None:
    """Resolve ``--backend auto`` / ``--precision auto`` in ``args`` (a probe, its cache, or the fallbacks);
    returns the probe's record for the run's recipe (None when nothing was measured) and sets KERAS_BACKEND."""
    if args.resume:  # the run's own precision (its recipe) and backend (set while parsing)
        args.precision = "float32" if args.precision == "auto" else args.precision
        return None
    backend, precision = args.backend, args.precision
    if backend != "auto" and precision != "auto":
        return None
    cands = probe.candidates(backend, precision)
    side, arch = args.crop or 48, args.arch or "vgg16"
    key = probe.cache_key(arch, args.width, side, args.batch_size)
    if len(cands) <= 1 or probe.short_run(data, args.limit, args.epochs):  # no choice, or not worth a minute
        known = probe.cached_choice(cands, probe.cache_file(), key) if len(cands) > 1 else None
        if known is not None:  # an earlier run's probe measured this very configuration: free
            progress.note(known.summary())
            args.backend, args.precision = train_backend(known.backend, arch), known.precision
            return known.record()
        if len(cands) == 1:
            backend, precision = cands[0]
        args.backend = train_backend(backend, arch)  # auto: the fastest measured for this kind of CPU, BENCHMARKS
        args.precision = "float32" if precision == "auto" else precision
        return None
    listed = ", ".join(" ".join(c) for c in cands)
    progress.status(f"timing {len(cands)} configurations ({listed}), <= {probe.BUDGET_S:.0f} s")
    choice = probe.choose(
        cands, probe.measure_in_subprocesses(arch, args.width, side, args.batch_size), probe.cache_file(), key
    )
    progress.note(choice.summary())  # on every stream: a log says what the run was chosen on
    for note in choice.notes:
        progress.note(note)
    args.backend = train_backend(choice.backend, arch)
    args.precision = choice.precision
    return choice.record()


def run(args) -> int:
    status = Progress("train ")
    data = fer_data(args.data)
    chosen_by = pick_configuration(args, data, status)
    train = importlib.import_module("featuremaps.emotion.train").train  # Keras, on the backend chosen above
    state = train(
        data,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        resume=args.resume,
        seed=args.seed,
        skip_bad=args.skip_bad,
        precision=args.precision,
        limit=args.limit,
        width=args.width,
        init=args.init,
        status=status.status,
        arch=args.arch,
        crop=args.crop,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        maps_every=args.maps_every,
        warmup=args.warmup,
        ema=args.ema,
        chosen_by=chosen_by,
        # Keras' progress bar (\r, \b, escapes) on a terminal only; in a log file or pipe one line per epoch
        verbose=1 if getattr(sys.stdout, "isatty", lambda: False)() else 2,
    )
    out = Path(args.out)
    # say only what is on disk
    names = ("best.keras", "last.keras", "log.csv", "state.json", "curves.png", "maps")
    files = [f + ("/" if f == "maps" else "") for f in names if (out / f).exists()]
    recipe = state.get("recipe", {})
    how = f" ({recipe['arch']} on {recipe['backend']})" if "arch" in recipe and "backend" in recipe else ""
    print(
        f"best PublicTest accuracy {state.get('best_val_accuracy', float('nan')):.4f} at epoch "
        f"{state.get('best_epoch')}{how}; {', '.join(files)} in {clean(out)}"
    )
    return 0
