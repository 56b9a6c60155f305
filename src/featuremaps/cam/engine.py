"""The CAM engine: one for every framework, on the model protocol (:mod:`featuremaps.frameworks`).

The adapter gives the target layer's activations ``A``, the model output and ``d score / d A`` (the score is
the pre-softmax logit where it can be reached, as in the papers, else the output); Keras computes them on the
model cut at the target layer (the body runs forward only, gradients flow through the head), PyTorch with
autograd, ONNX not at all (gradient-free methods only). The methods themselves are NumPy
(:mod:`featuremaps.cam.methods`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from featuremaps import display
from featuremaps.cam.heatmaps import heatmap_rgb, map01, overlay
from featuremaps.cam.methods import CAM_METHODS, NEEDS_GRADIENTS, NEEDS_HEAD, PASSES, parse_methods
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter
from featuremaps.maps import ConvLayer, select_layers
from featuremaps.targets import ClassScore

log = logging.getLogger(__name__)


def resolve_layer(model, spec: str | int | ConvLayer | None, input_shape=None) -> ConvLayer:
    """The target conv layer of any model, by name, C-number (``C5`` or ``5``) or glob; by default the last conv
    layer whose maps have more than one pixel (MobileNet's ``conv_preds`` after global pooling is passed over).
    A name that is a layer but not a conv layer says what it is."""
    if isinstance(spec, ConvLayer):
        return spec
    ad = adapter(model, input_shape)
    convs = ad.conv_layers(input_shape)
    try:
        shapes = ad.layer_shapes(input_shape)
    except UserError:  # a free input size the model cannot guess: no shapes, the last conv layer
        shapes = {}

    def has_extent(c):  # a 1x1 map (a classifier head's conv after global pooling): a CAM there is one pixel
        s = tuple(shapes.get(c.name) or ())
        return not (len(s) == 3 and s[0] == 1 and s[1] == 1)

    default = next((c for c in reversed(convs) if has_extent(c)), convs[-1])  # most often the last one
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "last")):
        return default
    item = f"C{spec}" if isinstance(spec, int) or str(spec).strip().isdigit() else str(spec).strip()
    n = len(convs)
    short = [c.short_name for c in convs]
    listing = ", ".join(short) if n <= 8 else ", ".join(short[:6]) + ", ..., " + ", ".join(short[-2:])
    try:
        hits = select_layers(convs, item)
    except UserError:
        kind = ad.layer_kind(item)
        if kind:
            raise UserError(
                f"layer '{item}' is a {kind}, not a convolutional layer; CAMs need a "
                f"conv layer: C1-C{n} ({listing}); the default is {default.label} {default.name}"
            ) from None
        raise UserError(
            f"no conv layer '{item}'; the model has C1-C{n} ({listing}); the default is {default.label} {default.name}"
        ) from None
    if len(hits) != 1:
        found = ", ".join(c.name for c in hits[:4])
        raise UserError(f"--layer '{item}' matches {len(hits)} layers ({found}); name one layer")
    return hits[0]


def usable_methods(model) -> list[str]:
    """The CAM methods ``model`` (any model or adapter) supports: only the gradient-free ones where there are no
    gradients (ONNX), and no Ablation-CAM where the adapter cannot re-run the network from a layer."""
    ad = adapter(model)
    return [
        m
        for m in CAM_METHODS
        if (ad.has_gradients or m not in NEEDS_GRADIENTS) and (ad.has_head_scores or m not in NEEDS_HEAD)
    ]


def check_methods(model, methods) -> None:
    """CAM methods a model cannot do (gradient methods on ONNX): one line naming those that apply."""
    ad = adapter(model)
    head = [m for m in methods if m in NEEDS_HEAD]
    if head and not ad.has_head_scores:
        raise UserError(
            f"{head[0]} re-runs the network from the target layer, which featuremaps cannot do for "
            f"{ad.framework} models of this kind; use --method {','.join(usable_methods(ad))}"
        )
    need = [m for m in methods if m in NEEDS_GRADIENTS]
    if need and not ad.has_gradients:
        raise UserError(
            f"{need[0]} needs gradients, which {ad.framework} models do not have; "
            f"use --method {','.join(usable_methods(ad))}"
        )


def resolve_class(spec: str | int | None, classes: list[str] | None, n: int) -> int | None:
    """Class index from an index or a name (``None``: the predicted class, decided later)."""
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        return None
    s = str(spec).strip()
    names = list(classes) if classes and len(classes) == n else None
    if names and s.lower() in [c.lower() for c in names]:
        return [c.lower() for c in names].index(s.lower())
    try:
        i = int(s)
    except ValueError:
        known = (", ".join(names[:10]) + (", ..." if len(names) > 10 else "")) if names else None
        what = f"one of {known}" if known else f"an index 0-{n - 1} (this model's classes have no names)"
        raise UserError(f"unknown class '{s}'; use {what}") from None
    if not 0 <= i < n:
        raise UserError(f"class {i} does not exist: the model has {n} classes, 0-{n - 1}")
    return i


# ---------------------------------------------------------------- results
@dataclass
class CamResult:
    """One map: ``heatmap`` the raw (h, w) map at the layer's resolution, ``heatmap_up`` (H, W) in [0, 1]."""

    method: str
    layer: ConvLayer
    class_index: int
    probability: float | None
    probs: np.ndarray | None
    heatmap: np.ndarray
    heatmap_up: np.ndarray
    class_name: str | None = None
    score: str = "logit"  # what was differentiated: "logit" or "output"
    extra: dict = field(default_factory=dict)
    #: the input as a picture (RGB uint8, the heatmap's size) where known: what a notebook shows under the map
    image: np.ndarray | None = field(default=None, repr=False)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        name = self.class_name or f"class {self.class_index}"
        p = f" ({display.p_equals(self.probability)})" if self.probability is not None else ""
        pic = overlay(self.image, self.heatmap_up) if self.image is not None else heatmap_rgb(self.heatmap_up)
        text = f"{self.method} map for {name}{p} at {self.layer.label} {self.layer.name}"
        return display.bundle(text, [(text, display.captioned(display.enlarged(pic), f"{name}{p}", text))])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def is_probabilities(p: np.ndarray) -> bool:
    return bool(p.min() >= 0 and np.all(np.abs(p.sum(axis=-1) - 1.0) < 1e-3))


class CamEngine:
    """One model at one target layer and input shape (built once, reused per image), any framework."""

    def __init__(self, model, input_shape: tuple[int, int, int], layer: str | int | ConvLayer | None = None):
        self.input_shape = tuple(int(d) for d in input_shape)
        self.adapter = ad = adapter(model, self.input_shape)
        self.model = model
        self.layer = resolve_layer(ad, layer, self.input_shape)
        self.score = ad.cam_score(self.input_shape, self.layer.name)
        out = tuple(ad.output_shape(self.input_shape))
        if len(out) != 2 or out[-1] is None or out[-1] < 2:
            raise UserError(
                f"model '{ad.name}' outputs shape {out}, not class scores; CAMs need a classifier with one "
                "(batch, classes) output"
            )
        self.n_classes = int(out[-1])
        log.info("CAM target %s %s (%s), score: %s", self.layer.label, self.layer.name, self.layer.kind, self.score)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs (Score-CAM's masked inputs); no gradients."""
        _, out = self.adapter.forward(np.asarray(batch, np.float32), [])
        p = np.asarray(out, np.float32)
        return p if is_probabilities(p) else softmax(p)

    def run(
        self,
        x: np.ndarray,
        methods=("gradcam",),
        class_indices: list[int] | None = None,
        classes: list[str] | None = None,
        progress=None,
        passes=None,
    ) -> list[CamResult]:
        """Maps of one preprocessed image ``x`` (H, W, C): each method for each class (default: predicted).

        ``progress(i, n, "method for class")`` before each map and at the end; ``passes(i, n, what)`` within
        Score-CAM's masked inputs and Ablation-CAM's ablated copies (see :func:`cam_results`).
        """
        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[..., None]
        methods = parse_methods(list(methods) if not isinstance(methods, str) else methods)
        check_methods(self.adapter, methods)
        self.adapter.forget()  # what it kept of an earlier call may predate new weights: kept within a run only
        name = self.layer.name
        grads = []
        if any(m in NEEDS_GRADIENTS for m in methods):  # one gradient per class, of its score w.r.t. the maps
            for c in class_indices or [None]:
                g = self.adapter.gradients(x, ClassScore(c, logit=True), wrt=name)
                grads.append(g.gradient)
            acts, raw = g.activations, g.output
            if class_indices is None:  # the class the adapter differentiated: the top of the output
                class_indices = [int(g.index) if g.index is not None else int(np.argmax(raw))]
        else:
            maps, out = self.adapter.forward(x[None], [name])
            acts, raw = maps[name][0], np.asarray(out, np.float32)[0]
        probs = raw if is_probabilities(raw) else softmax(raw)
        if class_indices is None:  # the predicted class
            class_indices = [int(np.argmax(raw))]  # raw: a softmax of tiny logits can tie in float32
        names = classes if classes and len(classes) == self.n_classes else None

        def head_scores(a_batch):  # Ablation-CAM: the model's scores with the target layer's maps replaced
            return self.adapter.head_scores(x, name, np.asarray(a_batch, np.float32))

        return cam_results(
            self,
            x,
            acts,
            probs,
            methods,
            class_indices,
            names,
            lambda j: grads[j],
            progress=progress,
            passes=passes,
            head_scores=head_scores,
        )


def cam_engine(model, input_shape, layer=None) -> CamEngine:
    """A :class:`CamEngine` (the name the products call it by)."""
    return CamEngine(model, input_shape, layer)


def cam_results(
    engine, x, acts, probs, methods, class_indices, names, gradient, progress=None, passes=None, **method_kw
) -> list[CamResult]:
    """Each method's map for each class as :class:`CamResult`s: the one loop every framework's engine ends in.

    ``gradient(j)`` is the (h, w, C) gradient for ``class_indices[j]`` (asked only of gradient methods);
    ``engine`` gives the layer, score kind and ``forward`` (Score-CAM's masked inputs). ``progress(i, n,
    "scorecam for happy")`` is called before each map and once at the end (``i == n``); ``passes(i, n,
    "scorecam for happy: masked inputs")`` within the methods that run the model many times (Score-CAM,
    Ablation-CAM), so minutes of work never pass in silence.
    """
    results = []
    scale = float(np.abs(acts).max()) if np.size(acts) else 0.0  # a map far below it is float noise
    steps = [(j, c, m) for j, c in enumerate(class_indices) for m in methods]
    for k, (j, c, m) in enumerate(steps):
        what = f"{m} for {names[c] if names else f'class {c}'}"
        if progress is not None:
            progress(k, len(steps), what)
        inner = (
            None
            if passes is None
            else (lambda i, n, what=what, m=m: passes(i, n, f"{what}: {PASSES.get(m, 'passes')}"))
        )
        g = gradient(j) if m in NEEDS_GRADIENTS else None
        h = CAM_METHODS[m](acts, g, x=x, class_index=c, predict=engine.forward, passes=inner, **method_kw)
        results.append(
            CamResult(
                m,
                engine.layer,
                int(c),
                float(probs[c]),
                probs,
                h.astype(np.float32),
                map01(h, x.shape[:2], scale),
                names[c] if names else None,
                engine.score,
            )
        )
    if progress is not None:
        progress(len(steps), len(steps), None)
    return results


class EngineCache:
    """The last few engines :func:`compute_cam` built, for its next call on the same model, input shape and layer
    (building one cuts the model and compiles its gradient: several forward passes' worth of time).

    It never keeps a model alive: while an engine waits here, each attribute of the engine and of its adapter
    that is the model holds a weak proxy instead, and the model's weak reference drops the entry when the model
    goes. Nothing is stored on the model (it pickles and saves as before). It never gives a stale map: the
    adapters read weight values as they run (Keras' cut graphs share the model's variables, torch's hooks run the
    module itself), :meth:`CamEngine.run` makes the adapter forget what it kept of an earlier image, and a model
    rebuilt in place (a torch module's ``fc`` replaced: :meth:`~featuremaps.frameworks.ModelAdapter.fingerprint`
    changes) gets a new engine. Models that take no weak reference (a path) are not cached.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(model, shape, layer):
        spec = layer.name if isinstance(layer, ConvLayer) else layer
        key = (id(model), tuple(int(d) for d in shape), spec)
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def take(self, model, shape, layer=None) -> CamEngine | None:
        """The cached engine for these arguments, taken out of the cache (with its model back), else None."""
        key = self.key(model, shape, layer)
        with self._lock:
            entry = self._entries.pop(key, None) if key is not None else None
        if entry is None:
            return None
        ref, slots, fingerprint, engine = entry
        if ref() is not model:
            return None
        for obj, name in slots:
            setattr(obj, name, model)
        return engine if engine.adapter.fingerprint() == fingerprint else None

    def give(self, model, shape, layer, engine: CamEngine) -> None:
        """Keep ``engine`` (built for these arguments) for the next :meth:`take`, holding ``model`` weakly."""
        key = self.key(model, shape, layer)
        if key is None:
            return
        try:
            ref = weakref.ref(model, lambda r, key=key: self._drop(key, r))
            proxy = weakref.proxy(model)
        except TypeError:  # a path, a session that takes no weak reference
            return
        fingerprint = engine.adapter.fingerprint()
        slots = [(obj, name) for obj in (engine, engine.adapter) for name, v in vars(obj).items() if v is model]
        for obj, name in slots:
            setattr(obj, name, proxy)
        with self._lock:
            self._entries[key] = (ref, slots, fingerprint, engine)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def _drop(self, key, ref) -> None:
        with self._lock:
            if key in self._entries and self._entries[key][0] is ref:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: :func:`compute_cam`'s engines, by model, input shape and layer
ENGINES = EngineCache()


def compute_cam(
    model,
    x: np.ndarray,
    method: str = "gradcam",
    layer: str | int | None = None,
    class_index: int | str | None = None,
    classes: list[str] | None = None,
    engine: CamEngine | None = None,
) -> CamResult:
    """One class activation map of one preprocessed image ``x`` (H, W, C) float32, for any model (Keras, a torch
    module, an ONNX session or path: the gradient-free methods only).

    ``layer``: conv layer name or C-number (default: the last conv layer); ``class_index``: index or name
    (default: the predicted class). Returns a :class:`CamResult`; the model is neither changed nor compiled.
    The engine (the model cut at the layer, its compiled gradient) is kept for the next call on the same model,
    input shape and layer (:class:`EngineCache`: the last 4, held without keeping the model alive, never stale
    after its weights change), so a loop over images pays for it once; ``engine=CamEngine(model, x.shape,
    layer)`` passes one explicitly.

    Example::

        res = compute_cam(model, x, method="gradcam++", class_index="happy", classes=EMOTIONS)
        overlay(image, res.heatmap_up)
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    (m,) = parse_methods(method) if isinstance(method, str) and "," not in method else (None,)
    if m is None:
        raise UserError("compute_cam takes one method; call it once per method")
    eng = engine or ENGINES.take(model, x.shape, layer) or CamEngine(model, x.shape, layer)
    try:
        c = resolve_class(class_index, classes, eng.n_classes)
        res = eng.run(x, [m], None if c is None else [c], classes)[0]
    finally:
        if engine is None:
            ENGINES.give(model, x.shape, layer, eng)
    res.image = display.as_rgb(x)  # what the network saw, stretched to 0-255 (its preprocessing undone roughly)
    return res
