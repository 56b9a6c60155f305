"""Gradient ascent on the image of :mod:`featuremaps.patterns.image` through the transforms of
:mod:`featuremaps.patterns.transforms`: Adam at 0.05 for 256 steps (lucent's ``render_vis`` defaults), every
image of the batch with its own target, one call of the adapter's gradient primitive per step.

One step, for the batch of B images (one per channel asked for)::

    x  = sigmoid(colour(irfft2(scale * params)))            FourierImage.forward
    x' = warp_step(x)                                        Warp.forward: a fresh random transform per image
    m  = preprocess(255 x')                                  Preprocessing.forward
    v, dv/dm = adapter.gradients(m, targets)                 the framework: one forward + backward of the batch
    dv/dparams = FourierImage.backward(Warp.adjoint(Preprocessing.adjoint(dv/dm)))
    params += Adam(dv/dparams)                                ascent: the targets' values rise

Everything but the framework's pass is NumPy on arrays the size of the input, a small fraction of the pass
(``benchmarks/bench_patterns.py`` measures the ratio).

With the diversity term (``diversity`` > 0, ``groups`` of 2 or more images per target), each step first runs a
forward of the transformed batch to the diversity layer, computes the term and its gradient in NumPy
(:mod:`featuremaps.patterns.diversity`) and folds it into the targets' weights:
``Weighted(layer, w_b + W dD/dz_b)``, still one call of the primitive (2.1x a step on Keras, whose forward
runs the whole network: BENCHMARKS.md). Class scores read another tensor than the
conv, so they take a second call for the term. Without the term the step is the one above, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from featuremaps.patterns.diversity import pre_activation_gradient
from featuremaps.patterns.image import FourierImage
from featuremaps.patterns.transforms import Preprocessing, Warp
from featuremaps.targets import ClassScore, Weighted, target_weights

#: lucent's ``render_vis``: ``torch.optim.Adam(params, lr=5e-2)``, 512 thresholds; Lucid: Adam 0.05
LEARNING_RATE = 0.05
STEPS = 256


class Adam:
    """Adam (Kingma & Ba, ICLR 2015) for one NumPy array, ascending: ``p += lr m^ / (sqrt(v^) + eps)``."""

    def __init__(self, lr: float = LEARNING_RATE, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.m = self.v = None
        self.t = 0

    def ascend(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mh = self.m / (1 - self.b1**self.t)
        vh = self.v / (1 - self.b2**self.t)
        p += (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(p.dtype)


@dataclass
class Optimised:
    """``images`` (B, H, W, C) float32 in [0, 1] as the model sees them before its preprocessing; ``values``
    (B,) each target's value on its image (untransformed); ``history`` (steps, B) the values during the ascent
    (on the transformed images)."""

    images: np.ndarray
    values: np.ndarray
    history: np.ndarray
    diversity: np.ndarray | None = None  # (G,) each group's final D (untransformed), with the term


def optimise(
    ad,
    targets: list,
    shape: tuple[int, int, int],
    preprocess: Callable[[np.ndarray], np.ndarray],
    steps: int = STEPS,
    seed: int = 0,
    lr: float = LEARNING_RATE,
    transforms: bool = True,
    progress: Callable[[int, int], None] | None = None,
    diversity: float = 0.0,
    groups: int | None = None,
    diversity_layer: str | None = None,
    precision: str = "float32",
) -> Optimised:
    """The images that maximise ``targets`` (one per image), all optimised together in one batch.

    Formula: ``x* = argmax_x sum_b target_b(preprocess(T_b(x_b)))`` with ``x = sigmoid(colour(irfft2(1/f P)))``
    and ``T`` random similarity transforms (Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017).

    Example::

        >>> from featuremaps.targets import ChannelMean
        >>> res = optimise(adapter(model), [ChannelMean("block2_conv1", k) for k in range(4)], (48, 48, 1),
        ...                lambda x: x / 255.0, steps=64)
        >>> res.images.shape, res.values.shape
        ((4, 48, 48, 1), (4,))

    Args:
        ad: the model's adapter (:func:`featuremaps.frameworks.adapter`); it needs gradients
        targets: one :mod:`featuremaps.targets` record per image, all of one layer (or all class scores)
        shape: the input (H, W, C)
        preprocess: the model's preprocessing of 0-255 pixels
        steps: Adam steps
        seed: the initial spectrum's and the transforms' random seed (the same seed, the same images)
        lr: Adam's learning rate
        transforms: transformation robustness (off: the plain parameterisation, for tests)
        progress: called with (step, steps) after every step; an exception raised there ends the optimisation
            (how a background job, such as an explorer panel, is cancelled)
        diversity: the weight ``W`` of the diversity term (0: none): ``sum_b target_b + W sum_g D_g``, ``D_g``
            minus the mean pairwise cosine of the Gram matrices of group ``g``'s images
            (:func:`featuremaps.patterns.diversity.gram_diversity`)
        groups: with ``diversity``, how many groups the batch makes (consecutive images, 2 or more each)
        diversity_layer: the conv layer the term reads (default: the targets' layer; class scores need one)
        precision: ``bfloat16`` runs the steps' passes in bfloat16 where the adapter can (its ``bfloat16``);
            the final values are taken in float32 either way
    """
    fast = {"precision": precision} if precision != "float32" and getattr(ad, "bfloat16", False) else {}
    if diversity:
        return _optimise_diverse(
            ad, targets, shape, preprocess, steps, seed, lr, transforms, progress, diversity, groups, diversity_layer,
            fast,
        )  # fmt: skip
    h, w, c = shape
    rng = np.random.default_rng(seed)
    image = FourierImage(len(targets), h, w, c, seed=int(rng.integers(2**31)))
    pre = Preprocessing(preprocess, c)
    adam = Adam(lr)
    history = np.zeros((steps, len(targets)), np.float32)
    for step in range(steps):
        x = image.forward()
        warp = Warp(rng, len(targets), h, w) if transforms else None
        xt = warp.forward(x) if warp else x
        r = ad.gradients(pre.forward(xt), targets, **fast)
        history[step] = r.value
        g = pre.adjoint(r.gradient)
        g = warp.adjoint(g) if warp else g
        adam.ascend(image.params, image.backward(g))
        if progress is not None:
            progress(step + 1, steps)
    x = image.forward()
    values = np.atleast_1d(ad.gradients(pre.forward(x), targets).value).astype(np.float32)
    return Optimised(x, values, history)


def _optimise_diverse(
    ad, targets, shape, preprocess, steps, seed, lr, transforms, progress, weight, groups, layer, fast
) -> Optimised:
    """:func:`optimise` with the diversity term (see the module docstring): the same images, the same random
    draws, one more forward per step."""
    h, w, c = shape
    classes = isinstance(targets[0], ClassScore)
    layer = layer or (None if classes else targets[0].layer)
    if layer is None or not groups:
        raise ValueError("the diversity term needs a conv layer and groups")
    rng = np.random.default_rng(seed)
    image = FourierImage(len(targets), h, w, c, seed=int(rng.integers(2**31)))
    pre = Preprocessing(preprocess, c)
    adam = Adam(lr)
    history = np.zeros((steps, len(targets)), np.float32)
    pre_act = getattr(targets[0], "pre_activation", True)
    base = None
    for step in range(steps):
        x = image.forward()
        warp = Warp(rng, len(targets), h, w) if transforms else None
        m = pre.forward(warp.forward(x) if warp else x)
        maps, _ = ad.forward(m, [layer])
        _, dz, acts = pre_activation_gradient(maps[layer], groups)
        extra = weight * dz
        if classes:  # the scores read the logits: a second product for the term on the conv
            r = ad.gradients(m, targets, **fast)
            history[step] = r.value
            grad = r.gradient + ad.gradients(m, [Weighted(layer, e, pre_act) for e in extra], **fast).gradient
        else:
            if base is None:
                base = target_weights(targets, acts.shape[1:])
            r = ad.gradients(m, [Weighted(layer, base[b] + extra[b], pre_act) for b in range(len(targets))], **fast)
            # the term's share of the value: <z, W dD/dz> = <relu(z), W dD/dA> (dD/dz is 0 where z <= 0)
            history[step] = r.value - (acts * extra).reshape(len(acts), -1).sum(axis=1)
            grad = r.gradient
        g = pre.adjoint(grad)
        g = warp.adjoint(g) if warp else g
        adam.ascend(image.params, image.backward(g))
        if progress is not None:
            progress(step + 1, steps)
    x = image.forward()
    m = pre.forward(x)
    values = np.atleast_1d(ad.gradients(m, targets).value).astype(np.float32)
    maps, _ = ad.forward(m, [layer])
    final, _, _ = pre_activation_gradient(maps[layer], groups)
    return Optimised(x, values, history, final.astype(np.float32))
