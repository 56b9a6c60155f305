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
  ``output``); a batch (B, H, W, C) with B targets of one layer gives each image its own target's gradient in
  one pass (``featuremaps patterns``);
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

from featuremaps import registry
from featuremaps.errors import UserError
from featuremaps.frameworks.base import ModelAdapter
from featuremaps.maps import ConvLayer

#: framework -> the module of its adapter (from :data:`featuremaps.registry.FRAMEWORKS`)
FRAMEWORKS = {f.name: f.module for f in registry.FRAMEWORKS.values() if f.module}


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
        # a path: only an ONNX file is a model as it stands (the ONNX adapter opens it); others go through models.load
        return "onnx" if registry.framework_of_file(model) == "onnx" else "keras"
    roots = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    # in the registry's order, Keras first: on Keras' torch backend a Keras model is also a torch.nn.Module
    return next((f.name for f in registry.FRAMEWORKS.values() if roots.intersection(f.classes)), None)


def implementation(fw: str):
    """The module that implements framework ``fw`` (its adapter and loaders), imported now; a framework whose
    packages are not installed is one UserError naming the package and the extra that installs it."""
    try:
        return importlib.import_module(FRAMEWORKS[fw])
    except ModuleNotFoundError as e:
        extra = registry.FRAMEWORKS[fw].extra
        package = (e.name or extra).split(".")[0]
        raise UserError(
            f"{fw} models need {package}, which is not installed; pip install 'featuremaps[{extra}]'"
        ) from None


def adapter(model, input_shape=None) -> ModelAdapter:
    """The :class:`ModelAdapter` of any model: a Keras model, a torch module, an ONNX session or path."""
    if isinstance(model, ModelAdapter):
        return model
    return implementation(framework_of(model)).adapt(model, input_shape=input_shape)


def conv_layers(model, input_shape=None) -> list[ConvLayer]:
    """The conv layers of any model, C1..Cn in forward order (``fm.conv_layers``).

    Example::

        >>> import featuremaps as fm, torchvision
        >>> [c.name for c in fm.conv_layers(torchvision.models.resnet18())][:3]
        ['conv1', 'layer1.0.conv1', 'layer1.0.conv2']
    """
    return adapter(model).conv_layers(input_shape)


__all__ = [
    "FRAMEWORKS",
    "ModelAdapter",
    "adapter",
    "conv_layers",
    "framework_of",
    "known_framework",
    "load_model_state",
    "model_state",
]
