"""``featuremaps show``: the feature maps of each conv layer, for every image given."""

from __future__ import annotations

from featuremaps import models
from featuremaps.cli.progress import Batch, clean
from featuremaps.images import find_images
from featuremaps.io import check_writable, output_names
from featuremaps.layers import conv_layers, select_layers
from featuremaps.pipeline import Shower, ShowOptions


def run(args) -> int:
    paths = find_images(args.images)  # fail on a bad path before loading (or downloading) a model
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
    opts = ShowOptions(
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
    select_layers(conv_layers(lm.model), opts.layers)  # a bad --layers fails before the first image
    shower = Shower(lm, opts)
    batch = Batch("show ")
    results = batch.run(
        list(zip(paths, output_names(paths), strict=True)),
        lambda pn: shower.run(pn[0], out, pn[1]),
        name=lambda pn: pn[0],
    )
    for r in results:
        print(f"{clean(r.image)}: {clean(r.folder / 'overview.png')}")
        if r.prediction:
            top = r.prediction if lm.is_emotion else r.prediction[:3]
            print("  predicted " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in top))
    if results:
        print(f"pictures are in {clean(out.resolve())}")
    return batch.finish()
