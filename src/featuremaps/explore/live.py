"""The explorer's live camera: one tab's stream of frames through the model, newest first.

The page sends camera frames (raw pixels at the size the model needs, or any image file) over a WebSocket; each
is face-cropped (the emotion model), run through the network once and answered with the prediction, the current
layer's grid (one page of channels, the sprite the page draws anyway) and, when asked, a CAM. Latency wins over
throughput: a :class:`LiveStream` holds **one** waiting frame, and a newer one replaces it (the older is dropped,
never queued), so a slow model answers the latest picture at a lower rate instead of falling behind. Everything
here is free of any web framework; the socket itself is in :mod:`featuremaps.explore.app`.
"""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from featuremaps.cam import overlay
from featuremaps.cam.engine import check_methods, compute_cam, resolve_class
from featuremaps.errors import UserError
from featuremaps.explore.session import (
    GRID_COLS,
    MAX_PER_PAGE,
    SORTS,
    BadRequest,
    Explorer,
    TooLarge,
)
from featuremaps.faces import FaceBox, crop_face, detect_faces
from featuremaps.images import load_image
from featuremaps.io import encode_png
from featuremaps.pipeline import EMOTION_SIDE, describe_prediction, prepare, sees_centre
from featuremaps.render import NORM_MODES, apply_colormap, colormap, fit_size, quantise, resize_maps

#: one frame's bytes at most (the page's raw frames are 60-200 kB, a 1080p JPEG well under 1 MiB): over it, an
#: error for that frame and the stream goes on
MAX_FRAME_BYTES = 4 * 2**20
#: one frame's pixels at most (refused from the header, before decoding)
MAX_FRAME_PIXELS = 4_000_000
#: the short side the page scales frames to for a face-cropping model: enough to find a face and crop it at
#: more than the model's 48 px
FACE_FRAME_SIDE = 240
#: detection on at most this many pixels on the long side; a face is looked for from this fraction of the short
#: side (a face at a webcam is large)
DETECT_SIDE = 200
DETECT_MIN_FRACTION = 0.12


#: a raw frame: this magic, then width and height (uint16, big-endian), channels (1: gray, 3: RGB), 3 zero
#: bytes, then the pixels row by row. The page sends these (no JPEG encoding in the page, no decoding here:
#: ~15 ms less a frame on 2 shared cores); image files (JPEG, PNG, ...) are taken too.
RAW_MAGIC = b"FMR1"


def raw_frame(pixels: np.ndarray) -> bytes:
    """A :data:`RAW_MAGIC` frame of (H, W) gray or (H, W, 3) RGB uint8 pixels (what the page sends)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    c = 1 if a.ndim == 2 else a.shape[2]
    return RAW_MAGIC + struct.pack(">HHB3x", a.shape[1], a.shape[0], c) + a.tobytes()


def decode_frame(data: bytes, n: int) -> np.ndarray:
    """Frame ``n``'s RGB uint8 pixels: a :data:`RAW_MAGIC` frame, or an image file; a UserError naming the frame
    and what is wrong otherwise."""
    if not data:
        raise BadRequest(f"frame {n} is empty; send JPEG or PNG bytes")
    if data[:4] != RAW_MAGIC:
        return load_image(io.BytesIO(data), max_pixels=MAX_FRAME_PIXELS, name=f"frame {n}")
    if len(data) < 12:
        raise BadRequest(f"frame {n} is a raw frame cut short in its header")
    w, h, c = struct.unpack(">HHB", data[4:9])
    if c not in (1, 3) or not w or not h or w * h > MAX_FRAME_PIXELS:
        raise BadRequest(
            f"frame {n} is a raw frame of {w}x{h}x{c}: it must be 1-{MAX_FRAME_PIXELS} pixels, 1 or 3 channels"
        )
    if len(data) != 12 + w * h * c:
        raise BadRequest(f"frame {n} is a raw {w}x{h}x{c} frame of {len(data) - 12} bytes, not {w * h * c}")
    a = np.frombuffer(data, np.uint8, offset=12).reshape(h, w, c)
    return np.repeat(a, 3, axis=2) if c == 1 else a


def frame_side(ex: Explorer) -> int:
    """The short side the page scales camera frames to for ``ex``'s model: enough to find and crop a face
    (face-cropping models), else the model's input side (a frame is centre-cropped to it), 224 px when free."""
    if ex.crops_faces:
        return FACE_FRAME_SIDE
    shape = ex.input_shape or ex.lm.input_shape
    sides = [int(d) for d in (shape or ())[:2] if d]
    return max(sides) if len(sides) == 2 else 224


def seen_box(ex: Explorer, frame_hw: tuple[int, int], box: FaceBox | None, shape: tuple) -> list[float]:
    """The part of the frame the model saw, ``[x, y, w, h]`` in frame pixels (a CAM is laid over the video
    there): the face's crop (:func:`~featuremaps.faces.crop_face`'s square), or the centre crop that
    :func:`~featuremaps.images.fit_to` takes to the model's aspect ratio; for an emotion model trained on the
    face's centre (``--crop``), the centre part of it, as :func:`~featuremaps.pipeline.prepare` feeds it."""
    H, W = frame_hw
    th, tw = int(shape[0]), int(shape[1])
    if box is not None:
        side = max(box.w, box.h) * 1.3  # crop_face's 15% margin each side
        x, y = box.x + box.w / 2 - side / 2, box.y + box.h / 2 - side / 2
        w = h = side
    else:
        scale = max(tw / W, th / H)
        w, h = round(tw / scale), round(th / scale)
        x, y = (W - w) // 2, (H - h) // 2
    if sees_centre(ex.lm, (th, tw)):
        f = th / EMOTION_SIDE
        x, y, w, h = x + w * (1 - f) / 2, y + h * (1 - f) / 2, w * f, h * f
    return [round(float(v), 1) for v in (x, y, w, h)]


def heat_rgba(heat01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] heatmap as RGBA to lay over live video: coloured by ``cmap``, opaque as it is hot (alpha
    ``210 * heat``: where the class score does not look, nothing covers the picture)."""
    heat = np.clip(np.asarray(heat01, np.float32), 0.0, 1.0)
    rgb = apply_colormap(heat, colormap(cmap))
    alpha = (210 * heat + 0.5).astype(np.uint8)  # cold: the video shows through untouched
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def frame_channels(ex: Explorer) -> int:
    """1 when ``ex``'s model sees gray images (the page then sends gray frames, a third of the bytes), else 3."""
    shape = ex.input_shape or ex.lm.input_shape
    return 1 if shape and len(shape) == 3 and shape[2] == 1 else 3


def pack(header: dict, parts: list[tuple[str, str, bytes]]) -> bytes:
    """One binary message: a 4-byte big-endian header length, the header (JSON, UTF-8) naming each part
    (``{"name", "type", "length"}``, in order), then the parts' bytes."""
    header = {**header, "parts": [{"name": n, "type": t, "length": len(b)} for n, t, b in parts]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([len(head).to_bytes(4, "big"), head, *(b for _, _, b in parts)])


def unpack(message: bytes) -> tuple[dict, dict[str, bytes]]:
    """The header and parts of a :func:`pack` message (for tests and clients written in Python)."""
    n = int.from_bytes(message[:4], "big")
    header = json.loads(message[4 : 4 + n])
    parts, at = {}, 4 + n
    for p in header["parts"]:
        parts[p["name"]] = message[at : at + p["length"]]
        at += p["length"]
    return header, parts


def y4m_clip(rgb: np.ndarray, frames: int = 30, fps: int = 30, sway: int = 6) -> bytes:
    """A YUV4MPEG2 clip (4:2:0, full-range BT.601) of ``rgb`` for Chromium's fake camera
    (``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=clip.y4m``, which loops it): the
    live camera's tests, benchmark and screenshot run without a camera. The picture sways ``sway`` px left and
    right over the clip, so consecutive frames differ as a face before a webcam does.

    Args:
        rgb: (H, W, 3) uint8; odd sides lose their last row or column (4:2:0 needs even ones).
        frames: frames in the clip.
        fps: the frame rate written in the header.
        sway: the horizontal sway's amplitude in pixels.
    """
    rgb = np.asarray(rgb, dtype=np.float32)[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2, :3]
    h, w = rgb.shape[:2]
    out = [f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode()]
    for i in range(int(frames)):
        dx = int(round(sway * math.sin(2 * math.pi * i / max(1, frames))))
        f = np.roll(rgb, dx, axis=1)
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
        sub = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
        planes = [y, sub(u), sub(v)]
        out.append(b"FRAME\n")
        out.extend(np.clip(p + 0.5, 0, 255).astype(np.uint8).tobytes() for p in planes)
    return b"".join(out)


class FaceTracker:
    """The largest face of each frame, found fast: near the last one first (a face moves little between two
    frames), in the whole frame when it is lost.

    Example::

        tracker = FaceTracker()
        box = tracker.find(frame)      # a FaceBox in frame pixels, or None
    """

    def __init__(self, side: int = DETECT_SIDE, min_fraction: float = DETECT_MIN_FRACTION):
        self.side = int(side)
        self.min_fraction = float(min_fraction)
        self.last: FaceBox | None = None

    def find(self, rgb: np.ndarray) -> FaceBox | None:
        box = self._near(rgb, self.last) if self.last is not None else None
        if box is None:
            faces = detect_faces(rgb, max_side=self.side, min_fraction=self.min_fraction, scale_factor=1.15)
            box = faces[0] if faces else None
        self.last = box
        return box

    def _near(self, rgb: np.ndarray, last: FaceBox) -> FaceBox | None:
        """The face in a window of twice the last box around it, at 0.7-1.4 times its size."""
        h, w = rgb.shape[:2]
        side = max(last.w, last.h)
        x0, y0 = max(0, last.x - side // 2), max(0, last.y - side // 2)
        x1, y1 = min(w, last.x + last.w + side // 2), min(h, last.y + last.h + side // 2)
        if min(x1 - x0, y1 - y0) < 24:
            return None
        window = rgb[y0:y1, x0:x1]
        short = min(window.shape[:2])
        # the face comes out ~48 px: the window shrinks to ~2x that, the cascade scans a few sizes
        long_side = max(window.shape[:2])
        max_side = max(48, round(long_side * 96 / max(1, 2 * side)))
        faces = detect_faces(
            window,
            max_side=min(long_side, max_side),
            min_fraction=0.7 * side / short,
            max_fraction=1.4 * side / short,
            scale_factor=1.1,
        )
        if not faces:
            return None
        f = faces[0]
        return FaceBox(f.x + x0, f.y + y0, f.w, f.h)


@dataclass(frozen=True)
class LiveSettings:
    """What the page shows of each frame: the layer, the page of channels and how it is coloured, the CAM."""

    layer: str = "C1"
    sort: str = "index"
    page: int = 0
    per_page: int = 64
    cmap: str = "viridis"
    norm: str = "map"
    cell: int = 112
    cam: bool = False
    method: str = "gradcam"
    cls: str | None = None


class LiveStream:
    """One tab's camera stream on an :class:`~featuremaps.explore.session.Explorer`: the newest frame waiting
    (a queue of one), the page's settings, the face tracker. Nothing of it outlives the socket.

    Example::

        stream = LiveStream(explorer)
        stream.configure({"layer": "C3", "cam": True})
        stream.offer(jpeg_bytes)            # a newer offer replaces a frame not yet taken
        n, data = stream.take()
        answer = explorer.submit(stream.process, n, data).result()    # pack()ed bytes
    """

    def __init__(self, ex: Explorer, max_frame_bytes: int = MAX_FRAME_BYTES):
        self.ex = ex
        self.max_frame_bytes = int(max_frame_bytes)
        self.settings = LiveSettings(layer=ex.convs[0].label if ex.convs else "C1")
        self.tracker = FaceTracker()
        self.received = 0  # frames the socket brought
        self.dropped = 0  # frames replaced by a newer one before they were taken
        self.answered = 0
        self._pending: tuple[int, bytes] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the queue of one
    def offer(self, data: bytes) -> int:
        """Keep ``data`` as the frame to run next (a waiting older one is dropped); its number on this stream.
        A frame over the size limit is refused here (TooLarge), before anything holds it."""
        with self._lock:
            self.received += 1
            n = self.received
        if len(data) > self.max_frame_bytes:
            raise TooLarge(
                f"frame {n} is {len(data) / 2**20:.1f} MiB, over the {self.max_frame_bytes / 2**20:.0f} MiB "
                "limit of a live frame; send smaller frames (the page sends 60-200 kB)"
            )
        with self._lock:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (n, data)
        return n

    def take(self) -> tuple[int, bytes] | None:
        """The newest waiting frame (its number and bytes), or None; it no longer waits."""
        with self._lock:
            item, self._pending = self._pending, None
            return item

    def close(self) -> None:
        """Forget the waiting frame and the face (the socket closed)."""
        with self._lock:
            self._pending = None
        self.tracker.last = None

    # ------------------------------------------------------------ settings
    def configure(self, values: dict) -> LiveSettings:
        """Change what the answers show (a JSON object from the page); a bad value raises BadRequest and
        changes nothing."""
        if not isinstance(values, dict):
            raise BadRequest('live settings must be a JSON object like {"layer": "C3"}')
        known = (set(LiveSettings.__dataclass_fields__) - {"cls"}) | {"class"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadRequest(f"unknown live setting(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")
        v = dict(values)
        if "class" in v:
            v["cls"] = v.pop("class")
        s = replace(self.settings, **v)
        ex = self.ex
        layer = ex.layer(str(s.layer))
        ex.choice(s.sort, SORTS, "sort")
        ex.choice(s.norm, NORM_MODES, "norm")
        ex.cmap(s.cmap)
        try:
            page, per_page = int(s.page), int(s.per_page)
        except (TypeError, ValueError):
            raise BadRequest("page and per_page must be whole numbers") from None
        if page < 0 or not 1 <= per_page <= MAX_PER_PAGE:
            raise BadRequest(f"page must be >= 0 and per_page 1-{MAX_PER_PAGE}")
        cell = ex.cell_size(s.cell)
        cls = None if s.cls in (None, "") else str(s.cls)
        if s.cam:
            ex.choice(s.method, tuple(ex.methods()), "method")
            if ex.n_classes is None:
                raise BadRequest(f"model '{ex.lm.name}' has no (batch, classes) output, so no CAMs")
            try:
                resolve_class(cls, ex.lm.classes, ex.n_classes)
            except UserError as e:
                raise BadRequest(str(e)) from None
        self.settings = replace(s, layer=layer, page=page, per_page=per_page, cell=cell, cam=bool(s.cam), cls=cls)
        return self.settings

    # ------------------------------------------------------------ one frame
    def process(self, n: int, data: bytes) -> bytes:
        """Frame ``n`` (image bytes) through the model: the :func:`pack`ed answer. A frame that is not an image
        raises a UserError naming it (the stream goes on). Run it on the explorer's worker thread
        (``explorer.submit(stream.process, n, data)``), where all its model work runs."""
        t0 = time.perf_counter()
        ex, s = self.ex, self.settings
        rgb = decode_frame(data, n)
        t_decode = time.perf_counter()
        header = {
            "frame": n,
            "received": self.received,
            "dropped": self.dropped,
            "size": [int(rgb.shape[0]), int(rgb.shape[1])],
            "face_crop": ex.crops_faces,
        }
        box = None
        if ex.crops_faces:
            box = self.tracker.find(rgb)
            if box is None:
                self.answered += 1
                ms = {"decode": 1e3 * (t_decode - t0), "face": 1e3 * (time.perf_counter() - t_decode)}
                return pack({**header, "face": None, "note": "no face in the frame", "ms": _ms(ms)}, [])
            prep = prepare(ex.lm, crop_face(rgb, box), input_shape=ex.input_shape, face_crop=False)
            prep = replace(prep, face_box=box.as_list())
        else:
            prep = prepare(ex.lm, rgb, input_shape=ex.input_shape, face_crop=False)
        t_face = time.perf_counter()
        results, preds = ex.extractor(prep.x.shape)(prep.x[None])
        t_forward = time.perf_counter()
        maps = {r.conv.label: r.maps[0] for r in results}
        probs = preds[0] if preds is not None else None
        pred = describe_prediction(probs, ex.lm.classes, top=10) if probs is not None else []
        label = s.layer if s.layer in maps else next(iter(maps))
        view, ids, sprite = self._grid(maps, label, s)
        parts = [("grid", "image/png", sprite), ("input", "image/png", encode_png(prep.shown, level=0))]
        t_grid = time.perf_counter()
        cam = None
        if s.cam and ex.n_classes is not None:
            check_methods(ex.adapter, [s.method])
            res = compute_cam(
                ex.adapter, prep.x, s.method, layer=ex.by_label[label].name, class_index=s.cls, classes=ex.lm.classes
            )
            names = ex.class_names()
            cam = {
                "layer": label,
                "layer_name": res.layer.name,
                "method": res.method,
                "class_index": res.class_index,
                "class": names[res.class_index] if res.class_index < len(names) else str(res.class_index),
                "probability": res.probability,
            }
            parts.append(("cam", "image/png", encode_png(overlay(prep.shown, res.heatmap_up, alpha=0.45), level=0)))
            parts.append(("heat", "image/png", encode_png(heat_rgba(res.heatmap_up), level=0)))
        t_cam = time.perf_counter()
        self.answered += 1
        ms = {
            "decode": 1e3 * (t_decode - t0),
            "face": 1e3 * (t_face - t_decode),
            "forward": 1e3 * (t_forward - t_face),
            "grid": 1e3 * (t_grid - t_forward),
            "cam": 1e3 * (t_cam - t_grid),
        }
        header.update(
            face=prep.face_box,
            seen=seen_box(ex, rgb.shape[:2], box, prep.x.shape),
            note="",
            input_shape=list(prep.x.shape),
            prediction=pred,
            random_weights=ex.random_weights,
            view=view,
            channels=ids,
            cam=cam,
            ms=_ms(ms),
        )
        return pack(header, parts)

    def _grid(self, maps: dict[str, np.ndarray], label: str, s: LiveSettings) -> tuple[dict, list[int], bytes]:
        """The layer's view (as :meth:`Explorer.layer_view` gives it) and one page of channels as a sprite of
        ``GRID_COLS`` tiles a row, each tile at most the map's own size (the page scales it up, pixelated)."""
        ex = self.ex
        m = maps[label]
        H, W, C = m.shape
        mean, mx, mn = m.mean(axis=(0, 1)), m.max(axis=(0, 1)), m.min(axis=(0, 1))
        order = np.arange(C) if s.sort == "index" else np.argsort(-(mean if s.sort == "mean" else mx), kind="stable")
        pages = max(1, math.ceil(C / s.per_page))
        page = min(s.page, pages - 1)
        ids = order[page * s.per_page : (page + 1) * s.per_page]
        lo_l, hi_l = float(mn.min()), float(mx.max())
        if s.norm == "global":
            lo_g = min(float(v.min()) for v in maps.values())
            hi_g = max(float(v.max()) for v in maps.values())
        else:
            lo_g, hi_g = lo_l, hi_l  # computed only when shown
        th, tw = fit_size(H, W, ex.cell_size(s.cell))
        # maps that fit a tile are sent at their own size (the page's tiles scale them up, pixelated); larger ones
        # are area-averaged down to the tile
        fits = H <= th and W <= tw
        sh, sw = (H, W) if fits else (th, tw)
        small = m[..., ids] if fits else resize_maps(m[..., ids], (sh, sw))
        if s.norm == "map":
            lo, hi = mn[ids], mx[ids]
        else:
            lo_v, hi_v = (lo_l, hi_l) if s.norm == "layer" else (lo_g, hi_g)
            lo, hi = np.full(len(ids), lo_v, np.float32), np.full(len(ids), hi_v, np.float32)
        inv = np.where(hi > lo, 1.0 / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)
        scaled = (small - lo.astype(np.float32)) * inv
        np.clip(scaled, 0.0, 1.0, out=scaled)
        # colormap indices, sent as an indexed PNG whose palette is the colormap (a third of the RGB bytes)
        tiles = quantise(scaled).transpose(2, 0, 1)  # (k, sh, sw)
        k = len(ids)
        cols = min(GRID_COLS, k)
        rows = math.ceil(k / cols)
        if rows * cols > k:
            tiles = np.concatenate([tiles, np.zeros((rows * cols - k, sh, sw), np.uint8)])
        sprite = tiles.reshape(rows, cols, sh, sw).transpose(0, 2, 1, 3).reshape(rows * sh, cols * sw)
        c = ex.by_label[label]
        zeros = float(np.count_nonzero(m == 0)) / m.size
        dead = int(np.count_nonzero((mx <= 0) & (mn >= 0)))
        view = {
            "label": label,
            "name": c.name,
            "kind": c.kind,
            "shape": [H, W, C],
            "order": order.tolist(),
            "mean": _round(mean),
            "max": _round(mx),
            "stats": {
                "mean": float(mean.mean()),
                "max": hi_l,
                "min": lo_l,
                "zero_fraction": zeros,
                "dead": dead,
                "channels": C,
            },
            "ranges": {"layer": [lo_l, hi_l], "global": [lo_g, hi_g]},
            "tile": [th, tw],
            "cols": GRID_COLS,
            "page": page,
        }
        return view, ids.tolist(), encode_png(sprite, level=0, palette=ex.cmap(s.cmap))


def _round(a: np.ndarray) -> list[float]:
    return [float(f"{v:.4g}") for v in a.tolist()]


def _ms(d: dict) -> dict:
    return {k: round(v, 2) for k, v in d.items()}


__all__ = [
    "FaceTracker",
    "LiveSettings",
    "LiveStream",
    "decode_frame",
    "frame_channels",
    "frame_side",
    "pack",
    "raw_frame",
    "unpack",
    "y4m_clip",
]
