"""What to differentiate: the small records every adapter's ``gradients(x, target, wrt=None)`` takes.

One objective object drives CAMs (a class score with respect to a conv layer's maps), saliency (a class score
with respect to the input) and "what does this channel look for" (a channel's mean or one neuron with respect to
the input), like tf-keras-vis' ``Score`` and lucent's ``objectives``. This module imports nothing but NumPy
(and featuremaps.errors).

Example::

    from featuremaps.frameworks import adapter
    from featuremaps.targets import ChannelMean, ClassScore

    ad = adapter(model)
    value, grad = ad.gradients(x, ClassScore(3))                  # d logit_3 / d input, (H, W, C)
    value, grad = ad.gradients(x, ClassScore(3), wrt="block5_conv3")  # d logit_3 / d A, (h, w, C)
    value, grad = ad.gradients(x, ChannelMean("block3_conv1", 7))  # d mean(A_7) / d input

A batch ``x`` (B, H, W, C) takes a sequence of B targets, one per image, all of one kind and one layer (what
``featuremaps patterns`` optimises: one channel per image of a batch)::

    values, grads = ad.gradients(xs, [ChannelMean("block3_conv1", k) for k in range(16)])  # (16,), (16, H, W, C)

Each image's gradient is that of its own target only: the objective differentiated is ``sum_b target_b(x_b)``,
and images do not interact in an inference-mode forward pass, so ``grads[b] = d target_b / d x_b``. Every
target kind is linear in the tensor it reads (a channel's mean, one position, one score), so the whole batch is
one vector-Jacobian product: ``values[b] = <out_b, w_b>`` and ``grads = J^T w`` with the weights ``w``
of :func:`target_weights`; each framework computes it with its own autodiff in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featuremaps.errors import UserError


@dataclass(frozen=True)
class ClassScore:
    """The score of class ``index`` (None: the predicted class): the pre-softmax logit where the model's output
    layer is a softmax and ``logit`` is True (as the CAM papers differentiate), else the output itself."""

    index: int | None = None
    logit: bool = True


@dataclass(frozen=True)
class ChannelMean:
    """The spatial mean of channel ``channel`` of conv layer ``layer``; with ``pre_activation`` the conv's output
    before a fused activation (``Conv2D(activation="relu")``), whose gradient is not cut to zero where the
    ReLU is off. A conv without a fused activation (PyTorch, ONNX) has one output: both are the same."""

    layer: str
    channel: int
    pre_activation: bool = True


@dataclass(frozen=True)
class Neuron:
    """One activation: channel ``channel`` of conv layer ``layer`` at map position (``y``, ``x``)
    (pre-activation, as for :class:`ChannelMean`)."""

    layer: str
    channel: int
    y: int
    x: int
    pre_activation: bool = True


@dataclass(frozen=True, eq=False)
class Weighted:
    """``<out, weights>``: any fixed linear functional of conv ``layer``'s maps, ``weights`` (h, w, C) float32
    (pre-activation, as for :class:`ChannelMean`). A channel's mean and a neuron are special cases; this one
    carries what the caller computed itself, such as the gradient of the diversity term of
    :mod:`featuremaps.patterns.diversity` plus a channel's mean weights (every adapter supports it: all of them
    read a batch's weights from :func:`target_weights`)."""

    layer: str
    weights: np.ndarray
    pre_activation: bool = True


Target = ClassScore | ChannelMean | Neuron | Weighted


def batch_layer(targets) -> tuple[str | None, bool]:
    """``(layer, pre_activation)`` shared by a batch's targets (layer None: class scores); a ``ValueError`` for
    a mixed batch (the batch is one vector-Jacobian product through one tensor, see the module docstring)."""
    targets = list(targets)
    if not targets:
        raise ValueError("a batch of gradients needs one target per image; got none")
    kinds = {type(t) for t in targets}
    if kinds <= {ClassScore}:
        if len({t.logit for t in targets}) > 1:
            raise ValueError("a batch's class scores must all be logits or all outputs")
        return None, False
    if not kinds <= {ChannelMean, Neuron, Weighted}:
        bad = next(t for t in targets if not isinstance(t, ChannelMean | Neuron | Weighted | ClassScore))
        raise ValueError(f"cannot differentiate a {type(bad).__name__}; use featuremaps.targets")
    if ClassScore in kinds or len({(t.layer, t.pre_activation) for t in targets}) > 1:
        raise ValueError("a batch's targets must all read one conv layer (or all be class scores)")
    return targets[0].layer, targets[0].pre_activation


def target_weights(targets, shape: tuple) -> np.ndarray:
    """``(B, *shape)`` float32 weights ``w`` with ``target_b = <out_b, w_b>``, where ``out`` is the tensor the
    batch's targets read: a layer's maps (``shape`` (h, w, C)) or the class scores (``shape`` (n,)).

    ``ChannelMean(c)``: ``1 / (h w)`` on channel ``c``; ``Neuron(c, y, x)``: 1 at (y, x, c); ``Weighted``: its
    ``weights``; ``ClassScore(i)``: 1 at ``i`` (an ``index`` of None must be resolved to the predicted class by
    the caller first).
    """
    w = np.zeros((len(targets), *shape), np.float32)
    for b, t in enumerate(targets):
        if isinstance(t, ClassScore):
            if t.index is None:
                raise ValueError("a batch's class scores need an index (the predicted class is resolved first)")
            w[b, int(t.index)] = 1.0
        elif isinstance(t, Weighted):
            if tuple(np.shape(t.weights)) != tuple(shape):
                raise ValueError(f"weights of shape {np.shape(t.weights)} for layer {t.layer} of shape {tuple(shape)}")
            w[b] = t.weights
        elif not 0 <= t.channel < shape[-1]:
            raise UserError(f"layer {t.layer} has {shape[-1]} channels (F1-F{shape[-1]}); F{t.channel + 1} is not one")
        elif isinstance(t, ChannelMean):
            w[b, :, :, t.channel] = 1.0 / (shape[0] * shape[1])
        else:
            w[b, t.y, t.x, t.channel] = 1.0
    return w


def predicted(targets, scores: np.ndarray) -> list:
    """``targets`` with each :class:`ClassScore` of index None given its image's top class in ``scores`` (B, n)."""
    return [
        ClassScore(int(np.argmax(scores[b])), t.logit) if isinstance(t, ClassScore) and t.index is None else t
        for b, t in enumerate(targets)
    ]


class Gradient:
    """``(value, gradient)`` of one target: ``value`` a float (a (B,) array for a batch), ``gradient`` channels
    last like the maps ((H, W, C) with respect to the input, (h, w, C) with respect to a conv layer; (B, H, W, C)
    for a batch). Unpacks as that pair; also carries what
    the same pass computed: ``output`` (the model's output for the image), ``activations`` (the ``wrt`` layer's
    maps, None for the input) and ``index`` (the class differentiated, for a :class:`ClassScore`)."""

    def __init__(self, value, gradient, output=None, activations=None, index=None):
        self.value = float(value) if np.ndim(value) == 0 else np.asarray(value, np.float32)
        self.gradient = np.asarray(gradient, np.float32)
        self.output = None if output is None else np.asarray(output, np.float32)
        self.activations = None if activations is None else np.asarray(activations, np.float32)
        self.index = index

    def __iter__(self):
        return iter((self.value, self.gradient))


__all__ = [
    "ChannelMean",
    "ClassScore",
    "Gradient",
    "Neuron",
    "Target",
    "Weighted",
    "batch_layer",
    "predicted",
    "target_weights",
]
