"""``featuremaps show``: the feature maps of each conv layer, for every image given."""

from __future__ import annotations

from featuremaps import models
from featuremaps.cli.progress import Progress
from featuremaps.images import find_images
from featuremaps.io import check_writable
from featuremaps.pipeline import show


def run(args) -> int:
    find_images(args.images)  # fail on a bad path before loading (or downloading) a model
    out = check_writable(args.out)
    classes = args.classes.split(",") if args.classes else None
    lm = models.load(
        args.model,
        weights=args.weights,
        unsafe=args.unsafe,
        preprocess=args.preprocess,
        classes=classes,
        random_head=False,
    )
    results = show(
        args.images,
        lm,
        out,
        progress=Progress("show "),
        layers=args.layers,
        maps=args.maps,
        select=args.select,
        norm=args.norm,
        cmap=args.cmap,
        overlay=args.overlay,
        cell=args.cell,
        resize=args.resize,
        face_crop=args.face_crop,
        input_shape=args.input_shape,
        max_pixels=args.max_pixels,
        layer_pngs=args.layer_pngs,
    )
    for r in results:
        print(f"{r.image}: {r.folder / 'overview.png'}")
        if r.prediction:
            top = r.prediction if lm.is_emotion else r.prediction[:3]
            print("  predicted " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in top))
    print(f"pictures are in {out.resolve()}")
    return 0
