"""``featuremaps train``: train the FER2013 emotion model, checkpointed every epoch."""

from __future__ import annotations

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
    )
    out = Path(args.out)
    # say only what is on disk: curves.png needs matplotlib (an optional dependency)
    files = [f for f in ("best.keras", "last.keras", "log.csv", "state.json", "curves.png") if (out / f).is_file()]
    missing = "" if (out / "curves.png").is_file() else " (no curves.png: pip install matplotlib to draw it)"
    print(
        f"best PublicTest accuracy {state.get('best_val_accuracy', float('nan')):.4f} at epoch "
        f"{state.get('best_epoch')}; {', '.join(files)} in {clean(out)}{missing}"
    )
    return 0
