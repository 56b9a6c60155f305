"""The explorer's model side, free of any web framework: images in, maps, statistics and pictures out.

Each image runs through the network once (all channels of every conv layer, one forward pass); the result
is an :class:`Analysis` held in a byte-bounded LRU cache. Pictures are drawn with the package's renderer
(:mod:`featuremaps.render`: colormaps, normalisation, map tiles) and CAMs with :func:`featuremaps.cam.compute_cam`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuremaps.cam import CAM_METHODS, overlay
from featuremaps.cam.engine import check_methods, compute_cam, usable_methods
from featuremaps.errors import UserError
from featuremaps.explore.cache import ByteLRU
from featuremaps.extractor import feature_extractor
from featuremaps.faces import NoFaceError
from featuremaps.frameworks import adapter, conv_layers, framework_of
from featuremaps.images import load_image
from featuremaps.io import encode_png
from featuremaps.loaded import LoadedModel
from featuremaps.pipeline import Prepared, describe_prediction, prepare
from featuremaps.receptive import adapter_fields
from featuremaps.render import (
    NORM_MODES,
    apply_colormap,
    colormap,
    fit_size,
    map_tiles,
    normalise,
    resize_maps,
    resize_rgb,
)

SORTS = ("index", "mean", "max")
CMAPS = ("viridis", "magma", "inferno", "plasma", "cividis", "gray", "turbo", "jet", "hot", "coolwarm")
GRID_COLS = 8
MAX_PER_PAGE = 256
#: CAMs (and their overlay PNGs) kept with each image's analysis: every layer of a VGG-16 for two methods
MAX_CAMS = 32
#: zlib level of the PNGs the page shows: 0 (stored) - the server is local, and deflating a 64-map sprite
#: costs ~10x more than sending it over loopback; downloads use the package's default level.
VIEW_PNG_LEVEL = 0


class NotFound(UserError):
    """A thing the request names does not exist (HTTP 404)."""


class BadRequest(UserError):
    """A parameter has a value the explorer cannot use (HTTP 400)."""


class TooLarge(UserError):
    """An upload over the size limit (HTTP 413)."""


@dataclass
class Source:
    id: str
    name: str
    path: Path | None = None
    rgb: np.ndarray | None = None  # uploads only


@dataclass
class Analysis:
    """One image through the model: what it saw, the prediction, every conv layer's maps and statistics."""

    image_id: str
    prep: Prepared
    original: np.ndarray  # RGB, at most 512 px a side (for the page)
    original_size: tuple[int, int]
    prediction: list[dict]
    probs: np.ndarray | None
    maps: dict[str, np.ndarray]  # label -> (H, W, C) float32, all channels
    ch_max: dict[str, np.ndarray]  # per channel, every layer (dead channels for the rail)
    ch_min: dict[str, np.ndarray]  # per channel; layers with negative values at once, others when first viewed
    ch_mean: dict[str, np.ndarray]  # per channel, when the layer is first viewed
    layer_stats: dict[str, dict]
    global_range: tuple[float, float]
    note: str = ""  # what the page must say about this input (a faceless photo fed whole to the emotion model)
    cams: dict = field(default_factory=dict)  # (label, method, class) -> CamResult
    cam_pngs: dict = field(default_factory=dict)  # (label, method, class, alpha, cmap) -> the overlay's PNG
    small: dict = field(default_factory=dict)  # (label, h, w) -> maps at tile size (large layers only)

    @property
    def nbytes(self) -> int:
        # large layers' tile-size copies (at most a quarter of their maps at the default cell) are counted too
        maps = sum(m.nbytes for m in self.maps.values())
        return int(1.25 * maps + self.prep.x.nbytes + 2 * self.prep.shown.nbytes)


def on_model_thread(method):
    """Run an :class:`Explorer` method on the explorer's one worker thread (directly when already on it).

    Maps are tens of MB an image; glibc gives each thread that allocates such blocks an arena of its own that
    keeps freed memory, so a web server's pool of threads took RSS up 190 MB over 250 uploads (flat with
    ``MALLOC_ARENA_MAX=1``). On one thread the cache bound is the memory bound.
    """

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if threading.get_ident() == self._worker_ident:
            return method(self, *args, **kwargs)
        return self._worker.submit(method, self, *args, **kwargs).result()

    return run


def _clean_name(name: str | None) -> str:
    name = Path(str(name or "upload")).name  # never a path, only a label
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)[:80]
    return name or "upload"


class Explorer:
    """A model plus the images it may look at: command-line files (by id only) and uploads.

    ``images``: the files given on the command line, the only paths any request can reach (by their id
    ``a0``, ``a1``, ...). Uploads are decoded in memory and kept in their own byte-bounded store.

    Example::

        ex = Explorer(models.load("vgg16", weights="none"), [Path("cat.png")])
        a = ex.analyse("a0")
        png = ex.grid_png("a0", "C1")
    """

    def __init__(
        self,
        lm: LoadedModel,
        images: list[Path] | None = None,
        *,
        cache_bytes: int = 512 * 2**20,
        upload_bytes: int = 128 * 2**20,
        max_upload_bytes: int = 20 * 2**20,
        max_pixels: int = 40_000_000,
        input_shape: tuple[int, ...] | None = None,
        face_crop: bool | None = None,
    ):
        self.lm = lm
        #: the emotion model sees the largest face (None: the model's default; False: the whole image, as
        #: ``--no-face-crop``); a photo without a face is fed whole, with a note, as ``featuremaps report`` does
        self.face_crop = face_crop
        self.crops_faces = bool(lm.is_emotion if face_crop is None else face_crop)
        self.input_shape = tuple(input_shape) if input_shape else None  # --input-shape: for free-size models
        self.adapter = adapter(lm.model)  # every framework through the one protocol
        self.convs = conv_layers(lm.model)
        self.by_label = {c.label: c for c in self.convs}
        self.rf = adapter_fields(self.adapter, self.convs)
        self.sources = {f"a{i}": Source(f"a{i}", p.name, path=Path(p)) for i, p in enumerate(images or [])}
        self.uploads = ByteLRU(upload_bytes)
        self.cache = ByteLRU(cache_bytes)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self.random_weights = lm.random_weights or "random weights" in lm.source.lower()
        self._extractors: dict[tuple, object] = {}  # input shape -> feature extractor (at most 2)
        # all model and picture work runs on one thread (see on_model_thread): one model call at a time, too
        self._worker_ident = None
        self._worker = ThreadPoolExecutor(1, "featuremaps-explore", initializer=self._mark_worker)
        self.n_classes = self._n_classes()

    def _mark_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    def submit(self, method, *args) -> Future:
        """Run one of this explorer's methods on its worker thread and return the Future (a web server awaits
        it instead of blocking a thread on it)."""
        return self._worker.submit(method, *args)

    # ------------------------------------------------------------ model facts
    def _default_shape(self) -> tuple[int, int, int] | None:
        """The input shape of the model's layer table: its own, else what a 224x224 image resolves to."""
        try:
            return tuple(int(d) for d in self.lm.resolve_input_shape((224, 224), self.input_shape))
        except (UserError, TypeError, ValueError):
            return None

    def _n_classes(self) -> int | None:
        shape = self._default_shape()
        out = tuple(self.adapter.output_shape(shape)) if shape else ()
        return int(out[-1]) if len(out) == 2 and out[-1] and out[-1] >= 2 else None

    def methods(self) -> list[str]:
        """The CAM methods this model supports (ONNX: the gradient-free ones)."""
        return usable_methods(self.adapter)

    def _layer_shape(self, c) -> list | None:
        shape = self._default_shape()
        found = self.adapter.layer_shapes(shape).get(c.name) if shape else None
        return list(found) if found is not None else None

    def class_names(self) -> list[str]:
        n = self.n_classes or 0
        if self.lm.classes and len(self.lm.classes) == n:
            return list(self.lm.classes)
        return [f"class {i}" for i in range(n)]

    def info(self) -> dict:
        layers = []
        for c in self.convs:
            f = self.rf.fields.get(c.label)
            layers.append(
                {
                    "label": c.label,
                    "name": c.name,
                    "kind": c.kind,
                    "shape": self._layer_shape(c),
                    "rf": f.as_dict() if f else None,
                }
            )
        return {
            "model": {
                "name": self.lm.name,
                "source": self.lm.source,
                "preprocess": self.lm.preprocess,
                "input_shape": [d if d is None else int(d) for d in self.lm.input_shape],
                "framework": framework_of(self.lm.model),
                "random_weights": self.random_weights,
                "face_crop": self.crops_faces,
            },
            "layers": layers,
            "receptive_field": {"exact": self.rf.exact, "note": self.rf.note},
            "classes": self.class_names(),
            "methods": self.methods(),
            "cmaps": list(CMAPS),
            "norms": list(NORM_MODES),
            "sorts": list(SORTS),
            "images": self.images(),
            "limits": {"upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels},
        }

    def images(self) -> list[dict]:
        out = [{"id": s.id, "name": s.name, "origin": "command line"} for s in self.sources.values()]
        for key in self.uploads.keys():
            s = self.uploads.get(key)
            if s is not None:
                out.append({"id": s.id, "name": s.name, "origin": "upload"})
        return out

    # ------------------------------------------------------------ images
    def add_upload(self, data: bytes, name: str | None = None) -> dict:
        """Decode uploaded bytes as an image (the rules of :func:`featuremaps.images.load_image`); its id."""
        if len(data) > self.max_upload_bytes:
            raise TooLarge(
                f"upload is {len(data) / 2**20:.1f} MiB, over the {self.max_upload_bytes / 2**20:.0f} MiB limit"
            )
        if not data:
            raise BadRequest("the upload is empty; send an image file")
        name = _clean_name(name)
        rgb = load_image(io.BytesIO(data), max_pixels=self.max_pixels, name=name)
        image_id = "u" + hashlib.sha256(data).hexdigest()[:16]
        if image_id not in self.uploads:
            self.uploads.put(image_id, Source(image_id, name, rgb=rgb), rgb.nbytes)
        return {"id": image_id, "name": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}

    def source(self, image_id: str) -> Source:
        s = self.sources.get(image_id) or self.uploads.get(image_id)
        if s is None:
            raise NotFound(
                f"no image '{image_id}': use an id from /api/images (uploads are forgotten when many follow)"
            )
        return s

    def _rgb(self, s: Source) -> np.ndarray:
        return s.rgb if s.rgb is not None else load_image(s.path, max_pixels=self.max_pixels)

    # ------------------------------------------------------------ analysis
    def extractor(self, shape: tuple):
        """The feature extractor of every conv layer (all channels) for inputs of ``shape``: two shapes are kept
        (an image's and the live camera's frames, say), each built once."""
        if shape not in self._extractors:
            if len(self._extractors) >= 2:
                self._extractors.pop(next(iter(self._extractors)))
            self._extractors[shape] = feature_extractor(self.adapter, shape, layers="all", maps=None)
        return self._extractors[shape]

    @on_model_thread
    def analyse(self, image_id: str) -> Analysis:
        """The image's :class:`Analysis`, from the cache or from one forward pass."""
        a = self.cache.get(image_id)
        if a is not None:
            return a
        s = self.source(image_id)
        try:
            rgb = self._rgb(s)
            prep, note = self._prepare(s, rgb)
            results, preds = self.extractor(prep.x.shape)(prep.x[None])
        except Exception:
            if image_id in self.uploads:  # an upload this model cannot take is no longer offered
                self.uploads.pop(image_id)
            raise
        probs = preds[0] if preds is not None else None
        maps, mx, mn, stats = {}, {}, {}, {}
        for r in results:
            m = r.maps[0]
            lab = r.conv.label
            maps[lab] = m
            mx[lab] = m.max(axis=(0, 1))
            if r.stat("min") < 0:  # else every channel's min is >= 0 and a dead channel is one with max 0
                mn[lab] = m.min(axis=(0, 1))
            dead = (mx[lab] <= 0) & (mn[lab] >= 0) if lab in mn else mx[lab] <= 0
            stats[lab] = {
                "mean": r.stat("mean"),
                "max": r.stat("max"),
                "min": r.stat("min"),
                "zero_fraction": r.stat("zero_fraction"),
                "dead": int(np.count_nonzero(dead)),  # all-zero channels
                "channels": int(m.shape[-1]),
            }
        h, w = rgb.shape[:2]
        s_ = min(1.0, 512 / max(h, w))
        original = rgb if s_ >= 1 else resize_rgb(rgb, (max(1, round(h * s_)), max(1, round(w * s_))))
        glob = (min(v["min"] for v in stats.values()), max(v["max"] for v in stats.values()))
        pred = describe_prediction(probs, self.lm.classes, top=10) if probs is not None else []
        a = Analysis(image_id, prep, original, (h, w), pred, probs, maps, mx, mn, {}, stats, glob, note=note)
        self.cache.put(image_id, a, a.nbytes)
        return a

    def _prepare(self, s: Source, rgb: np.ndarray) -> tuple[Prepared, str]:
        """The image as the model sees it, and the note the page shows with it."""
        try:
            return prepare(self.lm, rgb, input_shape=self.input_shape, face_crop=self.face_crop), ""
        except NoFaceError:
            if self.face_crop:  # a face crop was asked for explicitly: this image cannot be used
                raise
        # the emotion model's default face crop found none (a cat): the whole photo, as `report` does
        prep = prepare(self.lm, rgb, input_shape=self.input_shape, face_crop=False)
        return prep, (
            f"no face found: the whole photo was fed to {self.lm.name}, which was trained on faces, "
            "so its prediction means little here"
        )

    @on_model_thread
    def summary(self, image_id: str) -> dict:
        a = self.analyse(image_id)
        s = self.source(image_id)
        return {
            "id": image_id,
            "name": s.name,
            "input_shape": list(a.prep.x.shape),
            "original_size": list(a.original_size),
            "face_box": a.prep.face_box,
            "face_crop": self.crops_faces,
            "note": a.note,
            "prediction": a.prediction,
            "random_weights": self.random_weights,
            "layers": [{"label": k, **v} for k, v in a.layer_stats.items()],
            "global_range": list(a.global_range),
        }

    # ------------------------------------------------------------ parameters
    def layer(self, spec: str) -> str:
        s = str(spec).strip()
        if s.upper() in self.by_label:
            return s.upper()
        for c in self.convs:
            if s in (c.name, c.short_name):
                return c.label
        raise NotFound(f"no conv layer '{s}': this model has C1-C{len(self.convs)}")

    def channel(self, a: Analysis, label: str, c) -> int:
        n = a.maps[label].shape[-1]
        try:
            c = int(c)
        except (TypeError, ValueError):
            raise BadRequest(f"channel '{c}' is not a number; use 0-{n - 1}") from None
        if not 0 <= c < n:
            raise NotFound(f"channel {c} does not exist in {label}: it has {n} channels, 0-{n - 1}")
        return c

    @staticmethod
    def choice(value: str, options, what: str) -> str:
        """``value`` if it is one of ``options``, else a BadRequest naming ``what`` and the options."""
        if value not in options:
            raise BadRequest(f"{what} '{value}' is not one of {', '.join(options)}")
        return value

    def cmap(self, name: str):
        if name not in CMAPS:
            raise BadRequest(f"colormap '{name}' is not one of {', '.join(CMAPS)}")
        return colormap(name)

    def order(self, a: Analysis, label: str, sort: str) -> np.ndarray:
        self.choice(sort, SORTS, "sort")
        n = a.maps[label].shape[-1]
        if sort == "index":
            return np.arange(n)
        key = self._channel_stats(a, label)[0] if sort == "mean" else a.ch_max[label]
        return np.argsort(-key, kind="stable")

    @staticmethod
    def _channel_stats(a: Analysis, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-channel (mean, min, max) of a layer, computed on first use and kept with the analysis."""
        m = a.maps[label]
        if label not in a.ch_mean:
            a.ch_mean[label] = m.mean(axis=(0, 1))
        if label not in a.ch_min:
            a.ch_min[label] = m.min(axis=(0, 1))
        return a.ch_mean[label], a.ch_min[label], a.ch_max[label]

    def _range(self, a: Analysis, label: str, norm: str) -> tuple[float, float] | None:
        self.choice(norm, NORM_MODES, "norm")
        if norm == "layer":
            return a.layer_stats[label]["min"], a.layer_stats[label]["max"]
        if norm == "global":
            return a.global_range
        return None

    def _scale(self, maps: np.ndarray, rng) -> np.ndarray:
        if rng is None:
            (s,), _ = normalise([maps], "map")
            return s
        lo, hi = rng
        if hi <= lo:
            return np.zeros_like(maps)
        return np.clip((maps - lo) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)

    # ------------------------------------------------------------ views
    @on_model_thread
    def layer_view(self, image_id: str, spec: str, sort: str = "index", cell: int = 112) -> dict:
        a = self.analyse(image_id)
        label = self.layer(spec)
        m = a.maps[label]
        H, W, C = m.shape
        h, w = fit_size(H, W, self.cell_size(cell))
        c = self.by_label[label]
        return {
            "image": image_id,
            "label": label,
            "name": c.name,
            "kind": c.kind,
            "shape": [H, W, C],
            "order": self.order(a, label, sort).tolist(),
            "mean": [round(float(v), 6) for v in self._channel_stats(a, label)[0]],
            "max": [round(float(v), 6) for v in a.ch_max[label]],
            "min": [round(float(v), 6) for v in a.ch_min[label]],
            "stats": a.layer_stats[label],
            "ranges": {
                "layer": [a.layer_stats[label]["min"], a.layer_stats[label]["max"]],
                "global": list(a.global_range),
            },
            "tile": [h, w],
            "cols": GRID_COLS,
            "rf": self.rf.fields[label].as_dict() if label in self.rf.fields else None,
        }

    @staticmethod
    def cell_size(cell) -> int:
        """A grid cell's side in pixels (16-512), or a BadRequest."""
        try:
            cell = int(cell)
        except (TypeError, ValueError):
            raise BadRequest(f"cell '{cell}' is not a number of pixels") from None
        if not 16 <= cell <= 512:
            raise BadRequest(f"cell {cell} is outside 16-512 pixels")
        return cell

    def page_channels(self, a: Analysis, label: str, sort: str, page: int, per_page: int, channels: str | None):
        n = a.maps[label].shape[-1]
        if channels:
            try:
                ids = [int(v) for v in channels.split(",") if v.strip()]
            except ValueError:
                raise BadRequest("channels must be a comma list of channel numbers like 0,5,9") from None
            if len(ids) > MAX_PER_PAGE:
                raise BadRequest(f"at most {MAX_PER_PAGE} channels a picture")
            for c in ids:
                self.channel(a, label, c)
            return ids
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise BadRequest(f"per_page must be 1-{MAX_PER_PAGE}")
        pages = math.ceil(n / per_page)
        if not 0 <= page < pages:
            raise NotFound(f"page {page} does not exist: {label} has {n} channels, pages 0-{pages - 1} of {per_page}")
        return self.order(a, label, sort)[page * per_page : (page + 1) * per_page].tolist()

    @on_model_thread
    def grid_png(
        self,
        image_id: str,
        spec: str,
        sort: str = "index",
        page: int = 0,
        per_page: int = 64,
        cmap: str = "viridis",
        norm: str = "map",
        cell: int = 112,
        channels: str | None = None,
        level: int = VIEW_PNG_LEVEL,
    ) -> bytes:
        """A sprite of one page of channels: ``GRID_COLS`` tiles a row, each ``fit_size(H, W, cell)``."""
        a = self.analyse(image_id)
        label = self.layer(spec)
        lut = self.cmap(cmap)
        rng = self._range(a, label, norm)
        ids = self.page_channels(a, label, sort, page, per_page, channels)
        m = a.maps[label]
        h, w = fit_size(m.shape[0], m.shape[1], self.cell_size(cell))
        small = self._small(a, label, h, w)[..., ids]  # area-averaged once per layer and tile size
        if rng is None:  # each map by its own full-resolution min-max, as `show` does
            _, lo_all, hi_all = self._channel_stats(a, label)
            lo, hi = lo_all[ids], hi_all[ids]
        else:
            lo, hi = np.full(len(ids), rng[0], np.float32), np.full(len(ids), rng[1], np.float32)
        inv = np.where(hi > lo, 1.0 / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)
        scaled = small - lo.astype(np.float32)
        scaled *= inv
        np.clip(scaled, 0.0, 1.0, out=scaled)
        tiles = map_tiles(scaled, (h, w), lut)  # (k, h, w, 3)
        k = len(ids)
        cols = min(GRID_COLS, k)
        rows = math.ceil(k / cols)
        if rows * cols > k:
            tiles = np.concatenate([tiles, np.full((rows * cols - k, h, w, 3), 255, np.uint8)])
        sprite = tiles.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
        return encode_png(sprite, level=level)

    @staticmethod
    def _small(a: Analysis, label: str, h: int, w: int) -> np.ndarray:
        m = a.maps[label]
        if h >= m.shape[0] and w >= m.shape[1]:
            return m  # upsampled (nearest) after colouring, by map_tiles
        key = (label, h, w)
        if key not in a.small:
            if len(a.small) >= 4:
                a.small.pop(next(iter(a.small)))
            a.small[key] = resize_maps(m, (h, w))
        return a.small[key]

    def channel_rgb(self, a: Analysis, label: str, c: int, cmap: str, norm: str) -> np.ndarray:
        lut = self.cmap(cmap)
        m = a.maps[label][..., c : c + 1]
        return map_tiles(self._scale(m, self._range(a, label, norm)), a.prep.shown.shape[:2], lut)[0]

    @on_model_thread
    def channel_png(self, image_id, spec, c, cmap="viridis", norm="map", alpha: float | None = None) -> bytes:
        """One channel at the input's size (nearest); with ``alpha``, blended over the input (the export)."""
        a = self.analyse(image_id)
        label = self.layer(spec)
        c = self.channel(a, label, c)
        rgb = self.channel_rgb(a, label, c, cmap, norm)
        if alpha is not None:
            if not 0.0 <= alpha <= 1.0:
                raise BadRequest(f"alpha {alpha} is outside 0-1")
            rgb = (alpha * rgb + (1 - alpha) * a.prep.shown.astype(np.float32) + 0.5).astype(np.uint8)
            return encode_png(rgb)  # the export: compressed
        return encode_png(rgb, level=VIEW_PNG_LEVEL)

    @on_model_thread
    def value(self, image_id, spec, c, y, x) -> dict:
        """The exact activation at map position (y, x) and the input box it sees (receptive field)."""
        a = self.analyse(image_id)
        label = self.layer(spec)
        c = self.channel(a, label, c)
        H, W = a.maps[label].shape[:2]
        if not (0 <= y < H and 0 <= x < W):
            raise BadRequest(f"position ({y}, {x}) is outside {label}'s {H}x{W} map")
        ih, iw = a.prep.shown.shape[:2]
        f = self.rf.fields.get(label)
        return {
            "layer": label,
            "channel": c,
            "y": y,
            "x": x,
            "value": float(a.maps[label][y, x, c]),
            "rf": f.box(y, x, ih, iw) if f else None,
            "rf_size": list(f.size) if f else None,
            "rf_exact": self.rf.exact,
        }

    @on_model_thread
    def npy(self, image_id: str, spec: str) -> tuple[bytes, str]:
        a = self.analyse(image_id)
        label = self.layer(spec)
        buf = io.BytesIO()
        np.save(buf, a.maps[label])
        return buf.getvalue(), label

    @on_model_thread
    def input_png(self, image_id: str, original: bool = False) -> bytes:
        a = self.analyse(image_id)
        return encode_png(a.original if original else a.prep.shown, level=VIEW_PNG_LEVEL)

    @staticmethod
    def colorbar_png(cmap: str, width: int = 256, height: int = 12) -> bytes:
        if cmap not in CMAPS:
            raise BadRequest(f"colormap '{cmap}' is not one of {', '.join(CMAPS)}")
        ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :].repeat(height, axis=0)
        return encode_png(apply_colormap(ramp, colormap(cmap)))

    # ------------------------------------------------------------ the patterns panel's model calls
    def default_shape(self) -> tuple[int, int, int] | None:
        """The input (H, W, C) the model is fed when no image decides it (its own, else 224x224)."""
        return self._default_shape()

    def layer_shape(self, c) -> list | None:
        """Conv ``c``'s (H, W, C) at :meth:`default_shape`."""
        return self._layer_shape(c)

    @on_model_thread
    def gradients(self, x: np.ndarray, targets, **precision):
        """The adapter's gradient primitive, on the model thread (one optimisation step of the patterns panel:
        :mod:`featuremaps.explore.patterns`; ``precision="bfloat16"`` where the adapter has it)."""
        return self.adapter.gradients(x, targets, **precision)

    @on_model_thread
    def forward_layer(self, x: np.ndarray, name: str) -> np.ndarray:
        """Conv ``name``'s maps (B, h, w, C) for the preprocessed batch ``x``."""
        maps, _ = self.adapter.forward(x, [name])
        return maps[name]

    @on_model_thread
    def layer_map(self, image_id: str, label: str) -> tuple[np.ndarray, np.ndarray]:
        """``(shown, maps)``: the image as the network saw it (RGB uint8) and conv ``label``'s maps (h, w, C),
        from the image's cached analysis, else from one forward pass to that layer (nothing cached: a scan of
        many images for exemplars must not push the page's images out of the cache)."""
        a = self.cache.get(image_id)
        if a is not None:
            return a.prep.shown, a.maps[label]
        s = self.source(image_id)
        prep, _ = self._prepare(s, self._rgb(s))
        return prep.shown, self.forward_layer(prep.x[None], self.by_label[label].name)[0]

    # ------------------------------------------------------------ CAM
    @on_model_thread
    def cam(self, image_id: str, spec: str, method: str = "gradcam", cls: str | None = None):
        """A CAM of any class and method at any conv layer (kept with the image's analysis)."""
        a = self.analyse(image_id)
        label = self.layer(spec)
        self.choice(method, tuple(CAM_METHODS), "method")
        try:
            check_methods(self.adapter, [method])  # one this framework cannot do: the line saying which can
        except UserError as e:
            raise BadRequest(str(e)) from None
        if self.n_classes is None:
            raise BadRequest(f"model '{self.lm.name}' has no (batch, classes) output, so no CAMs")
        key = (label, method, None if cls in (None, "") else str(cls))
        res = a.cams.get(key)
        if res is None:
            res = compute_cam(
                self.adapter,  # the session's adapter: its cut and compiled gradient step serve every request
                a.prep.x,
                method,
                layer=self.by_label[label].name,
                class_index=cls,
                classes=self.lm.classes,
            )
            if len(a.cams) >= MAX_CAMS:
                a.cams.pop(next(iter(a.cams)))
            a.cams[key] = res
        return a, res

    @on_model_thread
    def cam_info(self, image_id, spec, method="gradcam", cls=None) -> dict:
        _, res = self.cam(image_id, spec, method, cls)
        names = self.class_names()
        return {
            "layer": res.layer.label,
            "layer_name": res.layer.name,
            "method": res.method,
            "class_index": res.class_index,
            "class": names[res.class_index] if res.class_index < len(names) else str(res.class_index),
            "probability": res.probability,
            "score": res.score,
            "random_weights": self.random_weights,
        }

    @on_model_thread
    def cam_png(self, image_id, spec, method="gradcam", cls=None, alpha: float = 0.45, cmap: str = "jet") -> bytes:
        if not 0.0 <= alpha <= 1.0:
            raise BadRequest(f"alpha {alpha} is outside 0-1")
        self.cmap(cmap)
        a, res = self.cam(image_id, spec, method, cls)
        key = (res.layer.label, method, None if cls in (None, "") else str(cls), float(alpha), cmap)
        data = a.cam_pngs.get(key)
        if data is None:
            data = encode_png(overlay(a.prep.shown, res.heatmap_up, cmap=cmap, alpha=alpha))
            if len(a.cam_pngs) >= MAX_CAMS:
                a.cam_pngs.pop(next(iter(a.cam_pngs)))
            a.cam_pngs[key] = data
        return data
