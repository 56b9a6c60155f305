"""Class activation maps: why did the network decide what it decided?

Four methods, each one small function of a layer's activations ``A`` (h, w, C) and the gradients ``G`` of
the class score with respect to them (or, for Score-CAM, of scores of masked inputs):

* Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017): ``ReLU(sum_k mean_ij(G_k) A_k)``.
* Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
  Convolutional Networks", WACV 2018): pixel-wise weights ``alpha`` from second and third powers of G.
* Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
  Networks", CVPR Workshops 2020): each channel, upsampled and scaled to [0, 1], masks the input; the
  class probability of the masked input weighs the channel. Gradient-free; masked inputs are batched.
* LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
  IEEE TIP 2021): ``ReLU(sum_k ReLU(G_k) * A_k)``, element-wise.

Speed and robustness come from cutting the model at the target layer (:func:`featuremaps.extract.split_at`):
the *body* (input -> A) runs forward only, gradients flow only through the *head* (A -> output). The
score differentiated is the pre-softmax logit when the output layer is a softmax Dense/Activation/Softmax
layer (as in the papers), else the output itself. Gradients are computed in :mod:`featuremaps.gradients`,
the only backend-specific module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError
from .layers import ConvLayer, conv_layers, select_layers, walk

log = logging.getLogger(__name__)

EPS = 1e-7
SCORECAM_BATCH = 32


# ---------------------------------------------------------------- the methods
def gradcam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): channel weights are the spatially averaged gradients."""
    weights = grads.mean(axis=(0, 1))  # (C,)
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def gradcam_pp(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score, so only first gradients).

    ``alpha_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3)``; channel weight ``sum_ij alpha_ij^k ReLU(g_ij^k)``.
    """
    g2 = grads ** 2
    g3 = g2 * grads
    denom = 2.0 * g2 + acts.sum(axis=(0, 1), keepdims=True) * g3
    alpha = np.where(grads != 0.0, g2 / np.where(np.abs(denom) > EPS, denom, EPS), 0.0)
    weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(0, 1))
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def layercam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021): element-wise positive gradients times activations, summed over C."""
    return np.maximum((np.maximum(grads, 0.0) * acts).sum(axis=-1), 0.0).astype(np.float32)


def scorecam_masks(acts: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Score-CAM's masks: each non-constant channel upsampled (bilinear) to ``size`` and scaled to [0, 1].

    Returns ``(masks (k, H, W), channel indices (k,))``; constant channels carry no spatial information and
    are skipped, as in the authors' code.
    """
    lo, hi = acts.min(axis=(0, 1)), acts.max(axis=(0, 1))
    keep = np.flatnonzero(hi - lo > EPS)
    masks = np.empty((len(keep), *size), np.float32)
    for j, k in enumerate(keep):
        m = upsample(acts[..., k], size)
        mlo, mhi = m.min(), m.max()
        masks[j] = (m - mlo) / (mhi - mlo) if mhi > mlo else 0.0
    return masks, keep


def scorecam(acts: np.ndarray, grads=None, *, x: np.ndarray, class_index: int, predict, **_) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): channel weights are the softmax class scores of the input masked by each
    channel (upsampled, scaled to [0, 1]); ``predict`` maps a batch of inputs to class probabilities.
    """
    masks, keep = scorecam_masks(acts, x.shape[:2])
    weights = np.zeros(acts.shape[-1], np.float32)
    for i in range(0, len(keep), SCORECAM_BATCH):
        m = masks[i:i + SCORECAM_BATCH]
        probs = predict(x[None] * m[..., None])
        weights[keep[i:i + SCORECAM_BATCH]] = probs[:, class_index]
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


#: method name -> function; gradient methods take (acts, grads), Score-CAM also the input and a predictor.
CAM_METHODS = {"gradcam": gradcam, "gradcam++": gradcam_pp, "scorecam": scorecam, "layercam": layercam}
NEEDS_GRADIENTS = {"gradcam", "gradcam++", "layercam"}


# ---------------------------------------------------------------- maps as pictures
def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) float32, bilinear (pixel centres aligned)."""
    import cv2

    m = np.asarray(m, np.float32)
    if m.shape == tuple(size):
        return m.copy()
    return cv2.resize(m, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def normalise01(m: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes zeros."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo)).astype(np.float32) if hi - lo > EPS else np.zeros_like(m)


def overlay(rgb_uint8: np.ndarray, heatmap01: np.ndarray, cmap: str = "jet",
            alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (any size; resized bilinearly) over an RGB uint8 image (``alpha`` of heat)."""
    from .render import apply_colormap, colormap

    rgb = np.asarray(rgb_uint8)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    heat = np.clip(upsample(heatmap01, rgb.shape[:2]), 0.0, 1.0)
    colour = apply_colormap(heat, colormap(cmap)).astype(np.float32)
    out = alpha * colour + (1.0 - alpha) * rgb[..., :3].astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap_rgb(heatmap01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] map as RGB uint8 through a colormap."""
    from .render import apply_colormap, colormap

    return apply_colormap(np.clip(heatmap01, 0.0, 1.0), colormap(cmap))


# ---------------------------------------------------------------- choosing layer, class, method
def parse_methods(spec: str | list[str] | None) -> list[str]:
    """``"gradcam,scorecam"`` -> ``["gradcam", "scorecam"]``; unknown names raise a UserError."""
    items = spec if isinstance(spec, list | tuple) else (spec or "gradcam").split(",")
    out = []
    for m in (s.strip().lower() for s in items):
        if not m:
            continue
        m = {"grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++",
             "score-cam": "scorecam", "layer-cam": "layercam"}.get(m, m)
        if m not in CAM_METHODS:
            raise UserError(f"unknown CAM method '{m}'; use one or more of {', '.join(CAM_METHODS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise UserError(f"--method is empty; use one or more of {', '.join(CAM_METHODS)}")
    return out


def resolve_layer(model, spec: str | int | None) -> ConvLayer:
    """The target conv layer: the last one by default, else by name, C-number (``C5`` or ``5``) or glob."""
    convs = conv_layers(model)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "last")):
        return convs[-1]
    item = f"C{spec}" if isinstance(spec, int) or str(spec).strip().isdigit() else str(spec).strip()
    n = len(convs)
    short = [c.short_name for c in convs]
    listing = ", ".join(short) if n <= 8 else ", ".join(short[:6]) + ", ..., " + ", ".join(short[-2:])
    try:
        hits = select_layers(convs, item)
    except UserError:
        others = [(name, type(layer).__name__) for name, layer in walk(model)
                  if item in (name, name.rsplit("/", 1)[-1])]
        if others:
            raise UserError(f"layer '{item}' is a {others[0][1]}, not a convolutional layer; CAMs need a "
                            f"conv layer: C1-C{n} ({listing}); the default is the last, C{n} "
                            f"{convs[-1].name}") from None
        raise UserError(f"no conv layer '{item}'; the model has C1-C{n} ({listing}); the default is the "
                        f"last, C{n} {convs[-1].name}") from None
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


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _is_probabilities(p: np.ndarray) -> bool:
    return bool(p.min() >= 0 and np.all(np.abs(p.sum(axis=-1) - 1.0) < 1e-3))


class CamEngine:
    """A model cut at its target layer (built once per model, input shape and layer; reused per image)."""

    def __init__(self, model, input_shape: tuple[int, int, int], layer: str | int | ConvLayer | None = None):
        from .extract import split_at

        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layer = layer if isinstance(layer, ConvLayer) else resolve_layer(model, layer)
        split = split_at(model, self.input_shape, self.layer.layer)
        out_shape = tuple(split.output.shape)
        if len(out_shape) != 2 or out_shape[-1] is None or out_shape[-1] < 2:
            raise UserError(f"model '{model.name}' outputs shape {out_shape}, not class scores; CAMs need a "
                            "classifier with one (batch, classes) output")
        a_shape = tuple(split.activation.shape[1:])
        if len(a_shape) != 3:
            raise UserError(f"layer {self.layer.name} outputs shape {a_shape}; CAMs need an (H, W, C) map")
        self.n_classes = int(out_shape[-1])
        logits = _logits_tensor(split.producer)
        self.score = "logit" if logits is not None else "output"
        self.body = split.body_model()
        self.head = split.head_model([split.output, logits if logits is not None else split.output])
        self._forward = None
        log.info("CAM target %s %s (%s), score: %s", self.layer.label, self.layer.name, self.layer.kind,
                 self.score)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs (Score-CAM's masked inputs); no gradients."""
        from keras import ops

        res = self.body(np.asarray(batch, np.float32), training=False)
        res = res if isinstance(res, list | tuple) else [res]
        out = self.head(list(res), training=False)
        p = ops.convert_to_numpy(out[0]).astype(np.float32)
        return p if _is_probabilities(p) else _softmax(p)

    def run(self, x: np.ndarray, methods=("gradcam",), class_indices: list[int] | None = None,
            classes: list[str] | None = None) -> list[CamResult]:
        """Maps of one preprocessed image ``x`` (H, W, C): each method for each class (default: predicted)."""
        from keras import ops

        from .gradients import class_gradients

        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[..., None]
        methods = parse_methods(list(methods) if not isinstance(methods, str) else methods)
        res = self.body(x[None], training=False)
        res = res if isinstance(res, list | tuple) else [res]
        res = [ops.convert_to_numpy(r).astype(np.float32) for r in res]
        acts = res[0][0]
        raw = ops.convert_to_numpy(self.head(res, training=False)[0]).astype(np.float32)[0]
        probs = raw if _is_probabilities(raw) else _softmax(raw)
        if class_indices is None:
            class_indices = [int(np.argmax(probs))]
        grads = None
        if any(m in NEEDS_GRADIENTS for m in methods):
            _, grads = class_gradients(self.head, res, class_indices)
        names = classes if classes and len(classes) == self.n_classes else None
        results = []
        for j, c in enumerate(class_indices):
            for m in methods:
                fn = CAM_METHODS[m]
                if m in NEEDS_GRADIENTS:
                    h = fn(acts, grads[j][0])
                else:
                    h = fn(acts, None, x=x, class_index=c, predict=self.forward)
                results.append(CamResult(m, self.layer, int(c), float(probs[c]), probs, h.astype(np.float32),
                                         normalise01(upsample(h, x.shape[:2])),
                                         names[c] if names else None, self.score))
        return results


def _logits_tensor(producer):
    """The pre-softmax tensor of a softmax output layer (Dense, Activation or Softmax), else None."""
    import keras

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
        import keras
        from keras import ops

        class DenseLogits(keras.layers.Layer):
            """``x @ kernel + bias`` of a softmax Dense layer (its weights, shared): its logits."""

            def __init__(self, dense, **kw):
                super().__init__(name=f"featuremaps_logits_{dense.name}", dtype="float32", **kw)
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


_ENGINES: dict[tuple, CamEngine] = {}


def engine_for(model, input_shape, layer=None) -> CamEngine:
    """A cached :class:`CamEngine` (at most 2 kept: a report calls :func:`compute_cam` once per image)."""
    lkey = layer.name if isinstance(layer, ConvLayer) else layer
    key = (id(model), tuple(int(d) for d in input_shape), lkey)
    eng = _ENGINES.get(key)
    if eng is None or eng.model is not model:
        if len(_ENGINES) >= 2:
            _ENGINES.pop(next(iter(_ENGINES)))
        eng = _ENGINES[key] = CamEngine(model, key[1], layer)
    return eng


def compute_cam(model, x: np.ndarray, method: str = "gradcam", layer: str | int | None = None,
                class_index: int | str | None = None, classes: list[str] | None = None) -> CamResult:
    """One class activation map of one preprocessed image ``x`` (H, W, C) float32.

    ``layer``: conv layer name or C-number (default: the last conv layer); ``class_index``: index or name
    (default: the predicted class). Returns a :class:`CamResult`; the model is neither changed nor compiled.
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    (m,) = parse_methods(method) if isinstance(method, str) and "," not in method else (None,)
    if m is None:
        raise UserError("compute_cam takes one method; call it once per method")
    eng = engine_for(model, x.shape, layer)
    c = resolve_class(class_index, classes, eng.n_classes)
    return eng.run(x, [m], None if c is None else [c], classes)[0]


def cam(model, x: np.ndarray, method: str = "gradcam", layer=None, class_index=None,
        classes=None) -> np.ndarray:
    """The (H, W) [0, 1] map of :func:`compute_cam` alone (``featuremaps.cam`` in the package API)."""
    res = compute_cam(model, x, method=method, layer=layer, class_index=class_index, classes=classes)
    return res.heatmap_up
