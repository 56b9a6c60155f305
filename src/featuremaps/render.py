"""Draw feature maps with NumPy + Pillow: arrays in, RGB uint8 arrays out (no files, no pyplot state).

Conventions: maps are ``(H, W, k)`` float32; rendered images are ``(H, W, 3)`` uint8. Small deep maps are
upsampled with nearest-neighbour to a common cell size (a 3x3 map is as visible as a 224x224 one, with its
pixels shown as blocks, not blurred); larger maps are area-averaged down. Aspect ratios are kept. Text,
colour bars, title blocks and the all-zero mark come from :mod:`featuremaps.draw`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from PIL import Image

from featuremaps.draw import (
    GAP,
    INK,
    MUTED,
    Canvas,
    fit_text,
    fmt_number,
    line_height,
    text_width,
    title_block,
    wrap_text,
    zero_maps,
)
from featuremaps.errors import UserError
from featuremaps.maps import STATS

NORM_MODES = ("map", "layer", "global")
NORM_TEXT = {
    "map": "each map scaled to its own min-max",
    "layer": "one scale per layer",
    "global": "one scale across all layers",
}


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
@dataclass(frozen=True)
class Look:
    """How feature maps are drawn, one record from the command line to the pixels (``show --norm --cmap --cell
    --overlay``): ``norm`` (map | layer | global, :func:`normalise`), ``cmap`` (a :func:`colormap` name),
    ``cell`` (the overview's cell side, pixels) and ``overlay`` (maps blended over the input image).

    Example::

        >>> rgb = render_overview(maps, image, look=Look(norm="layer", cmap="magma").check())
    """

    norm: str = "map"
    cmap: str = "viridis"
    cell: int = 112
    overlay: bool = False

    def check(self) -> Look:
        """This look, or a UserError naming a bad normalisation or colormap (before any image is read)."""
        if self.norm not in NORM_MODES:
            raise UserError(f"--norm '{self.norm}' is not one of {', '.join(NORM_MODES)}")
        colormap(self.cmap)
        return self


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


def fit_square(rgb: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``rgb`` ((h, w), (h, w, 1) or (h, w, 3)) scaled to fit a ``side`` square, aspect kept, as RGB:
    nearest-neighbour from 4x up (a 5x5 receptive field shows its 25 pixels, not a blur), bilinear below (a
    48 px image at 2.7x, without uneven blocks). The exemplars of ``patterns`` and the atlas' top images."""
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[..., 0]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if s >= 4:
        ys = np.minimum((np.arange(size[0]) / s).astype(int), h - 1)
        xs = np.minimum((np.arange(size[1]) / s).astype(int), w - 1)
        return rgb[ys][:, xs]
    return resize_rgb(rgb, size)


def _blend(tiles: np.ndarray, under: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(k, h, w, 3) map tiles over an (h, w, 3) image: alpha * map + (1 - alpha) * image."""
    out = tiles.astype(np.float32)
    out *= alpha
    out += (1.0 - alpha) * under.astype(np.float32)[None]
    return out.astype(np.uint8)


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

    @property
    def first_n(self) -> bool:
        """Whether the maps are channels 0..k-1 (then F1..Fk name them; otherwise captions add the channel)."""
        return np.array_equal(self.channels, np.arange(self.maps.shape[-1]))


def rows_from(results, index: int = 0) -> list[Row]:
    """Accept :class:`~featuremaps.extract.LayerMaps` results, :class:`Row` s or ``{name: (H, W, k)}``."""
    if isinstance(results, list | tuple) and all(isinstance(r, Row) for r in results):
        return list(results)
    if isinstance(results, dict):  # extract()'s LayerDict knows the layers' full shapes and channel ids
        shapes, chans = getattr(results, "shapes", {}), getattr(results, "channels", {})
        return [
            Row(
                f"C{i}",
                name,
                tuple(shapes.get(name, m.shape)),
                np.asarray(m, np.float32),
                np.asarray(chans.get(name, np.arange(m.shape[-1]))),
            )
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


def _legend_text(norm: str, cmap: str, hatched: bool = False) -> str:
    return f"colormap {cmap}; {NORM_TEXT[norm]}" + ("; hatched 'all 0' = map zero everywhere" if hatched else "")


def _row_label(c: Canvas, row: Row, x: int, y: int, width: int, height: int, fs: int) -> None:
    """A row's head: ``C3`` big, the layer name (wrapped to two lines when there is room), its full shape."""
    y = c.lines((x, y), [row.label], fs + 6, INK) + 2
    name = wrap_text(row.name, fs, width)
    room = (height - (y - 2) - 2 * line_height(fs)) // line_height(fs)
    if len(name) > max(1, room):
        keep = max(1, room)
        name = name[: keep - 1] + [fit_text(" ".join(name[keep - 1 :]), fs, width)]
    y = c.lines((x, y), name, fs, INK)
    y = c.lines((x, y), [row.shape_text], fs, MUTED)
    if row.note:
        c.lines((x, y), [fit_text("all maps shown", fs - 1, width)], fs - 1, MUTED)


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
    look: Look | None = None,
) -> np.ndarray:
    """All chosen layers in one picture: a row per layer (``C1 ... Cn``, name, full shape), columns ``F1 ... Fk``.

    ``image`` (RGB uint8, what the model saw) is drawn at the top left and under the maps when
    ``overlay`` is set. When the maps are not the first k channels (``first_n=False``, or rows whose
    channel ids say so), each cell is captioned with its channel index. A map that is zero everywhere is
    hatched and labelled ``all 0``. Title and subtitle wrap (the number in a long title is never cut).
    Returns RGB uint8. ``look`` (a :class:`Look`), when given, replaces ``norm``, ``cmap``, ``cell`` and
    ``overlay``.

    Example::

        >>> maps = fm.extract(model, x, layers="C1-C5", maps=16)
        >>> rgb = fm.render_overview(maps, image, title="VGG16", norm="layer")  # (H, W, 3) uint8
    """
    if look is not None:
        norm, cmap, cell, overlay = look.norm, look.cmap, look.cell, look.overlay
    rows = rows_from(results, index)
    if not rows:
        raise UserError("nothing to draw: no layers were selected")
    first_n = first_n and all(r.first_n for r in rows)
    lut = colormap(cmap)
    scaled, ranges = normalise([r.maps for r in rows], norm)
    kmax = max(r.maps.shape[-1] for r in rows)
    fs = max(11, cell // 7)
    label_w = max(150, min(260, 2 * cell + 40))
    cap_h = line_height(fs - 1) if not first_n else 0
    bar_w = 0
    if norm == "layer":
        bar_w = max(
            70,
            *(text_width(fmt_number(r[0, 0]), fs - 1) + text_width(fmt_number(r[0, 1]), fs - 1) + 12 for r in ranges),
        )
    legend_w = bar_w + 16 if bar_w else 0
    grid_w = label_w + kmax * (cell + GAP)
    tx = 4 + (cell + 12 if image is not None else 0)
    width = max(grid_w + legend_w + 8, tx + 300)
    zeros = [zero_maps(r.maps) for r in rows]
    legend = _legend_text(norm, cmap, any(z.any() for z in zeros))
    tb = title_block(width - tx - 8, title, [subtitle, legend], size=fs + 4, sub_size=fs)
    img_h = 0
    if image is not None:
        ih, iw = fit_size(*image.shape[:2], cell)
        img_h = ih + 4
    col_h = line_height(fs) + 6 if first_n else 0
    head_h = max(6 + tb.height, 4 + img_h) + 6 + col_h
    row_h = cell + cap_h + GAP
    foot_h = 12 + line_height(fs) + 2 + 12 + line_height(fs) if norm == "global" else 0
    height = head_h + len(rows) * row_h + 8 + foot_h
    c = Canvas.blank(height, width)
    canvas = c.rgb

    col_y = head_h - col_h
    if image is not None:
        canvas[4 : 4 + ih, 4 : 4 + iw] = resize_rgb(image, (ih, iw))
    tb.draw(c, tx, 6)
    if first_n:
        for j in range(kmax):
            x0 = label_w + j * (cell + GAP)
            canvas[col_y + line_height(fs) + 1 : col_y + line_height(fs) + 3, x0 : x0 + cell] = (200, 200, 200)
            c.text((x0 + cell // 2, col_y), f"F{j + 1}", fs, INK, align="center")

    for i, (row, s, rng) in enumerate(zip(rows, scaled, ranges, strict=True)):
        y0 = head_h + i * row_h
        h, w = fit_size(s.shape[0], s.shape[1], cell)
        rgb = map_tiles(s, (h, w), lut)  # (k, h, w, 3)
        if overlay and image is not None:
            rgb = _blend(rgb, resize_rgb(image, (h, w)))
        oy, ox = (cell - h) // 2, (cell - w) // 2
        zero = zeros[i]
        for j in range(s.shape[-1]):
            x0 = label_w + j * (cell + GAP)
            if zero[j]:
                c.mark_blank((x0 + ox, y0 + cap_h + oy), (w, h), text_size=max(9, fs - 3))
            else:
                canvas[y0 + cap_h + oy : y0 + cap_h + oy + h, x0 + ox : x0 + ox + w] = rgb[j]
            if not first_n:
                t = fit_text(f"F{int(row.channels[j]) + 1}", fs - 1, cell - 4)  # 1-based F-numbers everywhere
                c.text((x0 + 2, y0 + 1), t, fs - 1, MUTED)
        _row_label(c, row, 6, y0 + cap_h + 2, label_w - 12, cell, fs)
        if norm == "layer":
            x0 = grid_w + 8
            c.colorbar(x0, y0 + cap_h + cell // 2 - 12, bar_w, lut, rng[0, 0], rng[0, 1], size=fs - 1, ticks=0)
    if norm == "global":
        lo, hi = ranges[0][0]
        yb = height - foot_h
        label = "activation, all layers on one scale"
        c.text((label_w, yb), label, fs, MUTED)
        bw = max(120, min(400, width - label_w - 16))
        c.colorbar(label_w, yb + line_height(fs) + 4, bw, lut, lo, hi, size=fs)
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
    cols: int | None = None,
    look: Look | None = None,
) -> np.ndarray:
    """One layer's maps as a near-square grid (16 maps -> 4x4), or ``cols`` maps a row (a wide page: 8 -> 8x2),
    each captioned F1.. (and its channel).

    A map that is zero everywhere is hatched and labelled ``all 0``; with ``norm`` other than ``map`` a
    colour bar with numeric ticks sits under the grid. ``look`` (a :class:`Look`), when given, replaces
    ``norm``, ``cmap`` and ``overlay`` (its ``cell`` is the overview's: a layer's grid sizes its own cells).
    """
    if look is not None:
        norm, cmap, overlay = look.norm, look.cmap, look.overlay
    lut = colormap(cmap)
    if norm_range is not None:  # a range computed across layers (global normalisation)
        lo, hi = norm_range
        span = hi - lo if hi > lo else 1.0
        s = np.clip((row.maps - lo) / span, 0, 1) if hi > lo else np.zeros_like(row.maps)
        rng = np.tile(np.float32([lo, hi]), (row.maps.shape[-1], 1))
    else:
        (s,), (rng,) = normalise([row.maps], norm)
    first_n = first_n and row.first_n
    k = s.shape[-1]
    cols = max(1, min(k, cols)) if cols else math.ceil(math.sqrt(k))
    nrows = math.ceil(k / cols)
    H, W = s.shape[:2]
    cell = cell or max(128, min(256, max(H, W)))
    h, w = fit_size(H, W, cell)
    fs = 13
    cap_h = line_height(fs) + 1
    width = max(cols * (w + GAP) + 8, 420)
    what = f"maps {k} of {row.shape[-1]}" + (f" ({row.note})" if row.note else "")
    zero = zero_maps(row.maps)
    legend = _legend_text(norm, cmap, bool(zero.any()))
    tb = title_block(width - 8, f"{row.label}  {row.name}  {row.shape_text}", f"{what}; {legend}", size=fs + 4)
    head_h = tb.height + 10
    legend_h = 40 if norm != "map" else 0
    height = head_h + nrows * (h + cap_h + GAP) + legend_h + 6
    c = Canvas.blank(height, width)
    rgb = map_tiles(s, (h, w), lut)  # (k, h, w, 3)
    if overlay and image is not None:
        rgb = _blend(rgb, resize_rgb(image, (h, w)))
    tb.draw(c, 4, 4)
    for j in range(k):
        r, col = divmod(j, cols)
        y0, x0 = head_h + r * (h + cap_h + GAP), 4 + col * (w + GAP)
        if zero[j]:
            c.mark_blank((x0, y0 + cap_h), (w, h))
        else:
            c.rgb[y0 + cap_h : y0 + cap_h + h, x0 : x0 + w] = rgb[j]
        t = f"F{int(row.channels[j]) + 1}"  # the channel, 1-based, as everywhere
        c.text((x0 + 2, y0 + 1), fit_text(t, fs, w - 4), fs, INK)
    if norm != "map":
        yb = height - legend_h + 3
        bar_w = min(300, width - 40)
        c.colorbar(8, yb, bar_w, lut, float(rng[0, 0]), float(rng[0, 1]), size=fs - 1)
    return c.rgb
