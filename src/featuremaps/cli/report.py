"""``featuremaps report``: one self-contained HTML page for images and folders."""

from __future__ import annotations

from pathlib import Path

from featuremaps.cli.loading import check_layers, load_model_from_args
from featuremaps.cli.progress import Batch, clean
from featuremaps.errors import UserError
from featuremaps.images import find_images
from featuremaps.io import check_replaceable_page
from featuremaps.render import Look
from featuremaps.report import write_report


def run(args) -> int:
    paths = find_images(args.images)  # bad paths fail before a model is loaded
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {clean(out)} must be an .html file (e.g. --out report.html)")
    if out.is_dir():
        raise UserError(f"--out {clean(out)} is a folder; pass a file name like {clean(out / 'report.html')}")
    check_replaceable_page(out)  # only a page featuremaps wrote is replaced; fail before the model loads
    method = args.cam if args.cam is not None else args.method
    Look(cmap=args.cmap).check()  # a bad --cmap: one line, before the model loads
    lm = load_model_from_args(args)
    check_layers(lm, args.layers)  # a bad --layers fails before any progress output
    cams = tuple(m.strip() for m in (method or "").split(",") if m.strip() and m.strip() != "none")
    batch = Batch("report ")
    if args.cam is not None:
        batch.progress.warn("report --cam is deprecated; use --method (same values)")
    batch.total = len(paths)
    single = len(paths) == 1
    info = write_report(
        out,
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
        progress=batch.progress,
        on_skip=None if single else lambda p, reason: batch.skip(p, reason),
        max_bytes=int(args.max_mb * 1e6),
    )
    print(f"report: {clean(out.resolve())} ({info.bytes / 1e6:.1f} MB, {info.images} image(s)); open it in a browser")
    return batch.finish()
