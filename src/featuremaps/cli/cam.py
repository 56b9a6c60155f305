"""``featuremaps cam``: class activation maps for images and folders."""

from __future__ import annotations

from pathlib import Path

from featuremaps import models
from featuremaps.cam import parse_methods
from featuremaps.cli.progress import Progress
from featuremaps.errors import UserError
from featuremaps.explain import CamRunner
from featuremaps.frameworks import check_methods
from featuremaps.images import find_images
from featuremaps.io import output_names
from featuremaps.render import colormap


def run(args) -> int:
    """Entry point of ``featuremaps cam`` (called by :mod:`featuremaps.cli`)."""

    methods = parse_methods(args.method)
    colormap(args.cmap)  # unknown colormap: fail now
    if args.all_classes and args.target_class is not None:
        raise UserError("--class and --all-classes exclude each other; pass one")
    paths = find_images(args.images)
    classes = args.classes.split(",") if args.classes else None
    lm = models.load(args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess, classes=classes)
    check_methods(lm.model, methods)  # e.g. Grad-CAM on an ONNX model: before any image is read
    runner = CamRunner(
        lm,
        methods,
        layer=args.layer,
        target_class=args.target_class,
        all_classes=args.all_classes,
        cmap=args.cmap,
        input_shape=args.input_shape,
        resize=args.resize,
        face_crop=args.face_crop,
        max_pixels=args.max_pixels,
    )
    if lm.input_shape and all(d is not None for d in lm.input_shape[:2]):
        runner.check(lm.resolve_input_shape((224, 224), args.input_shape))
    out = Path(args.out)
    progress = Progress("cam ")
    for i, (p, name) in enumerate(zip(paths, output_names(paths), strict=True)):
        progress(i, len(paths), p)
        folder, results = runner.run(p, out, name)
        r = results[0]
        eng_layer = r.layer
        print(f"{p}: {folder / 'panel.png'}  ({eng_layer.label} {eng_layer.name})")
        if not args.all_classes:
            print(
                f"  {', '.join(sorted({x.method for x in results}, key=methods.index))} for "
                f"{r.class_name or f'class {r.class_index}'} (p = {r.probability:.1%})"
            )
    progress(len(paths), len(paths), None)
    print(f"maps are in {out.resolve()}")
    return 0
