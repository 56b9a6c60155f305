"""``featuremaps report``: one self-contained HTML page: inputs, predictions, feature maps, statistics, CAMs.

The page needs nothing but itself: every picture is a PNG embedded as a ``data:`` URI, CSS and the few lines
of JavaScript are inline, and nothing is fetched from the network, so it opens from disk, offline, and can be
mailed as one file. Every name that comes from a user or a model file (image names, layer names, class
names) goes through :func:`html.escape`: a layer called ``<script>`` shows as text.
"""

from __future__ import annotations

import base64
import html
import io as _io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UserError

THUMB = 224  # longest side of the embedded input picture
REPORT_CELL = 96  # feature-map cell size in the per-layer grids (16 maps -> a ~400 px wide picture)

CSS = """
*{box-sizing:border-box}
[id]{scroll-margin-top:84px}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;
background:#f6f6f4}
header.top{position:sticky;top:0;z-index:10;background:#23262b;color:#eee;padding:6px 14px;display:flex;
gap:14px;align-items:center;flex-wrap:wrap;box-shadow:0 1px 4px rgba(0,0,0,.3)}
header.top b{font-size:15px}
header.top a{color:#9fd3ff;text-decoration:none;margin-right:8px;white-space:nowrap}
header.top a:hover{text-decoration:underline}
main{max-width:1320px;margin:0 auto;padding:8px 14px 40px}
section.image{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:0 14px 14px}
section.image>h2{margin:0 -14px;padding:10px 14px;font-size:18px;border-bottom:1px solid #eee}
nav.layers{position:sticky;top:36px;z-index:5;background:#fafafa;border-bottom:1px solid #e4e4e4;
margin:0 -14px 10px;padding:5px 14px;font-size:12.5px;line-height:1.9}
nav.layers a{display:inline-block;padding:0 6px;margin:0 2px 0 0;border-radius:3px;background:#e9eef5;
color:#1d4f91;text-decoration:none}
nav.layers a:hover{background:#cfe0f7}
.inputs{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}
figcaption{font-size:12px;color:#555;margin-top:2px;max-width:260px}
.inputs img{image-rendering:pixelated;border:1px solid #ccc;max-width:224px;height:auto}
table{border-collapse:collapse;font-size:13px}
td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#4a7fc1;vertical-align:middle}
.layer{display:flex;gap:18px;align-items:flex-start;border-top:1px solid #eee;padding:10px 0;
scroll-margin-top:80px}
.layer img{max-width:min(100%,560px);height:auto;image-rendering:pixelated}
.layer h3{margin:0 0 4px;font-size:15px}
.layer .meta{min-width:250px;max-width:360px}
.note{color:#666;font-size:12.5px}
.cams{display:flex;gap:14px;flex-wrap:wrap}
.cams img{width:160px;height:auto;border:1px solid #ccc}
code{font-size:12.5px;background:#f0f0f0;padding:0 3px;border-radius:3px}
"""

JS = """
(function(){
  var secs = Array.prototype.slice.call(document.querySelectorAll('section.image'));
  function current(){
    var y = window.scrollY + 60, cur = 0;
    secs.forEach(function(s, i){ if (s.offsetTop <= y) cur = i; });
    return cur;
  }
  document.addEventListener('keydown', function(e){
    if (e.target && /input|textarea|select/i.test(e.target.tagName)) return;
    if (e.key !== 'n' && e.key !== 'p') return;
    var i = current() + (e.key === 'n' ? 1 : -1);
    if (i >= 0 && i < secs.length) secs[i].scrollIntoView();
  });
})();
"""


def esc(text) -> str:
    """HTML-escape anything shown on the page (names from users and model files included)."""
    return html.escape(str(text), quote=True)


def png_data_uri(rgb: np.ndarray) -> str:
    """An RGB/gray uint8 array as a ``data:image/png;base64`` URI (io.py's PNG settings)."""
    from PIL import Image

    from .io import PNG_COMPRESS_LEVEL

    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False
    )
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img_tag(rgb: np.ndarray, alt: str, cls: str = "") -> str:
    h, w = rgb.shape[:2]
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{png_data_uri(rgb)}" width="{w}" height="{h}" alt="{esc(alt)}">'


def thumb(rgb: np.ndarray, side: int = THUMB) -> np.ndarray:
    """Downscale (never upscale) to at most ``side`` on the long side."""
    from .render import resize_rgb

    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    if s >= 1.0:
        return rgb
    return resize_rgb(rgb, (max(1, round(h * s)), max(1, round(w * s))))


def page(title: str, body: str, nav: str = "", local_images: bool = False) -> str:
    """A complete HTML document with the inline stylesheet and script.

    Its Content-Security-Policy forbids any request but ``data:`` images, unless ``local_images`` (pages that
    show PNG files beside them, which a ``file://`` policy cannot name portably: then no policy is set).
    """
    csp = (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        if not local_images
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{csp}'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><b>{esc(title)}</b>{nav}</header><main>{body}</main>'
        f"<script>{JS}</script></body></html>\n"
    )


# ---------------------------------------------------------------- CAM (optional: cam.py may be absent)
def cam_section(lm, x: np.ndarray, shown: np.ndarray, probs, methods=("gradcam",)) -> str:
    """Overlays for the predicted class, or a note saying why there are none."""
    if not methods:
        return '<p class="note">CAM overlays turned off (--cam none).</p>'
    if probs is None or np.ndim(probs) != 1 or np.size(probs) < 2:
        return '<p class="note">No CAM: the model has no classification output.</p>'
    try:  # import_module, not "from . import cam": the package's lazy attribute "cam" is a function
        import importlib

        cam = importlib.import_module("featuremaps.cam")
    except ImportError:
        return '<p class="note">No CAM: this install has no featuremaps.cam module.</p>'
    figs = []
    for method in methods:
        try:
            res = cam.compute_cam(lm.model, x, method=method)
            over = cam.overlay(shown, np.asarray(res.heatmap_up, dtype=np.float32))
        except UserError as e:
            figs.append(f'<p class="note">{esc(method)}: {esc(e)}</p>')
            continue
        except Exception as e:  # an unexpected CAM failure must not lose the rest of the report
            figs.append(
                f'<p class="note">{esc(method)} failed ({esc(type(e).__name__)}: {esc(str(e)[:120])})</p>'
            )
            continue
        cls = (
            lm.classes[res.class_index]
            if lm.classes and res.class_index < len(lm.classes)
            else f"class {res.class_index}"
        )
        layer = getattr(res.layer, "name", res.layer)  # a ConvLayer or its name
        cap = f"{method} on {layer} for {cls} ({float(res.probability):.0%})"
        figs.append(
            f"<figure>{img_tag(np.asarray(over, np.uint8), cap)}<figcaption>{esc(cap)}</figcaption></figure>"
        )
    return f'<div class="cams">{"".join(figs)}</div>'


# ---------------------------------------------------------------- one image
@dataclass
class ImageSection:
    path: Path
    html: str
    prediction: list[dict] = field(default_factory=list)
    layers: int = 0


def prediction_table(pred: list[dict]) -> str:
    if not pred:
        return '<p class="note">The model has no classification output (no prediction shown).</p>'
    rows = "".join(
        f'<tr><td>{esc(p["class"])}</td><td class="num">{p["probability"]:.1%}</td>'
        f'<td><span class="bar" style="width:{max(1, round(120 * p["probability"]))}px"></span></td></tr>'
        for p in pred
    )
    return f'<table><tr><th>class</th><th class="num">prob.</th><th></th></tr>{rows}</table>'


def image_section(i: int, path: Path, lm, shower, cam_methods=("gradcam",), max_pixels=None) -> ImageSection:
    from .images import load_image
    from .pipeline import describe_prediction, prepare
    from .render import render_layer, rows_from

    o = shower.opts
    kw = {"max_pixels": max_pixels} if max_pixels else {}
    rgb = load_image(path, **kw)
    prep = prepare(lm, rgb, input_shape=o.input_shape, face_crop=o.face_crop, resize=o.resize)
    fx = shower.extractor(prep.x.shape)
    results, preds = fx(prep.x[None])
    probs = preds[0] if preds is not None else None
    pred = describe_prediction(probs, lm.classes)
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
    title = pred[0]["class"] + f" ({pred[0]['probability']:.0%})" if pred else "no classification output"
    parts = [
        f'<section class="image" id="{sid}"><h2>{i + 1}. {esc(path.name)} &mdash; '
        f'<span class="note">predicted:</span> {esc(title)}</h2>'
    ]
    nav = "".join(f'<a href="#{sid}-{r.label}" title="{esc(r.name)}">{esc(r.label)}</a>' for r in rows)
    parts.append(
        f'<nav class="layers"><a href="#{sid}">top</a> <a href="#{sid}-pred">prediction</a> '
        f'<a href="#{sid}-cam">CAM</a> | layers: {nav}</nav>'
    )
    parts.append(
        f'<div class="inputs">{"".join(figs)}<div id="{sid}-pred"><h3>Prediction</h3>'
        f"{prediction_table(pred)}</div></div>"
    )
    parts.append(f'<p class="note">{esc(sized)}; scaling {esc(lm.preprocess)}</p>')
    parts.append(
        f'<h3 id="{sid}-cam">Class activation map</h3>'
        + cam_section(lm, prep.x, prep.shown, probs, cam_methods)
    )
    first_n = fx.mode == "first"
    for r in rows:
        grid = render_layer(r, cmap=o.cmap, cell=REPORT_CELL, first_n=first_n)
        st = r.stats
        meta = (
            f'<div class="meta"><h3>{esc(r.label)} <code>{esc(r.name)}</code></h3>'
            f'<table><tr><td>output</td><td class="num">{esc(r.shape_text)}</td></tr>'
            f'<tr><td>mean</td><td class="num">{st["mean"]:.4g}</td></tr>'
            f'<tr><td>max</td><td class="num">{st["max"]:.4g}</td></tr>'
            f'<tr><td>zero activations</td><td class="num">{st["zero_fraction"]:.1%}</td></tr>'
            f'<tr><td>maps shown</td><td class="num">{r.maps.shape[-1]} of {r.shape[-1]}</td></tr></table>'
            f'<p class="note">statistics over all {r.shape[-1]} channels; each map scaled to its own '
            f"range ({esc(o.cmap)})</p></div>"
        )
        parts.append(
            f'<div class="layer" id="{sid}-{r.label}">{meta}'
            f"{img_tag(grid, f'{r.label} {r.name} feature maps')}</div>"
        )
    parts.append("</section>")
    return ImageSection(path, "".join(parts), pred, len(rows))


def build_report(
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
) -> str:
    """The whole HTML document for ``paths`` through ``lm`` (a :class:`~featuremaps.models.LoadedModel`)."""
    from .pipeline import Shower, ShowOptions

    if not paths:
        raise UserError("no images to report on; pass image files or folders")
    shower = Shower(
        lm,
        ShowOptions(
            layers=layers, maps=maps, cmap=cmap, resize=resize, face_crop=face_crop, input_shape=input_shape
        ),
    )
    sections = []
    for i, p in enumerate(paths):
        if progress:
            progress(i, len(paths), p)
        sections.append(image_section(i, p, lm, shower, cam_methods, max_pixels))
    if progress:
        progress(len(paths), len(paths), None)
    nav = "".join(
        f'<a href="#img{i + 1}" title="{esc(s.path)}">{i + 1}. {esc(s.path.name)}</a>'
        for i, s in enumerate(sections)
    )
    intro = (
        f'<p class="note">Model <b>{esc(lm.name)}</b> ({esc(lm.source)}); {len(paths)} image(s); '
        f"up to {maps} maps per conv layer. Keys: <code>n</code>/<code>p</code> next/previous image. "
        f"featuremaps {esc(__version__)}.</p>"
    )
    return page(
        f"featuremaps report: {lm.name}", intro + "".join(s.html for s in sections), nav=f"<span>{nav}</span>"
    )


def run(args) -> int:
    from . import models
    from .cli import Progress
    from .images import find_images
    from .io import save_text

    paths = find_images(args.images)  # bad paths fail before a model is loaded
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out} must be an .html file (e.g. --out report.html)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name like {out / 'report.html'}")
    classes = args.classes.split(",") if getattr(args, "classes", None) else None
    lm = models.load(
        args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess, classes=classes
    )
    from .layers import conv_layers, select_layers

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
