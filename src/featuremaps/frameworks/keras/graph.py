"""Keras graphs: replay a model on a fresh Input (every conv layer's output reachable), cut it at one layer.

The intermediate model is built by replaying the user's model, layer object by layer object, on one set of
inputs: nested Sequential and functional models are flattened into the outer graph, so their inner layers'
outputs are reachable without "graph disconnected" errors, and never-built Sequential models are built from
the input shape. Only public Keras 3 API is used: the functional graph is read from ``get_config()``.
The replay calls the same layer objects (weights shared, nothing copied, the user's model is not changed).

The feature-map model (:func:`maps_model`) takes the channel selection and per-layer statistics inside the
graph, so only the chosen maps leave it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from featuremaps.errors import UserError
from featuremaps.frameworks.keras.layers import is_model
from featuremaps.maps import STATS, ConvLayer

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- graph replay
def _is_graph_model(layer) -> bool:

    if not isinstance(layer, keras.Model) or isinstance(layer, keras.Sequential):
        return False
    try:
        return "input_layers" in layer.get_config()
    except Exception:  # subclassed models may not implement get_config
        return False


def _replay_sequential(model, x, taps: dict, cut=None, prefix: str = ""):
    for layer in model.layers:
        x = _call(layer, (x,), {}, taps, cut, f"{prefix}{layer.name}")
    return x


def call_path(prefix: str, name: str, call: int) -> str:
    """The path of one call of a layer: ``base/conv`` for the first call, ``base@2/conv`` for the second."""
    return f"{prefix}{name}" if call == 0 else f"{prefix}{name}@{call + 1}"


def _call(layer, args, kwargs, taps, cut=None, path: str | None = None):
    """Call one layer/operation (replaying nested models); record its output in ``taps``.

    ``taps`` maps the call's path (``outer/inner``, ``base@2/conv`` for a sub-model's second call) to its
    output and ``id(layer)`` to the output of the layer's first call.
    """
    path = layer.name if path is None else path
    if isinstance(layer, keras.Sequential):
        (x,) = args
        return _replay_sequential(layer, x, taps, cut, prefix=f"{path}/" if path else "")
    if _is_graph_model(layer):
        return _replay_functional(layer, args, taps, cut, prefix=f"{path}/" if path else "")
    if isinstance(layer, keras.Model):
        raise UserError(
            f"model '{layer.name}' ({type(layer).__name__}) is a subclassed Keras model whose graph cannot be read; "
            "featuremaps needs Sequential or functional models (nested ones are fine)"
        )
    try:
        out = cut.call(layer, args, kwargs, taps, path) if cut is not None else layer(*args, **kwargs)
    except UserError:
        raise
    except Exception as e:  # a layer that cannot be re-called on a fresh Input: one line, never a traceback
        msg = _first_line(e)
        if TOO_SMALL.search(str(e)):
            raise _TooSmall(layer, path, args) from None
        raise UserError(
            f"cannot replay {type(layer).__name__} '{path}' of this model ({msg}); featuremaps re-calls every "
            "layer on a new Input: please report this model"
        ) from None
    taps.setdefault(id(layer), out)  # by object: the layer's first call
    taps.setdefault(path, out)
    return out


#: What Keras and its backends say when a layer's window does not fit in its input.
TOO_SMALL = re.compile(
    r"would be zero or negative|would be negative|negative dimension size|output size is too small|"
    r"kernel size can't be greater",
    re.IGNORECASE,
)


class _TooSmall(UserError):
    """A layer's kernel or pool window is larger than its input: the model's input is too small."""

    def __init__(self, layer, path: str, args):
        self.layer = f"{type(layer).__name__} '{path}'"
        shape = getattr(args[0], "shape", None) if args else None
        first = getattr(layer, "data_format", "channels_last") == "channels_first"
        hw = tuple(shape[2:4] if first else shape[1:3]) if shape is not None and len(shape) == 4 else None
        self.gets = "x".join(str(d) for d in hw) if hw and all(isinstance(d, int) for d in hw) else None
        window = getattr(layer, "pool_size", None) or getattr(layer, "kernel_size", None)
        dilation = getattr(layer, "dilation_rate", None) or (1, 1)
        try:
            self.needs = "x".join(str(d * (k - 1) + 1) for k, d in zip(window, dilation, strict=False))
        except TypeError:
            self.needs = None
        super().__init__(self.message())

    def message(self, input_shape=None) -> str:
        size = f"the input {input_shape[0]}x{input_shape[1]}" if input_shape else "the input"
        what = self.layer
        if self.gets and self.needs:
            what += f" gets {self.gets} and needs at least {self.needs}"
        return f"{size} is too small for this model (its layer {what}); pass a larger --input-shape"


def _call_model(model, inputs, taps: dict, cut, input_shape):
    """The whole model re-called on ``inputs``; a layer whose window does not fit says the input is too small."""
    try:
        return _call(model, (inputs,), {}, taps, cut, path="")
    except _TooSmall as e:
        raise UserError(e.message(input_shape)) from None


def _first_line(e: Exception) -> str:
    """The first informative line of an exception (Keras wraps a layer's error in "Exception encountered...")."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Exception encountered when calling")]
    return (lines[0] if lines else type(e).__name__)[:160]


def _unpack_args(args):
    """Config ``args`` of one node -> Python structure with ``("__ref__", name, node, index)`` leaves."""

    def conv(obj):
        if isinstance(obj, dict):
            cls = obj.get("class_name")
            if cls == "__keras_tensor__":
                name, node, idx = obj["config"]["keras_history"]
                return ("__ref__", name, node, idx)
            if cls == "__tuple__":
                return tuple(conv(v) for v in obj["config"]["value"])
            if cls is not None and "config" in obj:
                return keras.saving.deserialize_keras_object(obj)
            return {k: conv(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [conv(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(conv(v) for v in obj)
        return obj

    return conv(args)


def _replay_functional(model, inputs, taps, cut=None, prefix: str = ""):
    """Replay a functional model's graph on ``inputs`` (its positional call arguments).

    Node numbering of ``get_config()`` (Keras 3): a reference between the model's layers counts the
    referenced layer's calls *inside this model* from 0, nested functional models included; only the
    ``input_layers`` / ``output_layers`` references of a nested functional model count its pre-existing
    input-to-output node too, so they are one higher. Operations that are not layers (``x + y``,
    ``keras.ops.*``, slicing) are in ``model.operations``, not ``model.layers``.
    """
    cfg = model.get_config()
    ops_by_name = {op.name: op for op in model.operations}
    outputs: dict[tuple[str, int], object] = {}
    in_refs = cfg["input_layers"]
    if in_refs and isinstance(in_refs[0], str):
        in_refs = [in_refs]
    flat_in = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], list | tuple) else list(inputs)
    if len(flat_in) != len(in_refs):
        raise UserError(f"model '{model.name}' has {len(in_refs)} inputs; featuremaps draws single-image models")
    for (name, node, _), t in zip(in_refs, flat_in, strict=True):
        outputs[(name, node)] = [t]

    pending = []
    for lc in cfg["layers"]:
        layer = ops_by_name.get(lc["name"])
        if layer is None:
            raise UserError(
                f"cannot replay {lc.get('class_name', '?')} '{prefix}{lc['name']}' of model '{model.name}': it is "
                "not among the model's operations; please report this model"
            )
        for j, node in enumerate(lc.get("inbound_nodes") or []):
            pending.append((layer, j, node))

    def resolve(obj):
        if isinstance(obj, tuple) and len(obj) == 4 and obj[0] == "__ref__":
            key = (obj[1], obj[2])
            if key not in outputs:
                raise KeyError(key)
            outs = outputs[key]
            return outs[obj[3]]
        if isinstance(obj, list):
            return [resolve(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(resolve(v) for v in obj)
        if isinstance(obj, dict):
            return {k: resolve(v) for k, v in obj.items()}
        return obj

    while pending:
        progressed, rest = False, []
        for layer, node_index, node in pending:
            try:
                args = resolve(_unpack_args(node.get("args", [])))
                kwargs = resolve(_unpack_args(node.get("kwargs", {})))
            except KeyError:
                rest.append((layer, node_index, node))
                continue
            out = _call(layer, tuple(args), kwargs, taps, cut, call_path(prefix, layer.name, node_index))
            outputs[(layer.name, node_index)] = list(out) if isinstance(out, list | tuple) else [out]
            progressed = True
        if not progressed:
            layer = rest[0][0]
            raise UserError(
                f"cannot replay the graph of model '{model.name}': the inputs of {type(layer).__name__} "
                f"'{prefix}{layer.name}' are never computed; please report this model"
            )
        pending = rest

    def out_ref(name, node, idx):  # a nested functional model's node numbering includes its own first node
        return outputs[(name, node - 1 if _is_graph_model(ops_by_name[name]) else node)][idx]

    out_refs = cfg["output_layers"]
    if out_refs and isinstance(out_refs[0], str):
        return out_ref(*out_refs)
    res = [out_ref(n, i, t) for n, i, t in out_refs]
    return res[0] if len(res) == 1 else res


def replay(model, input_shape: tuple[int, ...]):
    """Return ``(inputs, outputs, taps)``: ``model`` re-called on a fresh Input, with every layer's output.

    ``taps`` maps each call's path (the names :func:`featuremaps.layers.conv_layers` gives, ``base@2/conv``
    for a sub-model's second call) and ``id(layer)`` (its first call) to the output tensor.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="featuremaps_input")
    taps: dict = {}
    out = _call_model(model, inputs, taps, None, input_shape)
    return inputs, out, taps


def tap(taps: dict, conv: ConvLayer):
    """The output tensor of conv layer ``conv`` (this call of it) in a :func:`replay`'s ``taps``."""
    t = taps.get(conv.name)
    return taps.get(id(conv.layer)) if t is None else t


# ---------------------------------------------------------------- selection in the graph
def probe_layer_class():

    class ChannelProbe(keras.layers.Layer):
        """Chosen maps (B, H, W, k), their channel indices (B, k), layer stats (B, 4) of one conv output."""

        def __init__(self, mode: str, k: int, channels=None, **kw):
            super().__init__(**kw)
            self.mode, self.k, self.channels = mode, k, channels

        def compute_output_spec(self, x):
            # Shapes are known: saves tracing call() symbolically (~35 ms a layer when building the model).
            b, h, w = x.shape[0], x.shape[1], x.shape[2]
            return (
                keras.KerasTensor((b, h, w, self.k), dtype="float32"),
                keras.KerasTensor((b, self.k), dtype="int32"),
                keras.KerasTensor((b, len(STATS)), dtype="float32"),
            )

        def call(self, x):
            x = ops.cast(x, "float32")
            stats = ops.stack(
                [
                    ops.mean(x, axis=(1, 2, 3)),
                    ops.max(x, axis=(1, 2, 3)),
                    ops.mean(ops.cast(ops.equal(x, 0.0), "float32"), axis=(1, 2, 3)),
                    ops.min(x, axis=(1, 2, 3)),
                ],
                axis=-1,
            )
            if self.mode in ("first", "list"):
                idx = np.asarray(self.channels, dtype="int32")
                # every channel in order (explore, fm.extract): the maps themselves, no gather copy
                every = x.shape[-1] is not None and np.array_equal(idx, np.arange(x.shape[-1]))
                maps = x if every else ops.take(x, idx, axis=3)
                ids = ops.zeros_like(stats[:, :1], dtype="int32") + idx[None, :]
                return maps, ids, stats
            score = ops.mean(x, axis=(1, 2)) if self.mode == "top-mean" else ops.max(x, axis=(1, 2))
            _, ids = ops.top_k(score, self.k, sorted=True)
            onehot = ops.one_hot(ids, ops.shape(x)[-1], dtype="float32")  # (B, k, C)
            maps = ops.einsum("bhwc,bkc->bhwk", x, onehot)
            return maps, ops.cast(ids, "int32"), stats

    return ChannelProbe


#: The names TensorFlow accepts as name scopes when it traces a model (``tf.name_scope``'s own rule).
_TF_SCOPE = re.compile(r"^[A-Za-z0-9_.\\/>-]*$")


def traceable(model) -> bool:
    """False when the backend cannot trace ``model`` into a graph: on TensorFlow, a model or layer name that
    is not a valid name scope (``class scores``, ``my model``, ``<b>``). Such models run eagerly (same
    numbers, no compiled step)."""
    if keras.backend.backend() != "tensorflow":
        return True
    return _TF_SCOPE.match(model.name) is not None and all(
        traceable(layer) if is_model(layer) else _TF_SCOPE.match(layer.name) is not None for layer in model.layers
    )


def is_single_tensor(out) -> bool:
    return not isinstance(out, list | tuple | dict)


# ---------------------------------------------------------------- splitting the graph at one layer
class _Cut:
    """Replay state for a cut (:func:`objective_graph`): the target layer's output is replaced by a new Input.

    Every layer call that consumes a tensor depending on that Input belongs to the *head*; other tensors
    such a call consumes (skip connections from before the cut) become extra head Inputs, so the head never
    recomputes, nor differentiates through, anything before the cut.
    """

    def __init__(self, target):
        self.target = target.layer if isinstance(target, ConvLayer) else target
        self.target_path = target.name if isinstance(target, ConvLayer) else None
        self.activation = None  # the target's real output, in the body
        self.head_input = None
        self.head_ids: dict[int, object] = {}  # id -> tensor (kept alive) for tensors after the cut
        self.crossing: dict[int, tuple[object, object]] = {}  # id(body tensor) -> (body tensor, head Input)
        self.producer: dict[int, tuple[object, tuple, dict]] = {}  # id(head tensor) -> (layer, args, kwargs)

    def _mark(self, out):

        for t in keras.tree.flatten(out):
            if isinstance(t, keras.KerasTensor):
                self.head_ids[id(t)] = t

    def _is_target(self, layer, path) -> bool:
        if self.head_input is not None:
            return False
        return path == self.target_path if self.target_path is not None else layer is self.target

    def call(self, layer, args, kwargs, taps, path):

        flat = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        in_head = any(id(t) in self.head_ids for t in flat)
        if not in_head:
            out = layer(*args, **kwargs)
            if self._is_target(layer, path):
                taps.setdefault(id(layer), out)
                taps.setdefault(path, out)
                self.activation = out
                self.head_input = keras.Input(shape=tuple(out.shape[1:]), dtype=out.dtype, name="featuremaps_cut")
                self._mark(self.head_input)
                return self.head_input
            return out

        def sub(t):
            if isinstance(t, keras.KerasTensor) and id(t) not in self.head_ids:
                if id(t) not in self.crossing:
                    self.crossing[id(t)] = (t, keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype))
                return self.crossing[id(t)][1]
            return t

        args, kwargs = keras.tree.map_structure(sub, (tuple(args), dict(kwargs)))
        out = layer(*args, **kwargs)
        self._mark(out)
        self.producer[id(out)] = (layer, args, kwargs)
        return out


# ---------------------------------------------------------------- objectives (featuremaps.targets)
class _ObjectiveCut(_Cut):
    """:class:`_Cut` that may cut nowhere (``target`` None: the whole model from its input), records the call
    that made every tensor (to reach the logits) and replays the conv at ``pre_path`` with its fused activation
    split off, keeping the pre-activation tensor in ``pre``."""

    def __init__(self, target=None, pre_path: str | None = None):
        super().__init__(target)
        self.pre_path, self.pre = pre_path, None

    def _is_target(self, layer, path) -> bool:
        return self.target is not None and super()._is_target(layer, path)

    def call(self, layer, args, kwargs, taps, path):
        if path != self.pre_path:
            out = super().call(layer, args, kwargs, taps, path)
            self.producer.setdefault(id(out), (layer, args, kwargs))
            return out
        act = layer.activation
        pre = super().call(PreActivation(layer), args, kwargs, taps, path)
        self.pre = pre
        post_layer = keras.layers.Activation(
            act, name=f"featuremaps_activation_{re.sub(r'[^A-Za-z0-9_.-]', '_', path)}"
        )
        out = post_layer(pre)
        if id(pre) in self.head_ids:
            self._mark(out)
        self.producer[id(out)] = (post_layer, (pre,), {})
        return out


class PreActivation(keras.layers.Layer):
    """A conv layer's output before its fused activation: its own ``call`` (same weights) with the activation
    off while it runs (also while a backend traces it)."""

    def __init__(self, conv, **kw):
        super().__init__(name=f"featuremaps_pre_{re.sub(r'[^A-Za-z0-9_.-]', '_', conv.name)}", **kw)
        self.conv = conv

    def call(self, x):
        act = self.conv.activation
        self.conv.activation = None
        try:
            return self.conv.call(x)
        finally:
            self.conv.activation = act

    def build(self, shape):
        if not self.conv.built:  # a copy's conv (bfloat16_copy); the model's own is built
            self.conv.build(shape)

    def compute_output_shape(self, shape):
        return self.conv.compute_output_shape(shape)


def bfloat16_copy(net):
    """A copy of the functional model ``net`` whose layers compute in bfloat16, its weights cast once (Keras'
    ``mixed_bfloat16`` would cast every kernel on every call: the emotion VGG-16's input gradient took 205 ms
    mixed, 116 ms in bfloat16 and 211 ms in float32, BENCHMARKS.md); None where a layer cannot be copied (no
    config, a nested model), so the caller stays in float32."""

    def clone(layer):
        if isinstance(layer, PreActivation):
            return PreActivation(clone(layer.conv), dtype="bfloat16")
        if is_model(layer):
            raise ValueError(f"nested model {layer.name}")
        config = layer.get_config()
        config["dtype"] = "bfloat16"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(net, clone_function=clone)
        copy.set_weights(net.get_weights())
    except Exception as e:  # noqa: BLE001 (any layer Keras cannot copy: float32 it is)
        log.info("no bfloat16 copy of %s (%s: %s); float32", net.name, type(e).__name__, e)
        return None
    return copy


@dataclass
class Objective:
    """The graph of one objective: ``inputs`` (the image Input), ``output`` (the model's), ``taps`` (every call's
    output), ``pre`` (a conv's pre-activation), ``producer`` (``id(tensor)`` -> the call that made it) and, when
    cut at a layer, ``activation``/``skips`` (body outputs) and ``head_inputs``."""

    inputs: object
    output: object
    taps: dict
    pre: object
    producer: dict
    activation: object
    skips: list
    head_inputs: list | None


def objective_graph(model, input_shape: tuple[int, ...], wrt: ConvLayer | None, pre_path: str | None) -> Objective:
    """``model`` replayed for one objective: cut after ``wrt`` (None: not cut) with the conv at ``pre_path``'s
    fused activation split off (see :class:`_ObjectiveCut`)."""
    inputs = keras.Input(shape=tuple(input_shape), name="featuremaps_input")
    cut = _ObjectiveCut(wrt, pre_path)
    taps: dict = {}
    out = _call_model(model, inputs, taps, cut, input_shape)
    if wrt is not None and cut.head_input is None:
        raise UserError(f"layer {wrt.name} is not on the path from the model's input to its output; choose another")
    if wrt is not None and (not is_single_tensor(out) or id(out) not in cut.head_ids):
        raise UserError(
            f"the output of model '{model.name}' does not depend on layer {wrt.name}; choose a layer "
            "between the input and the output"
        )
    head = None if wrt is None else [cut.head_input] + [i for _, i in cut.crossing.values()]
    skips = [t for t, _ in cut.crossing.values()]
    return Objective(inputs, out, taps, cut.pre, cut.producer, cut.activation, skips, head)
