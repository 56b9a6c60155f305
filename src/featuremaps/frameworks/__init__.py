"""One small model protocol for every command, whatever framework the model comes from.

Keras models keep their own path (:class:`featuremaps.extractor.FeatureExtractor`,
:class:`featuremaps.cam.CamEngine`: graph replay and a split at the target layer). Other frameworks implement
:class:`ModelAdapter` (``frameworks/torch.py``: PyTorch modules, ``frameworks/onnx.py``: ONNX Runtime
sessions), and the generic :class:`AdapterExtractor` / :class:`AdapterCamEngine` turn it into the same
``LayerMaps`` rows and ``CamResult`` maps, so rendering, reports and comparisons are unchanged.

The protocol:

* ``input_shape`` (H, W, C) with ``None`` where free, and ``name``;
* ``conv_layers(input_shape)``: conv layers in forward (execution) order, numbered C1..Cn;
* ``forward(batch, names)``: one forward pass of a preprocessed ``(B, H, W, C)`` batch, returning the named
  layers' maps ``{name: (B, h, w, C)}`` (channels last, NCHW converted at the boundary) and the output;
* ``output_shape(input_shape)``: the model output's shape for one input (``(1, n)`` for a classifier);
* ``has_gradients`` and ``class_gradients(x, name, classes)``: ``d output[c] / d A`` for one layer's maps;
* ``has_head_scores`` and ``head_scores(x, name, acts)``: the scores of one input with one layer's maps replaced
  by each of a batch of maps (Ablation-CAM's ablated copies);
* ``state()`` / ``load_state(state)``: the weights as picklable arrays (None where the file is the weights, as
  for ONNX), so that a Ray actor computes exactly the driver's model, random weights included;
* ``receptive_fields()``: each conv layer's field from the model's graph (the explorer's input box);
* ``to_gpu()``: move the model to a visible GPU (an atlas actor given ``--gpus-per-actor``).

This module imports no framework: the implementation for a model is imported only when such a model is
seen (:func:`framework_of` looks at the class's module name, never imports torch or onnxruntime).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from featuremaps.cam.engine import CamEngine, cam_results, is_probabilities, resolve_class, softmax
from featuremaps.cam.engine import compute_cam as keras_compute_cam
from featuremaps.cam.methods import CAM_METHODS, NEEDS_GRADIENTS, parse_methods
from featuremaps.errors import UserError
from featuremaps.extractor import FeatureExtractor
from featuremaps.extractor import extract as keras_extract
from featuremaps.layers import conv_layers as keras_conv_layers
from featuremaps.maps import ConvLayer, LayerMaps, Pick, parse_select, pick_channels, select_layers, select_maps

FRAMEWORKS = {"torch": "featuremaps.frameworks.torch", "onnx": "featuremaps.frameworks.onnx"}


class ModelAdapter:
    """A non-Keras model as featuremaps sees it (see the module docstring for the protocol)."""

    framework = ""
    name = "model"
    input_shape: tuple = (None, None, None)
    has_gradients = False
    #: whether ``head_scores`` can re-run the network with a layer's maps replaced (Ablation-CAM)
    has_head_scores = False
    #: what ``class_gradients`` differentiates: "logit" (pre-softmax scores) or "output"
    score = "output"

    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        """Conv layers in forward order; ``input_shape`` (H, W, C) for models that must run to find them."""
        raise NotImplementedError

    def forward(self, batch: np.ndarray, names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple:
        raise NotImplementedError

    def layer_shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """``{name: (h, w, C)}`` of every conv layer for one input shape."""
        raise NotImplementedError

    def class_gradients(self, x: np.ndarray, name: str, classes: list[int]):
        """``(acts (h, w, C), output (n,), grads (len(classes), h, w, C))`` for one input ``x`` (H, W, C)."""
        raise UserError(f"{self.framework} models have no gradients; use {', '.join(gradient_free_methods())}")

    def head_scores(self, x: np.ndarray, name: str, acts: np.ndarray) -> np.ndarray:
        """``(B, n)`` scores (what ``class_gradients`` differentiates) of one input ``x`` (H, W, C) with the maps of
        conv layer ``name`` replaced by each of ``acts`` (B, h, w, C): the network from that layer on."""
        raise UserError(f"ablationcam cannot re-run {self.framework} models from a layer; use another --method")

    def state(self):
        """The model's weights as picklable NumPy arrays, or None when loading the model gives them."""
        return None

    def load_state(self, state) -> None:
        """Set the weights from :meth:`state` (of a model of the same architecture)."""

    def receptive_fields(self) -> tuple[dict, bool, str]:
        """``({conv name: featuremaps.receptive.Field}, exact, note)`` from the model's graph; none by default."""
        return {}, False, f"receptive fields are not computed for {self.framework} models of this kind"

    def to_gpu(self) -> bool:
        """Move the model to a GPU this process can see; False where there is none (or the framework's
        build has no GPU support), and the model stays where it is."""
        return False


def model_state(model):
    """Any model's weights as picklable arrays (Keras: ``get_weights()``), for :func:`load_model_state`."""
    ad = adapter(model)
    return model.get_weights() if ad is None else ad.state()


def load_model_state(model, state) -> None:
    """Give ``model`` the weights :func:`model_state` took from a model of the same architecture."""
    ad = adapter(model)
    if ad is None:
        model.set_weights(state)
    elif state is not None:
        ad.load_state(state)


#: CAM methods that re-run the network from the target layer on (Ablation-CAM): Keras models cut at the layer
#: (:func:`featuremaps.extractor.split_at`), other frameworks where the adapter has ``head_scores``.
NEEDS_HEAD = {"ablationcam"}


def gradient_free_methods() -> list[str]:
    """The CAM methods that need no gradients (Score-CAM, EigenCAM, Ablation-CAM): those for ONNX models."""
    return [m for m in CAM_METHODS if m not in NEEDS_GRADIENTS]


def framework_of(model) -> str:
    """``keras``, ``torch`` or ``onnx`` for a model object or an ``.onnx`` path, without importing anything."""
    if isinstance(model, ModelAdapter):
        return model.framework
    if isinstance(model, str | Path):
        return "onnx" if str(model).lower().endswith(".onnx") else "keras"
    roots = [cls.__module__.split(".")[0] for cls in type(model).__mro__]
    if "keras" in roots:  # on Keras' torch backend a Keras model is also a torch.nn.Module
        return "keras"
    for root in roots:
        if root == "torch":
            return "torch"
        if root in ("onnxruntime", "onnx"):
            return "onnx"
    return "keras"


def adapter(model, input_shape=None) -> ModelAdapter | None:
    """The :class:`ModelAdapter` for a torch module / ONNX session or path; ``None`` for a Keras model."""
    if isinstance(model, ModelAdapter):
        return model
    fw = framework_of(model)
    if fw == "keras":
        return None
    return importlib.import_module(FRAMEWORKS[fw]).adapt(model, input_shape=input_shape)


# ---------------------------------------------------------------- dispatch points
def conv_layers(model, input_shape=None) -> list[ConvLayer]:
    """The conv layers of any model, C1..Cn in forward order (``fm.conv_layers``).

    Example::

        >>> import featuremaps as fm, torchvision
        >>> [c.name for c in fm.conv_layers(torchvision.models.resnet18())][:3]
        ['conv1', 'layer1.0.conv1', 'layer1.0.conv2']
    """
    ad = adapter(model)
    if ad is None:
        return keras_conv_layers(model)
    return ad.conv_layers(input_shape)


def feature_extractor(model, input_shape, layers="all", maps: int | None = 16, select="first"):
    """A :class:`~featuremaps.extractor.FeatureExtractor` (Keras) or :class:`AdapterExtractor` (others)."""
    ad = adapter(model, input_shape)
    if ad is None:
        return FeatureExtractor(model, input_shape, layers=layers, maps=maps, select=select)
    return AdapterExtractor(ad, input_shape, layers=layers, maps=maps, select=select)


def usable_methods(model) -> list[str]:
    """The CAM methods ``model`` supports: all for Keras, only the gradient-free ones where there are no gradients
    (ONNX), and no Ablation-CAM where the adapter cannot re-run the network from a layer. ``model``: a Keras
    model or a :class:`ModelAdapter`."""
    if not isinstance(model, ModelAdapter):
        return list(CAM_METHODS)
    return [
        m
        for m in CAM_METHODS
        if (model.has_gradients or m not in NEEDS_GRADIENTS) and (model.has_head_scores or m not in NEEDS_HEAD)
    ]


def check_methods(model, methods) -> None:
    """CAM methods a model cannot do (gradient methods on ONNX): one line naming those that apply."""
    ad = model if isinstance(model, ModelAdapter) else None
    if ad is None:
        return
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


def cam_engine(model, input_shape, layer=None):
    """A :class:`~featuremaps.cam.CamEngine` (Keras) or :class:`AdapterCamEngine` (others)."""
    ad = adapter(model, input_shape)
    if ad is None:
        return CamEngine(model, input_shape, layer)
    return AdapterCamEngine(ad, input_shape, layer)


def extract(model, image: np.ndarray, layers="all", maps: int | None = None, select="first") -> dict[str, np.ndarray]:
    """Feature maps of one preprocessed image ``(H, W, C)``: ``{layer_name: (h, w, k) float32}``, in order.

    Any model: Keras, a ``torch.nn.Module``, an ``onnxruntime.InferenceSession`` or an ``.onnx`` path. The
    image is channels last whatever the framework (a torch module gets it as NCHW).

    Example::

        >>> maps = fm.extract(torchvision.models.resnet18().eval(), np.zeros((224, 224, 3), np.float32))
        >>> maps["layer1.0.conv1"].shape
        (56, 56, 64)
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    ad = adapter(model, image.shape)
    if ad is None:
        return keras_extract(model, image, layers=layers, maps=maps, select=select)
    fx = AdapterExtractor(ad, image.shape, layers=layers, maps=maps, select=select)
    results, _ = fx(image[None])
    return {r.conv.name: r.maps[0] for r in results}


def compute_cam(model, x: np.ndarray, method: str = "gradcam", layer=None, class_index=None, classes=None, engine=None):
    """One class activation map of one preprocessed image ``x`` (H, W, C), for any model.

    Keras models go to :func:`featuremaps.cam.compute_cam`; torch modules get gradients from autograd; ONNX
    models take the gradient-free methods (Score-CAM, EigenCAM, Ablation-CAM). Returns a
    :class:`~featuremaps.cam.CamResult`.
    ``engine``: a :func:`cam_engine` of this model and input shape, to reuse across many images.

    Example::

        >>> r = fm.compute_cam(net.eval(), x, "gradcam", layer="layer4.1.conv2")
        >>> r.heatmap.shape, r.heatmap_up.shape
        ((7, 7), (224, 224))
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    ad = adapter(model, x.shape) if engine is None else None
    if ad is None and not isinstance(engine, AdapterCamEngine):
        return keras_compute_cam(
            model, x, method=method, layer=layer, class_index=class_index, classes=classes, engine=engine
        )
    (m,) = parse_methods(method) if isinstance(method, str) and "," not in method else (None,)
    if m is None:
        raise UserError("compute_cam takes one method; call it once per method")
    eng = engine if engine is not None else AdapterCamEngine(ad, x.shape, layer)
    c = resolve_class(class_index, classes, eng.n_classes)
    return eng.run(x, [m], None if c is None else [c], classes)[0]


# ---------------------------------------------------------------- maps
class AdapterExtractor:
    """:class:`~featuremaps.extractor.FeatureExtractor`'s twin for a :class:`ModelAdapter`.

    One forward pass returns every chosen layer; channel selection and statistics run on the NumPy maps.
    """

    def __init__(self, adapter: ModelAdapter, input_shape, layers="all", maps: int | None = 16, select="first"):
        self.model = adapter
        self.input_shape = tuple(int(d) for d in input_shape)
        self.all_layers = adapter.conv_layers(self.input_shape)
        self.layers = select_layers(self.all_layers, layers)
        mode, chans = parse_select(select)
        self.mode = mode
        shapes = adapter.layer_shapes(self.input_shape)
        self.shapes, self.notes, self._picks = [], [], []
        for c in self.layers:
            shape = tuple(shapes[c.name])
            k, ids, note = pick_channels(c, shape[-1], mode, chans, maps)
            self.shapes.append(shape)
            self.notes.append(note)
            self._picks.append(Pick("first" if mode == "list" else mode, k, tuple(ids)))
        out = adapter.output_shape(self.input_shape)
        self.with_predictions = len(out) == 2

    def __call__(self, batch: np.ndarray) -> tuple[list[LayerMaps], np.ndarray | None]:
        """``batch`` (B, H, W, C) preprocessed float32 -> per-layer maps and the model's output (or None)."""
        batch = np.asarray(batch, dtype=np.float32)
        acts, out = self.model.forward(batch, [c.name for c in self.layers])
        rows = []
        for j, c in enumerate(self.layers):
            maps, ids, stats = select_maps(acts[c.name], self._picks[j])
            rows.append(LayerMaps(c, self.shapes[j], maps, ids, stats, self.notes[j]))
        preds = np.asarray(out, np.float32) if self.with_predictions and out is not None else None
        return rows, preds


# ---------------------------------------------------------------- CAMs
def resolve_conv(convs: list[ConvLayer], spec) -> ConvLayer:
    """The target conv layer among ``convs``: the last by default, else a name, C-number or glob."""
    if isinstance(spec, ConvLayer):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "last")):
        return convs[-1]
    item = f"C{spec}" if isinstance(spec, int) or str(spec).strip().isdigit() else str(spec).strip()
    hits = select_layers(convs, item)
    if len(hits) != 1:
        found = ", ".join(c.name for c in hits[:4])
        raise UserError(f"--layer '{item}' matches {len(hits)} layers ({found}); name one layer")
    return hits[0]


class AdapterCamEngine:
    """:class:`~featuremaps.cam.CamEngine`'s twin for a :class:`ModelAdapter` (same ``run`` and attributes)."""

    def __init__(self, adapter: ModelAdapter, input_shape, layer=None):
        self.model = adapter
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layer = resolve_conv(adapter.conv_layers(self.input_shape), layer)
        out = tuple(adapter.output_shape(self.input_shape))
        if len(out) != 2 or out[-1] < 2:
            raise UserError(
                f"model '{adapter.name}' outputs shape {out}, not class scores; CAMs need a classifier with one "
                "(batch, classes) output"
            )
        self.n_classes = int(out[-1])
        self.score = adapter.score

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of inputs (Score-CAM's masked inputs); no gradients."""
        _, out = self.model.forward(np.asarray(batch, np.float32), [])
        p = np.asarray(out, np.float32)
        return p if is_probabilities(p) else softmax(p)

    def run(
        self, x: np.ndarray, methods=("gradcam",), class_indices=None, classes=None, progress=None, passes=None
    ) -> list:
        """Maps of one preprocessed image ``x`` (H, W, C): each method for each class (default: predicted);
        ``progress`` and ``passes`` as in :meth:`featuremaps.cam.engine.CamEngine.run`."""
        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[..., None]
        methods = parse_methods(list(methods) if not isinstance(methods, str) else methods)
        check_methods(self.model, methods)
        name = self.layer.name
        grads = None
        if any(m in NEEDS_GRADIENTS for m in methods):
            acts, raw, grads = self.model.class_gradients(x, name, class_indices)
        else:
            maps, out = self.model.forward(x[None], [name])
            acts, raw = maps[name][0], np.asarray(out, np.float32)[0]
        probs = raw if is_probabilities(raw) else softmax(raw)
        if class_indices is None:  # the predicted class (the adapter chose the same for its gradients)
            class_indices = [int(np.argmax(raw))]  # raw: a softmax of tiny logits can tie in float32
        names = classes if classes and len(classes) == self.n_classes else None

        def head_scores(a_batch):  # Ablation-CAM: the model's scores with the target layer's maps replaced
            return self.model.head_scores(x, name, np.asarray(a_batch, np.float32))

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
