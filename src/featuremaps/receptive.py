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
Computed once per model from its graph (no forward pass), by each framework's adapter with the functions
here: Keras in :mod:`featuremaps.frameworks.keras.receptive`, PyTorch and ONNX in their adapters. This module
imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def whole_box(height: int, width: int) -> dict:
    """The box of a whole ``height`` x ``width`` image."""
    return {"top": 0, "left": 0, "bottom": int(height) - 1, "right": int(width) - 1}


def peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image and channel of ``maps`` (B, h, w, C): the largest value and its position (y, x), each (B, C)
    (the first position in row-major order among equal values)."""
    flat = maps.reshape(len(maps), -1, maps.shape[-1])
    arg = flat.argmax(axis=1)
    return flat.max(axis=1), arg // maps.shape[2], arg % maps.shape[2]


def crop_box(field: Field | None, y: int, x: int, height: int, width: int) -> dict:
    """The box ``{top, left, bottom, right}`` of the ``height`` x ``width`` input that map position (y, x) sees:
    :meth:`Field.box`, or the whole image where the field is unknown (``field`` None: never a guessed crop)."""
    return field.box(int(y), int(x), height, width) if field is not None else whole_box(height, width)


def crop(pixels: np.ndarray, box: dict) -> np.ndarray:
    """``pixels`` (H, W[, C], 0-255) cut to ``box`` (inclusive), as uint8.

    Example::

        >>> crop(np.zeros((48, 48, 1)), Field((5.0, 5.0)).box(10, 10, 48, 48)).shape
        (5, 5, 1)
    """
    part = pixels[box["top"] : box["bottom"] + 1, box["left"] : box["right"] + 1]
    return np.clip(part, 0, 255).round().astype(np.uint8)


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


@dataclass
class ReceptiveFields:
    """``fields``: conv label (``C3``) -> :class:`Field`; ``exact`` False with ``note`` when approximated."""

    fields: dict[str, Field]
    exact: bool
    note: str


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
