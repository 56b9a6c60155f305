"""A loaded model and how to feed it: :class:`LoadedModel` (the model, its name, preprocessing, input size and
class names) and the preprocessing modes (:func:`preprocess_fn`). Framework-neutral: the loaders of each framework
(:mod:`featuremaps.models`, :mod:`featuremaps.frameworks`) fill it in; this module imports NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from featuremaps.errors import UserError

PREPROCESS_MODES = {
    "unit": "x / 255 (pixels in [0, 1])",
    "raw": "pixels as they are, 0-255",
    "symmetric": "x / 127.5 - 1 (pixels in [-1, 1])",
    "caffe": "RGB->BGR, ImageNet mean subtracted (keras.applications 'caffe' mode)",
    "torch": "x / 255, ImageNet mean/std normalised ('torch' mode)",
}


@dataclass
class LoadedModel:
    """A model with what featuremaps needs to feed it and to label its output."""

    model: object
    name: str
    source: str
    preprocess: str
    preprocess_fn: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    input_shape: tuple  # (H, W, C), entries may be None
    classes: list[str] | None = None
    is_emotion: bool = False
    #: built with random weights (``--weights none``): figures say so and show no prediction
    random_weights: bool = False
    needs_input_shape: bool = False  # a file whose input size is free but not free to choose (ONNX)

    def resolve_input_shape(self, image_hw: tuple[int, int], override: tuple[int, ...] | None = None):
        """Concrete (H, W, C): the model's own, then ``--input-shape``, then the image's size (max 512)."""
        shape = list(self.input_shape) if self.input_shape else [None, None, None]
        if len(shape) != 3:
            raise UserError(
                f"model '{self.name}' takes input of shape {tuple(self.input_shape)}, not images "
                "(H, W, C); featuremaps draws 2-D CNNs"
            )
        if override:
            if len(override) != 3:
                raise UserError(f"--input-shape must be H,W,C (got {','.join(map(str, override))})")
            for i, v in enumerate(override):
                if shape[i] is not None and shape[i] != v:
                    raise UserError(
                        f"--input-shape {','.join(map(str, override))} conflicts with the "
                        "model's "
                        f"input {tuple(self.input_shape)}; drop --input-shape"
                    )
            shape = list(override)
        if self.needs_input_shape and (shape[0] is None or shape[1] is None):
            raise UserError(f"model '{self.name}' has a dynamic input size; pass --input-shape H,W,C (e.g. 224,224,3)")
        if shape[0] is None or shape[1] is None:
            h, w = image_hw
            s = min(1.0, 512 / max(h, w))
            shape[0] = shape[0] or max(32, round(h * s))
            shape[1] = shape[1] or max(32, round(w * s))
        if shape[2] is None:
            shape[2] = 3
        if shape[2] not in (1, 3):
            raise UserError(f"model input has {shape[2]} channels; featuremaps feeds images with 1 or 3 channels")
        return tuple(int(v) for v in shape)


def preprocess_fn(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    if mode == "unit":
        return lambda x: x / 255.0
    if mode == "raw":
        return lambda x: x
    if mode == "symmetric":
        return lambda x: x / 127.5 - 1.0
    if mode == "caffe":
        return _caffe
    if mode == "torch":
        return _torch
    raise UserError(f"--preprocess '{mode}' is not one of {', '.join(PREPROCESS_MODES)}")


#: keras.applications' ImageNet statistics ("caffe": BGR means of 0-255 pixels; "torch": RGB mean and std of
#: [0, 1] pixels), applied here in float32 exactly as ``imagenet_utils.preprocess_input`` does, step by step
CAFFE_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def _caffe(x) -> np.ndarray:
    x = np.array(x, dtype=np.float32)[..., ::-1].copy()  # RGB -> BGR
    for k in range(min(3, x.shape[-1])):
        x[..., k] -= CAFFE_MEAN[k]
    return x


def _torch(x) -> np.ndarray:
    x = np.array(x, dtype=np.float32)
    x /= 255.0
    for k in range(min(3, x.shape[-1])):
        x[..., k] -= TORCH_MEAN[k]
        x[..., k] /= TORCH_STD[k]
    return x
