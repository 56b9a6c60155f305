"""``featuremaps report``: one self-contained HTML page for images and folders."""

from __future__ import annotations

from pathlib import Path

from featuremaps import models
from featuremaps.cli.progress import Progress
from featuremaps.errors import UserError
from featuremaps.frameworks import conv_layers
from featuremaps.images import find_images
from featuremaps.io import save_text
from featuremaps.layers import select_layers
from featuremaps.report import build_report


def run(args) -> int:
    paths = find_images(args.images)  # bad paths fail before a model is loaded
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out} must be an .html file (e.g. --out report.html)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name like {out / 'report.html'}")
    classes = args.classes.split(",") if getattr(args, "classes", None) else None
    lm = models.load(args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess, classes=classes)

    select_layers(conv_layers(lm.model), args.layers)  # a bad --layers fails before any progress output
    cams = tuple(m.strip() for m in (args.cam or "").split(",") if m.strip() and m.strip() != "none")
    doc = build_report(
        lm,
        paths,
        layers=args.layers,
        maps=args.maps,
        cmap=args.cmap,
        cam_methods=cams,
        resize=args.resize,
        face_crop=args.face_crop,
        input_shape=args.input_shape,
        max_pixels=args.max_pixels,
        progress=Progress("report "),
    )
    save_text(out, doc)
    print(f"report: {out.resolve()} ({len(doc) / 1e6:.1f} MB, {len(paths)} image(s)); open it in a browser")
    return 0
