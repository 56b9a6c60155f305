"""What the emotion models are and what ships with them, without a framework: the class names, the input shape,
the architectures, and the shipped weight and card files (:mod:`featuremaps.emotion.model` builds and loads the
Keras models; ``models.load`` reads these facts before it imports Keras)."""

from __future__ import annotations

import json
from importlib import resources

#: Class names in the model's output order (alphabetical, as the FER2013 folder layout sorts them).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
INPUT_SHAPE = (48, 48, 1)
ARCHS = ("vgg16", "resnet", "mobilenet")


def weights_file(arch: str = "vgg16") -> str:
    """The shipped weights' file name for ``arch`` (``emotion_resnet.weights.npz``, ...)."""
    return f"emotion_{arch}.weights.npz"


def card_file(arch: str = "vgg16") -> str:
    return f"emotion_{arch}.card.json"


def shipped_dir():
    """Where this install keeps the shipped weights and cards (``featuremaps/data`` inside the package)."""
    return resources.files("featuremaps").joinpath("data")


def data_path(name: str):
    """A file among the shipped ones (:func:`shipped_dir`)."""
    return shipped_dir().joinpath(name)


def shipped_weights_available(arch: str = "vgg16") -> bool:
    """Whether this install has the trained weights of ``arch`` (``vgg16``; ``resnet``, ``mobilenet``)."""
    return data_path(weights_file(arch)).is_file()


def model_card(arch: str = "vgg16") -> dict | None:
    """The JSON model card shipped beside ``arch``'s weights (data, recipe, accuracy), or None."""
    p = data_path(card_file(arch))
    return json.loads(p.read_text()) if p.is_file() else None
