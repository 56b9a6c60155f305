"""Results that display themselves in a notebook: arrays in, an IPython MIME bundle out.

A result class's ``_repr_mimebundle_`` draws its pictures from the arrays it holds (no model is run again)
and hands them to :func:`bundle`, which returns what IPython shows when the result is a cell's value:

* ``text/plain``: one line naming the result;
* ``image/png``: one picture (several are stacked into one sheet): survives nbconvert, PDF and GitHub;
* ``text/html``: self-contained (inline PNG data, inline CSS, no ``<script>``: GitHub and nbviewer strip them).

The PNGs are downscaled until the whole bundle stays under :data:`MAX_BYTES`. Nothing here imports IPython
(the protocol needs none), prints or calls ``plt.show()``.

Example::

    >>> b = bundle("my result", [("a picture", np.zeros((8, 8, 3), np.uint8))])
    >>> sorted(b)
    ['image/png', 'text/html', 'text/plain']
"""

from __future__ import annotations

import base64
import html

import numpy as np

from featuremaps.draw import Canvas, title_block
from featuremaps.io import encode_png
from featuremaps.render import resize_rgb

#: The whole bundle stays under this many bytes (the HTML's base64 PNGs plus the PNG fallback).
MAX_BYTES = 2_000_000
#: Widest picture sent (wider ones are scaled down; a scaled picture compresses worse than a drawn one).
MAX_WIDTH = 2400
#: Smallest side a small input (a 48x48 face) is drawn at, so a notebook shows more than a stamp.
MIN_SIDE = 224
#: At most this many pictures in one gallery (the text line says how many were left out).
MAX_PICTURES = 12

_BUDGET = int(MAX_BYTES * 0.3)  # the HTML's PNGs (x4/3 in base64) and the sheet: ~0.7 of MAX_BYTES in all
_BUDGET_ONE = int(MAX_BYTES * 0.4)  # one picture: the same PNG in the HTML and as the fallback, ~0.94 in all
_LEVEL = 6  # zlib level: a notebook output is encoded once, so smaller beats faster here


def percent(p: float) -> str:
    """A probability as every figure, page and printed line shows it: ``0.3%``, ``54.2%``, ``<0.1%``."""
    p = float(p)
    return "<0.1%" if 0 < p < 0.0005 else f"{p:.1%}"


def p_equals(p: float) -> str:
    """``p = 0.3%``, or ``p < 0.1%``: a class probability as the CAM panel and ``cam``'s lines say it."""
    s = percent(p)
    return f"p {s[0]} {s[1:]}" if s.startswith("<") else f"p = {s}"


def as_rgb(a: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1|3|4) array as RGB uint8: uint8 kept, anything else stretched min..max to 0..255."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8:
        f = np.nan_to_num(a.astype(np.float32))
        lo, hi = float(f.min()), float(f.max())
        a = (
            (np.clip((f - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)
            if hi > lo
            else np.zeros(f.shape, np.uint8)
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def enlarged(rgb: np.ndarray, side: int = MIN_SIDE) -> np.ndarray:
    """``rgb`` scaled up so its longer side is at least ``side`` (a 48x48 face is a stamp otherwise)."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    return resize_rgb(rgb, (round(h * s), round(w * s))) if s > 1 else rgb


def captioned(rgb: np.ndarray, title: str, subtitle: str = "") -> np.ndarray:
    """``rgb`` under a title block (the project's own, wrapped, never cut), as one RGB picture."""
    rgb = as_rgb(rgb)
    width = max(rgb.shape[1], 320)
    tb = title_block(width - 12, title, subtitle)
    c = Canvas.blank(tb.height + 12 + rgb.shape[0], width)
    tb.draw(c, 6, 4)
    c.paste(rgb, ((width - rgb.shape[1]) // 2, tb.height + 8))
    return c.rgb


def png_under(rgb: np.ndarray, limit: int) -> bytes:
    """PNG bytes of ``rgb`` at most ``MAX_WIDTH`` wide, downscaled until they fit in ``limit`` bytes."""
    rgb = as_rgb(rgb)
    if rgb.shape[1] > MAX_WIDTH:
        rgb = resize_rgb(rgb, (max(1, round(rgb.shape[0] * MAX_WIDTH / rgb.shape[1])), MAX_WIDTH))
    data = encode_png(np.ascontiguousarray(rgb), level=_LEVEL)
    while len(data) > limit and min(rgb.shape[:2]) > 16:
        s = max(0.3, min(0.9, (limit / len(data)) ** 0.5 * 0.95))
        rgb = resize_rgb(rgb, (max(1, round(rgb.shape[0] * s)), max(1, round(rgb.shape[1] * s))))
        data = encode_png(rgb, level=_LEVEL)
    return data


def sheet(pictures: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Pictures stacked top to bottom on white, each centred (the one-PNG form of a gallery)."""
    rgbs = [as_rgb(p) for p in pictures]
    width = max(p.shape[1] for p in rgbs)
    c = Canvas.blank(sum(p.shape[0] for p in rgbs) + gap * (len(rgbs) - 1), width)
    y = 0
    for p in rgbs:
        c.paste(p, ((width - p.shape[1]) // 2, y))
        y += p.shape[0] + gap
    return c.rgb


def data_img(png: bytes, alt: str = "", style: str = "max-width:100%;height:auto") -> str:
    """``<img src="data:image/png;base64,...">``: the picture inside the page, nothing fetched."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" style="{style}">'


def bundle(text: str, pictures: list[tuple[str, np.ndarray]], title: str = "") -> dict[str, str | bytes]:
    """The MIME bundle of a result: ``text`` (made one line), ``pictures`` [(caption, RGB array)] as a gallery.

    ``title`` heads the HTML (default: ``text``). At most :data:`MAX_PICTURES` pictures; the PNGs are
    downscaled so that the whole bundle stays under :data:`MAX_BYTES`.
    """
    line = " ".join(str(text).split())
    left = len(pictures) - MAX_PICTURES
    pictures = pictures[:MAX_PICTURES]
    if left > 0:
        line += f" ({left} more not drawn here)"
    out: dict[str, str | bytes] = {"text/plain": line}
    if not pictures:
        out["text/html"] = f"<div>{html.escape(line)}</div>"
        return out
    pngs = [png_under(rgb, _BUDGET_ONE if len(pictures) == 1 else _BUDGET // len(pictures)) for _, rgb in pictures]
    figures = "".join(
        '<figure style="margin:4px;display:inline-block;vertical-align:top">'
        + data_img(png, cap)
        + (f'<figcaption style="font:12px sans-serif;color:#555">{html.escape(cap)}</figcaption>' if cap else "")
        + "</figure>"
        for (cap, _), png in zip(pictures, pngs, strict=True)
    )
    head = html.escape(title or line)
    out["text/html"] = f'<div><div style="font:bold 13px sans-serif;margin:2px 4px">{head}</div>{figures}</div>'
    out["image/png"] = pngs[0] if len(pngs) == 1 else png_under(sheet([rgb for _, rgb in pictures]), _BUDGET)
    return out
