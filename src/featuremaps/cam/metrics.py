"""Sanity metrics for class activation maps, to run on your own model and images.

* Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): a
  faithful map changes when the top layers are re-drawn at random. :func:`randomisation_correlation` gives
  the Spearman rank correlation (:func:`spearman`, average ranks for ties) between the map of the model and
  of a copy with randomised layers (:func:`randomised_copy`); low is good (the benchmark asks < 0.5).
* Deletion / insertion (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box
  Models", BMVC 2018): :func:`deletion_insertion` removes pixels (sets them to 0) or inserts them into a
  blurred copy, most salient first, and returns the areas under the class-probability curves; a good map
  has a lower deletion AUC and a higher insertion AUC than a random map.

Like torchcam's ``metrics`` and pytorch-grad-cam's ``metrics`` modules these are plain functions of a
model (or a ``predict`` callable), an image and a map; they never write files. Any model with gradients goes:
Keras or PyTorch (through the model protocol, :mod:`featuremaps.frameworks`). Example::

    from featuremaps.cam import compute_cam
    from featuremaps.cam.metrics import deletion_insertion, randomisation_correlation

    r = compute_cam(model, x)                                 # x: one preprocessed image (H, W, C)
    rho = randomisation_correlation(model, x, ["predictions", "fc2"])
    dele, ins = deletion_insertion(model, x, r.heatmap_up, r.class_index)
"""

from __future__ import annotations

import cv2
import numpy as np

from featuremaps.cam.engine import CamEngine, is_probabilities, resolve_class, softmax
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter, known_framework


def rank_average(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of the flattened ``a``, ties sharing their mean rank (scipy's ``rankdata(a) - 1``).

    Ties matter for CAMs: ReLU leaves flat zero regions, and breaking those ties by position (as a plain
    double argsort does) would invent a correlation with the image layout.

    Example::

        >>> rank_average(np.array([3.0, 0.0, 0.0, 5.0, 0.0]))
        array([3., 1., 1., 4., 1.])
    """
    a = np.asarray(a).ravel()
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    ranks = np.empty(a.size, np.float64)
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (average ranks for ties); 0 when either is constant.

    ``rho = cov(rank(a), rank(b)) / (std(rank(a)) std(rank(b)))``.

    Example::

        >>> spearman(np.array([0.0, 0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0]))  # 4.5 / sqrt(22.5)
        0.9486832980505138
    """
    ra, rb = rank_average(a), rank_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    d = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / d) if d > 0 else 0.0


def randomised_copy(model, layers, seed: int = 0):
    """A copy of ``model`` (same architecture, same weights) with ``layers`` re-drawn from N(0, std of their
    weights), as in Adebayo et al.'s cascading randomisation. ``model`` is not changed.

    ``layers``: names of layers (Keras) or modules (PyTorch) of ``model`` (a UserError names a missing one).
    Returns a model of the same kind (a Keras model, a torch module).
    """
    return adapter(model).randomised(layers, seed)


def randomisation_correlation(
    model, x: np.ndarray, layers, method: str = "gradcam", layer=None, class_index=None, seed: int = 0
) -> float:
    """Spearman correlation between the CAM of ``model`` and of :func:`randomised_copy` ``(model, layers)``.

    Both maps are for the same class (``class_index``, default the model's prediction) at the same target
    ``layer`` (default the last conv layer), compared at input resolution. Low means the map depends on the
    learned weights (Adebayo et al. 2018); near 1 means it would look the same for a random network.

    Example::

        >>> randomisation_correlation(model, x, ["predictions", "fc2", "fc1"], "gradcam++")
        0.12
    """
    x = np.asarray(x, np.float32)
    x = x[..., None] if x.ndim == 2 else x
    eng = CamEngine(model, x.shape, layer)
    c = resolve_class(class_index, None, eng.n_classes)
    r = eng.run(x, [method], None if c is None else [c])[0]
    rand = CamEngine(eng.adapter.randomised(layers, seed), x.shape, eng.layer.name)
    rr = rand.run(x, [method], [r.class_index])[0]
    return spearman(r.heatmap_up, rr.heatmap_up)


def _predict_fn(predict):
    """A model (Keras, PyTorch, ONNX, an adapter) as a function of a batch giving class probabilities; a
    function stays as it is."""
    if known_framework(predict) is None:
        return predict
    ad = adapter(predict)

    def fn(batch):
        p = np.asarray(ad.forward(np.asarray(batch, np.float32), [])[1], np.float32)
        return p if is_probabilities(p) else softmax(p)

    return fn


def deletion_insertion(
    predict, x: np.ndarray, saliency: np.ndarray, class_index: int, steps: int = 48, blur_sigma: float = 5.0
) -> tuple[float, float]:
    """Deletion and insertion AUCs of one map (Petsiuk et al. 2018): mean class probability over ``steps + 1``
    points as the most salient pixels are set to 0 (deletion) or revealed over a Gaussian-blurred copy
    (insertion, blur ``sigma`` in pixels).

    ``predict``: a classifier (Keras, PyTorch, ONNX) or a callable mapping a batch (B, H, W, C) to class probabilities;
    ``saliency``: an (H, W) map at input resolution (e.g. ``CamResult.heatmap_up``). All ``2 (steps + 1)``
    images go through ``predict`` as one batch. Lower deletion and higher insertion than a random map is good.

    Example::

        >>> r = compute_cam(model, x)
        >>> deletion_insertion(model, x, r.heatmap_up, r.class_index)
        (0.21, 0.64)
    """
    x = np.asarray(x, np.float32)
    x = x[..., None] if x.ndim == 2 else x
    saliency = np.asarray(saliency)
    if saliency.shape != x.shape[:2]:
        raise UserError(f"saliency map {saliency.shape} and image {x.shape[:2]} differ; upsample the map first")
    fn = _predict_fn(predict)
    order = np.argsort(-saliency.ravel(), kind="stable")
    n = order.size
    blurred = np.stack([cv2.GaussianBlur(x[..., k], (0, 0), blur_sigma) for k in range(x.shape[-1])], axis=-1)
    dels, ins = [], []
    for i in range(steps + 1):
        k = round(i * n / steps)
        mask = np.zeros(n, bool)
        mask[order[:k]] = True
        mask = mask.reshape(saliency.shape)[..., None]
        dels.append(np.where(mask, 0.0, x))
        ins.append(np.where(mask, x, blurred))
    p = np.asarray(fn(np.stack(dels + ins).astype(np.float32)))[:, class_index]
    return float(p[: steps + 1].mean()), float(p[steps + 1 :].mean())


__all__ = ["deletion_insertion", "randomisation_correlation", "randomised_copy", "rank_average", "spearman"]
