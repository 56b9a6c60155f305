"""What to differentiate: the small records every adapter's ``gradients(x, target, wrt=None)`` takes.

One objective object drives CAMs (a class score with respect to a conv layer's maps), saliency (a class score
with respect to the input) and "what does this channel look for" (a channel's mean or one neuron with respect to
the input), like tf-keras-vis' ``Score`` and lucent's ``objectives``. This module imports nothing but NumPy.

Example::

    from featuremaps.frameworks import adapter
    from featuremaps.targets import ChannelMean, ClassScore

    ad = adapter(model)
    value, grad = ad.gradients(x, ClassScore(3))                  # d logit_3 / d input, (H, W, C)
    value, grad = ad.gradients(x, ClassScore(3), wrt="block5_conv3")  # d logit_3 / d A, (h, w, C)
    value, grad = ad.gradients(x, ChannelMean("block3_conv1", 7))  # d mean(A_7) / d input
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


Target = ClassScore | ChannelMean | Neuron


class Gradient:
    """``(value, gradient)`` of one target: ``value`` a float, ``gradient`` channels last like the maps ((H, W, C)
    with respect to the input, (h, w, C) with respect to a conv layer). Unpacks as that pair; also carries what
    the same pass computed: ``output`` (the model's output for the image), ``activations`` (the ``wrt`` layer's
    maps, None for the input) and ``index`` (the class differentiated, for a :class:`ClassScore`)."""

    def __init__(self, value, gradient, output=None, activations=None, index=None):
        self.value = float(value)
        self.gradient = np.asarray(gradient, np.float32)
        self.output = None if output is None else np.asarray(output, np.float32)
        self.activations = None if activations is None else np.asarray(activations, np.float32)
        self.index = index

    def __iter__(self):
        return iter((self.value, self.gradient))


__all__ = ["ChannelMean", "ClassScore", "Gradient", "Neuron", "Target"]
