"""``featuremaps cam``: class activation maps for images and folders."""

from __future__ import annotations

from pathlib import Path

from featuremaps.cam import parse_methods
from featuremaps.cam.engine import check_methods
from featuremaps.cam_files import CamRunner
from featuremaps.cli.loading import load_model_from_args
from featuremaps.cli.progress import Batch, Progress, clean, kept_note
from featuremaps.display import p_equals
from featuremaps.errors import UserError
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
    lm = load_model_from_args(args)
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
        top_classes=args.top_classes,
    )
    if lm.input_shape and all(d is not None for d in lm.input_shape[:2]):
        runner.check(lm.resolve_input_shape((224, 224), args.input_shape))
    out = Path(args.out)
    batch = Batch("cam ")
    per_map = Progress("  maps ")  # each method for each class: minutes for Score-CAM on a large model
    per_pass = Progress("  passes ")  # within Score-CAM's masked inputs and Ablation-CAM's ablated copies
    random = getattr(lm, "random_weights", False)

    def one(pn):
        p, name = pn
        kept: list[str] = []
        folder, results = runner.run(p, out, name, progress=per_map, passes=per_pass, kept=kept)
        if kept:
            batch.progress.note(kept_note(folder, kept))
        r = results[0]
        lay = r.layer
        lines = [f"{clean(p)}: {clean(folder / 'panel.png')}  ({lay.label} {clean(lay.name)})"]
        shown = sorted({x.class_index for x in results})
        if args.all_classes:
            lines.append(
                f"  {len(shown)} classes"
                + (f" (the most probable of {r.probs.size})" if r.probs.size > len(shown) else "")
            )
        else:
            what = r.class_name or f"class {r.class_index}"
            p_text = "random weights: the class is arbitrary" if random else p_equals(r.probability)
            lines.append(f"  {', '.join(sorted({x.method for x in results}, key=methods.index))} for {what} ({p_text})")
        return lines

    done = batch.run(list(zip(paths, output_names(paths), strict=True)), one, name=lambda pn: pn[0])
    for lines in done:
        print("\n".join(lines))
    if done:
        print(f"maps are in {clean(out.resolve())}")
    return batch.finish()
