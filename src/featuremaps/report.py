"""``featuremaps report``: one self-contained HTML page: inputs, predictions, feature maps, statistics, CAMs.

The page needs nothing but itself: every picture is a PNG embedded as a ``data:`` URI, CSS and the few lines
of JavaScript are inline, and nothing is fetched from the network, so it opens from disk, offline, and can be
mailed as one file. Every name that comes from a user or a model file (image names, layer names, class
names) goes through :func:`html.escape`: a layer called ``<script>`` shows as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuremaps import __version__
from featuremaps.cam import overlay
from featuremaps.cam.engine import cam_engine, compute_cam
from featuremaps.errors import UserError
from featuremaps.faces import NoFaceError
from featuremaps.html import REPORT_CELL, REPORT_COLS, esc, img_tag, page_frame, thumb
from featuremaps.images import load_image
from featuremaps.io import spooled_text
from featuremaps.pipeline import Shower, ShowOptions, model_title, percent, prediction_of, prepare
from featuremaps.render import Look, render_layer, rows_from


# ---------------------------------------------------------------- CAM
def cam_section(lm, x: np.ndarray, shown: np.ndarray, probs, methods=("gradcam",), engines=None) -> str:
    """Overlays for the predicted class, or a note saying why there are none.

    ``engines``: a dict the caller keeps for one report, holding a :class:`CamEngine` per input shape.
    """
    engines = {} if engines is None else engines
    if not methods:
        return '<p class="note">CAM overlays turned off (--method none).</p>'
    if probs is None or np.ndim(probs) != 1 or np.size(probs) < 2:
        return '<p class="note">No CAM: the model has no classification output.</p>'
    figs = []
    for method in methods:
        try:
            if x.shape not in engines:
                engines[x.shape] = cam_engine(lm.model, x.shape)
            res = compute_cam(lm.model, x, method=method, engine=engines[x.shape])
            over = overlay(shown, np.asarray(res.heatmap_up, dtype=np.float32))
        except UserError as e:
            figs.append(f'<p class="note">{esc(method)}: {esc(e)}</p>')
            continue
        except Exception as e:  # an unexpected CAM failure must not lose the rest of the report
            figs.append(f'<p class="note">{esc(method)} failed ({esc(type(e).__name__)}: {esc(str(e)[:120])})</p>')
            continue
        cls = (
            lm.classes[res.class_index]
            if lm.classes and res.class_index < len(lm.classes)
            else f"class {res.class_index}"
        )
        layer = getattr(res.layer, "name", res.layer)  # a ConvLayer or its name
        p = "random weights" if getattr(lm, "random_weights", False) else percent(res.probability)
        cap = f"{method} on {layer} for {cls} ({p})"
        figs.append(f"<figure>{img_tag(np.asarray(over, np.uint8), cap)}<figcaption>{esc(cap)}</figcaption></figure>")
    return f'<div class="cams">{"".join(figs)}</div>'


# ---------------------------------------------------------------- one image
@dataclass
class ImageSection:
    path: Path
    html: str
    prediction: list[dict] = field(default_factory=list)
    layers: int = 0
    note: str = ""


def prediction_table(pred: list[dict], random_weights: bool = False) -> str:
    if random_weights:
        return '<p class="note">Random weights: the model\'s prediction is noise (not shown).</p>'
    if not pred:
        return '<p class="note">The model has no classification output (no prediction shown).</p>'
    rows = "".join(
        f'<tr><td>{esc(p["class"])}</td><td class="num">{percent(p["probability"])}</td>'
        f'<td><span class="bar" style="width:{max(1, round(120 * p["probability"]))}px"></span></td></tr>'
        for p in pred
    )
    return f'<table><tr><th>class</th><th class="num">prob.</th><th></th></tr>{rows}</table>'


def image_section(
    i: int, path: Path, lm, shower, cam_methods=("gradcam",), max_pixels=None, engines=None
) -> ImageSection:

    o = shower.opts
    kw = {"max_pixels": max_pixels} if max_pixels else {}
    rgb = load_image(path, **kw)
    note = ""
    try:
        prep = prepare(lm, rgb, input_shape=o.input_shape, face_crop=o.face_crop, resize=o.resize)
    except NoFaceError:
        if o.face_crop:  # the user asked for a face crop: the image cannot be used
            raise
        # the emotion model's default face crop found none (a cat): feed the whole image, and say so
        prep = prepare(lm, rgb, input_shape=o.input_shape, face_crop=False, resize=o.resize)
        note = (
            f"No face found in {path.name}: the whole image was fed to {lm.name}, which was trained on faces, "
            "so its prediction means little here."
        )
    fx = shower.extractor(prep.x.shape)
    results, preds = fx(prep.x[None])
    probs = preds[0] if preds is not None else None
    pred = prediction_of(lm, probs)
    rows = rows_from(results)
    sid = f"img{i + 1}"
    H, W, C = prep.x.shape
    src_h, src_w = rgb.shape[:2]
    sized = (
        f"original {src_w}x{src_h}"
        + (f", face crop {prep.face.shape[1]}x{prep.face.shape[0]}" if prep.face_box else "")
        + f"; resized ({prep.resize}) to {W}x{H}x{C}"
    )
    figs = [
        f"<figure>{img_tag(thumb(rgb), f'input {path.name}')}<figcaption>input: {esc(path.name)} "
        f"({src_w}x{src_h})</figcaption></figure>"
    ]
    if prep.face_box is not None and prep.face is not None:
        figs.append(
            f"<figure>{img_tag(thumb(prep.face, 160), 'face crop')}<figcaption>face crop at "
            f"x,y,w,h = {esc(','.join(map(str, prep.face_box)))}</figcaption></figure>"
        )
    view = (
        prep.shown
        if max(H, W) >= 96
        else np.repeat(np.repeat(prep.shown, 96 // max(H, W) + 1, 0), 96 // max(H, W) + 1, 1)
    )
    figs.append(
        f"<figure>{img_tag(thumb(view), 'model input')}<figcaption>what the network sees: "
        f"{W}x{H}x{C}</figcaption></figure>"
    )
    if getattr(lm, "random_weights", False):
        title = "random weights (no prediction)"
    else:
        title = pred[0]["class"] + f" ({percent(pred[0]['probability'])})" if pred else "no classification output"
    parts = [
        f'<section class="image" id="{sid}"><h2>{i + 1}. {esc(path.name)} &mdash; '
        f'<span class="note">predicted:</span> {esc(title)}</h2>'
    ]
    if note:
        parts.append(f'<p class="note warn">{esc(note)}</p>')
    nav = "".join(f'<a href="#{sid}-{r.label}" title="{esc(r.name)}">{esc(r.label)}</a>' for r in rows)
    parts.append(
        f'<nav class="layers"><a href="#{sid}">top</a> <a href="#{sid}-pred">prediction</a> '
        f'<a href="#{sid}-cam">CAM</a> | layers: {nav}</nav>'
    )
    parts.append(
        f'<div class="inputs">{"".join(figs)}<div id="{sid}-pred"><h3>Prediction</h3>'
        f"{prediction_table(pred, getattr(lm, 'random_weights', False))}</div></div>"
    )
    parts.append(f'<p class="note">{esc(sized)}; scaling {esc(lm.preprocess)}</p>')
    parts.append(
        f'<h3 id="{sid}-cam">Class activation map</h3>'
        + cam_section(lm, prep.x, prep.shown, probs, cam_methods, engines)
    )
    first_n = fx.mode == "first"
    for r in rows:
        grid = render_layer(r, cmap=o.look.cmap, cell=REPORT_CELL, first_n=first_n, cols=REPORT_COLS)
        st = r.stats
        meta = (
            f'<div class="meta"><h3>{esc(r.label)} <code>{esc(r.name)}</code></h3>'
            f'<table><tr><td>output</td><td class="num">{esc(r.shape_text)}</td></tr>'
            f'<tr><td>mean</td><td class="num">{st["mean"]:.4g}</td></tr>'
            f'<tr><td>max</td><td class="num">{st["max"]:.4g}</td></tr>'
            f'<tr><td>zero activations</td><td class="num">{st["zero_fraction"]:.1%}</td></tr>'
            f'<tr><td>maps shown</td><td class="num">{r.maps.shape[-1]} of {r.shape[-1]}</td></tr></table>'
            f'<p class="note">statistics over all {r.shape[-1]} channels; each map scaled to its own '
            f"range ({esc(o.look.cmap)})</p></div>"
        )
        parts.append(
            f'<div class="layer" id="{sid}-{r.label}">{meta}{img_tag(grid, f"{r.label} {r.name} feature maps")}</div>'
        )
    parts.append("</section>")
    return ImageSection(path, "".join(parts), pred, len(rows), note)


#: A report stops taking images past this many bytes of HTML (``--max-mb``); the rest are named as skipped.
MAX_BYTES = 200_000_000


@dataclass
class ReportInfo:
    """What a written report holds: its size in bytes, the images in it, those left out and why."""

    path: Path
    bytes: int
    images: int
    skipped: list = field(default_factory=list)  # (path, reason)


class _InMemory:
    """:class:`featuremaps.io.SpooledText`'s twin that keeps the parts in memory (:func:`build_report`)."""

    def __init__(self):
        self.parts, self.head, self.tail = [], "", ""

    def write(self, part: str) -> None:
        self.parts.append(part)

    def text(self) -> str:
        return self.head + "".join(self.parts) + self.tail


def _compose(
    doc,
    lm,
    paths: list[Path],
    *,
    layers="all",
    maps: int = 16,
    cmap: str = "viridis",
    cam_methods=("gradcam",),
    resize: str = "crop",
    face_crop=None,
    input_shape=None,
    max_pixels=None,
    progress=None,
    on_skip=None,
    max_bytes: int = MAX_BYTES,
) -> tuple[list[Path], list]:
    """Write each usable image's section to ``doc`` as soon as it is made (one section is held at a time),
    then set ``doc.head``/``doc.tail``; returns the images in the page and the (path, reason) left out."""
    if not paths:
        raise UserError("no images to report on; pass image files or folders")
    shower = Shower(
        lm,
        ShowOptions(
            layers=layers,
            maps=maps,
            look=Look(cmap=cmap).check(),
            resize=resize,
            face_crop=face_crop,
            input_shape=input_shape,
        ),
    )
    names, skipped, size, engines = [], [], 0, {}  # engines: a CamEngine per input shape
    for i, p in enumerate(paths):
        if progress:
            progress(i, len(paths), p)
        if size > max_bytes:
            reason = (
                f"the report reached its {max_bytes / 1e6:.0f} MB cap; report the rest separately or raise --max-mb"
            )
        else:
            try:
                sec = image_section(len(names), p, lm, shower, cam_methods, max_pixels, engines)
                doc.write(sec.html)
                names.append(p)
                size += len(sec.html)
                continue
            except UserError as e:
                if on_skip is None:
                    raise
                reason = str(e)
        skipped.append((p, reason))
        on_skip(p, reason)
    if progress:
        progress(len(paths), len(paths), None)
    if not names:
        raise UserError(f"none of the {len(paths)} image(s) could be used; see the warnings above")
    nav = "".join(f'<a href="#img{i + 1}" title="{esc(p)}">{i + 1}. {esc(p.name)}</a>' for i, p in enumerate(names))
    intro = (
        f'<p class="note">Model <b>{esc(model_title(lm))}</b> ({esc(lm.source)}); {len(names)} image(s); '
        f"up to {maps} maps per conv layer. Keys: <code>n</code>/<code>p</code> next/previous image. "
        f"featuremaps {esc(__version__)}.</p>"
    )
    if skipped:
        items = "".join(f"<li>{esc(p.name)}: {esc(r)}</li>" for p, r in skipped)
        intro += f'<p class="note warn">{len(skipped)} image(s) left out:</p><ul class="note">{items}</ul>'
    head, doc.tail = page_frame(f"featuremaps report: {model_title(lm)}", nav=f"<span>{nav}</span>")
    doc.head = head + intro
    return names, skipped


def build_report(lm, paths: list[Path], **options) -> str:
    """The whole HTML document for ``paths`` through ``lm`` (a :class:`~featuremaps.models.LoadedModel`).

    Options (keywords, as :func:`write_report`): ``layers``, ``maps`` (16), ``cmap``, ``cam_methods``
    (``("gradcam",)``), ``resize``, ``face_crop``, ``input_shape``, ``max_pixels``, ``progress``, ``on_skip``,
    ``max_bytes``. ``on_skip(path, reason)``: an image that cannot be used (unreadable, too large, no face with
    ``face_crop=True``) is passed to it and left out, the rest go on; without it the first such image raises its
    UserError. Images past ``max_bytes`` of HTML are skipped the same way (a page of hundreds of MB will not
    open). A default emotion-model face crop that finds no face feeds the whole image, with a note in its section.
    The page is held in memory: for many images :func:`write_report` writes it in bounded memory.
    """
    doc = _InMemory()
    _compose(doc, lm, paths, **options)
    return doc.text()


def write_report(out: str | Path, lm, paths: list[Path], **options) -> ReportInfo:
    """:func:`build_report`'s page (same options) written to ``out`` as it is made: each image's section goes
    to disk when it is done, so memory holds one section whatever the number of images. The file appears
    whole or not at all (temp file, then rename).

    Example::

        info = write_report("report.html", models.load("emotion"), [Path("face.jpg")])
        info.bytes, info.images, info.skipped
    """
    with spooled_text(out) as doc:
        names, skipped = _compose(doc, lm, paths, **options)
    return ReportInfo(Path(out), Path(out).stat().st_size, len(names), skipped)
