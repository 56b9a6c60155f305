"""The explorer's "what it looks for" panel: a channel's feature visualization (:mod:`featuremaps.patterns`)
and its exemplars among the images the page has, computed in the background with progress.

One :class:`PatternJobs` per model (:class:`~featuremaps.explore.session.Explorer`). A job runs on a thread of its
own; every model call it makes (one batched gradient a step, one forward an image) goes to the explorer's model
thread as a separate task, so the page's maps, hovers and the live camera wait for at most one step, never for
the whole optimisation (VGG16's ``block5_conv3`` at 224 px takes tens of seconds on two cores). The NumPy work of
a step (the Fourier image, the transforms and their adjoints) stays on the job's thread.

* Results are cached: the visualization per (layer, channel, steps, size, seed), bounded by bytes; each image's
  per-layer maximum and its position per channel (tiny), so another channel of a layer costs no forward pass;
  the exemplars per (layer, channel, the images' ids).
* One job at a time per model: a new request for another channel cancels the running one at its next step
  (the page shows the latest channel asked for); a request for a channel already computed answers at once.
* A model without gradients (ONNX) gets its exemplars only, and a note saying why.
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from featuremaps.errors import UserError
from featuremaps.explore.cache import ByteLRU
from featuremaps.explore.session import BadRequest, Explorer, NotFound
from featuremaps.io import encode_png
from featuremaps.patterns.compute import resolve_precision
from featuremaps.patterns.exemplars import Exemplar
from featuremaps.patterns.optimise import STEPS, optimise
from featuremaps.targets import ChannelMean

#: the most steps a request may ask for (the command line's default is 256)
MAX_STEPS = 2048
#: exemplars shown per channel
EXEMPLARS = 4
#: images of the page scanned for exemplars at most (the first ones, command line then uploads)
MAX_IMAGES = 200
#: the side the visualization is enlarged to (nearest, an integer factor) for display
DISPLAY_SIDE = 256
#: bytes of visualizations kept (a 224 px RGB one is 0.6 MB as float32 plus its PNG)
RESULT_BYTES = 64 * 2**20
#: (layer, image) entries of per-channel maxima kept
STATS_KEEP = 4096
#: channels' exemplar lists kept
EXEMPLARS_KEEP = 256


class Cancelled(Exception):
    """A job another request superseded (raised from its progress callback, between two steps)."""


@dataclass
class Visual:
    """One channel's visualization: ``image`` (H, W, C) float32 in [0, 1] as the model sees it before its
    preprocessing, ``value`` the objective on it, ``first`` the objective at the first step, ``max`` the
    channel's largest activation on it (the exemplars' measure), ``png`` its picture enlarged for display."""

    image: np.ndarray
    value: float
    first: float
    max: float
    png: bytes

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + len(self.png))


@dataclass
class Job:
    key: tuple
    state: str = "queued"  # queued, running, done, cancelled, error
    done: int = 0
    total: int = 0
    phase: str = "waiting for the model"
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)


def display_png(image: np.ndarray, side: int = DISPLAY_SIDE) -> bytes:
    """``image`` (H, W, C) in [0, 1] as an RGB PNG enlarged (nearest, an integer factor) towards ``side``."""
    u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if u8.shape[-1] == 1:
        u8 = np.repeat(u8, 3, axis=-1)
    k = max(1, side // max(u8.shape[:2]))
    return encode_png(np.repeat(np.repeat(u8, k, axis=0), k, axis=1))


def _data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


class PatternJobs:
    """The "what it looks for" panel's work for one model: start a job, ask how far it is, get the picture.

    Example::

        jobs = PatternJobs(explorer)
        jobs.start("C5", 12, steps=256)        # at once: {"state": "queued", ...}
        jobs.status("C5", 12, steps=256)       # {"state": "running", "done": 40, "total": 257, ...}
        jobs.png("C5", 12, steps=256)          # when done: the PNG bytes
    """

    def __init__(self, ex: Explorer, result_bytes: int = RESULT_BYTES):
        self.ex = ex
        self.results = ByteLRU(result_bytes)
        self.stats: OrderedDict[tuple, tuple] = OrderedDict()  # (label, image id) -> (max (C,), y (C,), x (C,))
        self.exemplars: OrderedDict[tuple, list[Exemplar]] = OrderedDict()  # (label, channel, ids) -> best first
        self.jobs: dict[tuple, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        # every model call of a job runs on the explorer's model thread, one call a task
        self._model = SimpleNamespace(gradients=ex.gradients, bfloat16=bool(getattr(ex.adapter, "bfloat16", False)))
        self._precision = resolve_precision("auto", ex.adapter)

    # ------------------------------------------------------------ parameters
    def key(self, layer: str, channel, steps: int = STEPS, size: int | None = None, seed: int = 0) -> tuple:
        """``(label, channel, steps, (H, W, C), seed)``, every part checked (a one-line 4xx otherwise)."""
        label = self.ex.layer(layer)
        n = self._channels(label)
        try:
            c = int(channel)
        except (TypeError, ValueError):
            raise BadRequest(f"channel '{channel}' is not a number; use 0-{n - 1}") from None
        if not 0 <= c < n:
            raise NotFound(f"channel {c} does not exist in {label}: it has {n} channels, 0-{n - 1}")
        if not 1 <= int(steps) <= MAX_STEPS:
            raise BadRequest(f"steps {steps} is outside 1-{MAX_STEPS} (256 by default)")
        return label, c, int(steps), self._shape(size), int(seed)

    def _channels(self, label: str) -> int:
        c = self.ex.by_label[label]
        shape = self.ex.layer_shape(c)
        return int(shape[-1]) if shape else int(c.channels or 0)

    def _shape(self, size: int | None) -> tuple[int, int, int]:
        """The image optimised: the model's own input size; ``size`` (16-512) only where the model leaves it free."""
        if size is None:
            shape = self.ex.default_shape()
            if shape is None:
                raise BadRequest(f"model '{self.ex.lm.name}' has no input size to optimise at; pass size=224")
            return tuple(int(v) for v in shape)
        if not 16 <= int(size) <= 512:
            raise BadRequest(f"size {size} is outside 16-512 pixels")
        own = [*(self.ex.lm.input_shape or ()), None, None][:2]
        if own[0] is not None and own[1] is not None and (own[0], own[1]) != (int(size), int(size)):
            raise BadRequest(
                f"model '{self.ex.lm.name}' takes {own[0]}x{own[1]} input; drop size (it is for models of free size)"
            )
        try:
            return tuple(int(v) for v in self.ex.lm.resolve_input_shape((int(size), int(size)), self.ex.input_shape))
        except UserError as e:
            raise BadRequest(str(e)) from None

    # ------------------------------------------------------------ requests
    def start(self, layer: str, channel, steps: int = STEPS, size: int | None = None, seed: int = 0) -> dict:
        """Queue the channel's job (nothing when all of it is cached) and return its status at once. Any other
        job of this model, queued or running, is cancelled: the page shows the latest channel asked for."""
        key = self.key(layer, channel, steps, size, seed)
        with self._lock:
            if self._ready(key):
                return self._answer(key)
            job = self.jobs.get(key)
            for k, other in list(self.jobs.items()):
                if k != key and other.state in ("queued", "running"):
                    other.cancel.set()
                if other.state in ("done", "cancelled", "error") and k != key:
                    del self.jobs[k]
            if job is None or job.state in ("cancelled", "error", "done"):
                job = Job(key)
                self.jobs[key] = job
                self._queue.put(job)
                self._ensure_thread()
        return self._answer(key)

    def status(self, layer: str, channel, steps: int = STEPS, size: int | None = None, seed: int = 0) -> dict:
        """Where the channel's job is: ``state`` (idle: never asked for; queued, running, done, cancelled,
        error), ``done`` / ``total`` (steps plus images scanned), and when done the objective and exemplars."""
        return self._answer(self.key(layer, channel, steps, size, seed))

    def png(self, layer: str, channel, steps: int = STEPS, size: int | None = None, seed: int = 0) -> bytes:
        key = self.key(layer, channel, steps, size, seed)
        v = self.results.get(self._vkey(key))
        if v is None:
            raise NotFound(f"{key[0]} F{key[1] + 1} has no visualization yet: POST the same path to compute it")
        return v.png

    # ------------------------------------------------------------ answers
    @staticmethod
    def _vkey(key: tuple) -> str:
        label, c, steps, shape, seed = key
        return f"{label}/{c}/{steps}/{shape[0]}x{shape[1]}x{shape[2]}/{seed}"

    def _image_ids(self) -> list[str]:
        return [im["id"] for im in self.ex.images()][:MAX_IMAGES]

    def _ekey(self, key: tuple, ids: list[str]) -> tuple:
        return key[0], key[1], tuple(ids)

    def _ready(self, key: tuple) -> bool:
        viz = not self.ex.adapter.has_gradients or self._vkey(key) in self.results
        return viz and self._ekey(key, self._image_ids()) in self.exemplars

    def _answer(self, key: tuple) -> dict:
        label, c, steps, shape, seed = key
        conv = self.ex.by_label[label]
        out = {
            "layer": label,
            "name": conv.name,
            "channel": c,
            "steps": steps,
            "size": list(shape),
            "seed": seed,
            "gradients": bool(self.ex.adapter.has_gradients),
            "random_weights": bool(self.ex.random_weights),
            "note": "" if self.ex.adapter.has_gradients else self._no_gradients(),
            "objective": "channel mean (pre-activation where the activation is fused)",
        }
        job = self.jobs.get(key)
        ready = self._ready(key)
        if ready:
            out.update(state="done", done=1, total=1, phase="")
            if job is not None and job.state == "done":
                out.update(done=job.done, total=job.total, seconds=round(job.seconds, 3))
        elif job is not None and job.state != "done":  # done but stale: images came since (new exemplars)
            out.update(state=job.state, done=job.done, total=job.total, phase=job.phase)
            if job.state == "running":
                out["elapsed"] = round(time.monotonic() - job.started, 3)
            if job.error:
                out["error"] = job.error
        else:
            out.update(state="idle", done=0, total=0, phase="")
        v = self.results.get(self._vkey(key))
        if v is not None:
            out.update(value=v.value, first=v.first, max=v.max, png=True)
        ex_list = self.exemplars.get(self._ekey(key, self._image_ids()))
        if ex_list is not None:
            out["exemplars"] = [
                {
                    "image": e.source,
                    "name": self._name(e.source),
                    "value": e.value,
                    "box": e.box,
                    "src": _data_url(e.crop),
                }
                for e in ex_list
            ]
            out["images_scanned"] = len(self._image_ids())
        return out

    def _name(self, image_id: str) -> str:
        for im in self.ex.images():
            if im["id"] == image_id:
                return im["name"]
        return image_id

    def _no_gradients(self) -> str:
        return (
            f"{self.ex.adapter.framework} models have no gradients in featuremaps: no visualization, the exemplars only"
        )

    # ------------------------------------------------------------ the job thread
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            # a daemon: a server stopped mid-job exits at once (the job is lost, nothing is written)
            self._thread = threading.Thread(target=self._loop, name="featuremaps-patterns", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job.cancel.is_set():
                job.state = "cancelled"
                continue
            job.state, job.started = "running", time.monotonic()
            try:
                self._run(job)
            except Cancelled:
                job.state, job.phase = "cancelled", "another channel was asked for"
            except UserError as e:
                job.state, job.error = "error", str(e)
            except Exception as e:  # never a dead panel: the page shows the line
                job.state, job.error = "error", f"internal error ({type(e).__name__}); see the server's terminal"
            else:
                job.state, job.phase = "done", ""
            job.seconds = time.monotonic() - job.started

    def _run(self, job: Job) -> None:
        label, c, steps, shape, seed = job.key
        conv = self.ex.by_label[label]
        ids = self._image_ids()
        missing = [i for i in ids if (label, i) not in self.stats]
        vkey = self._vkey(job.key)
        viz = self.ex.adapter.has_gradients and vkey not in self.results
        job.total = (steps + 1 if viz else 0) + len(missing) + 1

        def tick(done: int, phase: str) -> None:
            if job.cancel.is_set():
                raise Cancelled
            job.done, job.phase = done, phase

        if viz:
            tick(0, f"optimising {label} F{c + 1}")
            res = optimise(
                self._model,
                [ChannelMean(conv.name, c)],
                shape,
                self.ex.lm.preprocess_fn,
                steps,
                seed,
                progress=lambda i, n: tick(i, f"optimising {label} F{c + 1}: step {i} of {n}"),
                precision=self._precision,
            )
            image = res.images[0]
            maps = self.ex.forward_layer(self.ex.lm.preprocess_fn(image[None] * 255.0), conv.name)
            peak = float(maps[0, ..., c].max())
            first = float(res.history[0, 0]) if len(res.history) else float(res.values[0])
            self.results.put(vkey, v := Visual(image, float(res.values[0]), first, peak, display_png(image)), v.nbytes)
            tick(steps + 1, "")
        base = job.done
        shown: dict[str, np.ndarray] = {}
        for n, image_id in enumerate(missing):
            tick(base + n, f"exemplars: image {n + 1} of {len(missing)}")
            try:
                pixels, m = self.ex.layer_map(image_id, label)
            except UserError:  # an image this model cannot take (or an upload forgotten): not an exemplar
                continue
            shown[image_id] = pixels
            flat = m.reshape(-1, m.shape[-1])
            arg = flat.argmax(axis=0)
            self._keep_stats((label, image_id), (flat.max(axis=0), *np.divmod(arg, m.shape[1]), m.shape[:2]))
        tick(base + len(missing), "exemplars: the crops")
        self._keep_exemplars(job.key, ids, shown)
        tick(job.total, "")

    def _keep_stats(self, k: tuple, value: tuple) -> None:
        with self._lock:
            self.stats[k] = value
            self.stats.move_to_end(k)
            while len(self.stats) > STATS_KEEP:
                self.stats.popitem(last=False)

    def _keep_exemplars(self, key: tuple, ids: list[str], shown: dict[str, np.ndarray]) -> None:
        """The channel's top images among ``ids``, cropped to the receptive field around their maximum (the box
        the page draws on hover; the whole image where the framework gives no field)."""
        label, c = key[0], key[1]
        scored = []
        for i in ids:
            s = self.stats.get((label, i))
            if s is not None:
                scored.append((float(s[0][c]), i, int(s[1][c]), int(s[2][c])))
        scored.sort(key=lambda r: -r[0])
        f = self.ex.rf.fields.get(label)
        out = []
        for value, image_id, y, x in scored[:EXEMPLARS]:
            pixels = shown.get(image_id)
            if pixels is None:
                try:
                    pixels = self.ex.layer_map(image_id, label)[0]
                except UserError:
                    continue
            h, w = pixels.shape[:2]
            box = f.box(y, x, h, w) if f is not None else {"top": 0, "left": 0, "bottom": h - 1, "right": w - 1}
            crop = pixels[box["top"] : box["bottom"] + 1, box["left"] : box["right"] + 1]
            out.append(Exemplar(np.ascontiguousarray(crop), value, image_id, box))
        with self._lock:
            k = self._ekey(key, ids)
            self.exemplars[k] = out
            self.exemplars.move_to_end(k)
            while len(self.exemplars) > EXEMPLARS_KEEP:
                self.exemplars.popitem(last=False)
