"""``featuremaps train``: train a FER2013 emotion model, checkpointed every epoch.

The Keras backend was chosen while the arguments were parsed (``--backend``, default torch when installed:
see :func:`featuremaps.cli.options.train_backend`), before Keras was imported.
"""

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
        arch=args.arch,
        crop=args.crop,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        maps_every=args.maps_every,
    )
    maps = ", feature-map sheets in maps/" if args.maps_every else ""
    print(
        f"best PublicTest accuracy {state.get('best_val_accuracy', float('nan')):.4f} at epoch "
        f"{state.get('best_epoch')} ({state['recipe']['arch']} on {state['recipe']['backend']}); checkpoints, "
        f"log.csv and curves.png{maps} in {args.out}"
    )
    return 0
