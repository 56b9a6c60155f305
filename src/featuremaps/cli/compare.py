"""``featuremaps compare``: one image through several models, layers aligned."""

from __future__ import annotations

from pathlib import Path

from featuremaps.cli.progress import Progress, clean, kept_note
from featuremaps.compare import (
    NORMS,
    check_model_names,
    compare_models,
    distinct_names,
    free_size_shape,
    load_compared,
    write_compare,
)
from featuremaps.errors import UserError
from featuremaps.images import find_images, load_image
from featuremaps.io import check_replaceable, check_writable, safe_name


def run(args) -> int:
    names = check_model_names(args.models)
    if Path(args.image).is_dir():
        raise UserError(
            f"compare takes one image, and {clean(args.image)} is a folder; pass one image from it "
            "(for many images use 'featuremaps show' or 'report')"
        )
    (path,) = find_images([args.image])
    rgb = load_image(path, **({"max_pixels": args.max_pixels} if args.max_pixels else {}))
    out_root = check_writable(args.out)
    folder = check_replaceable(out_root / f"compare_{safe_name(path.stem)}", inputs=[path])
    if args.norm not in NORMS:
        raise UserError(f"--norm '{args.norm}' is not one of {', '.join(NORMS)}")
    if args.input_shape and len(args.input_shape) != 3:  # (applied per model only where the size is free)
        raise UserError(f"--input-shape must be H,W,C (got {','.join(map(str, args.input_shape))})")
    loading = Progress("loading ")
    lms = []
    for i, n in enumerate(names):
        loading(i, len(names), n)
        lm = load_compared(n, args.weights, args.unsafe)
        lm.resolve_input_shape(rgb.shape[:2], free_size_shape(lm, args.input_shape))  # a dynamic ONNX size: now
        lms.append(lm)
    loading(len(names), len(names), None)
    pic, runs, labels, picks = compare_models(
        distinct_names(lms),
        rgb,
        rows=args.rows,
        maps=args.maps,
        align=args.align,
        norm=args.norm,
        cmap=args.cmap,
        image_name=path.name,
        face_crop=args.face_crop,
        input_shape=args.input_shape,
        progress=Progress("compare "),
    )
    kept: list[str] = []
    write_compare(folder, path, pic, runs, labels, picks, align=args.align, norm=args.norm, maps=args.maps, kept=kept)
    if kept:
        loading.note(kept_note(folder, kept))
    print(f"{clean(path)}: {clean(folder / 'compare.png')} and compare.html")
    return 0
