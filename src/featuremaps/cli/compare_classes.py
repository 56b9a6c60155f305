"""``featuremaps compare-classes``: the same channels for one face per class, side by side."""

from __future__ import annotations

from featuremaps.cli.loading import check_layers, load_model_from_args
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean, kept_note
from featuremaps.compare_classes import compare_classes, faces_from_fer, write_compare_classes
from featuremaps.errors import UserError
from featuremaps.images import find_images, load_image
from featuremaps.io import check_replaceable, check_writable
from featuremaps.render import colormap


def run(args) -> int:
    if args.images and args.data:  # (the environment variable yields to images given)
        raise UserError("pass either images or --data, not both")
    if args.images:
        paths = find_images(args.images)
        if len(paths) < 2:
            raise UserError("compare-classes needs at least 2 images (one per class); or pass --data")
        faces = [load_image(p, **({"max_pixels": args.max_pixels} if args.max_pixels else {})) for p in paths]
        labels = [p.stem for p in paths]
        sources = [str(p) for p in paths]
    else:
        faces, labels, sources = faces_from_fer(fer_data(args.data))
    out_root = check_writable(args.out)
    inputs = paths if args.images else []
    folder = check_replaceable(out_root / "compare-classes", inputs=inputs)
    colormap(args.cmap)  # a bad --cmap: one line, before the model loads
    lm = load_model_from_args(args)
    check_layers(lm, args.layers)
    pics, preds, notes = compare_classes(
        lm, faces, labels, layers=args.layers, maps=args.maps, cmap=args.cmap, select=args.select, sources=sources
    )
    for n in notes:
        print(f"note: {n}")
    kept: list[str] = []
    write_compare_classes(folder, lm, pics, labels, sources, preds, notes, inputs=inputs, kept=kept)
    for lab, pr in zip(labels, preds, strict=True):
        print(f"  {lab}: predicted {pr}")
    if kept:
        Progress().note(kept_note(folder, kept))
    print(f"{len(pics)} layers: {clean(folder)}")
    return 0
