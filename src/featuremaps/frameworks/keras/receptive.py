"""Receptive fields of a Keras model's conv layers from its layer configs (the recurrence of
:mod:`featuremaps.receptive`); no forward pass."""

from __future__ import annotations

import keras

from featuremaps.frameworks.keras.layers import conv_layers, is_model
from featuremaps.receptive import TRANSPOSED_NOTE, Field, ReceptiveFields, kernel_field, transposed_field, widest

_CONV = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
_TRANSPOSE = ("Conv2DTranspose",)
_POOL = ("MaxPooling2D", "AveragePooling2D")
_FLAT = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense", "Reshape")


def _kind(layer) -> str:
    for cls in type(layer).__mro__:
        if cls.__name__ in _CONV + _TRANSPOSE + _POOL + _FLAT + ("ZeroPadding2D", "Cropping2D", "UpSampling2D"):
            return cls.__name__
    return ""


class _Walk:
    def __init__(self):
        self.fields: dict[int, Field] = {}  # id(conv layer) -> field of its output
        self.notes: set[str] = set()

    def apply(self, layer, f: Field | None) -> Field | None:
        if f is None:
            return None
        if is_model(layer):
            return self.model(layer, f)
        kind = _kind(layer)
        cfg = layer.get_config()
        if cfg.get("data_format", "channels_last") == "channels_first":
            self.notes.add("channels_first layers are treated as channels_last")
        if kind in _CONV:
            out = kernel_field(f, cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"], cfg["padding"])
        elif kind in _TRANSPOSE:
            out = transposed_field(f, cfg["kernel_size"], cfg["strides"])
            self.notes.add(TRANSPOSED_NOTE)
        elif kind in _POOL:
            out = kernel_field(f, cfg["pool_size"], cfg["strides"] or cfg["pool_size"], 1, cfg["padding"])
        elif kind == "ZeroPadding2D":
            (t, _), (left, _) = cfg["padding"]
            out = Field(f.size, f.jump, (f.start[0] - t * f.jump[0], f.start[1] - left * f.jump[1]))
        elif kind == "Cropping2D":
            (t, _), (left, _) = cfg["cropping"]
            out = Field(f.size, f.jump, (f.start[0] + t * f.jump[0], f.start[1] + left * f.jump[1]))
        elif kind == "UpSampling2D":
            s = cfg["size"] if isinstance(cfg["size"], list | tuple) else (cfg["size"], cfg["size"])
            out = Field(f.size, tuple(f.jump[a] / s[a] for a in range(2)), f.start)
            self.notes.add("after upsampling the field is approximate")
        elif kind in _FLAT:
            return None
        else:  # activations, normalisation, dropout, rescaling, adds: the field is unchanged
            out = f
        if kind in _CONV + _TRANSPOSE:
            self.fields[id(layer)] = out
        return out

    def model(self, model, f: Field) -> Field | None:
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                f = self.apply(layer, f)
            return f
        try:
            cfg = model.get_config()
            entries, outputs = cfg["layers"], cfg["output_layers"]
        except (NotImplementedError, KeyError, TypeError, AttributeError):
            self.notes.add(f"{model.name} is not a functional graph: layers taken in order as a chain")
            for layer in model.layers:
                f = self.apply(layer, f)
            return f
        by_name: dict[str, Field | None] = {}
        for entry in entries:
            name = entry["name"]
            layer = model.get_layer(name)
            if entry.get("class_name") == "InputLayer" or not entry.get("inbound_nodes"):
                by_name[name] = f
                continue
            incoming = widest([by_name.get(n) for n in _histories(entry["inbound_nodes"])], self.notes)
            by_name[name] = None if incoming is None else self.apply(layer, incoming)
        out = outputs[0] if outputs else None
        if isinstance(out, list) and out and isinstance(out[0], str):
            return by_name.get(out[0])
        if isinstance(out, list) and out and isinstance(out[0], list):
            return by_name.get(out[0][0])
        return None


def _histories(obj) -> list[str]:
    """Layer names of the ``keras_history`` entries anywhere in a config's inbound nodes."""
    found = []
    if isinstance(obj, dict):
        hist = obj.get("keras_history")
        if hist:
            return [hist[0]]
        for v in obj.values():
            found.extend(_histories(v))
    elif isinstance(obj, list | tuple):
        for v in obj:
            found.extend(_histories(v))
    return found


def receptive_fields(model) -> ReceptiveFields:
    """The receptive field of every conv layer of a Keras model (see the module docstring for the formula).

    Example::

        rf = receptive_fields(keras.applications.VGG16(weights=None))
        rf.fields["C3"].size    # (10.0, 10.0): block2_conv1 sees 10x10 input pixels
    """
    w = _Walk()
    try:
        w.model(model, Field())
    except Exception as e:  # an exotic layer config: no fields rather than no explorer
        w.notes.add(f"could not follow the model's layers ({type(e).__name__})")
    fields = {c.label: w.fields[id(c.layer)] for c in conv_layers(model) if id(c.layer) in w.fields}
    missing = [c.label for c in conv_layers(model) if c.label not in fields]
    if missing:
        w.notes.add(f"no field for {', '.join(missing[:4])}")
    return ReceptiveFields(fields, not w.notes, "; ".join(sorted(w.notes)))
