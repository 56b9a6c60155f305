"""Class activation maps: why did the network decide what it decided?

The methods' functions; each one's record (what it needs, aliases, paper) is in :mod:`featuremaps.registry`.
The methods, each one small function of a layer's activations ``A`` (h, w, C) and the gradients ``G`` of
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
* HiResCAM (Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
  neural networks", arXiv:2011.08891, 2020): ``ReLU(sum_k G_k * A_k)``, element-wise.
* XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
  BMVC 2020): channel weights ``sum_ij G_k A_k / sum_ij A_k``.
* EigenCAM (Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020):
  the activations projected on their first principal component; class-agnostic and gradient-free.
* Ablation-CAM (Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
  Gradient-free Localization", WACV 2020): channel weights ``(y - y_k) / y``, ``y_k`` the class score with
  channel k set to zero; gradient-free, the ablated activations go through the head in batches.

The conventions (ReLU on the map, centring in EigenCAM, zero ablation) follow pytorch-grad-cam.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

import numpy as np

from featuremaps import registry
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

    ``alpha_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3)``, normalised to sum to 1 over ``ij`` as in the authors'
    code (adityac94/Grad_CAM_plus_plus) and tf-keras-vis; channel weight ``sum_ij alpha_ij^k ReLU(g_ij^k)``.
    Without the normalisation a layer with no ReLU (negative ``sum_ab A_ab^k``) can make ``alpha`` negative
    and the map then shows the most *negative* evidence.

    Example::

        >>> acts, grads = np.ones((2, 2, 1)), np.full((2, 2, 1), 0.5)
        >>> gradcam_pp(acts, grads)  # alpha = 1/4 everywhere, weight 0.5
        array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    g2 = grads**2
    g3 = g2 * grads
    denom = 2.0 * g2 + acts.sum(axis=(0, 1), keepdims=True) * g3
    alpha = np.where(grads != 0.0, g2 / np.where(denom != 0.0, denom, 1.0), 0.0)
    norm = alpha.sum(axis=(0, 1), keepdims=True)
    alpha = alpha / np.where(norm != 0.0, norm, 1.0)
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


def scorecam(acts: np.ndarray, grads=None, *, x: np.ndarray, class_index: int, predict, passes=None, **_) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): channel weights are the softmax class scores of the input masked by each
    channel (upsampled, scaled to [0, 1]); ``predict`` maps a batch of inputs to class probabilities.
    ``passes(i, n)``, if given, is called before each batch of masked inputs and at the end (``i == n``).
    """
    masks, keep = scorecam_masks(acts, x.shape[:2])
    weights = np.zeros(acts.shape[-1], np.float32)
    for i in range(0, len(keep), SCORECAM_BATCH):
        if passes is not None:
            passes(i, len(keep))
        m = masks[i : i + SCORECAM_BATCH]
        probs = predict(x[None] * m[..., None])
        weights[keep[i : i + SCORECAM_BATCH]] = probs[:, class_index]
    if passes is not None:
        passes(len(keep), len(keep))
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def hirescam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """HiResCAM (Draelos & Carin 2020): ``ReLU(sum_k G_k * A_k)``, gradients times activations element-wise.

    Unlike Grad-CAM it does not average the gradients over space, so the map is exactly the part of the
    score that each position contributes when the head is linear (global average pooling and a Dense layer).

    Example::

        >>> hirescam(np.ones((1, 2, 2)), np.array([[[1.0, -3.0], [2.0, 0.5]]]))
        array([[0. , 2.5]], dtype=float32)
    """
    return np.maximum((grads * acts).sum(axis=-1), 0.0).astype(np.float32)


def xgradcam(acts: np.ndarray, grads: np.ndarray, **_) -> np.ndarray:
    """XGrad-CAM (Fu et al. 2020): channel weights ``w_k = sum_ij G_k A_k / (sum_ij A_k + 1e-7)``.

    The weights that satisfy the paper's sensitivity and conservation axioms; map ``ReLU(sum_k w_k A_k)``.

    Example::

        >>> acts = np.array([[[1.0], [3.0]]]); grads = np.array([[[2.0], [4.0]]])
        >>> xgradcam(acts, grads)  # w = (2 + 12) / 4 = 3.5
        array([[ 3.5, 10.5]], dtype=float32)
    """
    sums = acts.sum(axis=(0, 1))
    weights = (grads * acts).sum(axis=(0, 1)) / (sums + 1e-7)
    return np.maximum(acts @ weights, 0.0).astype(np.float32)


def eigencam(acts: np.ndarray, grads=None, **_) -> np.ndarray:
    """EigenCAM (Muhammad & Yeasin 2020): the activations' projection on their first principal component.

    ``A`` as an (h*w, C) matrix, centred per channel (as pytorch-grad-cam does); the map is ``ReLU(A v1)``,
    ``v1`` the first right singular vector. A singular vector's sign is arbitrary, so it is chosen to make
    the map correlate positively with the channel sum of the activations (the same map on every backend).
    Class-agnostic and gradient-free.

    Example::

        >>> acts = np.zeros((1, 3, 2)); acts[0, :, 0] = [0.0, 1.0, 2.0]
        >>> eigencam(acts)  # centred: [-1, 0, 1] along v1 = (1, 0)
        array([[0., 0., 1.]], dtype=float32)
    """
    h, w, c = acts.shape
    flat = acts.reshape(h * w, c).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    if not np.any(flat):
        return np.zeros((h, w), np.float32)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    proj = flat @ vt[0]
    total = acts.reshape(h * w, c).sum(axis=1)
    if np.dot(proj, total - total.mean()) < 0:
        proj = -proj
    return np.maximum(proj.reshape(h, w), 0.0).astype(np.float32)


def ablationcam(acts: np.ndarray, grads=None, *, class_index: int, head_scores, passes=None, **_) -> np.ndarray:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, map ``ReLU(sum_k w_k A_k)``.

    ``y`` is the class score (the logit of a softmax classifier) and ``y_k`` the score with channel ``k``
    of the target layer set to zero; ``head_scores`` maps a batch of (h, w, C) activations to class scores,
    and the C ablated copies go through it in batches of ``SCORECAM_BATCH``. Gradient-free. ``passes(i, n)``,
    if given, is called before each batch of copies and at the end (``i == n``).

    Example::

        >>> head = lambda a: a.sum(axis=(1, 2, 3))[:, None]  # one class, score = sum of everything
        >>> ablationcam(np.array([[[1.0, 3.0]]]), class_index=0, head_scores=head)  # w = (1/4, 3/4)
        array([[2.5]], dtype=float32)
    """
    acts = np.asarray(acts, np.float32)
    c = acts.shape[-1]
    y = float(np.asarray(head_scores(acts[None]))[0, class_index])
    weights = np.zeros(c, np.float64)
    for i in range(0, c, SCORECAM_BATCH):
        if passes is not None:
            passes(i, c)
        ks = np.arange(i, min(i + SCORECAM_BATCH, c))
        batch = np.repeat(acts[None], len(ks), axis=0)
        batch[np.arange(len(ks)), ..., ks] = 0.0
        yk = np.asarray(head_scores(batch), np.float64)[:, class_index]
        weights[ks] = (y - yk) / (y if abs(y) > EPS else EPS)
    if passes is not None:
        passes(c, c)
    return np.maximum(acts @ weights.astype(np.float32), 0.0).astype(np.float32)


#: Derived from the registry (:data:`featuremaps.registry.CAM_METHODS`), read at each use, so a method
#: registered later (a test's toy method) is seen everywhere: method name -> function. Every function takes
#: ``(acts, grads, **context)``; the context is ``x`` (the input), ``class_index``, ``predict`` (inputs ->
#: probabilities) and ``head_scores`` (target-layer activations -> class scores), so gradient-free methods
#: use what they need.
class _Functions(Mapping):
    def __getitem__(self, name: str):
        return registry.CAM_METHODS[name].load()

    def __iter__(self):
        return iter(registry.CAM_METHODS)

    def __len__(self) -> int:
        return len(registry.CAM_METHODS)

    def __repr__(self) -> str:
        return f"CAM_METHODS({', '.join(self)})"


class _Needing(Set):
    """The names of the registered methods that need ``what`` (a live set)."""

    def __init__(self, what: str):
        self.what = what

    def __contains__(self, name) -> bool:
        m = registry.CAM_METHODS.get(name)
        return m is not None and m.needs == self.what

    def __iter__(self):
        return (n for n, m in registry.CAM_METHODS.items() if m.needs == self.what)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{{{', '.join(map(repr, self))}}}"


class _Passes(Mapping):
    """Method -> what it runs the model on many times, as progress lines name it."""

    def __getitem__(self, name: str) -> str:
        p = registry.CAM_METHODS[name].passes
        if p is None:
            raise KeyError(name)
        return p

    def __iter__(self):
        return (n for n, m in registry.CAM_METHODS.items() if m.passes)

    def __len__(self) -> int:
        return sum(1 for _ in self)


CAM_METHODS: Mapping = _Functions()
#: methods that need the class score's gradients with respect to the target layer
NEEDS_GRADIENTS: Set = _Needing("gradients")
#: methods that re-run the network from the target layer on (Ablation-CAM): Keras models cut at the layer,
#: other frameworks where the adapter has ``head_scores``
NEEDS_HEAD: Set = _Needing("head")
PASSES: Mapping = _Passes()


def parse_methods(spec: str | list[str] | None) -> list[str]:
    """``"gradcam,scorecam"`` -> ``["gradcam", "scorecam"]``; aliases (``grad-cam``) are accepted, unknown
    names raise a UserError."""
    items = spec if isinstance(spec, list | tuple) else (spec or "gradcam").split(",")
    aliases = registry.cam_aliases()
    names = registry.cam_method_names()
    out = []
    for m in (s.strip().lower() for s in items):
        if not m:
            continue
        m = aliases.get(m, m)
        if m not in registry.CAM_METHODS:
            raise UserError(f"unknown CAM method '{m}'; use one or more of {', '.join(names)}")
        if m not in out:
            out.append(m)
    if not out:
        raise UserError(f"--method is empty; use one or more of {', '.join(names)}")
    return out
