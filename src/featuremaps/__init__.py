"""featuremaps: see what a convolutional network sees.

The public API is imported lazily, so ``import featuremaps`` (and ``featuremaps --help``) stays fast and
loads no deep-learning framework until a function that needs one is called.

Data conventions: activations are ``{layer_name: (H, W, C) float32}`` in layer order; images are RGB uint8
or float32 in [0, 1]; channels last.
"""

from __future__ import annotations

import importlib
import sys
import types

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
    "fit_to": "images",
    "load_model": ("models", "load"),
    "build_emotion_vgg16": "emotion",
    "load_emotion_model": "emotion",
    "EMOTIONS": "emotion",
    "UserError": "errors",
    "show": "pipeline",
    "cam": "cam",
    "CAM_METHODS": "cam",
    "compute_cam": "cam",
}

__all__ = sorted(_API)


def _target(name: str) -> tuple[str, str]:
    return _API[name] if isinstance(_API[name], tuple) else (_API[name], name)


class _Package(types.ModuleType):
    """Keeps ``featuremaps.extract`` / ``plot`` / ``cam`` the functions once their same-named submodules load.

    Importing ``featuremaps.extract`` binds the submodule as a package attribute, which would hide the
    function of the same name (``featuremaps.extract(...)`` -> "'module' object is not callable"). Such a
    binding is dropped here; the submodules stay importable (``from featuremaps.extract import X``,
    ``importlib.import_module("featuremaps.extract")``).
    """

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _API and _target(name) == (name, name):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'featuremaps' has no attribute {name!r}")
    mod, attr = _target(name)
    value = getattr(importlib.import_module(f".{mod}", __name__), attr)
    globals()[name] = value
    return value
