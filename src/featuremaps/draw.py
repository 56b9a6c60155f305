"""The drawing layer every figure uses: canvas, cached-glyph text, colour bars, title blocks, blank-map marks.

Pure: NumPy arrays in, RGB uint8 arrays out, drawn in place; no files, no Pillow page round trips. Each string
is rasterised once by Pillow into a small coverage mask (cached: captions like ``F1 .. F16`` repeat a lot) and
blended into the canvas, which saves converting a whole page to a Pillow image and back.

Text never loses its numbers: titles and captions go through :func:`wrap_text` (more lines, never an
ellipsis); :func:`fit_text` (an ellipsis) is for names in fixed-width cells only, and
:func:`fit_text_keep_end` keeps a caption's trailing number (``"a very long cl… 93%"``).

Example::

    >>> from featuremaps.draw import Canvas, title_block, colorbar_height
    >>> from featuremaps.render import colormap
    >>> lut = colormap("viridis")  # a (256, 3) uint8 lookup table
    >>> tb = title_block(600, "vgg16 - chelsea.png - predicted: tabby (41%)", ["first 16 maps of each layer"])
    >>> c = Canvas.blank(tb.height + colorbar_height() + 8, 600)
    >>> y = tb.draw(c, 6, 4)
    >>> c.colorbar(60, y + 4, 300, lut, -1.5, 2.0, label="activation")
    >>> rgb = c.rgb  # (H, W, 3) uint8
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BG = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
GAP = 2
TITLE_SIZE = 17
SUB_SIZE = 13


# ---------------------------------------------------------------- fonts and measuring
@lru_cache(maxsize=16)
def font(size: int):
    """Pillow's bundled font at ``size`` px (cached); the fixed bitmap font on a Pillow without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=4096)
def text_width(text: str, size: int) -> int:
    """Advance width in pixels of ``text`` at ``size``.

    Example::

        >>> text_width("F16", 13) < text_width("F16 ch511", 13)
        True
    """
    f = font(size)
    return int(math.ceil(f.getlength(text))) if hasattr(f, "getlength") else 6 * len(text)


@lru_cache(maxsize=64)
def line_height(size: int) -> int:
    """Height in pixels of one line of text at ``size`` (ascender to descender, plus 2 px leading)."""
    _, top, _, bottom = font(size).getbbox("Agjy|(")
    return int(bottom) + 2 if bottom > 0 else size + 4


def fit_text(text: str, size: int, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` px. For names in fixed-width cells, never for numbers."""
    text = str(text)
    if text_width(text, size) <= width:
        return text
    while len(text) > 1 and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def fit_text_start(text: str, size: int, width: int) -> str:
    """``text`` cut at its start with an ellipsis to fit ``width`` px, for paths whose end names the thing
    (``features.11.block.2.0``, ``base@2/block5_conv3``).

    Example::

        >>> fit_text_start("features.11.block.2.0", 13, 90)
        '…11.block.2.0'
    """
    text = str(text)
    if text_width(text, size) <= width:
        return text
    while len(text) > 1 and text_width("…" + text, size) > width:
        text = text[1:]
    return "…" + text


def fit_text_keep_end(text: str, size: int, width: int, sep: str = " ") -> str:
    """Like :func:`fit_text` but shortens the part before the last ``sep``, so a trailing number survives.

    Example::

        >>> fit_text_keep_end("a very long class name 93%", 13, 90)
        'a very lo… 93%'
    """
    text = str(text)
    if text_width(text, size) <= width or sep not in text.strip():
        return fit_text(text, size, width)
    head, tail = text.rsplit(sep, 1)
    room = width - text_width(sep + tail, size)
    if room < text_width("…", size) + 4:
        return fit_text(tail, size, width)
    return fit_text(head, size, room) + sep + tail


def wrap_text(text: str, size: int, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` px: at spaces, and inside words only when one word
    is wider than a line. Nothing is dropped: ``"".join`` of the lines (plus the broken spaces) is the text.

    Example::

        >>> wrap_text("emotion - a_photo_with_a_long_name.png - predicted: happy (93%)", 13, 200)
        ['emotion -', 'a_photo_with_a_long_name.png', '- predicted: happy (93%)']
    """
    width = max(width, 4 * size)  # a line holds a few characters at least
    lines: list[str] = []
    for para in str(text).split("\n"):
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if text_width(cand, size) <= width:
                line = cand
                continue
            if line:
                lines.append(line)
                line = ""
            while text_width(word, size) > width:  # hard break a word longer than a line
                cut = len(word) - 1
                while cut > 1 and text_width(word[:cut], size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def fmt_number(v: float) -> str:
    """Short number text for ticks and ranges: 3 significant digits (``0.0123``, ``1.5e+03``, ``-2``)."""
    return f"{float(v):.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2, 2.5 or 5 times a power of ten) inside ``[lo, hi]``, ends excluded."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or n < 2:
        return []
    raw = (hi - lo) / (n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v < hi - 1e-9 * step:
        if v > lo + 1e-9 * step:
            ticks.append(round(v / step) * step)
        v += step
    return ticks


@lru_cache(maxsize=4096)
def _text_mask(text: str, size: int) -> np.ndarray:
    """Coverage (0-1 float32, (h, w)) of ``text`` drawn at the origin, read-only, cached."""
    fnt = font(size)
    _, _, r, b = fnt.getbbox(text)
    mask = Image.new("L", (max(1, int(r)), max(1, int(b))), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=fnt)
    a = np.asarray(mask, dtype=np.float32) * np.float32(1 / 255)
    a.flags.writeable = False
    return a


def ramp(width: int, height: int, lut: np.ndarray) -> np.ndarray:
    """A ``(height, width, 3)`` colour ramp, low on the left, through a ``(256, 3)`` uint8 lookup table."""
    idx = np.linspace(0, 255, max(1, width)).round().astype(np.intp)
    return np.broadcast_to(lut[idx][None], (height, max(1, width), 3))


def colorbar_height(size: int = 12, bar: int = 12) -> int:
    """Pixels a :meth:`Canvas.colorbar` takes: the bar, 3 px, one line of tick numbers."""
    return bar + 3 + line_height(size)


# ---------------------------------------------------------------- the canvas
class Canvas:
    """An RGB uint8 page drawn in place: ``text``, ``paste``, ``fill``, ``colorbar``, ``mark_blank``.

    ``Canvas(rgb)`` draws into an existing ``(H, W, 3)`` uint8 array (``canvas.rgb`` is that array);
    :meth:`blank` makes a white one. Everything drawn outside the page is clipped.
    """

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb

    @classmethod
    def blank(cls, height: int, width: int, colour=BG) -> Canvas:
        """A page of ``colour`` (a plain memset when the colour is a grey)."""
        if len(set(colour)) == 1:
            return cls(np.full((height, width, 3), colour[0], np.uint8))
        return cls(np.full((height, width, 3), colour, np.uint8))

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def _clip(self, x: int, y: int, w: int, h: int):
        H, W = self.rgb.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def text(self, xy, text: str, size: int = SUB_SIZE, fill=INK, align: str = "left") -> int:
        """Draw one line at ``xy`` (its top left; ``align="center"``/``"right"``: ``x`` is the centre/right
        edge). Returns the text's width in pixels."""
        text = str(text)
        if not text:
            return 0
        x, y = int(xy[0]), int(xy[1])
        w = text_width(text, size)
        if align == "center":
            x -= w // 2
        elif align == "right":
            x -= w
        a = _text_mask(text, size)
        box = self._clip(x, y, a.shape[1], a.shape[0])
        if box is None:
            return w
        x0, y0, x1, y1 = box
        a = a[y0 - y : y1 - y, x0 - x : x1 - x, None]
        region = self.rgb[y0:y1, x0:x1].astype(np.float32)
        region += (np.asarray(fill, np.float32) - region) * a
        self.rgb[y0:y1, x0:x1] = (region + 0.5).astype(np.uint8)
        return w

    def lines(self, xy, lines: list[str], size: int = SUB_SIZE, fill=INK) -> int:
        """Draw lines one under the other from ``xy``; returns the y just below the last one."""
        x, y = int(xy[0]), int(xy[1])
        for line in lines:
            self.text((x, y), line, size, fill)
            y += line_height(size)
        return y

    def paste(self, rgb: np.ndarray, xy) -> None:
        """Copy an ``(h, w, 3)`` uint8 picture with its top left at ``xy``."""
        x, y = int(xy[0]), int(xy[1])
        box = self._clip(x, y, rgb.shape[1], rgb.shape[0])
        if box is not None:
            x0, y0, x1, y1 = box
            self.rgb[y0:y1, x0:x1] = rgb[y0 - y : y1 - y, x0 - x : x1 - x]

    def fill(self, xy, size, colour) -> None:
        """Fill the ``size = (w, h)`` rectangle at ``xy`` with ``colour``."""
        box = self._clip(int(xy[0]), int(xy[1]), int(size[0]), int(size[1]))
        if box is not None:
            x0, y0, x1, y1 = box
            self.rgb[y0:y1, x0:x1] = colour

    def colorbar(
        self,
        x: int,
        y: int,
        width: int,
        lut: np.ndarray,
        lo: float,
        hi: float,
        *,
        size: int = 12,
        bar: int = 12,
        ticks: int = 5,
        label: str = "",
        fill=MUTED,
    ) -> int:
        """A colour bar from ``lo`` to ``hi`` with numeric ticks under it; returns the y below the numbers.

        Both ends are labelled with their exact values (:func:`fmt_number`); about ``ticks`` round values
        (:func:`nice_ticks`) are added between them where they do not collide. ``label`` (e.g. what the
        colour means) is written right of the bar, on its line. A tick is a 1 px dark line under the bar.
        """
        width = max(2, int(width))
        self.paste(np.ascontiguousarray(ramp(width, bar, lut)), (x, y))
        ty = y + bar + 3
        tick_y = y + bar
        placed: list[tuple[int, int]] = []

        def put(v: float, frac: float, align: str) -> None:
            t = fmt_number(v)
            w = text_width(t, size)
            px = x + round(frac * (width - 1))
            left = px if align == "left" else (px - w if align == "right" else px - w // 2)
            if any(left < b + 6 and left + w + 6 > a for a, b in placed):
                return
            placed.append((left, left + w))
            self.fill((px, tick_y), (1, 3), INK)
            self.text((left, ty), t, size, fill)

        put(lo, 0.0, "left")
        put(hi, 1.0, "right")
        if hi > lo and ticks > 2:
            for v in nice_ticks(lo, hi, ticks):
                put(v, (v - lo) / (hi - lo), "center")
        if label:
            self.text((x + width + 8, y + (bar - line_height(size)) // 2 + 1), label, size, fill)
        return ty + line_height(size)

    def mark_blank(self, xy, size, label: str = "all 0", text_size: int = 11) -> None:
        """Mark the ``size = (w, h)`` tile at ``xy`` as an all-zero map: grey diagonal hatching over a light
        ground and ``label`` in a white box at its centre (a weak map keeps its colours; this never looks
        like one)."""
        x, y = int(xy[0]), int(xy[1])
        w, h = int(size[0]), int(size[1])
        box = self._clip(x, y, w, h)
        if box is None:
            return
        x0, y0, x1, y1 = box
        yy, xx = np.ogrid[y0 - y : y1 - y, x0 - x : x1 - x]
        stripe = ((xx + yy) % 8) < 2
        tile = np.where(stripe[..., None], np.uint8(150), np.uint8(228)).astype(np.uint8)
        self.rgb[y0:y1, x0:x1] = np.broadcast_to(tile, (y1 - y0, x1 - x0, 3))
        if w >= 16 and h >= 10:
            t = label if text_width(label, text_size) + 6 <= w else "0"
            tw, th = text_width(t, text_size), line_height(text_size)
            bx, by = x + (w - tw) // 2 - 3, y + (h - th) // 2 - 1
            self.fill((bx, by), (tw + 6, th + 2), BG)
            self.text((bx + 3, by + 1), t, text_size, INK)


def blank(height: int, width: int) -> np.ndarray:
    """A white ``(height, width, 3)`` uint8 page."""
    return Canvas.blank(height, width).rgb


def zero_maps(maps: np.ndarray) -> np.ndarray:
    """``(k,)`` bool: which of the ``(H, W, k)`` maps are zero everywhere (dead channels)."""
    m = np.asarray(maps)
    k = m.shape[-1]
    if m.size == 0:
        return np.zeros(k, bool)
    flat = m.reshape(-1, k)
    zero = ~flat[:: max(1, flat.shape[0] // 256)].any(axis=0)  # a sample first: most maps end here
    idx = np.flatnonzero(zero)
    if idx.size:
        zero[idx] = ~flat[:, idx].any(axis=0)
    return zero


# ---------------------------------------------------------------- title blocks
@dataclass
class TitleBlock:
    """Wrapped title and subtitle lines for a given width; ``height`` px tall. Build with :func:`title_block`."""

    lines: list[tuple[str, int, tuple]]  # (text, size, colour)
    height: int
    width: int  # widest line, px

    def draw(self, canvas: Canvas, x: int, y: int) -> int:
        """Draw at ``(x, y)``; returns the y below the block."""
        for text, size, colour in self.lines:
            canvas.text((x, y), text, size, colour)
            y += line_height(size) + (3 if size > SUB_SIZE else 1)
        return y


def title_block(
    width: int, title: str, subtitles=(), *, size: int = TITLE_SIZE, sub_size: int = SUB_SIZE
) -> TitleBlock:
    """The figure head: ``title`` (``size`` px, dark) and ``subtitles`` (one string or a list, ``sub_size`` px,
    grey), each wrapped to ``width`` px by :func:`wrap_text`: a long model or image name adds lines, it never
    cuts a prediction or a number. Empty strings are skipped.

    Example::

        >>> tb = title_block(300, "emotion - my_very_long_photo_name.png - predicted: happy (93%)", "C1 conv")
        >>> len(tb.lines) > 2 and tb.height > 40
        True
    """
    if isinstance(subtitles, str):
        subtitles = [subtitles]
    lines = []
    for text, sz, colour in [(title, size, INK)] + [(s, sub_size, MUTED) for s in subtitles]:
        if text:
            lines.extend((line, sz, colour) for line in wrap_text(text, sz, width))
    height = sum(line_height(sz) + (3 if sz > SUB_SIZE else 1) for _, sz, _ in lines)
    widest = max((text_width(t, sz) for t, sz, _ in lines), default=0)
    return TitleBlock(lines, height, widest)
