"""Models by name (the emotion model, keras.applications, ``torchvision:NAME``) or by file, each with its
preprocessing: :func:`resolve_name` reads a name, :func:`load` hands it to its framework's loaders.

This module imports no framework: a framework's module (:data:`featuremaps.registry.FRAMEWORKS`; Keras:
:mod:`featuremaps.frameworks.keras.loaders`) is imported only when a model of it is loaded. The Keras loaders'
public names (``emotion_arch``, ``keras_file_problem``, ``WEIGHTS_URL``, ...) are still readable from here,
imported from there when first asked for.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from featuremaps import keras_backend, registry
from featuremaps.applications import APPLICATIONS, application_key, summary
from featuremaps.emotion.shipped import shipped_weights_available
from featuremaps.errors import UserError
from featuremaps.frameworks import framework_of, implementation
from featuremaps.loaded import LoadedModel

#: names the Keras loaders module answers for this one (``models.emotion_arch`` ...), imported when first read
KERAS_LOADER_NAMES = ("WEIGHTS_HOST", "WEIGHTS_URL", "emotion_arch", "keras_file_problem")

EMOTION_NAMES = ("emotion", "fer2013", "emotion-vgg16")
#: the emotion VGG-16's siblings, by model name -> architecture (``featuremaps train --arch``)
EMOTION_SIBLINGS = {"emotion-resnet": "resnet", "emotion-mobilenet": "mobilenet"}


def default_model_name() -> str:

    return "emotion" if shipped_weights_available() else "vgg16"


def load(
    spec: str | None = None,
    weights: str | None = None,
    unsafe: bool = False,
    preprocess: str | None = None,
    classes: list[str] | None = None,
    random_head: bool = True,
) -> LoadedModel:
    """``spec`` is a model name (``emotion``, or any keras.applications constructor in lower case, see
    :data:`featuremaps.applications.APPLICATIONS`) or a ``.keras``/``.h5``/``.pt``/``.onnx`` path.

    ``random_head=False`` (feature maps only): a keras.applications model with random weights
    (``weights="none"``) is built without its classifier head (``include_top=False`` at the default input
    size). Its conv layers, their names and maps are the same; skipped are the head's random parameters
    (VGG16: 124 of 138 M, most of its build time) and a prediction that would be noise anyway.
    """
    name = resolve_name(spec or default_model_name())
    if name.kind == "torchvision":
        return _with_classes(_framework("torch").load_torchvision(name.key, weights, preprocess), classes)
    if name.kind == "emotion":
        return _framework("keras").load_emotion(weights, preprocess, name.key)
    if name.kind == "application":
        return _framework("keras").load_application(name.key, weights, preprocess, random_head)
    path = Path(name.key)
    if name.framework == "torch":
        return _with_classes(_framework("torch").load_file(path, weights, unsafe, preprocess, classes), classes)
    if name.framework == "onnx":
        return _with_classes(_framework("onnx").load_file(path, preprocess or "unit", classes), classes)
    return _framework("keras").load_file(path, unsafe, preprocess or "unit", classes)


@dataclass(frozen=True)
class ModelName:
    """What a model name names: ``kind`` ``emotion`` (``key``: its architecture, vgg16/resnet/mobilenet),
    ``application`` (a keras.applications key), ``torchvision`` (the torchvision name) or ``file`` (``key``:
    the path), and the framework that runs it."""

    kind: str
    key: str
    framework: str


def resolve_name(spec: str) -> ModelName:
    """The one reading of a model name, for ``models.load``, ``compare --models`` and ``explore --models``:
    ``torchvision:NAME``, a file by its suffix (:data:`featuremaps.registry.FRAMEWORKS`), ``emotion`` and its
    siblings, a keras.applications name, an existing path (a Keras file); else a UserError naming them all.
    Reads no file and imports no framework."""
    if spec.lower().startswith("torchvision:"):
        return ModelName("torchvision", spec.split(":", 1)[1], "torch")
    fw = registry.framework_of_file(spec)
    if fw in ("torch", "onnx"):
        return ModelName("file", spec, fw)
    key = application_key(spec)
    if key in EMOTION_NAMES:
        return ModelName("emotion", "vgg16", "keras")
    if key in EMOTION_SIBLINGS:
        return ModelName("emotion", EMOTION_SIBLINGS[key], "keras")
    if key in APPLICATIONS:
        return ModelName("application", key, "keras")
    if fw == "keras" or Path(spec).exists():
        return ModelName("file", spec, "keras")
    names = ", ".join(("emotion", *EMOTION_SIBLINGS, summary()))
    raise UserError(
        f"unknown model '{spec}': use one of {names}, torchvision:NAME, or a {registry.model_files_text()} file path"
    )


def _framework(name: str):
    """The implementation module of a framework, imported only when a model needs it (Keras: its loaders, on an
    installed backend: :func:`featuremaps.keras_backend.choose`)."""
    if name == "keras":
        keras_backend.choose()
    return implementation(name)


def _with_classes(lm: LoadedModel, classes) -> LoadedModel:
    """A torch or ONNX model with ``--classes``: the names replace its own where their count is its output's,
    else one line, as for Keras files (checked at the model's input size; skipped where that is free: ONNX)."""
    if not classes:
        return lm
    shape = tuple(lm.input_shape or ())
    if lm.needs_input_shape or len(shape) != 3:
        lm.classes = list(classes)
        return lm
    out = tuple(lm.model.output_shape(shape))
    n = int(out[-1]) if len(out) == 2 else None
    if n != len(classes):
        has = f"{n} outputs" if n is not None else f"output shape {out}, not class scores"
        raise UserError(f"--classes names {len(classes)} classes but the model has {has}; give {n or 'no'} names")
    lm.classes = list(classes)
    return lm


def as_loaded(model, **load_options) -> LoadedModel:
    """Any way the Python API names a model, as a :class:`LoadedModel`: one already (as is), ``None`` (the
    default model), a name or path (:func:`load`, given ``load_options``), or a model object: a Keras model, a
    ``torch.nn.Module`` or an ONNX Runtime session (:func:`wrap`)."""
    if isinstance(model, LoadedModel):
        return model
    if model is None or isinstance(model, str | os.PathLike):
        return load(None if model is None else os.fspath(model), **load_options)
    return wrap(model)


def wrap(model, preprocess: str = "unit", classes: list[str] | None = None) -> LoadedModel:
    """Wrap an in-memory model (Python API): Keras, a ``torch.nn.Module`` or an ONNX Runtime session."""
    return _framework(framework_of(model)).wrap(model, preprocess=preprocess, classes=classes)


def __getattr__(name: str):
    if name in KERAS_LOADER_NAMES:
        _framework("keras")
        return getattr(importlib.import_module("featuremaps.frameworks.keras.loaders"), name)
    raise AttributeError(f"module 'featuremaps.models' has no attribute {name!r}")
