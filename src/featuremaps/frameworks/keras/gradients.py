"""Gradients of a graph's last output with respect to its first input: the only backend-specific module.

``class_gradients(head, inputs, classes)`` runs the *head* of a model cut at one layer
(:func:`featuremaps.frameworks.keras.graph.objective_graph`: everything after it) on ``inputs = [A, *skips]``,
or a whole model on ``[image]``, and returns the head's outputs and ``d score[:, c] / d inputs[0]`` for each
column ``c`` of its last output in one forward pass:

* TensorFlow: ``tf.GradientTape`` inside a ``tf.function``, compiled by XLA where the graph has a strided
  convolution, else traced in graph mode (:func:`needs_xla`). oneDNN in TensorFlow 2.21 corrupts the heap
  in the backward pass of strided convolutions on AVX-512 CPUs (1x1, stride 2, 8 -> 16 channels), which
  kills the process (``tests/test_cam_crash.py``); XLA compiles the pass with its own kernels. But XLA's CPU
  convolutions are slow: the emotion VGG-16's input gradient (16 images, through C13) took 286 ms compiled
  and 210 ms in graph mode with oneDNN (BENCHMARKS.md), whose stride-1 backward kernels are the ones every
  training step runs. If XLA cannot compile the head, graph mode is used.
* JAX: ``jax.vjp`` (one forward, one pullback per class).
* torch: ``torch.autograd.grad`` with oneDNN (mkldnn) switched off for the backward pass, for the same reason.

The head's first output is the model output (probabilities); its second, the score differentiated
(pre-softmax logits where they could be reached, else the output itself).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

from featuremaps.frameworks.keras.graph import traceable
from featuremaps.frameworks.keras.layers import is_model

log = logging.getLogger(__name__)


def backend() -> str:
    return keras.backend.backend()


def class_gradients(
    head, inputs: list[np.ndarray], classes: list[int], cache: dict | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Head outputs (NumPy) and gradients ``(len(classes), B, h, w, C)`` of ``score[:, c]`` w.r.t. A.

    ``cache``: a dict owned by the caller (a :class:`~featuremaps.cam.engine.CamEngine`) where the compiled
    gradient step of ``head`` is kept between calls; it lives and dies with its owner.
    """
    inputs = [np.asarray(a, dtype=np.float32) for a in inputs]
    classes = [int(c) for c in classes]
    name = backend()
    if name == "tensorflow":
        return _tf(head, inputs, classes, {} if cache is None else cache)
    if name == "jax":
        return _jax(head, inputs, classes)
    if name == "torch":
        return _torch(head, inputs, classes)
    raise NotImplementedError(
        f"gradients are not implemented for the Keras backend '{name}'; use "
        "tensorflow, jax or torch (set KERAS_BACKEND)"
    )


# ---------------------------------------------------------------- TensorFlow
def needs_xla(model) -> bool:
    """Whether ``model`` (nested models included) has a convolution with a stride over 1, whose backward pass
    oneDNN can get wrong on TensorFlow (see the module docstring): its gradients are compiled by XLA."""
    for layer in model.layers:
        if is_model(layer):
            if needs_xla(layer):
                return True
        elif hasattr(layer, "kernel_size") and any(int(s) > 1 for s in np.atleast_1d(getattr(layer, "strides", 1))):
            return True
    return False


def _jit(net) -> bool | None:
    """How a TensorFlow gradient step of ``net`` is compiled: XLA (True) where :func:`needs_xla`, graph mode
    (False), or eager (None) where TensorFlow cannot trace its names."""
    return needs_xla(net) if traceable(net) else None


def _tf_step(head, jit: bool | None):
    import tensorflow as tf

    def step(inputs, onehots):
        a = inputs[0]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(a)
            outs = head(list(inputs), training=False)
            outs = outs if isinstance(outs, list | tuple) else [outs]
            score = tf.cast(outs[-1], tf.float32)
            picked = [tf.reduce_sum(score * onehots[i]) for i in range(onehots.shape[0])]
        grads = tf.stack([tape.gradient(p, a) for p in picked])
        del tape
        return [tf.cast(o, tf.float32) for o in outs], grads

    if jit is None:  # names TensorFlow cannot trace (featuremaps.extractor.traceable): eager, same numbers
        return step
    return tf.function(step, jit_compile=jit, reduce_retracing=True)


def _tf(head, inputs, classes, cache: dict):
    import tensorflow as tf

    n_out = int(head.outputs[-1].shape[-1])
    onehots = np.zeros((len(classes), n_out), np.float32)
    onehots[np.arange(len(classes)), classes] = 1.0
    if cache.get("head") is not head:
        cache.update(head=head, step=_tf_step(head, jit=_jit(head)))
    fn = cache["step"]
    args = ([tf.constant(a) for a in inputs], tf.constant(onehots))
    try:
        outs, grads = fn(*args)
    except Exception as e:  # XLA could not compile some op of the head: graph mode instead
        log.info("XLA could not compile the head (%s); using a traced tf.function", type(e).__name__)
        fn = cache["step"] = _tf_step(head, jit=False)
        outs, grads = fn(*args)
    return [o.numpy() for o in outs], grads.numpy()


# ---------------------------------------------------------------- JAX
def _jax(head, inputs, classes):
    import jax
    import jax.numpy as jnp

    rest = [jnp.asarray(a) for a in inputs[1:]]

    def f(a):
        outs = head([a, *rest], training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return [jnp.asarray(o, jnp.float32) for o in outs]

    outs, pullback = jax.vjp(f, jnp.asarray(inputs[0]))
    grads = []
    for c in classes:
        cot = [jnp.zeros_like(o) for o in outs]
        cot[-1] = cot[-1].at[..., c].set(1.0)
        grads.append(np.asarray(pullback(cot)[0]))
    return [np.asarray(o) for o in outs], np.stack(grads)


# ---------------------------------------------------------------- torch
def _torch(head, inputs, classes):
    import torch

    dev = _torch_device()
    with torch.backends.mkldnn.flags(enabled=False):
        a = torch.tensor(inputs[0], device=dev, requires_grad=True)
        rest = [torch.tensor(x, device=dev) for x in inputs[1:]]
        outs = head([a, *rest], training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        score = outs[-1].float()
        grads = []
        for i, c in enumerate(classes):
            (g,) = torch.autograd.grad(score[..., c].sum(), a, retain_graph=i < len(classes) - 1)
            grads.append(g.detach().cpu().numpy())
    return [ops.convert_to_numpy(o.detach()).astype(np.float32) for o in outs], np.stack(grads)


def _torch_device():

    return ops.convert_to_tensor(np.zeros(1, np.float32)).device


# ---------------------------------------------------------------- batches: one vector-Jacobian product
def weighted_gradients(net, x: np.ndarray, weights: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(values (B,), gradient (B, H, W, C))`` of ``values[b] = <net(x)_b, weights_b>`` with respect to ``x``.

    ``net`` maps an image batch to one tensor (a conv layer's maps or the class scores), ``weights`` has its shape
    (:func:`featuremaps.targets.target_weights`). One forward and one backward pass whatever the batch; the
    compiled function is kept in ``cache`` (a dict owned by the caller, one per ``net``), so a loop of steps on
    same-shaped batches compiles once: on TensorFlow XLA for nets with strided convolutions, graph mode for the
    rest (:func:`needs_xla`; eager where TensorFlow cannot trace its names), ``jax.jit`` over ``stateless_call``
    on JAX (the weights are arguments, not constants baked into the program), eager autograd on torch.
    """
    x = np.ascontiguousarray(x, np.float32)
    weights = np.ascontiguousarray(weights, np.float32)
    name = backend()
    if name == "tensorflow":
        return _tf_weighted(net, x, weights, cache)
    if name == "jax":
        return _jax_weighted(net, x, weights, cache)
    if name == "torch":
        return _torch_weighted(net, x, weights)
    raise NotImplementedError(
        f"gradients are not implemented for the Keras backend '{name}'; use tensorflow, jax or torch "
        "(set KERAS_BACKEND)"
    )


def _tf_weighted_step(net, jit: bool | None):
    import tensorflow as tf

    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.cast(net(x, training=False), tf.float32)
            total = tf.reduce_sum(out * w)
        g = tape.gradient(total, x)
        values = tf.reduce_sum(tf.reshape(out * w, [tf.shape(w)[0], -1]), axis=1)
        return values, g

    if jit is None:
        return step
    return tf.function(step, jit_compile=jit, reduce_retracing=True)


def _tf_weighted(net, x, w, cache):
    import tensorflow as tf

    if cache.get("weighted_net") is not net:
        cache.update(weighted_net=net, weighted=_tf_weighted_step(net, jit=_jit(net)))
    args = (tf.constant(x), tf.constant(w))
    try:
        values, g = cache["weighted"](*args)
    except Exception as e:  # XLA could not compile some op: graph mode instead
        log.info("XLA could not compile the net (%s); using a traced tf.function", type(e).__name__)
        cache["weighted"] = _tf_weighted_step(net, jit=False)
        values, g = cache["weighted"](*args)
    return values.numpy(), g.numpy()


def _jax_weighted(net, x, w, cache):
    import jax
    import jax.numpy as jnp

    if cache.get("weighted_net") is not net:

        def step(trainable, frozen, x, w):
            def f(x):
                out, _ = net.stateless_call(trainable, frozen, x, training=False)
                return jnp.asarray(out, jnp.float32)

            out, pullback = jax.vjp(f, x)
            return jnp.sum((out * w).reshape(w.shape[0], -1), axis=1), pullback(w)[0]

        cache.update(weighted_net=net, weighted=jax.jit(step))
    trainable = [v.value for v in net.trainable_variables]
    frozen = [v.value for v in net.non_trainable_variables]
    values, g = cache["weighted"](trainable, frozen, jnp.asarray(x), jnp.asarray(w))
    return np.asarray(values), np.asarray(g)


def _torch_weighted(net, x, w):
    import torch

    dev = _torch_device()
    with torch.backends.mkldnn.flags(enabled=False):
        xt = torch.tensor(x, device=dev, requires_grad=True)
        out = net(xt, training=False).float()
        wt = torch.tensor(w, device=dev)
        values = (out * wt).reshape(len(w), -1).sum(dim=1)
        (g,) = torch.autograd.grad(out, xt, grad_outputs=wt)
    return values.detach().cpu().numpy(), g.detach().cpu().numpy()
