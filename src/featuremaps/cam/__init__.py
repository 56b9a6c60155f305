"""Class activation maps: the methods (``methods``), the engine that computes them on any model through the
model protocol (``engine``; gradients come from each adapter's ``gradients``), their pictures (``heatmaps``) and
the sanity metrics a user can run on their own model (``metrics``)."""

from featuremaps.cam.engine import CamEngine, CamResult, compute_cam, resolve_class, resolve_layer
from featuremaps.cam.heatmaps import heatmap_rgb, normalise01, overlay, upsample
from featuremaps.cam.methods import (
    CAM_METHODS,
    NEEDS_GRADIENTS,
    ablationcam,
    eigencam,
    gradcam,
    gradcam_pp,
    hirescam,
    layercam,
    parse_methods,
    scorecam,
    scorecam_masks,
    xgradcam,
)

__all__ = [
    "CAM_METHODS",
    "NEEDS_GRADIENTS",
    "ablationcam",
    "eigencam",
    "hirescam",
    "xgradcam",
    "CamEngine",
    "CamResult",
    "compute_cam",
    "gradcam",
    "gradcam_pp",
    "heatmap_rgb",
    "layercam",
    "normalise01",
    "overlay",
    "parse_methods",
    "resolve_class",
    "resolve_layer",
    "scorecam",
    "scorecam_masks",
    "upsample",
]
