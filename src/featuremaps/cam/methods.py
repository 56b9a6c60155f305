"""Class activation maps: why did the network decide what it decided?

Four methods, each one small function of a layer's activations ``A`` (h, w, C) and the gradients ``G`` of
the class score with respect to them (or, for Score-CAM, of scores of masked inputs):

* Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017): ``ReLU(sum_k mean_ij(G_k) A_k)``.
* Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
  Convolutional Networks", WACV 2018): pixel-wise weights ``alpha`` from second and third powers of G.
* Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
  Networks", CVPR Workshops 2020): each channel, upsampled and scaled to [0, 1], masks the input; the
  class probability of the masked input weighs the channel. Gradient-free; masked inputs are batched.
* LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
  IEEE TIP 2021): ``ReLU(sum_k ReLU(G_k) * A_k)``, element-wise.
"""

from __future__ import annotations

import numpy as np

from featuremaps.cam.heatmaps import EPS, upsample
from featuremaps.errors import UserError

SCORECAM_BATCH = 32


# ---------------------------------------------------------------- the methods
def gradcam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): channel weights are the spatially averaged gradients."""
    weights = grads.mean(axis=(0, 1))  # (C,)
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def gradcam_pp(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score, so only first gradients).

    ``alpha_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3)``; channel weight ``sum_ij alpha_ij^k ReLU(g_ij^k)``.
    """
    g2 = grads**2
    g3 = g2 * grads
    denom = 2.0 * g2 + acts.sum(axis=(0, 1), keepdims=True) * g3
    alpha = np.where(grads != 0.0, g2 / np.where(np.abs(denom) > EPS, denom, EPS), 0.0)
    weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(0, 1))
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def layercam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021): element-wise positive gradients times activations, summed over C."""
    return np.maximum((np.maximum(grads, 0.0) * acts).sum(axis=-1), 0.0).astype(np.float32)


def scorecam_masks(acts: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Score-CAM's masks: each non-constant channel upsampled (bilinear) to ``size`` and scaled to [0, 1].

    Returns ``(masks (k, H, W), channel indices (k,))``; constant channels carry no spatial information and
    are skipped, as in the authors' code.
    """
    lo, hi = acts.min(axis=(0, 1)), acts.max(axis=(0, 1))
    keep = np.flatnonzero(hi - lo > EPS)
    masks = np.empty((len(keep), *size), np.float32)
    for j, k in enumerate(keep):
        m = upsample(acts[..., k], size)
        mlo, mhi = m.min(), m.max()
        masks[j] = (m - mlo) / (mhi - mlo) if mhi > mlo else 0.0
    return masks, keep


def scorecam(acts: np.ndarray, grads=None, *, x: np.ndarray, class_index: int, predict, **_) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): channel weights are the softmax class scores of the input masked by each
    channel (upsampled, scaled to [0, 1]); ``predict`` maps a batch of inputs to class probabilities.
    """
    masks, keep = scorecam_masks(acts, x.shape[:2])
    weights = np.zeros(acts.shape[-1], np.float32)
    for i in range(0, len(keep), SCORECAM_BATCH):
        m = masks[i : i + SCORECAM_BATCH]
        probs = predict(x[None] * m[..., None])
        weights[keep[i : i + SCORECAM_BATCH]] = probs[:, class_index]
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


#: method name -> function; gradient methods take (acts, grads), Score-CAM also the input and a predictor.
CAM_METHODS = {"gradcam": gradcam, "gradcam++": gradcam_pp, "scorecam": scorecam, "layercam": layercam}
NEEDS_GRADIENTS = {"gradcam", "gradcam++", "layercam"}


def parse_methods(spec: str | list[str] | None) -> list[str]:
    """``"gradcam,scorecam"`` -> ``["gradcam", "scorecam"]``; unknown names raise a UserError."""
    items = spec if isinstance(spec, list | tuple) else (spec or "gradcam").split(",")
    out = []
    for m in (s.strip().lower() for s in items):
        if not m:
            continue
        m = {
            "grad-cam": "gradcam",
            "gradcampp": "gradcam++",
            "grad-cam++": "gradcam++",
            "score-cam": "scorecam",
            "layer-cam": "layercam",
        }.get(m, m)
        if m not in CAM_METHODS:
            raise UserError(f"unknown CAM method '{m}'; use one or more of {', '.join(CAM_METHODS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise UserError(f"--method is empty; use one or more of {', '.join(CAM_METHODS)}")
    return out
