"""``featuremaps compare`` (one image through several models) and ``compare-classes`` (one face per class)."""

from __future__ import annotations

from pathlib import Path

from featuremaps import __version__, models
from featuremaps.cli.options import fer_data
from featuremaps.cli.progress import Progress, clean, kept_note
from featuremaps.compare import (
    NORMS,
    check_model_names,
    compare_classes,
    compare_models,
    distinct_names,
    faces_from_fer,
    free_size_shape,
    load_compared,
    models_html,
)
from featuremaps.errors import UserError
from featuremaps.frameworks import conv_layers
from featuremaps.html import esc, img_tag, page
from featuremaps.images import find_images, load_image
from featuremaps.io import atomic_dir, check_replaceable, check_writable, safe_name, save_json, save_png, save_text
from featuremaps.layers import select_layers
from featuremaps.pipeline import model_title


def run_models(args) -> int:
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
    title = f"{path.name}: {', '.join(model_title(r.lm) for r in runs)} aligned by {args.align}"
    manifest = {
        "featuremaps": __version__,
        "image": str(path),
        "align": args.align,
        "norm": args.norm,
        "maps": args.maps,
        "models": [
            {
                "name": r.lm.name,
                "source": r.lm.source,
                "random_weights": bool(getattr(r.lm, "random_weights", False)),
                "input_shape": list(r.input_shape),
                "conv_layers": r.depth,
                "prediction": r.prediction,
            }
            for r in runs
        ],
        "rows": [
            {
                "label": lab,
                "layers": [
                    None
                    if i is None
                    else {
                        "label": r.results[i].conv.label,
                        "name": r.results[i].conv.name,
                        "shape": list(r.results[i].shape),
                    }
                    for r, i in zip(runs, row, strict=True)
                ],
            }
            for lab, row in zip(labels, picks, strict=True)
        ],
    }
    kept: list[str] = []
    with atomic_dir(folder, inputs=[path], kept=kept) as tmp:
        save_png(tmp / "compare.png", pic)
        save_text(tmp / "compare.html", models_html(pic, runs, labels, picks, title))
        save_json(tmp / "compare.json", manifest)
    if kept:
        loading.note(kept_note(folder, kept))
    print(f"{clean(path)}: {clean(folder / 'compare.png')} and compare.html")
    return 0


def run_classes(args) -> int:
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
    classes = args.classes.split(",") if args.classes else None
    lm = models.load(args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess, classes=classes)
    select_layers(conv_layers(lm.model), args.layers)
    pics, preds, notes = compare_classes(
        lm, faces, labels, layers=args.layers, maps=args.maps, cmap=args.cmap, select=args.select, sources=sources
    )
    for n in notes:
        print(f"note: {n}")
    files, kept = [], []
    with atomic_dir(folder, inputs=inputs, kept=kept) as tmp:
        for conv, pic in pics:
            name = f"C{conv.index:02d}_{safe_name(conv.name)}.png"
            save_png(tmp / name, pic)
            files.append(name)
        body = "".join(
            f'<div class="layer" id="{esc(conv.label)}">{img_tag(pic, conv.name)}</div>' for conv, pic in pics
        )
        nav = "".join(f'<a href="#{esc(c.label)}">{esc(c.label)}</a>' for c, _ in pics)
        save_text(
            tmp / "index.html",
            page(
                f"featuremaps compare-classes: {model_title(lm)}", f'<section class="image">{body}</section>', nav=nav
            ),
        )
        save_json(
            tmp / "manifest.json",
            {
                "featuremaps": __version__,
                "model": lm.name,
                "source": lm.source,
                "faces": [
                    {"label": lab, "source": src, "predicted": pr}
                    for lab, src, pr in zip(labels, sources, preds, strict=True)
                ],
                "layers": [{"label": c.label, "name": c.name, "png": f} for (c, _), f in zip(pics, files, strict=True)],
                "notes": notes,
            },
        )
    for lab, pr in zip(labels, preds, strict=True):
        print(f"  {lab}: predicted {pr}")
    if kept:
        Progress().note(kept_note(folder, kept))
    print(f"{len(pics)} layers: {clean(folder)}")
    return 0
