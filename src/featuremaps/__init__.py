"""featuremaps: see what a convolutional network sees.

The public API is imported lazily (this module's ``__getattr__``), so ``import featuremaps`` (and
``featuremaps --help``) stays fast and loads no deep-learning framework until a function that needs one is
called. ``dir(featuremaps)`` lists it.

Data conventions: activations are ``{layer_name: (H, W, C) float32}`` in layer order; images are RGB uint8
or float32 in [0, 1]; channels last.

The package, as a table of contents:

* ground floor, no framework: ``errors``, ``maps`` (conv layers, ``--layers``/``--select``, LayerMaps),
  ``loaded`` (LoadedModel, preprocessing), ``receptive``, ``targets`` (what to differentiate)
* ``frameworks/``: the model protocol (``base``) and its implementations: ``keras/``, ``torch``, ``onnx``;
  ``adapter(model)`` gives any model's implementation
* core, model -> maps: ``keras_backend`` (torch or JAX where TensorFlow is missing), ``models``, ``images``,
  ``faces``, ``extractor`` (the one feature extractor); ``registry``: one record per CAM method and per
  framework
* pixels, arrays in and arrays out: ``colormaps``, ``draw``, ``render``, ``charts``, ``figure``
* ``cam/``: class activation maps (methods, the one engine, heatmaps, metrics)
* ``callbacks``: ``FeatureMapsCallback``, feature maps of fixed inputs epoch by epoch in any ``model.fit``
* products: ``pipeline`` (show), ``cam_files`` (cam), ``report``, ``html``, ``compare``, ``compare_classes``,
  ``atlas``, ``patterns`` (what a channel looks for); each writes its own files through ``io``, the only module
  that writes files
* ``emotion/``: the FER2013 models, data, augmentation, training and evaluation
* ``cli/``: the command line; nothing outside it imports it
"""

from __future__ import annotations

import importlib

from featuremaps import keras_backend

__version__ = "0.1.0"

# triton (pulled by the registry's CUDA torch) aborts the process when imported after TensorFlow: load it first,
# where both are installed (keras_backend.load_triton_first says why)
keras_backend.load_triton_first()
# TensorFlow's start-up lines ("oneDNN custom operations are on", ...) stay off stderr however it is imported
# after featuremaps, by featuremaps or by the user's own `import keras` (TF_CPP_MIN_LOG_LEVEL only if unset)
keras_backend.quiet_tensorflow()

_API = {
    "conv_layers": "frameworks",
    "select_layers": "maps",
    "extract": "extractor",
    "FeatureExtractor": "extractor",
    "render_overview": "render",
    "render_layer": "render",
    "colormap": "render",
    "normalise": "render",
    "plot": "figure",
    "load_image": "images",
    "fit_to": "images",
    "load_model": ("models", "load"),
    "wrap_model": ("models", "wrap"),
    "build_emotion_vgg16": "emotion",
    "build_emotion_model": "emotion",
    "FeatureMapsCallback": "callbacks",
    "load_emotion_model": "emotion",
    "EMOTIONS": "emotion",
    "UserError": "errors",
    "show": "pipeline",
    "CAM_METHODS": "cam",
    "compute_cam": "cam",
    "find_patterns": "patterns",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'featuremaps' has no attribute {name!r}")
    mod, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    keras_backend.choose()  # Keras on torch or JAX where TensorFlow is not installed (and nothing was chosen)
    value = getattr(importlib.import_module(f"featuremaps.{mod}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
