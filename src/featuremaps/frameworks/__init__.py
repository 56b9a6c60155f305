"""One small model protocol for every command, whatever framework the model comes from.

Every model is a :class:`ModelAdapter`: Keras (``frameworks/keras/``: graph replay and a split at the target
layer), PyTorch (``frameworks/torch.py``: modules, TorchScript, ``torch.export``) and ONNX Runtime sessions
(``frameworks/onnx.py``). Above the protocol there is one feature extractor
(:class:`featuremaps.extractor.FeatureExtractor`) and one CAM engine (:class:`featuremaps.cam.engine.CamEngine`),
so rendering, reports and comparisons never ask which framework a model is.

The protocol:

* ``input_shape`` (H, W, C) with ``None`` where free, and ``name``;
* ``conv_layers(input_shape)``: conv layers in forward (execution) order, numbered C1..Cn;
* ``forward(batch, names)``: one forward pass of a preprocessed ``(B, H, W, C)`` batch, returning the named
  layers' maps ``{name: (B, h, w, C)}`` (channels last, NCHW converted at the boundary) and the output;
* ``maps_fn(input_shape, convs, picks)``: a function of a batch giving each layer's chosen maps, channel ids
  and statistics (:func:`featuremaps.maps.select_maps` on :meth:`forward` by default; Keras takes the
  selection inside its graph);
* ``channel_means(batch, convs)``: each layer's (B, C) spatial means (the atlas);
* ``output_shape(input_shape)``: the model output's shape for one input (``(1, n)`` for a classifier);
* ``layer_shapes(input_shape)``: ``{conv name: (h, w, C)}``; ``layer_kind(name)``: the type of a layer that is
  not a conv (so that ``--layer`` can say what it is);
* ``has_gradients`` and ``gradients(x, target, wrt=None)``: the one gradient primitive, ``(value, gradient)`` of a
  :mod:`featuremaps.targets` record (class score, channel mean, neuron) with respect to the input or a conv
  layer's maps, channels last; a class score is what ``cam_score(input_shape, name)`` says (``logit`` or
  ``output``);
* ``has_head_scores`` and ``head_scores(x, name, acts)``: the scores of one input with one layer's maps replaced
  by each of a batch of maps (Ablation-CAM's ablated copies);
* ``state()`` / ``load_state(state)``: the weights as picklable arrays (None where the file is the weights, as
  for ONNX), so that a Ray actor computes exactly the driver's model, random weights included;
* ``receptive_fields()``: each conv layer's field from the model's graph (the explorer's input box);
* ``to_gpu()``: move the model to a visible GPU (an atlas actor given ``--gpus-per-actor``).

This module imports no framework: the implementation for a model is imported only when such a model is
seen (:func:`framework_of` looks at the class's module name, never imports keras, torch or onnxruntime).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from featuremaps.errors import UserError
from featuremaps.maps import ConvLayer, Pick, select_maps

FRAMEWORKS = {
    "keras": "featuremaps.frameworks.keras",
    "torch": "featuremaps.frameworks.torch",
    "onnx": "featuremaps.frameworks.onnx",
}


class ModelAdapter:
    """A model as featuremaps sees it (see the module docstring for the protocol)."""

    framework = ""
    name = "model"
    input_shape: tuple = (None, None, None)
    has_gradients = False
    #: whether ``head_scores`` can re-run the network with a layer's maps replaced (Ablation-CAM)
    has_head_scores = False
    #: what a ``ClassScore`` differentiates: "logit" (pre-softmax scores) or "output"
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

    def layer_kind(self, name: str) -> str | None:
        """The type of the model's layer called ``name`` that is not a conv layer, else None."""
        return None

    def maps_fn(self, input_shape, convs: list[ConvLayer], picks: list[Pick]):
        """``(run, with_predictions)``: ``run(batch)`` gives ``([(maps, ids, stats) per conv], output or None)``,
        the chosen channels of one forward pass (here: all maps out, selected in NumPy)."""
        with_predictions = len(self.output_shape(input_shape)) == 2
        names = [c.name for c in convs]

        def run(batch):
            acts, out = self.forward(batch, names)
            rows = [select_maps(acts[n], p) for n, p in zip(names, picks, strict=True)]
            return rows, np.asarray(out, np.float32) if with_predictions and out is not None else None

        return run, with_predictions

    def channel_means(self, batch: np.ndarray, convs: list[ConvLayer]) -> list[np.ndarray]:
        """Per conv layer the (B, C) spatial mean of every channel of a preprocessed batch."""
        maps, _ = self.forward(batch, [c.name for c in convs])
        return [maps[c.name].mean(axis=(1, 2), dtype=np.float32) for c in convs]

    def cam_score(self, input_shape, name: str) -> str:
        """What a :class:`~featuremaps.targets.ClassScore` differentiates at target layer ``name``: ``logit``
        (pre-softmax) or ``output``."""
        return self.score

    def gradients(self, x: np.ndarray, target, wrt: str | None = None):
        """``(value, gradient)`` of ``target`` (:mod:`featuremaps.targets`: a class score, a channel's mean, one
        neuron) for one preprocessed input ``x`` (H, W, C), with respect to the input (``wrt=None``: (H, W, C))
        or to conv layer ``wrt``'s maps ((h, w, C)); a :class:`featuremaps.targets.Gradient`."""
        raise UserError(f"{self.framework} models have no gradients in featuremaps; use a gradient-free method")

    def head_scores(self, x: np.ndarray, name: str, acts: np.ndarray) -> np.ndarray:
        """``(B, n)`` scores (what a ``ClassScore`` differentiates) of one input ``x`` (H, W, C) with the maps of
        conv layer ``name`` replaced by each of ``acts`` (B, h, w, C): the network from that layer on."""
        raise UserError(f"ablationcam cannot re-run {self.framework} models from a layer; use another --method")

    def state(self):
        """The model's weights as picklable NumPy arrays, or None when loading the model gives them."""
        return None

    def load_state(self, state) -> None:
        """Set the weights from :meth:`state` (of a model of the same architecture)."""

    def randomised(self, layers, seed: int = 0) -> ModelAdapter:
        """A copy of the model (same architecture and weights) with the named layers' weights re-drawn from
        N(0, std of their weights), as in Adebayo et al.'s cascading randomisation; the model is not changed."""
        raise UserError(f"featuremaps cannot copy {self.framework} models of this kind to randomise their layers")

    def receptive_fields(self) -> tuple[dict, bool, str]:
        """``({conv name: featuremaps.receptive.Field}, exact, note)`` from the model's graph; none by default."""
        return {}, False, f"receptive fields are not computed for {self.framework} models of this kind"

    def to_gpu(self) -> bool:
        """Move the model to a GPU this process can see; False where there is none (or the framework's
        build has no GPU support), and the model stays where it is."""
        return False


def model_state(model):
    """Any model's weights as picklable arrays (Keras: ``get_weights()``), for :func:`load_model_state`."""
    return adapter(model).state()


def load_model_state(model, state) -> None:
    """Give ``model`` the weights :func:`model_state` took from a model of the same architecture."""
    if state is not None:
        adapter(model).load_state(state)


def framework_of(model) -> str:
    """``keras``, ``torch`` or ``onnx`` for a model object or an ``.onnx`` path, without importing anything."""
    return known_framework(model) or "keras"


def known_framework(model) -> str | None:
    """:func:`framework_of` where the object says it (an adapter, a path, a class from keras, torch or
    onnxruntime), else None (a plain function, say)."""
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
    return None


def adapter(model, input_shape=None) -> ModelAdapter:
    """The :class:`ModelAdapter` of any model: a Keras model, a torch module, an ONNX session or path."""
    if isinstance(model, ModelAdapter):
        return model
    fw = framework_of(model)
    try:
        module = importlib.import_module(FRAMEWORKS[fw])
    except ModuleNotFoundError as e:
        extra = {"keras": "", "torch": "[torch]", "onnx": "[onnx]"}[fw]
        raise UserError(f"{e.name} is not installed; pip install 'featuremaps{extra}'") from None
    return module.adapt(model, input_shape=input_shape)


def conv_layers(model, input_shape=None) -> list[ConvLayer]:
    """The conv layers of any model, C1..Cn in forward order (``fm.conv_layers``).

    Example::

        >>> import featuremaps as fm, torchvision
        >>> [c.name for c in fm.conv_layers(torchvision.models.resnet18())][:3]
        ['conv1', 'layer1.0.conv1', 'layer1.0.conv2']
    """
    return adapter(model).conv_layers(input_shape)
