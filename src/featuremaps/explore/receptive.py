"""The receptive fields the explorer shows: :mod:`featuremaps.receptive` (kept here for old imports)."""

from featuremaps.frameworks.keras.receptive import receptive_fields
from featuremaps.receptive import Field, ReceptiveFields, adapter_fields, kernel_field, transposed_field, widest

__all__ = [
    "Field",
    "ReceptiveFields",
    "adapter_fields",
    "kernel_field",
    "receptive_fields",
    "transposed_field",
    "widest",
]
