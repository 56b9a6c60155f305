"""The CAM engine: cut the model at the target layer, run the body forward, differentiate the head.

Speed and robustness come from cutting the model at the target layer (:func:`featuremaps.extractor.split_at`):
the *body* (input -> A) runs forward only, gradients flow only through the *head* (A -> output). The score
differentiated is the pre-softmax logit when the output layer is a softmax Dense/Activation/Softmax layer (as
in the papers), else the output itself. Gradients are computed in :mod:`featuremaps.cam.gradients`, the only
backend-specific module.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

from featuremaps.cam.gradients import class_gradients
from featuremaps.cam.heatmaps import map01
from featuremaps.cam.methods import CAM_METHODS, NEEDS_GRADIENTS, PASSES, parse_methods
from featuremaps.errors import UserError
from featuremaps.extractor import split_at
from featuremaps.layers import ConvLayer, conv_layers, select_layers, walk

log = logging.getLogger(__name__)


def _has_extent(c: ConvLayer) -> bool:
    """False for a conv whose output is known to be 1x1 (a classifier head's 1x1 conv after global pooling,
    as in MobileNet and MobileNetV3): a CAM there is one pixel."""
    try:
        shape = tuple(c.layer.output.shape)
    except (AttributeError, ValueError, TypeError):  # a layer called twice, or no static shape: keep it
        return True
    return not (len(shape) == 4 and shape[1] == 1 and shape[2] == 1)


def resolve_layer(model, spec: str | int | None) -> ConvLayer:
    """The target conv layer, by name, C-number (``C5`` or ``5``) or glob; by default the last conv layer whose
    maps have more than one pixel (MobileNet's ``conv_preds`` after global pooling is passed over)."""
    convs = conv_layers(model)
    default = next((c for c in reversed(convs) if _has_extent(c)), convs[-1])  # most often the last one
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "last")):
        return default
    item = f"C{spec}" if isinstance(spec, int) or str(spec).strip().isdigit() else str(spec).strip()
    n = len(convs)
    short = [c.short_name for c in convs]
    listing = ", ".join(short) if n <= 8 else ", ".join(short[:6]) + ", ..., " + ", ".join(short[-2:])
    try:
        hits = select_layers(convs, item)
    except UserError:
        others = [
            (name, type(layer).__name__) for name, layer in walk(model) if item in (name, name.rsplit("/", 1)[-1])
        ]
        if others:
            raise UserError(
                f"layer '{item}' is a {others[0][1]}, not a convolutional layer; CAMs need a "
                f"conv layer: C1-C{n} ({listing}); the default is {default.label} {default.name}"
            ) from None
        raise UserError(
            f"no conv layer '{item}'; the model has C1-C{n} ({listing}); the default is {default.label} {default.name}"
        ) from None
    if len(hits) != 1:
        found = ", ".join(c.name for c in hits[:4])
        raise UserError(f"--layer '{item}' matches {len(hits)} layers ({found}); name one layer")
    return hits[0]


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


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def is_probabilities(p: np.ndarray) -> bool:
    return bool(p.min() >= 0 and np.all(np.abs(p.sum(axis=-1) - 1.0) < 1e-3))


class CamEngine:
    """A model cut at its target layer (built once per model, input shape and layer; reused per image)."""

    def __init__(self, model, input_shape: tuple[int, int, int], layer: str | int | ConvLayer | None = None):
        self._gradient_cache: dict = {}  # the head's compiled gradient step (TensorFlow), owned by this engine
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layer = layer if isinstance(layer, ConvLayer) else resolve_layer(model, layer)
        split = split_at(model, self.input_shape, self.layer)
        out_shape = tuple(split.output.shape)
        if len(out_shape) != 2 or out_shape[-1] is None or out_shape[-1] < 2:
            raise UserError(
                f"model '{model.name}' outputs shape {out_shape}, not class scores; CAMs need a "
                "classifier with one (batch, classes) output"
            )
        a_shape = tuple(split.activation.shape[1:])
        if len(a_shape) != 3:
            raise UserError(f"layer {self.layer.name} outputs shape {a_shape}; CAMs need an (H, W, C) map")
        self.n_classes = int(out_shape[-1])
        logits = _logits_tensor(split.producer)
        self.score = "logit" if logits is not None else "output"
        self.body = split.body_model()
        self.head = split.head_model([split.output, logits if logits is not None else split.output])
        self._forward = None
        log.info("CAM target %s %s (%s), score: %s", self.layer.label, self.layer.name, self.layer.kind, self.score)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs (Score-CAM's masked inputs); no gradients."""

        res = self.body(np.asarray(batch, np.float32), training=False)
        res = res if isinstance(res, list | tuple) else [res]
        out = self.head(list(res), training=False)
        p = ops.convert_to_numpy(out[0]).astype(np.float32)
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
        res = self.body(x[None], training=False)
        res = res if isinstance(res, list | tuple) else [res]
        res = [ops.convert_to_numpy(r).astype(np.float32) for r in res]
        acts = res[0][0]
        raw = ops.convert_to_numpy(self.head(res, training=False)[0]).astype(np.float32)[0]
        probs = raw if is_probabilities(raw) else softmax(raw)
        if class_indices is None:
            class_indices = [int(np.argmax(probs))]
        grads = None
        if any(m in NEEDS_GRADIENTS for m in methods):
            _, grads = class_gradients(self.head, res, class_indices, cache=self._gradient_cache)
        names = classes if classes and len(classes) == self.n_classes else None

        def head_scores(a_batch):  # Ablation-CAM: the score differentiated, for a batch of activations
            skips = [np.repeat(s, len(a_batch), axis=0) for s in res[1:]]
            out = self.head([np.asarray(a_batch, np.float32), *skips], training=False)
            return ops.convert_to_numpy(out[1]).astype(np.float32)

        return cam_results(
            self,
            x,
            acts,
            probs,
            methods,
            class_indices,
            names,
            lambda j: grads[j][0],
            progress=progress,
            passes=passes,
            head_scores=head_scores,
        )


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


def _logits_tensor(producer):
    """The pre-softmax tensor of a softmax output layer (Dense, Activation or Softmax), else None."""
    if producer is None:
        return None
    layer, args, kwargs = producer
    act = getattr(layer, "activation", None)
    is_softmax = getattr(act, "__name__", "") == "softmax"
    if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation) and is_softmax):
        return args[0] if args else None
    if isinstance(layer, keras.layers.Dense) and is_softmax and not kwargs and len(args) == 1:
        return _dense_logits_layer()(layer)(args[0])
    return None


_DENSE_LOGITS = None


def _dense_logits_layer():
    global _DENSE_LOGITS
    if _DENSE_LOGITS is None:

        class DenseLogits(keras.layers.Layer):
            """``x @ kernel + bias`` of a softmax Dense layer (its weights, shared): its logits."""

            def __init__(self, dense, **kw):
                # TF name scopes take [A-Za-z0-9_.-] only: a layer called "class scores" must not break the CAM
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dense.name)
                super().__init__(name=f"featuremaps_logits_{safe}", dtype="float32", **kw)
                self.dense = dense

            def call(self, x):
                z = ops.matmul(ops.cast(x, "float32"), ops.cast(self.dense.kernel, "float32"))
                if self.dense.bias is not None:
                    z = z + ops.cast(self.dense.bias, "float32")
                return z

            def compute_output_shape(self, shape):
                return (*shape[:-1], self.dense.units)

        _DENSE_LOGITS = DenseLogits
    return _DENSE_LOGITS


def compute_cam(
    model,
    x: np.ndarray,
    method: str = "gradcam",
    layer: str | int | None = None,
    class_index: int | str | None = None,
    classes: list[str] | None = None,
    engine: CamEngine | None = None,
) -> CamResult:
    """One class activation map of one preprocessed image ``x`` (H, W, C) float32.

    ``layer``: conv layer name or C-number (default: the last conv layer); ``class_index``: index or name
    (default: the predicted class). Returns a :class:`CamResult`; the model is neither changed nor compiled.
    Each call cuts the model anew; for many images of one shape pass ``engine=CamEngine(model, x.shape, layer)``
    to reuse the cut (nothing is cached behind the caller's back, so no model outlives its user).

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
    eng = engine if engine is not None else CamEngine(model, x.shape, layer)
    c = resolve_class(class_index, classes, eng.n_classes)
    return eng.run(x, [m], None if c is None else [c], classes)[0]
