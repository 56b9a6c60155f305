"""CAM pictures: a map upsampled to the image, scaled to [0, 1], coloured, blended over the image."""

from __future__ import annotations

import cv2
import numpy as np

from featuremaps.render import apply_colormap, colormap

EPS = 1e-7
#: A map whose largest value is below this fraction of the largest activation it was made from is float noise
#: (a saturated score gives maps of ~1e-13): it is drawn as "map all zero", never as a stretched flat overlay.
ZERO_MAP = 1e-6


# ---------------------------------------------------------------- maps as pictures
def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) float32, bilinear (pixel centres aligned)."""
    m = np.asarray(m, np.float32)
    if m.shape == tuple(size):
        return m.copy()
    return cv2.resize(m, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def normalise01(m: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes zeros."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo)).astype(np.float32) if hi - lo > EPS else np.zeros_like(m)


def map01(m: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """``m`` upsampled to ``size`` and min-max scaled to [0, 1]; all zeros where its largest value is at most
    ``ZERO_MAP * scale`` (``scale``: the largest activation the map was made from), i.e. float noise."""
    if not float(np.max(m)) > ZERO_MAP * float(scale):
        return np.zeros(size, np.float32)
    return normalise01(upsample(m, size))


def overlay(rgb_uint8: np.ndarray, heatmap01: np.ndarray, cmap: str = "jet", alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (any size; resized bilinearly) over an RGB uint8 image (``alpha`` of heat)."""
    rgb = np.asarray(rgb_uint8)
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    heat = np.clip(upsample(heatmap01, rgb.shape[:2]), 0.0, 1.0)
    colour = apply_colormap(heat, colormap(cmap)).astype(np.float32)
    out = alpha * colour + (1.0 - alpha) * rgb[..., :3].astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap_rgb(heatmap01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] map as RGB uint8 through a colormap."""
    return apply_colormap(np.clip(heatmap01, 0.0, 1.0), colormap(cmap))


# ---------------------------------------------------------------- choosing layer, class, method
