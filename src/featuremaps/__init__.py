"""featuremaps: see what a convolutional network sees.

The public API is imported lazily, so ``import featuremaps`` (and ``featuremaps --help``) stays fast and
loads no deep-learning framework until a function that needs one is called.

Data conventions: activations are ``{layer_name: (H, W, C) float32}`` in layer order; images are RGB uint8
or float32 in [0, 1]; channels last.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "conv_layers": "layers",
    "select_layers": "layers",
    "extract": "extract",
    "FeatureExtractor": "extract",
    "render_overview": "render",
    "render_layer": "render",
    "colormap": "render",
    "normalise": "render",
    "plot": "plot",
    "load_image": "images",
    "load_model": ("models", "load"),
    "build_emotion_vgg16": "emotion",
    "load_emotion_model": "emotion",
    "EMOTIONS": "emotion",
    "UserError": "errors",
    "show": "pipeline",
    "cam": "cam",
    "CAM_METHODS": "cam",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'featuremaps' has no attribute {name!r}")
    mod, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    value = getattr(importlib.import_module(f".{mod}", __name__), attr)
    globals()[name] = value
    return value
