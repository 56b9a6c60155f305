"""The FER2013 emotion model: a VGG-16 for 48x48 grayscale faces, and the weights shipped with the package.

Layer names follow ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``) so feature maps line
up with the ImageNet model. Each conv layer keeps its ReLU (as in Keras' VGG16) and is followed by batch
normalisation, so the maps featuremaps shows are post-activation, like the ImageNet model's.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

#: Class names in the model's output order (alphabetical, as the FER2013 folder layout sorts them).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
INPUT_SHAPE = (48, 48, 1)
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
WEIGHTS_FILE = "emotion_vgg16.weights.npz"
CARD_FILE = "emotion_vgg16.card.json"


def build_emotion_vgg16(input_shape=INPUT_SHAPE, num_classes: int = len(EMOTIONS), dropout: float = 0.5):
    """VGG-16 (13 conv 3x3 in 5 blocks) with batch norm and a small dense head; input in [0, 1]."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for b, (filters, n) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, n + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              kernel_initializer="he_normal", name=f"block{b}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    x = layers.Dense(512, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="drop3")(x)
    # float32 output: stable softmax under mixed precision
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="emotion_vgg16")


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
    from .io import atomic_path

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
    from .errors import UserError

    if not shipped_weights_available():
        raise UserError("the bundled emotion model weights are missing from this install; "
                        "reinstall featuremaps or pass --model vgg16")
    model = build_emotion_vgg16()
    with _data_path(WEIGHTS_FILE).open("rb") as f:
        load_weights_npz(model, f)
    return model
