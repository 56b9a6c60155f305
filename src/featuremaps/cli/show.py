"""``featuremaps show``: the feature maps of each conv layer, for every image given."""

from __future__ import annotations

from featuremaps.cli.loading import check_layers, load_model_from_args
from featuremaps.cli.progress import Batch, clean, kept_note
from featuremaps.errors import UserError
from featuremaps.images import find_images
from featuremaps.io import check_writable, output_names
from featuremaps.pipeline import Shower, ShowOptions, percent
from featuremaps.render import Look

#: The overview is never drawn larger than this many pixels (a 200 Mpx RGB canvas is 600 MB).
MAX_FIGURE_PIXELS = 200_000_000


def check_figure_size(maps: int, cell: int, layers: int) -> None:
    """Refuse ``--maps`` x ``--cell`` x layers that would draw an overview too large to hold (one line)."""
    w = maps * (cell + 2) + 2 * cell + 300
    h = layers * (cell + cell // 7 + 24) + 200
    if w * h > MAX_FIGURE_PIXELS:
        raise UserError(
            f"--maps {maps} and --cell {cell} over {layers} layers would draw a {w}x{h} px overview "
            f"(over {MAX_FIGURE_PIXELS // 1_000_000} Mpixels); lower --maps or --cell, or pick --layers"
        )


def run(args) -> int:
    paths = find_images(args.images)  # fail on a bad path before loading (or downloading) a model
    out = check_writable(args.out)
    opts = ShowOptions(
        layers=args.layers,
        maps=args.maps,
        select=args.select,
        look=Look(
            norm=args.norm, cmap=args.cmap, cell=args.cell, overlay=args.overlay
        ).check(),  # before the model loads
        resize=args.resize,
        face_crop=args.face_crop,
        input_shape=args.input_shape,
        max_pixels=args.max_pixels,
        layer_pngs=args.layer_pngs,
    )
    lm = load_model_from_args(args, random_head=False)
    chosen = check_layers(lm, opts.layers, opts.input_shape)  # a bad --layers fails before the first image
    check_figure_size(opts.maps, opts.look.cell, len(chosen))
    shower = Shower(lm, opts)
    batch = Batch("show ")
    results = batch.run(
        list(zip(paths, output_names(paths), strict=True)),
        lambda pn: shower.run(pn[0], out, pn[1]),
        name=lambda pn: pn[0],
    )
    for r in results:
        if r.kept:
            batch.progress.note(kept_note(r.folder, r.kept))
        print(f"{clean(r.image)}: {clean(r.folder / 'overview.png')}")
        if r.prediction:
            top = r.prediction if lm.is_emotion else r.prediction[:3]
            print("  predicted " + ", ".join(f"{p['class']} {percent(p['probability'])}" for p in top))
    if results:
        print(f"pictures are in {clean(out.resolve())}")
    return batch.finish()
