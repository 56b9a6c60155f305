"""The emotion models: the FER2013 VGG-16 and its ResNet/MobileNetV2 siblings (``model``; their training form's
batch normalisation, one fused kernel on TensorFlow and torch: ``norm``), what they are and what
ships with them (``shipped``: no framework), their data (``data``), augmentation (``augment``), training
(``train``, whose backend and precision ``probe`` measures) and evaluation (``evaluate``).

The names below are imported lazily (this module's ``__getattr__``): ``from featuremaps.emotion import data``
and the class names load no Keras; a builder or loader imports ``model`` (and Keras) when it is first asked for.
"""

from __future__ import annotations

import importlib

_SHIPPED = ("ARCHS", "EMOTIONS", "INPUT_SHAPE", "model_card", "shipped_weights_available")
_MODEL = (
    "build_emotion_mobilenet",
    "build_emotion_model",
    "build_emotion_resnet",
    "build_emotion_vgg16",
    "fold_batch_norm",
    "load_emotion_model",
    "load_weights_npz",
    "pools_of",
    "recalibrate_batch_norm",
    "save_weights_npz",
    "unfold_batch_norm",
)

__all__ = sorted(_SHIPPED + _MODEL)


def __getattr__(name: str):
    if name in _SHIPPED:
        module = "shipped"
    elif name in _MODEL:
        module = "model"
    else:
        raise AttributeError(f"module 'featuremaps.emotion' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"featuremaps.emotion.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
