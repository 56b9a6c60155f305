"""HTML pages: the inline stylesheet and script, escaping, and pictures embedded as ``data:`` PNG URIs.

Every name that comes from a user or a model file (image names, layer names, class names) goes through
:func:`esc` (``html.escape``): a layer called ``<script>`` shows as text. Pictures are encoded with
:func:`featuremaps.io.encode_png`, the package's fast PNG encoder.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from featuremaps import __version__
from featuremaps.io import encode_png
from featuremaps.render import resize_rgb

THUMB = 224  # longest side of the embedded input picture
REPORT_CELL = 96  # feature-map cell size in the per-layer grids
REPORT_COLS = 8  # maps a row in the report's grids: 16 maps -> 8x2, ~830 px beside the statistics on a wide page

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
.layer img{max-width:100%;min-width:0;height:auto;image-rendering:pixelated}
.layer h3{margin:0 0 4px;font-size:15px}
.layer .meta{min-width:250px;max-width:360px}
.layer.wide{flex-direction:column}
.layer.wide .scroll{overflow-x:auto;max-width:100%}
.layer.wide img{max-width:none}
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
    """An RGB/gray uint8 array as a ``data:image/png;base64`` URI (io.py's encoder and settings)."""
    data = encode_png(np.asarray(rgb))
    if data is None:  # shapes/dtypes the encoder does not take: as Pillow writes them
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def img_tag(rgb: np.ndarray, alt: str, cls: str = "") -> str:
    h, w = rgb.shape[:2]
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{png_data_uri(rgb)}" width="{w}" height="{h}" alt="{esc(alt)}">'


def thumb(rgb: np.ndarray, side: int = THUMB) -> np.ndarray:
    """Downscale (never upscale) to at most ``side`` on the long side."""
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
    head, tail = page_frame(title, nav, local_images)
    return head + body + tail


def page_frame(title: str, nav: str = "", local_images: bool = False) -> tuple[str, str]:
    """What :func:`page` puts before and after the body: a page streamed in parts is ``head + body... + tail``."""
    csp = (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        if not local_images
        else ""
    )
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="featuremaps {esc(__version__)}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{csp}'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><b>{esc(title)}</b>{nav}</header><main>'
    )
    return head, f"</main><script>{JS}</script></body></html>\n"
