"""A NumPy model behind featuremaps' model protocol: the test double of the framework adapters.

As httpx's ``MockTransport`` stands in for a network, :class:`FakeAdapter` stands in for Keras, PyTorch and
ONNX Runtime: a fixed random conv stack computed with NumPy only (two 3x3 convs with ReLU, global average
pooling, a linear head giving logits), its gradients by hand-written backpropagation. Report, compare, atlas and
explore tests run on it without any framework, and its numbers can be checked against plain NumPy.

    >>> ad = FakeAdapter()
    >>> maps, logits = ad.forward(np.zeros((1, 16, 16, 3), np.float32), ["conv1", "conv2"])
    >>> maps["conv2"].shape, logits.shape
    ((1, 8, 8, 6), (1, 3))
"""

from __future__ import annotations

import numpy as np

from featuremaps.frameworks.base import ModelAdapter
from featuremaps.loaded import PREPROCESS_MODES, LoadedModel, preprocess_fn
from featuremaps.maps import ConvLayer
from featuremaps.targets import ClassScore, Gradient, batch_layer, predicted, target_weights

#: (name, kernel, stride, output channels) of each conv, in forward order; all "same" padding, then ReLU
CONVS = (("conv1", 3, 1, 4), ("conv2", 3, 2, 6))


class FakeConv(ConvLayer):
    """A conv of the fake model: ``layer`` is its (kernel, stride, channels) record."""

    def __init__(self, index: int, name: str, kernel: int, stride: int, channels: int, params: int):
        super().__init__(index, name, (kernel, stride, channels), f"Conv2D {kernel}x{kernel} /{stride} (numpy)")
        self._channels, self._params = channels, params

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def params(self) -> int:
        return self._params


def _pad(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of a "same" conv, as in TensorFlow."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """ "Same" conv of (B, H, W, Ci) by (k, k, Ci, Co) weights, channels last; float64."""
    k = w.shape[0]
    (h, t, bo), (wd, lft, r) = _pad(x.shape[1], k, stride), _pad(x.shape[2], k, stride)
    xp = np.pad(x, ((0, 0), (t, bo), (lft, r), (0, 0)))
    out = np.zeros((x.shape[0], h, wd, w.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += xp[:, i : i + stride * h : stride, j : j + stride * wd : stride] @ w[i, j]
    return out + b


def conv2d_backward(d_out: np.ndarray, x_shape: tuple, w: np.ndarray, stride: int) -> np.ndarray:
    """The gradient with respect to the input of :func:`conv2d`, given the gradient ``d_out`` of its output."""
    k = w.shape[0]
    (h, t, bo), (wd, lft, r) = _pad(x_shape[1], k, stride), _pad(x_shape[2], k, stride)
    dxp = np.zeros((x_shape[0], x_shape[1] + t + bo, x_shape[2] + lft + r, x_shape[3]))
    for i in range(k):
        for j in range(k):
            dxp[:, i : i + stride * h : stride, j : j + stride * wd : stride] += d_out @ w[i, j].T
    return dxp[:, t : t + x_shape[1], lft : lft + x_shape[2]]


class FakeAdapter(ModelAdapter):
    """Two "same" 3x3 convs with ReLU (``conv1``: 4 maps, ``conv2``: 6 maps at stride 2), global average pooling
    and a linear head of ``n_classes`` logits, with fixed random weights (``seed``); NumPy only."""

    framework = "numpy"
    has_gradients = True
    has_head_scores = True
    score = "logit"

    def __init__(self, n_classes: int = 3, input_shape=(16, 16, 3), seed: int = 0, name: str = "fake"):
        self.name = name
        self.input_shape = tuple(input_shape)
        rng = np.random.default_rng(seed)
        self.weights, cin = [], self.input_shape[-1]
        for _, k, _, cout in CONVS:
            self.weights += [rng.normal(0, 1 / np.sqrt(k * k * cin), (k, k, cin, cout)), rng.normal(0, 0.1, cout)]
            cin = cout
        self.weights += [rng.normal(0, 1, (cin, n_classes)), np.zeros(n_classes)]
        self.calls = []  # (method, names) of every forward / gradient / head call, for tests that count passes

    # ---------------------------------------------------------------- the network
    def _run(self, x: np.ndarray, start: int = 0, acts=None) -> tuple[list, np.ndarray]:
        """Conv outputs (post-ReLU) and logits of a (B, H, W, C) batch; with ``start`` > 0, the network from conv
        ``start`` on, ``acts`` replacing the maps of conv ``start - 1``."""
        outs = [None] * len(CONVS)
        h = np.asarray(x, np.float64)
        if start:
            h = outs[start - 1] = np.asarray(acts, np.float64)
        for i in range(start, len(CONVS)):
            _, _, stride, _ = CONVS[i]
            h = outs[i] = np.maximum(conv2d(h, self.weights[2 * i], self.weights[2 * i + 1], stride), 0.0)
        return outs, h.mean(axis=(1, 2)) @ self.weights[-2] + self.weights[-1]

    def _index(self, name: str) -> int:
        return [c[0] for c in CONVS].index(name)

    def backprop(self, x: np.ndarray, name: str | None, d_logits: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
        """Backpropagation of ``d_logits`` (G, n): ``(conv outputs of x, logits (n,), d (G, h, w, C))``, the
        gradients of ``d_logits[g] . logits`` with respect to the maps of conv ``name`` (or to the input where
        ``name`` is None). The one place the fake computes gradients."""
        outs, logits = self._run(x[None])
        d_logits = np.asarray(d_logits, np.float64)
        last = outs[-1]
        d = np.broadcast_to((d_logits @ self.weights[-2].T)[:, None, None, :] / (last.shape[1] * last.shape[2]),
                            (len(d_logits), *last.shape[1:]))  # fmt: skip
        stop = -1 if name is None else self._index(name)
        for i in range(len(CONVS) - 1, stop, -1):
            d = d * (outs[i] > 0)  # through the ReLU
            below = x[None] if i == 0 else outs[i - 1]
            d = conv2d_backward(d, (len(d), *below.shape[1:]), self.weights[2 * i], CONVS[i][2])
        return outs, logits[0], d

    # ---------------------------------------------------------------- the protocol
    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        convs, cin = [], self.input_shape[-1]
        for i, (name, k, stride, cout) in enumerate(CONVS):
            convs.append(FakeConv(i + 1, name, k, stride, cout, k * k * cin * cout + cout))
            cin = cout
        return convs

    def layer_shapes(self, input_shape) -> dict[str, tuple[int, int, int]]:
        h, w = input_shape[:2]
        shapes = {}
        for name, k, stride, cout in CONVS:
            h, w = _pad(h, k, stride)[0], _pad(w, k, stride)[0]
            shapes[name] = (h, w, cout)
        return shapes

    def output_shape(self, input_shape) -> tuple:
        return (1, self.weights[-1].shape[0])

    def forward(self, batch: np.ndarray, names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self.calls.append(("forward", list(names)))
        outs, logits = self._run(batch)
        return {n: outs[self._index(n)].astype(np.float32) for n in names}, logits.astype(np.float32)

    def gradients(self, x: np.ndarray, target, wrt: str | None = None) -> Gradient:
        """The protocol's one gradient primitive, for a :class:`~featuremaps.targets.ClassScore` (the fake's
        logits): its value and gradient with respect to the input or to conv ``wrt``'s maps. A batch (B, H, W, C)
        with one target per image: :meth:`batch_gradients`."""
        if np.ndim(x) == 4:
            return self.batch_gradients(x, list(target))
        if not isinstance(target, ClassScore):
            raise NotImplementedError(f"the fake differentiates class scores only, not {type(target).__name__}")
        self.calls.append(("gradients", [wrt]))
        x = np.asarray(x, np.float64)
        logits = self._run(x[None])[1][0]
        c = int(np.argmax(logits)) if target.index is None else int(target.index)
        outs, logits, grads = self.backprop(x, wrt, np.eye(len(logits))[[c]])
        acts = None if wrt is None else outs[self._index(wrt)][0]
        return Gradient(logits[c], grads[0], output=logits, activations=acts, index=c)

    def batch_gradients(self, x: np.ndarray, targets: list) -> Gradient:
        """``sum_b target_b(x_b)`` by hand: class scores, or channel means and neurons of one conv (its
        pre-activation with ``pre_activation``, else after the ReLU), backpropagated to the input."""
        self.calls.append(("batch_gradients", [getattr(t, "layer", None) for t in targets]))
        layer, pre = batch_layer(targets)
        x = np.asarray(x, np.float64)
        outs, logits = self._run(x)
        if layer is None:
            targets = predicted(targets, logits)
            w = target_weights(targets, logits.shape[1:])
            _, _, d = self.backprop_batch(x, outs, w @ self.weights[-2].T, len(CONVS), False)
            return Gradient((logits * w).sum(axis=1), d)
        i = self._index(layer)
        below = x if i == 0 else outs[i - 1]
        pre_act = conv2d(below, self.weights[2 * i], self.weights[2 * i + 1], CONVS[i][2])
        out = pre_act if pre else outs[i]
        w = target_weights(targets, out.shape[1:])
        _, _, d = self.backprop_batch(x, outs, w, i, not pre)
        return Gradient((out * w).reshape(len(w), -1).sum(axis=1), d)

    def backprop_batch(self, x, outs, d, top: int, through_relu: bool):
        """Backpropagate ``d`` from conv ``top``'s output (after its ReLU when ``through_relu``; ``top`` =
        number of convs: ``d`` is (B, C) on the pooled features, spread over the last maps) to the input."""
        if top == len(CONVS):
            last = outs[-1]
            d = np.broadcast_to(d[:, None, None, :] / (last.shape[1] * last.shape[2]), last.shape)
            top, through_relu = top - 1, True
        for i in range(top, -1, -1):
            if through_relu or i < top:
                d = d * (outs[i] > 0)
            below = x if i == 0 else outs[i - 1]
            d = conv2d_backward(d, below.shape, self.weights[2 * i], CONVS[i][2])
        return outs, None, d

    def head_scores(self, x: np.ndarray, name: str, acts: np.ndarray) -> np.ndarray:
        self.calls.append(("head", [name]))
        return self._run(None, self._index(name) + 1, acts)[1].astype(np.float32)

    def state(self):
        return [w.copy() for w in self.weights]

    def load_state(self, state) -> None:
        self.weights = [np.asarray(w, np.float64).copy() for w in state]


def fake_loaded(classes=("cat", "dog", "owl"), **kwargs) -> LoadedModel:
    """A :class:`~featuremaps.models.LoadedModel` of a :class:`FakeAdapter` (pixels / 255), as ``models.load``
    gives for a file."""
    ad = FakeAdapter(n_classes=len(classes), **kwargs)
    unit = "unit"
    return LoadedModel(
        ad, ad.name, "fake NumPy model", PREPROCESS_MODES[unit], preprocess_fn(unit), ad.input_shape, list(classes)
    )
