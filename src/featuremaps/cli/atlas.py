"""``featuremaps atlas``: channel x class statistics and top images over a labelled dataset."""

from __future__ import annotations

from pathlib import Path

from featuremaps import models
from featuremaps.atlas import compute_atlas, most_selective, open_source, write_atlas
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean
from featuremaps.errors import UserError
from featuremaps.io import check_replaceable, check_writable
from featuremaps.layers import conv_layers, select_layers


def run(args) -> int:
    out = check_replaceable(Path(args.out))  # only a folder featuremaps made is replaced; fail before any work
    classes = args.classes.split(",") if args.classes else None
    data = fer_data(args.data)
    lm = models.load(args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess, classes=classes)
    source = open_source(data, args.split, lm.classes)
    if len(source) == 0:
        raise UserError(f"the dataset {source.description} has no images; check --data and --split")

    select_layers(conv_layers(lm.model), args.layers)
    check_writable(out.parent)
    progress = Progress("atlas ")
    res = compute_atlas(
        lm,
        source,
        layers=args.layers,
        batch_size=args.batch_size,
        limit=args.limit,
        progress=progress,
    )
    if res.resized:
        progress.note(
            f"{res.resized} of {res.images} images were resized to "
            f"{res.input_shape[1]}x{res.input_shape[0]} (the model's input)"
        )
    write_atlas(res, source, out, lm)
    for j, c in enumerate(res.layers):
        best = most_selective(res, j, 3)
        # channels are F-numbers, 1-based, as in every figure
        tops = ", ".join(
            f"F{int(ch) + 1} SI {res.si[j][ch]:.2f} ({res.classes[int(res.preferred[j][ch])]})" for ch in best
        )
        print(f"  {c.label} {clean(c.name)}: {tops}")
    print(f"atlas of {res.images} images: {clean(out / 'index.html')}")
    return 0
