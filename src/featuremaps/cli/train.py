"""``featuremaps train``: train the FER2013 emotion model, checkpointed every epoch."""

from __future__ import annotations

from featuremaps.emotion.train import train


def run(args) -> int:
    state = train(
        args.data,
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
    )
    print(
        f"best PublicTest accuracy {state.get('best_val_accuracy', float('nan')):.4f} at epoch "
        f"{state.get('best_epoch')}; checkpoints, log.csv and curves.png in {args.out}"
    )
    return 0
