"""A Keras 3 model behind featuremaps' model protocol (:class:`featuremaps.frameworks.ModelAdapter`).

Everything is built from the user's model by graph replay (:mod:`featuremaps.frameworks.keras.graph`): the same
layer objects called on a fresh Input, nested models flattened, nothing copied or changed. Per input shape the
adapter keeps one replay; per (layers, channel selection) one feature-map model whose probes take the chosen
channels and the statistics inside the graph (:meth:`KerasAdapter.maps_fn`: only the chosen maps leave it,
which keeps the maps of a VGG16 within a few percent of one forward pass); per target layer one split model
(body up to the layer, head after it) for gradients and Ablation-CAM.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import astuple

import keras
import numpy as np
from keras import ops

from featuremaps.errors import UserError
from featuremaps.frameworks.base import ModelAdapter, check_batch
from featuremaps.frameworks.keras.gradients import class_gradients, weighted_gradients
from featuremaps.frameworks.keras.graph import (
    bfloat16_copy,
    is_single_tensor,
    objective_graph,
    probe_layer_class,
    replay,
    tap,
    traceable,
)
from featuremaps.frameworks.keras.layers import conv_layers, distinct_layer_names, walk
from featuremaps.frameworks.keras.receptive import receptive_fields
from featuremaps.loaded import PREPROCESS_MODES, LoadedModel, preprocess_fn
from featuremaps.maps import ConvLayer, Pick
from featuremaps.targets import ChannelMean, ClassScore, Gradient, Neuron, predicted, target_weights

log = logging.getLogger(__name__)


class KerasAdapter(ModelAdapter):
    """A Keras model (Sequential or functional, nested models included) as featuremaps sees it."""

    framework = "keras"
    has_gradients = True
    has_head_scores = True

    def __init__(self, model, input_shape=None):
        if not isinstance(model, keras.Model):
            raise UserError(f"a {type(model).__name__} is not a Keras model; pass a keras.Model")
        self.model = model
        self.name = model.name
        try:
            self.input_shape = tuple(model.inputs[0].shape[1:])
        except (AttributeError, ValueError, IndexError, TypeError):  # a never-built Sequential
            self.input_shape = tuple(input_shape) if input_shape else (None, None, None)
        self._convs: list[ConvLayer] | None = None
        self._replays: dict[tuple, tuple] = {}  # input shape -> (inputs, output, taps)
        self._models: dict[tuple, object] = {}  # (kind, shape, ...) -> a keras.Model built from a replay
        self._body: tuple | None = None  # (key of x, its body outputs): Ablation-CAM's batches reuse them
        self._objectives: dict[tuple, KerasObjective] = {}  # (shape, wrt, target) -> its differentiable graph

    # ------------------------------------------------------------ graph
    def _replay(self, shape):
        shape = tuple(int(d) for d in shape)
        if shape not in self._replays:
            if len(self._replays) >= 2:
                self._replays.pop(next(iter(self._replays)))
            self._replays[shape] = replay(self.model, shape)
        return self._replays[shape]

    def _cached(self, key, build):
        if key not in self._models:
            if len(self._models) >= 8:
                self._models.pop(next(iter(self._models)))
            self._models[key] = build()
        return self._models[key]

    def _graph_model(self, inputs, outputs, what: str):
        with distinct_layer_names(self.model):  # a nested model's layer may share a name with an outer one
            return keras.Model(inputs, outputs, name=f"{self.model.name}_{what}")

    # ------------------------------------------------------------ protocol
    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        if self._convs is None:
            self._convs = conv_layers(self.model)
        return self._convs

    def layer_shapes(self, input_shape=None) -> dict[str, tuple]:
        """``{name: (h, w, C)}`` of each conv call on the path from the input to the output; without an input
        shape, the shapes the layers were built with (a layer called twice has none)."""
        convs = self.conv_layers()
        static = input_shape is None or None in tuple(input_shape) or tuple(input_shape) == self.input_shape
        if static:  # the shapes the layers were built with: no replay (a layer called twice has none)
            shapes = {}
            for c in convs:
                try:
                    shapes[c.name] = tuple(c.layer.output.shape[1:])
                except (AttributeError, ValueError, TypeError):
                    continue
            if input_shape is None or None in tuple(input_shape) or len(shapes) == len(convs):
                return shapes
        _, _, taps = self._replay(input_shape)
        return {c.name: tuple(t.shape[1:]) for c in convs if (t := tap(taps, c)) is not None}

    def output_shape(self, input_shape) -> tuple:
        _, out, _ = self._replay(input_shape)
        return (1, *tuple(out.shape[1:])) if is_single_tensor(out) else ()

    def layer_kind(self, name: str) -> str | None:
        hits = [type(layer).__name__ for path, layer in walk(self.model) if name in (path, path.rsplit("/", 1)[-1])]
        return hits[0] if hits else None

    def forward(self, batch: np.ndarray, names: list[str]):
        batch = np.asarray(batch, np.float32)
        shape = tuple(batch.shape[1:])
        if not names:
            out = self.model(batch, training=False)
            return {}, ops.convert_to_numpy(out).astype(np.float32) if is_single_tensor(out) else None
        by_name = {c.name: c for c in self.conv_layers()}

        def build():
            inputs, out, taps = self._replay(shape)
            outs = [tap(taps, by_name[n]) for n in names]
            return self._graph_model(inputs, [*outs, out] if is_single_tensor(out) else outs, "forward")

        entry = self._cached(("forward", shape, tuple(names)), lambda: [build(), 0])  # [net, calls so far]
        net = entry[0]
        if entry[1] and traceable(self.model):
            # the same call again (a loop: the diversity term's forward every step): the compiled predict step
            # (graph mode), not layer-by-layer eager; a single call stays eager (no tracing cost)
            out = net.predict_on_batch(batch)
            res = [np.asarray(r, np.float32) for r in (out if isinstance(out, list | tuple) else [out])]
        else:
            res = [ops.convert_to_numpy(r).astype(np.float32) for r in net(batch, training=False)]
        entry[1] += 1
        return dict(zip(names, res, strict=False)), res[-1] if len(res) > len(names) else None

    def maps_fn(self, input_shape, convs: list[ConvLayer], picks: list[Pick]):
        """The chosen maps with the selection inside the graph: one probe layer per conv output."""
        shape = tuple(int(d) for d in input_shape)
        inputs, out, taps = self._replay(shape)
        probe_cls = probe_layer_class()
        outputs = []
        for c, p in zip(convs, picks, strict=True):
            outputs.extend(probe_cls(p.mode, p.k, list(p.ids), name=f"featuremaps_probe_{c.index}")(tap(taps, c)))
        with_predictions = is_single_tensor(out)
        if with_predictions:
            outputs.append(out)
        net = self._graph_model(inputs, outputs, "featuremaps")
        compiled, calls = traceable(self.model), [0]

        def run(batch):
            res = None
            if calls[0] > 0 and compiled:  # repeated calls: the compiled predict step, ~25% faster
                res = list(net.predict_on_batch(batch))
            if res is None:  # one image (the CLI's usual case): eager, no tracing cost
                res = [ops.convert_to_numpy(r) for r in net(batch, training=False)]
            calls[0] += 1
            rows = [
                (
                    res[3 * j].astype(np.float32, copy=False),
                    res[3 * j + 1].astype(np.int64, copy=False),
                    res[3 * j + 2].astype(np.float32, copy=False),
                )
                for j in range(len(convs))
            ]
            return rows, res[-1].astype(np.float32, copy=False) if with_predictions else None

        run.intermediate = net
        return run, with_predictions

    def channel_means(self, batch: np.ndarray, convs: list[ConvLayer]) -> list[np.ndarray]:
        """Per conv layer the (B, C) spatial means, from one compiled model of global average pools."""
        batch = np.asarray(batch, np.float32)
        shape = tuple(batch.shape[1:])

        def build():
            inputs, _, taps = self._replay(shape)
            outs = [
                keras.layers.GlobalAveragePooling2D(name=f"featuremaps_atlas_{c.index}")(tap(taps, c)) for c in convs
            ]
            return self._graph_model(inputs, outs, "atlas")

        net = self._cached(("means", shape, tuple(c.name for c in convs)), build)
        if traceable(self.model):
            outs = net.predict_on_batch(batch)
        else:  # names TensorFlow cannot trace ("class scores"): eager calls
            outs = [ops.convert_to_numpy(o) for o in net(batch, training=False)]
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return [np.asarray(o) for o in outs]

    # ------------------------------------------------------------ CAMs
    def cut(self, shape, name: str) -> KerasObjective:
        """The model cut after conv layer ``name`` for class scores: ``body`` (image -> [A, *skips]) and ``head``
        ([A, *skips] -> [output, score]); CAM gradients and Ablation-CAM's ablated batches both use it."""
        return self._objective(tuple(int(d) for d in shape), ClassScore(), name)

    def cam_score(self, input_shape, name: str) -> str:
        return self.cut(input_shape, name).score

    def _body_outputs(self, g: KerasObjective, x: np.ndarray) -> list[np.ndarray]:
        """The body's outputs for ``x``, kept for the next call on the same image (Ablation-CAM's batches, one
        gradient per class)."""
        key = (id(g), x.shape, hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest())
        if self._body is None or self._body[0] != key:
            res = g.body(x[None], training=False)
            res = res if isinstance(res, list | tuple) else [res]
            self._body = (key, [ops.convert_to_numpy(r).astype(np.float32) for r in res])
        return self._body[1]

    def forget(self) -> None:
        self._body = None

    def fingerprint(self) -> tuple:
        return tuple(map(id, self.model.layers)) + tuple(map(id, self.model.weights))

    @property
    def bfloat16(self) -> bool:
        """Batches differentiate in bfloat16 on TensorFlow (oneDNN's bfloat16 kernels, measured 1.8x float32 on
        a Zen 4); the JAX and torch backends stay in float32 (bfloat16 not measured there)."""
        return keras.backend.backend() == "tensorflow"

    def gradients(self, x: np.ndarray, target, wrt: str | None = None, precision: str = "float32") -> Gradient:
        """One objective's gradient on the replayed graph (cut after ``wrt`` when given: the body runs forward,
        the head is differentiated), by the backend's own autodiff (:mod:`featuremaps.frameworks.keras.gradients`:
        on TensorFlow XLA-compiled where oneDNN's backward pass of strided convolutions could crash)."""
        x = np.asarray(x, np.float32)
        x = x[..., None] if x.ndim == 2 else x
        if x.ndim == 4:
            return self._batch_gradients(x, target, wrt, precision)
        g = self._objective(tuple(x.shape), target, wrt)
        inputs = [x[None]] if g.body is None else self._body_outputs(g, x)
        index = getattr(target, "index", 0)
        if isinstance(target, ClassScore) and index is None:  # the predicted class: the output's top score
            out = g.net(inputs, training=False)
            index = int(np.argmax(ops.convert_to_numpy(out[0])[0]))
        col = index if isinstance(target, ClassScore) else 0
        outs, grads = class_gradients(g.net, inputs, [col], cache=g.cache)
        acts = None if g.body is None else inputs[0][0]
        return Gradient(
            outs[-1][0, col], grads[0, 0], outs[0][0], acts, index if isinstance(target, ClassScore) else None
        )

    def _batch_gradients(self, x: np.ndarray, targets, wrt, precision: str = "float32") -> Gradient:
        """A batch (B, H, W, C) with one target per image (:mod:`featuremaps.targets`): the net from the input to
        the one tensor the targets read (a conv's pre-activation, its maps, or the class scores: nothing after
        it runs) and one weighted vector-Jacobian product, compiled once per net."""
        targets = list(targets)
        layer, pre = check_batch(self.name, x, targets, wrt)
        shape = tuple(int(d) for d in x.shape[1:])
        key = (shape, "batch", layer, pre, targets[0].logit if layer is None else None)
        if key not in self._objectives:
            if len(self._objectives) >= 4:
                self._objectives.pop(next(iter(self._objectives)))
            self._objectives[key] = BatchObjective(self, shape, layer, pre, targets[0])
        g = self._objectives[key]
        if layer is None and any(t.index is None for t in targets):
            targets = predicted(targets, ops.convert_to_numpy(g.net(x, training=False)))
        weights = target_weights(targets, tuple(int(d) for d in g.net.outputs[0].shape[1:]))
        fast = g.fast() if precision == "bfloat16" and self.bfloat16 else None
        if fast is not None:
            values, grads = weighted_gradients(fast, x, weights, g.fast_cache)
        else:
            values, grads = weighted_gradients(g.net, x, weights, g.cache)
        return Gradient(values, grads)

    def _objective(self, shape, target, wrt) -> KerasObjective:
        if isinstance(target, ClassScore):
            key = ("class", target.logit)
        elif isinstance(target, ChannelMean | Neuron):
            key = astuple(target)
        else:
            raise UserError(f"cannot differentiate a {type(target).__name__}; use featuremaps.targets")
        key = (shape, wrt, type(target).__name__, key)
        if key not in self._objectives:
            if len(self._objectives) >= 4:
                self._objectives.pop(next(iter(self._objectives)))
            self._objectives[key] = KerasObjective(self, shape, target, wrt)
        return self._objectives[key]

    def head_scores(self, x: np.ndarray, name: str, acts: np.ndarray) -> np.ndarray:
        g = self.cut(x.shape, name)
        res = self._body_outputs(g, x)
        skips = [np.repeat(s, len(acts), axis=0) for s in res[1:]]
        out = g.net([np.asarray(acts, np.float32), *skips], training=False)
        return ops.convert_to_numpy(out[1]).astype(np.float32)

    # ------------------------------------------------------------ the rest
    def state(self):
        return self.model.get_weights()

    def load_state(self, state) -> None:
        self.model.set_weights(state)

    def randomised(self, layers, seed: int = 0):
        rng = np.random.default_rng(seed)
        copy = keras.models.clone_model(self.model)
        copy.set_weights(self.model.get_weights())
        names = [layer.name for layer in copy.layers]
        for name in [layers] if isinstance(layers, str) else layers:
            if name not in names:
                raise UserError(
                    f"no layer '{name}' to randomise in model '{self.name}'; layers: {', '.join(names[:8])}"
                )
            layer = copy.get_layer(name)
            layer.set_weights([_redrawn(rng, w) for w in layer.get_weights()])
        return copy

    def receptive_fields(self) -> tuple[dict, bool, str]:
        rf = receptive_fields(self.model)
        return {c.name: rf.fields[c.label] for c in self.conv_layers() if c.label in rf.fields}, rf.exact, rf.note


class KerasObjective:
    """One target's differentiable graph: ``net`` maps ``[image]`` (or, cut after ``wrt``, the body's outputs
    ``[A, *skips]``: the head never recomputes nor differentiates what comes before the cut) to
    ``[model output, (B, k) scores]``; ``body`` is None when not cut. ``score``: ``logit`` where a class score is
    the pre-softmax logit of a softmax output layer, else ``output``."""

    def __init__(self, ad: KerasAdapter, shape, target, wrt):
        convs = {c.name: c for c in ad.conv_layers()}
        for n in (wrt, getattr(target, "layer", None)):
            if n and n not in convs:
                raise UserError(f"no conv layer '{n}' in model '{ad.name}'; run 'featuremaps layers' to list them")
        layer = getattr(target, "layer", None)
        fused = layer is not None and getattr(convs[layer].layer, "activation", None) not in (
            None,
            keras.activations.linear,
        )
        pre_path = layer if fused and target.pre_activation else None
        g = objective_graph(ad.model, shape, convs[wrt] if wrt else None, pre_path)
        if not is_single_tensor(g.output):
            raise UserError(f"model '{ad.name}' has several outputs; featuremaps differentiates single-output models")
        if wrt is not None and len(tuple(g.activation.shape[1:])) != 3:
            raise UserError(
                f"layer {wrt} outputs shape {tuple(g.activation.shape[1:])}; gradients need an (H, W, C) map"
            )
        self.score = "output"
        if isinstance(target, ClassScore):
            logits = _logits_tensor(g.producer.get(id(g.output))) if target.logit else None
            score = logits if logits is not None else g.output
            self.score = "logit" if logits is not None else "output"
        else:
            maps = g.pre if pre_path else tap(g.taps, convs[layer])
            score = ChannelPick(target)(maps)
        with distinct_layer_names(ad.model):
            try:
                self.net = keras.Model(g.head_inputs or g.inputs, [g.output, score], name="featuremaps_objective")
            except ValueError:  # the target is computed before the cut: it does not depend on wrt's maps
                raise UserError(
                    f"the target at layer {layer} comes before layer {wrt}; take gradients with respect to an "
                    "earlier layer or the input"
                ) from None
            self.body = (
                None if wrt is None else keras.Model(g.inputs, [g.activation, *g.skips], name="featuremaps_body")
            )
        self.cache: dict = {}  # the compiled gradient step (TensorFlow), owned by this graph

    @property
    def head(self):
        return self.net


class BatchObjective:
    """The net of a batch's targets: ``net`` maps images (B, H, W, C) to the one tensor they all read: conv
    ``layer``'s maps (its pre-activation with ``pre`` where the activation is fused into the conv, Lucid's
    ``_pre_relu``: a channel silent on a grey start still gets a gradient) or, for class scores (``layer``
    None), the logits of a softmax output (else the output). Only the layers up to that tensor run."""

    def __init__(self, ad: KerasAdapter, shape, layer: str | None, pre: bool, first):
        convs = {c.name: c for c in ad.conv_layers()}
        if layer is not None and layer not in convs:
            raise UserError(f"no conv layer '{layer}' in model '{ad.name}'; run 'featuremaps layers' to list them")
        fused = layer is not None and getattr(convs[layer].layer, "activation", None) not in (
            None,
            keras.activations.linear,
        )
        g = objective_graph(ad.model, shape, None, layer if fused and pre else None)
        if layer is None:
            if not is_single_tensor(g.output):
                raise UserError(
                    f"model '{ad.name}' has several outputs; featuremaps differentiates single-output models"
                )
            logits = _logits_tensor(g.producer.get(id(g.output))) if first.logit else None
            out = logits if logits is not None else g.output
        else:
            out = g.pre if fused and pre else tap(g.taps, convs[layer])
        with distinct_layer_names(ad.model):
            self.net = keras.Model(g.inputs, out, name="featuremaps_batch_objective")
        self.cache: dict = {}  # the compiled vector-Jacobian product, owned by this net
        self.fast_cache: dict = {}  # the same for its bfloat16 copy
        self._fast = None

    def fast(self):
        """The net's bfloat16 copy (:func:`~featuremaps.frameworks.keras.graph.bfloat16_copy`), made on first
        use; None where the net cannot be copied."""
        if self._fast is None:
            self._fast = bfloat16_copy(self.net) or False
        return self._fast or None


class ChannelPick(keras.layers.Layer):
    """(B, h, w, C) maps -> (B, 1): one channel's spatial mean (ChannelMean) or one position (Neuron)."""

    def __init__(self, target, **kw):
        super().__init__(dtype="float32", **kw)
        self.target = target

    def call(self, x):
        a = ops.cast(x, "float32")[..., self.target.channel]
        if isinstance(self.target, ChannelMean):
            return ops.mean(a, axis=(1, 2))[:, None]
        return a[:, self.target.y, self.target.x][:, None]

    def compute_output_shape(self, shape):
        return (shape[0], 1)


def _logits_tensor(producer):
    """The pre-softmax tensor of a softmax output layer (Dense, Activation or Softmax), else None."""
    if producer is None:
        return None
    layer, args, kwargs = producer
    act = getattr(layer, "activation", None)
    is_softmax = getattr(act, "__name__", "") == "softmax"
    if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation) and is_softmax):
        return args[0] if args else None
    if isinstance(layer, keras.layers.Dense) and is_softmax and not kwargs and len(args) == 1:
        return DenseLogits(layer)(args[0])
    return None


class DenseLogits(keras.layers.Layer):
    """``x @ kernel + bias`` of a softmax Dense layer (its weights, shared): its logits."""

    def __init__(self, dense, **kw):
        # TF name scopes take [A-Za-z0-9_.-] only: a layer called "class scores" must not break the CAM
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dense.name)
        super().__init__(name=f"featuremaps_logits_{safe}", dtype="float32", **kw)
        self.dense = dense

    def call(self, x):
        z = ops.matmul(ops.cast(x, "float32"), ops.cast(self.dense.kernel, "float32"))
        if self.dense.bias is not None:
            z = z + ops.cast(self.dense.bias, "float32")
        return z

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.dense.units)


def _redrawn(rng, w: np.ndarray) -> np.ndarray:
    return rng.normal(0, max(float(np.std(w)), 1e-3), w.shape).astype(np.float32)


def adapt(model, input_shape=None) -> KerasAdapter:
    """A :class:`KerasAdapter` for a Keras model."""
    return KerasAdapter(model, input_shape)


def wrap(model, preprocess: str = "unit", classes: list[str] | None = None) -> LoadedModel:
    """An in-memory Keras model as a :class:`~featuremaps.loaded.LoadedModel` (Python API)."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, ValueError, IndexError):
        shape = (None, None, None)
    return LoadedModel(
        model,
        model.name,
        "in-memory model",
        PREPROCESS_MODES.get(preprocess, preprocess),
        preprocess_fn(preprocess),
        shape,
        classes,
    )
