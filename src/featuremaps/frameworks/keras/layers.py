"""Find the convolutional layers of a Keras model, nested models included (``--layers`` is read by
:func:`featuremaps.maps.select_layers`, re-exported here).

Layers are numbered C1, C2, ... in forward (topological) order, the order ``model.layers`` keeps for
functional and Sequential models, descending into nested models where they are called.
"""

from __future__ import annotations

import contextlib
import weakref

import keras

from featuremaps.errors import UserError
from featuremaps.maps import ConvLayer, select_layers

#: Class names (``type(layer).__name__``) featuremaps draws; subclasses of these count too.
CONV2D_TYPES = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose")
UNSUPPORTED_TYPES = ("Conv1D", "Conv3D", "Conv1DTranspose", "Conv3DTranspose", "SeparableConv1D", "DepthwiseConv1D")


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


__all__ = ["ConvLayer", "conv_layers", "distinct_layer_names", "is_model", "select_layers", "walk"]
