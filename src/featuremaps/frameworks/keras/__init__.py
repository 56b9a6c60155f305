"""Keras 3 models behind featuremaps' model protocol: the adapter (``adapter``), graph replay and the split at
one layer (``graph``), conv-layer discovery (``layers``), gradients per backend (``gradients``) and receptive
fields (``receptive``)."""

from featuremaps.frameworks.keras.adapter import KerasAdapter, adapt, wrap

__all__ = ["KerasAdapter", "adapt", "wrap"]
