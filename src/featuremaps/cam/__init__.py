"""Class activation maps: the methods (``methods``, each one recorded in :mod:`featuremaps.registry`), the
engine that computes them on any model through the model protocol (``engine``; gradients come from each
adapter's ``gradients``), their pictures (``heatmaps``) and the sanity metrics a user can run on their own model
(``metrics``).

Every registered method's function is exported here under its own name (``gradcam``, ``gradcam_pp``, ...),
read from the registry.
"""

from featuremaps import registry
from featuremaps.cam.engine import CamEngine, CamResult, compute_cam, resolve_class, resolve_layer
from featuremaps.cam.heatmaps import heatmap_rgb, normalise01, overlay, upsample
from featuremaps.cam.methods import CAM_METHODS, NEEDS_GRADIENTS, NEEDS_HEAD, parse_methods, scorecam_masks

__all__ = [
    "CAM_METHODS",
    "NEEDS_GRADIENTS",
    "NEEDS_HEAD",
    "CamEngine",
    "CamResult",
    "compute_cam",
    "heatmap_rgb",
    "normalise01",
    "overlay",
    "parse_methods",
    "resolve_class",
    "resolve_layer",
    "scorecam_masks",
    "upsample",
]


def _functions() -> dict:
    """The registered methods' functions by their own names."""
    return {m.function_name: m for m in registry.CAM_METHODS.values()}


def __getattr__(name: str):
    m = _functions().get(name)
    if m is None:
        raise AttributeError(f"module 'featuremaps.cam' has no attribute {name!r}")
    return m.load()


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_functions()))


__all__ += [m.function_name for m in registry.CAM_METHODS.values()]
