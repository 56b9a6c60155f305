"""The FER2013 emotion model: a VGG-16 for 48x48 grayscale faces, and the weights shipped with the package.

Layer names follow ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``) so feature maps line
up with the ImageNet model. It is trained with batch normalisation (conv -> BN -> ReLU, Ioffe & Szegedy 2015)
and shipped with each BN folded into its conv (``fold_batch_norm``): the shipped model's conv layers carry
their ReLU like Keras' VGG16, so the maps featuremaps shows are post-activation, as for the ImageNet model,
and the predictions are those of the trained network (to float rounding).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from keras import layers

from featuremaps.errors import UserError
from featuremaps.io import atomic_path

#: Class names in the model's output order (alphabetical, as the FER2013 folder layout sorts them).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
INPUT_SHAPE = (48, 48, 1)
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
WEIGHTS_FILE = "emotion_vgg16.weights.npz"
CARD_FILE = "emotion_vgg16.card.json"


def build_emotion_vgg16(
    input_shape=INPUT_SHAPE,
    num_classes: int = len(EMOTIONS),
    dropout: float = 0.4,
    batch_norm: bool = False,
    width: float = 1.0,
):
    """VGG-16 (13 conv 3x3 in 5 blocks, max pooling, dense 512-512 head with dropout); input in [0, 1].

    The last pool takes the maximum over the whole final map (3x3 at 48 px), so every position reaches the
    head; Keras' 2x2 pool there would drop the bottom row and right column of a 3x3 map.

    ``batch_norm=True`` is the training form (conv -> BN -> ReLU); the default is the inference form with
    ReLU inside each conv, which :func:`fold_batch_norm` fills from a trained BN model. ``width`` scales
    the filter counts (tests use a narrow copy; the shipped model is width 1).
    """

    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for b, (filters, n) in enumerate(VGG16_BLOCKS, start=1):
        f = max(4, int(round(filters * width)))
        for i in range(1, n + 1):
            if batch_norm:
                x = layers.Conv2D(
                    f, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"block{b}_conv{i}"
                )(x)
                x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{i}")(x)
                x = layers.Activation("relu", name=f"block{b}_relu{i}")(x)
            else:
                x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv{i}")(x)
        if b < len(VGG16_BLOCKS):
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        else:
            # the whole final map (see the docstring): a 2x2 pool of a 3x3 map blanks CAMs over the mouth
            x = layers.GlobalMaxPooling2D(keepdims=True, name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    units = max(16, int(round(512 * width)))
    x = layers.Dense(units, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Dense(units, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    # float32 output: stable softmax under mixed precision
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="emotion_vgg16")


def fold_batch_norm(trained, width: float = 1.0):
    """The inference form of a ``batch_norm=True`` model: each BN folded into the conv before it.

    For conv output ``z = W*x`` and BN ``g (z - m) / sqrt(v + eps) + b``: ``W' = W s``, ``bias' = b - m s``
    with ``s = g / sqrt(v + eps)``; ReLU moves into the conv. Exact up to float rounding.
    """
    model = build_emotion_vgg16(tuple(trained.inputs[0].shape[1:]), int(trained.outputs[0].shape[-1]), width=width)
    for layer in model.layers:
        if not layer.get_weights():
            continue
        src = trained.get_layer(layer.name)
        if layer.name.startswith("block") and "_conv" in layer.name:
            (kernel,) = [np.asarray(w, np.float64) for w in src.get_weights()]
            bn = trained.get_layer(layer.name.replace("_conv", "_bn"))
            gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
            scale = gamma / np.sqrt(var + bn.epsilon)
            layer.set_weights([(kernel * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)])
        else:
            layer.set_weights([np.asarray(w, np.float32) for w in src.get_weights()])
    return model


def unfold_batch_norm(folded, faces: np.ndarray, width: float = 1.0, batch_size: int = 128):
    """The training form of an inference-form model, with the same outputs: a warm start for more training.

    The inverse of :func:`fold_batch_norm` is not unique; this one keeps each conv kernel ``W'`` and sets
    each BN to the statistics of ``z = W' * x`` measured on ``faces`` (uint8 (N, 48, 48)): ``m``, ``v`` =
    the channel mean and variance, ``g = sqrt(v + eps)``, ``b = bias' + m``. Then ``BN(z) = z + bias'``
    exactly with the stored statistics, and nearly so with batch statistics in training, so training
    resumes where the folded model is instead of from a disturbed network.
    """

    model = build_emotion_vgg16(
        tuple(folded.inputs[0].shape[1:]), int(folded.outputs[0].shape[-1]), batch_norm=True, width=width
    )
    convs = [layer for layer in model.layers if layer.name.startswith("block") and "_conv" in layer.name]
    for layer in model.layers:
        if not layer.get_weights() or "_bn" in layer.name:
            continue
        src = folded.get_layer(layer.name)
        if layer in convs:
            kernel, bias = src.get_weights()
            layer.set_weights([kernel])
            bn = model.get_layer(layer.name.replace("_conv", "_bn"))  # identity + bias until measured
            one = np.ones_like(bias)
            bn.set_weights([one, bias, np.zeros_like(bias), one - bn.epsilon])
        else:
            layer.set_weights(src.get_weights())
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    sums = [np.zeros((2, layer.filters)) for layer in convs]  # per channel: sum of z, sum of z^2
    count = np.zeros(len(convs))
    for i in range(0, len(faces), batch_size):  # in batches: all maps of 4k faces would take ~10 GB
        x = faces[i : i + batch_size, ..., None].astype(np.float32) / 255.0
        for j, z in enumerate(probe.predict_on_batch(x)):
            z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
            sums[j] += (z.sum(0), (z * z).sum(0))
            count[j] += len(z)
    for layer, (s1, s2), n in zip(convs, sums, count, strict=True):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        bn = model.get_layer(layer.name.replace("_conv", "_bn"))
        bias = bn.get_weights()[1]
        bn.set_weights([w.astype(np.float32) for w in (np.sqrt(var + bn.epsilon), bias + mean, mean, var)])
    return model


def _data_path(name: str):
    return resources.files("featuremaps").joinpath("data").joinpath(name)


def shipped_weights_available() -> bool:
    return _data_path(WEIGHTS_FILE).is_file()


def model_card() -> dict | None:
    """The JSON model card shipped beside the weights (data, recipe, accuracy), or None."""
    p = _data_path(CARD_FILE)
    return json.loads(p.read_text()) if p.is_file() else None


def save_weights_npz(model, path: str | Path, dtype=np.float16) -> None:
    """Store every weight by layer name (float16 by default: half the size, same accuracy to 0.1 points)."""
    arrays = {}
    for layer in model.layers:
        for j, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{j}"] = np.asarray(w).astype(dtype)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_weights_npz(model, path) -> None:
    """Inverse of :func:`save_weights_npz`, by layer name; any Keras backend."""
    with np.load(path) as data:
        for layer in model.layers:
            n = len(layer.get_weights())
            if n == 0:
                continue
            ws = [data[f"{layer.name}/{j}"].astype(np.float32) for j in range(n)]
            layer.set_weights(ws)


def load_emotion_model():
    """The shipped, trained emotion model (raises UserError if the package was built without weights)."""
    if not shipped_weights_available():
        raise UserError(
            "the bundled emotion model weights are missing from this install; "
            "reinstall featuremaps or pass --model vgg16"
        )
    model = build_emotion_vgg16()
    with _data_path(WEIGHTS_FILE).open("rb") as f:
        load_weights_npz(model, f)
    return model
