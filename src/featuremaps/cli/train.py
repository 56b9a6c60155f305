"""``featuremaps train``: train a FER2013 emotion model, checkpointed every epoch.

The Keras backend was chosen while the arguments were parsed (``--backend``, default torch when installed:
see :func:`featuremaps.cli.options.train_backend`), before Keras was imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean
from featuremaps.emotion.train import train


def run(args) -> int:
    status = Progress("train ")
    state = train(
        fer_data(args.data),
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
