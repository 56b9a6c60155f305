"""Receptive fields of conv layers: which patch of the input one position of a feature map sees.

For a chain of layers with kernel ``k``, stride ``s``, dilation ``d`` (effective kernel ``k' = d (k - 1) + 1``)
and left padding ``p``, the field grows layer by layer (Araujo et al., "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019)::

    size'  = size + (k' - 1) * jump
    start' = start + ((k' - 1) / 2 - p) * jump      # centre of output position 0, in input pixels
    jump'  = jump * s

Position ``(y, x)`` of a map then sees the input box centred on ``start + (y, x) * jump`` of side ``size``
(clipped to the image). Exact for chains (VGG, the emotion model); where a graph branches and merges
(ResNet, Inception) the widest incoming field is taken, an approximation the result says it is.
Computed once per model, from layer configs only (no forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from featuremaps.layers import conv_layers, is_model

_CONV = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
_TRANSPOSE = ("Conv2DTranspose",)
_POOL = ("MaxPooling2D", "AveragePooling2D")
_FLAT = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense", "Reshape")


@dataclass(frozen=True)
class Field:
    """Per axis (y, x): ``size`` of the field, ``jump`` (input pixels per map pixel), ``start`` (centre of 0)."""

    size: tuple[float, float] = (1.0, 1.0)
    jump: tuple[float, float] = (1.0, 1.0)
    start: tuple[float, float] = (0.0, 0.0)

    def box(self, y: int, x: int, height: int, width: int) -> dict:
        """Input box ``{top, left, bottom, right}`` (inclusive pixels, clipped) seen by map position (y, x)."""
        cy = self.start[0] + y * self.jump[0]
        cx = self.start[1] + x * self.jump[1]
        hy, hx = (self.size[0] - 1) / 2, (self.size[1] - 1) / 2
        top, left = max(0, round(cy - hy)), max(0, round(cx - hx))
        bottom, right = min(height - 1, round(cy + hy)), min(width - 1, round(cx + hx))
        return {"top": int(top), "left": int(left), "bottom": int(bottom), "right": int(right)}

    def as_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def kernel_field(f: Field, kernel, stride=1, dilation=1, padding=0) -> Field:
    """The public form of the recurrence above for other frameworks' graphs: ``padding`` is ``valid``,
    ``same`` or the top/left padding (an int or a pair).

    Example::

        >>> kernel_field(kernel_field(Field(), 3, padding=1), 3, padding=1).size   # two 3x3 convs
        (5.0, 5.0)
    """
    pad = padding if isinstance(padding, str) else _pair(padding)
    return _kernel(f, _pair(kernel), _pair(stride), _pair(dilation), pad)


#: the notes an approximated field carries (every framework's graph walk says the same)
MERGE_NOTE = "the graph branches: where paths merge the widest field is used (approximate)"
TRANSPOSED_NOTE = "after a transposed convolution the field is approximate"


def transposed_field(f: Field, kernel, stride) -> Field:
    """The (approximate) field after a transposed convolution: the jump shrinks by the stride."""
    k, s = _pair(kernel), _pair(stride)
    return Field(
        tuple(f.size[a] + (k[a] - 1) * f.jump[a] / s[a] for a in range(2)),
        tuple(f.jump[a] / s[a] for a in range(2)),
        f.start,
    )


def widest(fields: list, notes: set | None = None) -> Field | None:
    """Where paths merge (an add, a concatenation): the widest incoming field (None if none has one); when the
    incoming fields differ, :data:`MERGE_NOTE` goes into ``notes``."""
    fields = [f for f in fields if f is not None]
    if notes is not None and len(set(fields)) > 1:
        notes.add(MERGE_NOTE)
    return max(fields, key=lambda f: f.size[0] * f.size[1]) if fields else None


def _kind(layer) -> str:
    for cls in type(layer).__mro__:
        if cls.__name__ in _CONV + _TRANSPOSE + _POOL + _FLAT + ("ZeroPadding2D", "Cropping2D", "UpSampling2D"):
            return cls.__name__
    return ""


def _kernel(f: Field, k, s, d, padding) -> Field:
    """The field after a kernel ``k`` with stride ``s``, dilation ``d`` and ``padding``: ``valid``, ``same``,
    or the left (top, left) padding in pixels (PyTorch and ONNX give numbers)."""
    size, jump, start = [], [], []
    for a in range(2):
        ke = d[a] * (k[a] - 1) + 1
        if isinstance(padding, str):
            pad = 0 if padding == "valid" else max(ke - s[a], 0) // 2
        else:
            pad = padding[a]
        size.append(f.size[a] + (ke - 1) * f.jump[a])
        start.append(f.start[a] + ((ke - 1) / 2 - pad) * f.jump[a])
        jump.append(f.jump[a] * s[a])
    return Field(tuple(size), tuple(jump), tuple(start))


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
            out = _kernel(
                f, _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"]), cfg["padding"]
            )
        elif kind in _TRANSPOSE:
            out = transposed_field(f, cfg["kernel_size"], cfg["strides"])
            self.notes.add(TRANSPOSED_NOTE)
        elif kind in _POOL:
            k = _pair(cfg["pool_size"])
            s = _pair(cfg["strides"] or cfg["pool_size"])
            out = _kernel(f, k, s, (1, 1), cfg["padding"])
        elif kind == "ZeroPadding2D":
            (t, _), (left, _) = cfg["padding"]
            out = Field(f.size, f.jump, (f.start[0] - t * f.jump[0], f.start[1] - left * f.jump[1]))
        elif kind == "Cropping2D":
            (t, _), (left, _) = cfg["cropping"]
            out = Field(f.size, f.jump, (f.start[0] + t * f.jump[0], f.start[1] + left * f.jump[1]))
        elif kind == "UpSampling2D":
            s = _pair(cfg["size"])
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


@dataclass
class ReceptiveFields:
    """``fields``: conv label (``C3``) -> :class:`Field`; ``exact`` False with ``note`` when approximated."""

    fields: dict[str, Field]
    exact: bool
    note: str


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


def adapter_fields(ad, convs) -> ReceptiveFields:
    """Receptive fields of a PyTorch or ONNX model's conv layers, from its graph (``ad.receptive_fields()``:
    ``{conv name: Field}``, computed by the framework's module with the recurrences above); none where the
    framework cannot give its graph (a TorchScript archive, a module torch.fx cannot trace)."""
    fields, note = {}, ""
    try:
        by_name, exact, note = ad.receptive_fields()
    except Exception as e:  # an untraceable graph: no fields rather than no explorer
        by_name, exact, note = {}, False, f"could not follow the model's graph ({type(e).__name__})"
    for c in convs:
        if c.name in by_name and by_name[c.name] is not None:
            fields[c.label] = by_name[c.name]
    missing = [c.label for c in convs if c.label not in fields]
    notes = [n for n in (note, f"no field for {', '.join(missing[:4])}" if missing else "") if n]
    return ReceptiveFields(fields, exact and not missing, "; ".join(notes))
