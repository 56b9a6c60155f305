"""Keras 3 models behind featuremaps' model protocol: the adapter (``adapter``), graph replay and the split at
one layer (``graph``), conv-layer discovery (``layers``), gradients per backend (``gradients``) and receptive
fields (``receptive``), and the loaders of named models and files (``loaders``: what ``models.load`` calls).
:mod:`featuremaps.models` imports this package only when a Keras model is loaded."""

from featuremaps.frameworks.keras.adapter import KerasAdapter, adapt, wrap
from featuremaps.frameworks.keras.loaders import load_application, load_emotion, load_file

__all__ = ["KerasAdapter", "adapt", "load_application", "load_emotion", "load_file", "wrap"]
