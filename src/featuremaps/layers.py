"""Find the convolutional layers of a Keras model, nested models included, and parse ``--layers`` specs.

Layers are numbered C1, C2, ... in forward (topological) order, the order ``model.layers`` keeps for
functional and Sequential models, descending into nested models where they are called.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import weakref
from dataclasses import dataclass, field

import keras

from featuremaps.errors import UserError

#: Class names (``type(layer).__name__``) featuremaps draws; subclasses of these count too.
CONV2D_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose")
UNSUPPORTED_TYPES = ("Conv1D", "Conv3D", "Conv1DTranspose", "Conv3DTranspose", "SeparableConv1D", "DepthwiseConv1D")


@dataclass
class ConvLayer:
    """One conv layer: ``index`` is its C-number, ``name`` its path (``outer/inner`` for nested models)."""

    index: int
    name: str
    layer: object = field(repr=False)
    kind: str = ""

    @property
    def label(self) -> str:
        return f"C{self.index}"

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def channels(self) -> int | None:
        shape = _output_shape(self.layer)
        return shape[-1] if shape else None

    @property
    def params(self) -> int:
        return int(self.layer.count_params()) if self.layer.built else 0


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        pass
    # Never-called layer: the channel count is the filter count (depth multiplier for depthwise).
    return None


def _conv_kind(layer) -> str | None:
    """The first CONV2D_TYPES / UNSUPPORTED_TYPES name in the layer's class hierarchy."""
    for cls in type(layer).__mro__:
        if cls.__name__ in CONV2D_TYPES or cls.__name__ in UNSUPPORTED_TYPES:
            return cls.__name__
    return None


def is_model(layer) -> bool:

    return isinstance(layer, keras.Model)


#: Call counts already read, by model. Reading them costs a ``get_config()`` (0.15 s on ResNet50), and a
#: command lists a model's layers several times; a functional graph cannot change once built. Weak keys: an
#: entry leaves with its model, nothing here keeps a user's model alive.
_CALLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layer_calls(model) -> dict[str, int]:
    """How many times a functional ``model`` calls each of its layers and nested models (by name), read from
    its config; empty for a Sequential model (each of its layers is called once)."""
    if isinstance(model, keras.Sequential):
        return {}
    try:
        return _CALLS[model]
    except (KeyError, TypeError):
        pass
    try:
        cfg = model.get_config()
    except Exception:  # subclassed models may not implement get_config
        return {}
    if "layers" not in cfg or "input_layers" not in cfg:
        return {}
    calls = {lc["name"]: len(lc.get("inbound_nodes") or []) for lc in cfg["layers"]}
    try:
        _CALLS[model] = calls
    except TypeError:  # not weakly referenceable: read again next time
        pass
    return calls


@contextlib.contextmanager
def distinct_layer_names(model):
    """Every layer of ``model`` and its nested models with a name of its own for the duration, then as it was.

    Keras requires the layers of one functional graph to have unique names; a nested model's layer may share
    one with an outer layer (``conv`` inside and outside). The graphs featuremaps builds from a replay (its
    feature-map, atlas and CAM models) hold both, so the later ones are renamed (``conv__featuremaps2``) while
    such a graph is built. Nothing is renamed where the names are already unique.
    """
    seen: dict[str, int] = {}
    renamed = []
    stack, counted = [model], {id(model)}
    while stack:
        m = stack.pop(0)
        for layer in m.layers:
            if id(layer) in counted:
                continue
            counted.add(id(layer))
            if is_model(layer):
                stack.append(layer)
            n = seen[layer.name] = seen.get(layer.name, 0) + 1
            if n > 1:
                renamed.append((layer, layer.name))
                layer.name = f"{layer.name}__featuremaps{n}"
    try:
        yield
    finally:
        for layer, name in reversed(renamed):
            layer.name = name


def walk(model, prefix: str = ""):
    """Yield ``(path_name, layer)`` for every call of every non-model layer in forward order, entering nested
    models.

    A layer or nested model called more than once (shared weights, e.g. a siamese base) is listed once per
    call, the calls one after the other: ``conv`` then ``conv@2``; ``base/conv`` then ``base@2/conv``.
    """
    calls = _layer_calls(model)
    for layer in model.layers:
        name = f"{prefix}{layer.name}"
        for k in range(max(1, calls.get(layer.name, 1))):
            if is_model(layer):
                yield from walk(layer, prefix=f"{name}/" if k == 0 else f"{name}@{k + 1}/")
            else:
                yield (name if k == 0 else f"{name}@{k + 1}"), layer


def conv_layers(model) -> list[ConvLayer]:
    """The model's 2-D conv layers in forward order, numbered from 1.

    Raises UserError if it has none (listing 1-D/3-D convs, which featuremaps does not draw).
    """
    found, unsupported = [], []
    for name, layer in walk(model):
        kind = _conv_kind(layer)
        if kind in CONV2D_TYPES:
            found.append(ConvLayer(len(found) + 1, name, layer, kind))
        elif kind:
            unsupported.append(f"{name} ({kind})")
    if not found:
        if unsupported:
            raise UserError(
                f"model '{model.name}' has only 1-D/3-D convolutions "
                f"({', '.join(unsupported[:3])}),"
                " which featuremaps does not support; it draws Conv2D-family layers"
            )
        raise UserError(
            f"model '{model.name}' has no convolutional layers (Conv2D, SeparableConv2D, "
            "DepthwiseConv2D, Conv2DTranspose); pass a CNN"
        )
    return found


_RANGE = re.compile(r"^[cC](\d+)\s*-\s*[cC]?(\d+)$")
_CNUM = re.compile(r"^[cC](\d+)$")


def select_layers(convs: list[ConvLayer], spec: str | list[str] | None) -> list[ConvLayer]:
    """Pick layers by ``all``, names (full or short), C-numbers, ranges (``C1-C5``), globs; in model order."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list(convs)
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise UserError("--layers is empty; give names, C-numbers (C3), ranges (C1-C5), globs or 'all'")
    chosen: set[int] = set()
    n = len(convs)
    for item in items:
        if item == "all":
            chosen.update(range(1, n + 1))
            continue
        if m := _RANGE.match(item):
            a, b = int(m.group(1)), int(m.group(2))
            if a > b and 1 <= b <= a <= n:
                raise UserError(f"layer range '{item}' is reversed; write it low to high: C{b}-C{a}")
            if not (1 <= a <= b <= n):
                raise UserError(f"layer range '{item}' is outside C1-C{n}; run 'featuremaps layers' to list them")
            chosen.update(range(a, b + 1))
            continue
        if m := _CNUM.match(item):
            i = int(m.group(1))
            if not 1 <= i <= n:
                raise UserError(f"no layer {item}: the model has C1-C{n}; run 'featuremaps layers' to list them")
            chosen.add(i)
            continue
        hits = [c.index for c in convs if item in (c.name, c.short_name)]
        if not hits and any(ch in item for ch in "*?["):
            hits = [
                c.index for c in convs if fnmatch.fnmatchcase(c.name, item) or fnmatch.fnmatchcase(c.short_name, item)
            ]
        if not hits:
            names = ", ".join(c.short_name for c in convs[:8]) + (", ..." if n > 8 else "")
            raise UserError(
                f"no conv layer matches '{item}'; the model has {n} ({names}); use names, C1-C{n}, ranges or globs"
            )
        chosen.update(hits)
    return [c for c in convs if c.index in chosen]
