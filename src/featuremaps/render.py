"""Draw feature maps with NumPy + Pillow: arrays in, RGB uint8 arrays out (no files, no pyplot state).

Conventions: maps are ``(H, W, k)`` float32; rendered images are ``(H, W, 3)`` uint8. Small deep maps are
upsampled with nearest-neighbour to a common cell size (a 3x3 map is as visible as a 224x224 one, with its
pixels shown as blocks, not blurred); larger maps are area-averaged down. Aspect ratios are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featuremaps.errors import UserError
from featuremaps.extractor import STATS

NORM_MODES = ("map", "layer", "global")
NORM_TEXT = {
    "map": "each map scaled to its own min-max",
    "layer": "one scale per layer",
    "global": "one scale across all layers",
}
BG = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
GAP = 2


# ---------------------------------------------------------------- colour
@lru_cache(maxsize=32)
def colormap(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table: the shipped Matplotlib tables, else Matplotlib itself if installed."""
    table_file = resources.files("featuremaps").joinpath("data").joinpath("colormaps.npz")
    with table_file.open("rb") as f, np.load(f) as tables:
        if name in tables.files:
            return tables[name]
        shipped = list(tables.files)
    try:
        import matplotlib

        cmap = matplotlib.colormaps[name]
    except (ImportError, KeyError):
        raise UserError(f"unknown colormap '{name}'; use one of {', '.join(shipped)}") from None
    return (cmap(np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def quantise(norm: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 LUT indices (NaN -> 0, out of range clipped)."""
    x = np.asarray(norm, dtype=np.float32)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    idx = x * np.float32(255.0)
    idx += np.float32(0.5)
    np.clip(idx, 0, 255, out=idx)
    return idx.astype(np.uint8)


def apply_colormap(norm: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB uint8 via the lookup table."""
    return np.take(lut, quantise(norm), axis=0)


def map_tiles(scaled: np.ndarray, size: tuple[int, int], lut: np.ndarray) -> np.ndarray:
    """(H, W, k) maps in [0, 1] -> (k, h, w, 3) RGB tiles, each map contiguous for pasting.

    Upsampling is nearest, so colouring the small map first and repeating its RGB pixels gives the same
    picture as colouring the big one, at a fraction of the cost; downsampling averages values first.
    """
    H, W = scaled.shape[:2]
    h, w = size
    if h < H or w < W:
        scaled = resize_maps(scaled, (h, w))
        H, W = h, w
    rgb = np.take(lut, quantise(scaled).transpose(2, 0, 1), axis=0)  # (k, H, W, 3)
    if (H, W) == (h, w):
        return rgb
    if h % H == 0 and w % W == 0:
        return rgb.repeat(h // H, axis=1).repeat(w // W, axis=2)
    iy = np.minimum((np.arange(h) + 0.5) * H / h, H - 1).astype(np.intp)
    ix = np.minimum((np.arange(w) + 0.5) * W / w, W - 1).astype(np.intp)
    return rgb[:, iy][:, :, ix]


# ---------------------------------------------------------------- normalisation
def normalise(layers: list[np.ndarray], mode: str = "map") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scale each layer's ``(H, W, k)`` maps to [0, 1].

    Returns the scaled maps and, per layer, the ``(k, 2)`` (low, high) range each map was scaled by:
    ``map`` uses each map's own min and max, ``layer`` the min and max over the layer's shown maps,
    ``global`` those over all layers. A constant map (high == low) becomes all zeros.
    """
    if mode not in NORM_MODES:
        raise UserError(f"--norm '{mode}' is not one of {', '.join(NORM_MODES)}")
    ranges = []
    for m in layers:
        if mode == "map":
            lo, hi = m.min(axis=(0, 1)), m.max(axis=(0, 1))
        else:
            lo = np.full(m.shape[-1], m.min() if m.size else 0.0)
            hi = np.full(m.shape[-1], m.max() if m.size else 0.0)
        ranges.append(np.stack([lo, hi], axis=1).astype(np.float32))
    if mode == "global" and layers:
        lo = min(float(r[:, 0].min()) for r in ranges)
        hi = max(float(r[:, 1].max()) for r in ranges)
        ranges = [np.tile(np.float32([lo, hi]), (m.shape[-1], 1)) for m in layers]
    out = []
    for m, r in zip(layers, ranges, strict=True):
        lo, hi = r[:, 0], r[:, 1]
        inv = np.where(hi > lo, 1.0 / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)
        scaled = np.asarray(m, dtype=np.float32) - lo  # a new array: the caller's maps are not touched
        scaled *= inv  # a constant map (high == low) becomes all zeros
        np.clip(scaled, 0.0, 1.0, out=scaled)
        out.append(scaled)
    return out, ranges


# ---------------------------------------------------------------- geometry
def fit_size(h: int, w: int, cell: int) -> tuple[int, int]:
    """Size of an (h, w) map in a cell x cell box, aspect kept; integer nearest factors when upsampling."""
    m = max(h, w)
    if m <= cell and (cell // m) * m >= 0.8 * cell:
        f = cell // m
        return h * f, w * f
    s = cell / m
    return max(1, round(h * s)), max(1, round(w * s))


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, k) -> (h, w, k): nearest (integer repeat) up, area average down."""
    H, W = maps.shape[:2]
    h, w = size
    if (h, w) == (H, W):
        return maps
    if h % H == 0 and w % W == 0 and h >= H:
        return np.repeat(np.repeat(maps, h // H, axis=0), w // W, axis=1)
    if h >= H:  # nearest, non-integer factor
        iy = np.minimum((np.arange(h) + 0.5) * H / h, H - 1).astype(np.intp)
        ix = np.minimum((np.arange(w) + 0.5) * W / w, W - 1).astype(np.intp)
        return maps[iy][:, ix]
    k = maps.shape[2]
    if H % h == 0 and W % w == 0:  # integer factor down: block mean
        return maps.reshape(h, H // h, w, W // w, k).mean(axis=(1, 3))

    parts = [
        cv2.resize(np.ascontiguousarray(maps[..., i : i + 4]), (w, h), interpolation=cv2.INTER_AREA)
        for i in range(0, k, 4)
    ]  # cv2's area resize takes at most 4 channels at once
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, axis=2)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:

    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[..., 0]
    im = Image.fromarray(rgb.astype(np.uint8))
    return np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR))


def _blank(height: int, width: int) -> np.ndarray:
    """A background-coloured canvas (a plain memset when the background is grey/white)."""
    if len(set(BG)) == 1:
        return np.full((height, width, 3), BG[0], np.uint8)
    return np.full((height, width, 3), BG, np.uint8)


def _blend(tiles: np.ndarray, under: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(k, h, w, 3) map tiles over an (h, w, 3) image: alpha * map + (1 - alpha) * image."""
    out = tiles.astype(np.float32)
    out *= alpha
    out += (1.0 - alpha) * under.astype(np.float32)[None]
    return out.astype(np.uint8)


# ---------------------------------------------------------------- text
@lru_cache(maxsize=8)
def font(size: int):

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_width(text: str, size: int) -> int:
    f = font(size)
    return int(math.ceil(f.getlength(text))) if hasattr(f, "getlength") else 6 * len(text)


def _fit_text(text: str, size: int, width: int) -> str:
    if _text_width(text, size) <= width:
        return text
    while len(text) > 2 and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


@lru_cache(maxsize=2048)
def _text_mask(text: str, fnt) -> np.ndarray:
    """Coverage (0-1 float32, (h, w)) of ``text`` drawn at the origin; captions like F1..F16 repeat a lot."""
    _, _, r, b = fnt.getbbox(text)
    mask = Image.new("L", (max(1, int(r)), max(1, int(b))), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=fnt)
    a = np.asarray(mask, dtype=np.float32) * np.float32(1 / 255)
    a.flags.writeable = False
    return a


class _Draw:
    """``ImageDraw``-like ``text`` and ``paste`` straight onto an RGB uint8 NumPy canvas, in place.

    Each string is rasterised by Pillow into a small 8-bit mask and blended into the canvas, which saves
    converting the whole page to a Pillow image and back (two full copies per picture).
    """

    def __init__(self, canvas: np.ndarray):
        self.canvas = canvas

    def _clip(self, x: int, y: int, w: int, h: int):
        H, W = self.canvas.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def text(self, xy, text: str, fill=INK, font=None) -> None:
        if not text:
            return
        x, y = int(xy[0]), int(xy[1])
        _, _, r, b = font.getbbox(text)
        box = self._clip(x, y, int(r), int(b)) if r > 0 and b > 0 else None
        if box is None:
            return
        x0, y0, x1, y1 = box
        a = _text_mask(text, font)[y0 - y : y1 - y, x0 - x : x1 - x, None]
        region = self.canvas[y0:y1, x0:x1].astype(np.float32)
        region += (np.asarray(fill, np.float32) - region) * a
        self.canvas[y0:y1, x0:x1] = (region + 0.5).astype(np.uint8)

    def paste(self, rgb: np.ndarray, xy) -> None:
        x, y = int(xy[0]), int(xy[1])
        box = self._clip(x, y, rgb.shape[1], rgb.shape[0])
        if box is not None:
            x0, y0, x1, y1 = box
            self.canvas[y0:y1, x0:x1] = rgb[y0 - y : y1 - y, x0 - x : x1 - x]


# ---------------------------------------------------------------- data for drawing
@dataclass
class Row:
    """One layer as drawn: label ``C3``, name, full output shape, shown maps and their channel indices."""

    label: str
    name: str
    shape: tuple[int, int, int]
    maps: np.ndarray  # (H, W, k)
    channels: np.ndarray  # (k,)
    note: str = ""
    stats: dict = field(default_factory=dict)

    @property
    def shape_text(self) -> str:
        return "x".join(str(d) for d in self.shape)


def rows_from(results, index: int = 0) -> list[Row]:
    """Accept :class:`~featuremaps.extract.LayerMaps` results, :class:`Row` s or ``{name: (H, W, k)}``."""
    if isinstance(results, list | tuple) and all(isinstance(r, Row) for r in results):
        return list(results)
    if isinstance(results, dict):
        return [
            Row(f"C{i}", name, tuple(m.shape), np.asarray(m, np.float32), np.arange(m.shape[-1]))
            for i, (name, m) in enumerate(results.items(), start=1)
        ]
    return [
        Row(
            r.conv.label,
            r.conv.name,
            r.shape,
            r.maps[index],
            r.channels[index],
            r.note,
            dict(zip(STATS, (float(v) for v in r.stats[index]), strict=True)),
        )
        for r in results
    ]


def _colorbar(width: int, height: int, lut: np.ndarray) -> np.ndarray:
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    return apply_colormap(ramp, lut)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


# ---------------------------------------------------------------- the overview
def render_overview(
    results,
    image: np.ndarray | None = None,
    *,
    norm: str = "map",
    cmap: str = "viridis",
    cell: int = 112,
    overlay: bool = False,
    title: str = "",
    subtitle: str = "",
    first_n: bool = True,
    index: int = 0,
) -> np.ndarray:
    """All chosen layers in one picture: a row per layer (``C1 ... Cn``, name, shape), columns ``F1 ... Fk``.

    ``image`` (RGB uint8, what the model saw) is drawn at the top left and under the maps when
    ``overlay`` is set. When the maps are not the first k channels (``first_n=False``), each cell is
    captioned with its channel index. Returns RGB uint8.
    """
    rows = rows_from(results, index)
    if not rows:
        raise UserError("nothing to draw: no layers were selected")
    lut = colormap(cmap)
    scaled, ranges = normalise([r.maps for r in rows], norm)
    kmax = max(r.maps.shape[-1] for r in rows)
    fs = max(11, cell // 7)
    label_w = max(150, min(260, 2 * cell + 40))
    cap_h = fs + 4 if not first_n else 0
    legend_w = 90 if norm == "layer" else 0
    head_h = 2 * (fs + 8) + 8 + (fs + 10)
    if image is not None:
        head_h = max(head_h, cell + 8 + fs + 10)
    row_h = cell + cap_h + GAP
    width = label_w + kmax * (cell + GAP) + legend_w + 8
    height = head_h + len(rows) * row_h + 8 + (26 + fs if norm == "global" else 0)
    canvas = _blank(height, width)

    col_y = head_h - fs - 8
    for j in range(kmax if first_n else 0):
        x0 = label_w + j * (cell + GAP)
        canvas[col_y + fs + 4 : col_y + fs + 6, x0 : x0 + cell] = (200, 200, 200)
    img_cell = None
    if image is not None:
        ih, iw = fit_size(*image.shape[:2], cell)
        img_cell = resize_rgb(image, (ih, iw))
        canvas[4 : 4 + ih, 4 : 4 + iw] = img_cell

    for i, s in enumerate(scaled):
        y0 = head_h + i * row_h
        h, w = fit_size(s.shape[0], s.shape[1], cell)
        rgb = map_tiles(s, (h, w), lut)  # (k, h, w, 3)
        if overlay and image is not None:
            rgb = _blend(rgb, resize_rgb(image, (h, w)))
        oy, ox = (cell - h) // 2, (cell - w) // 2
        for j in range(s.shape[-1]):
            x0 = label_w + j * (cell + GAP)
            canvas[y0 + cap_h + oy : y0 + cap_h + oy + h, x0 + ox : x0 + ox + w] = rgb[j]
        if norm == "layer":
            x0 = label_w + kmax * (cell + GAP) + 6
            canvas[y0 + cap_h + cell // 2 - 6 : y0 + cap_h + cell // 2 + 6, x0 : x0 + 70] = _colorbar(70, 12, lut)

    d = _Draw(canvas)
    tx = 4 + (cell + 12 if image is not None else 0)
    d.text((tx, 6), _fit_text(title, fs + 4, width - tx - 8), fill=INK, font=font(fs + 4))
    sub = subtitle or ""
    d.text((tx, 12 + fs + 4), _fit_text(sub, fs, width - tx - 8), fill=MUTED, font=font(fs))
    d.text(
        (tx, 18 + 2 * fs + 4),
        _fit_text(f"colormap {cmap}; {NORM_TEXT[norm]}", fs, width - tx - 8),
        fill=MUTED,
        font=font(fs),
    )
    if first_n:
        for j in range(kmax):
            x0 = label_w + j * (cell + GAP)
            t = f"F{j + 1}"
            d.text((x0 + (cell - _text_width(t, fs)) // 2, col_y), t, fill=INK, font=font(fs))
    for i, (row, rng) in enumerate(zip(rows, ranges, strict=True)):
        y0 = head_h + i * row_h + cap_h
        d.text((6, y0 + 2), row.label, fill=INK, font=font(fs + 6))
        d.text((6, y0 + fs + 12), _fit_text(row.name, fs, label_w - 12), fill=INK, font=font(fs))
        d.text((6, y0 + 2 * fs + 16), row.shape_text, fill=MUTED, font=font(fs))
        if row.note:
            d.text(
                (6, y0 + 3 * fs + 20), _fit_text("all maps shown", fs - 1, label_w - 12), fill=MUTED, font=font(fs - 1)
            )
        if not first_n:
            for j, ch in enumerate(row.channels):
                x0 = label_w + j * (cell + GAP)
                t = f"F{int(ch) + 1}"  # channels are F-numbers, 1-based, everywhere
                d.text((x0 + 2, y0 - cap_h + 1), _fit_text(t, fs - 1, cell - 4), fill=MUTED, font=font(fs - 1))
        if norm == "layer":
            x0 = label_w + kmax * (cell + GAP) + 6
            yc = y0 + cell // 2
            d.text((x0, yc - 8 - fs), _fmt(rng[0, 0]), fill=MUTED, font=font(fs - 1))
            t = _fmt(rng[0, 1])
            d.text((x0 + 70 - _text_width(t, fs - 1), yc + 8), t, fill=MUTED, font=font(fs - 1))
    if norm == "global":
        lo, hi = ranges[0][0]
        yb = height - 26 - fs
        x0 = label_w
        bar_w = min(400, width - label_w - 16)
        d.paste(_colorbar(bar_w, 12, lut), (x0, yb + fs + 4))
        d.text((x0 - _text_width(_fmt(lo), fs) - 6, yb + fs + 1), _fmt(lo), fill=INK, font=font(fs))
        d.text((x0 + bar_w + 6, yb + fs + 1), _fmt(hi), fill=INK, font=font(fs))
        d.text((x0, yb), "activation (all layers)", fill=MUTED, font=font(fs))
    return canvas


# ---------------------------------------------------------------- one layer
def render_layer(
    row: Row,
    *,
    norm: str = "map",
    cmap: str = "viridis",
    cell: int | None = None,
    image: np.ndarray | None = None,
    overlay: bool = False,
    norm_range=None,
    first_n: bool = True,
) -> np.ndarray:
    """One layer's maps as a near-square grid (16 maps -> 4x4), each captioned F1.. (and its channel)."""
    lut = colormap(cmap)
    if norm_range is not None:  # a range computed across layers (global normalisation)
        lo, hi = norm_range
        span = hi - lo if hi > lo else 1.0
        s = np.clip((row.maps - lo) / span, 0, 1) if hi > lo else np.zeros_like(row.maps)
        rng = np.tile(np.float32([lo, hi]), (row.maps.shape[-1], 1))
    else:
        (s,), (rng,) = normalise([row.maps], norm)
    k = s.shape[-1]
    cols = math.ceil(math.sqrt(k))
    nrows = math.ceil(k / cols)
    H, W = s.shape[:2]
    cell = cell or max(128, min(256, max(H, W)))
    h, w = fit_size(H, W, cell)
    fs = 13
    cap_h = fs + 6
    head_h = 2 * (fs + 10) + 8
    legend_h = 34 if norm != "map" else 0
    width = max(cols * (w + GAP) + 8, 420)
    height = head_h + nrows * (h + cap_h + GAP) + legend_h + 6
    canvas = _blank(height, width)
    rgb = map_tiles(s, (h, w), lut)  # (k, h, w, 3)
    if overlay and image is not None:
        rgb = _blend(rgb, resize_rgb(image, (h, w)))
    for j in range(k):
        r, c = divmod(j, cols)
        y0, x0 = head_h + r * (h + cap_h + GAP) + cap_h, 4 + c * (w + GAP)
        canvas[y0 : y0 + h, x0 : x0 + w] = rgb[j]
    d = _Draw(canvas)
    d.text(
        (4, 4), _fit_text(f"{row.label}  {row.name}  {row.shape_text}", fs + 4, width - 8), fill=INK, font=font(fs + 4)
    )
    what = f"maps {k} of {row.shape[-1]}" + (f" ({row.note})" if row.note else "")
    d.text(
        (4, 10 + fs + 4),
        _fit_text(f"{what}; colormap {cmap}; {NORM_TEXT[norm]}", fs, width - 8),
        fill=MUTED,
        font=font(fs),
    )
    for j in range(k):
        r, c = divmod(j, cols)
        y0, x0 = head_h + r * (h + cap_h + GAP), 4 + c * (w + GAP)
        t = f"F{int(row.channels[j]) + 1}"  # 1-based channel number
        d.text((x0 + 2, y0 + 2), _fit_text(t, fs, w - 4), fill=INK, font=font(fs))
    if norm != "map":
        yb = height - legend_h + 4
        bar_w = min(300, width - 120)
        d.paste(_colorbar(bar_w, 12, lut), (60, yb + 4))
        d.text((6, yb + 2), _fmt(rng[0, 0]), fill=INK, font=font(fs))
        d.text((66 + bar_w, yb + 2), _fmt(rng[0, 1]), fill=INK, font=font(fs))
    return canvas
