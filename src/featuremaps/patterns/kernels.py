"""First-layer filters: the weights of the first conv layer drawn as small images, the classic first picture of
a CNN course (Krizhevsky et al. 2012, fig. 3): each output channel's (kh, kw, C) kernel, RGB for a colour model,
grey for a grayscale one, scaled symmetrically about 0 so that grey is a zero weight.

Keras kernels are (kh, kw, C_in, C_out); PyTorch weights (C_out, C_in, kh, kw). The first conv's input is the
preprocessed image, so a Caffe model's (BGR) kernels are flipped back to RGB here.
"""

from __future__ import annotations

import numpy as np

from featuremaps.errors import UserError


def first_kernels(conv, bgr: bool = False) -> np.ndarray:
    """The kernels of ``conv`` (a :class:`~featuremaps.maps.ConvLayer`) as (C_out, kh, kw, C_in) float32;
    ``bgr``: the model takes BGR input (Caffe preprocessing), the colours are flipped to RGB.

    Example::

        >>> k = first_kernels(fm.conv_layers(model)[0])   # (64, 3, 3, 3) for VGG16
    """
    layer = conv.layer
    if hasattr(layer, "get_weights") and layer.get_weights():  # Keras: (kh, kw, C_in, C_out) first
        w = np.asarray(layer.get_weights()[0], np.float32).transpose(3, 0, 1, 2)
    elif getattr(layer, "weight", None) is not None:  # torch
        w = layer.weight.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    else:
        raise UserError(
            f"the weights of {conv.label} {conv.name} cannot be read for this kind of model; drop --kernels"
        )
    if w.shape[-1] not in (1, 3):
        raise UserError(
            f"{conv.label} {conv.name} takes {w.shape[-1]} channels; --kernels draws 1- or 3-channel kernels"
        )
    return w[..., ::-1] if bgr and w.shape[-1] == 3 else w


def kernel_images(w: np.ndarray) -> np.ndarray:
    """(C_out, kh, kw, C) kernels -> uint8 RGB images, one shared scale: ``0.5 + w / (2 max|w|)``."""
    scale = float(np.abs(w).max()) or 1.0
    x = np.clip(0.5 + w / (2 * scale), 0, 1)
    x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    return (x * 255).round().astype(np.uint8)
