"""Keras layer discovery, kept here for old imports: :mod:`featuremaps.frameworks.keras.layers` (and the
framework-neutral :func:`featuremaps.maps.select_layers`)."""

from featuremaps.frameworks.keras.layers import (
    CONV2D_TYPES,
    UNSUPPORTED_TYPES,
    conv_layers,
    distinct_layer_names,
    is_model,
    walk,
)
from featuremaps.maps import ConvLayer, select_layers

__all__ = [
    "CONV2D_TYPES",
    "UNSUPPORTED_TYPES",
    "ConvLayer",
    "conv_layers",
    "distinct_layer_names",
    "is_model",
    "select_layers",
    "walk",
]
