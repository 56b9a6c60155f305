"""The training form's batch normalisation (``featuremaps.emotion.norm``): the fused layer gives Keras' outputs,
gradients and moving statistics, falls back to Keras' layer where it cannot fuse, and survives a ``.keras`` file."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from featuremaps.emotion import norm
from featuremaps.emotion.model import build_emotion_vgg16
from featuremaps.emotion.norm import FusedBatchNormalization

BACKEND = keras.backend.backend()


def _pair(dtype, channels=5, seed=0, shape=(None, 6, 6)):
    """Keras' layer and the fused one, built alike, with the same non-trivial gamma/beta/moving statistics."""
    rng = np.random.default_rng(seed)
    a = keras.layers.BatchNormalization(momentum=0.9, dtype=dtype)
    b = FusedBatchNormalization(momentum=0.9, dtype=dtype)
    weights = [
        rng.uniform(0.5, 1.5, channels),
        rng.normal(0, 0.3, channels),
        rng.normal(0, 0.3, channels),
        rng.uniform(0.5, 2.0, channels),
    ]
    weights = [w.astype(np.float32) for w in weights]
    for layer in (a, b):
        layer.build((*shape, channels))
        layer.set_weights(weights)
    return a, b, weights


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def _x(seed=1, shape=(16, 6, 6, 5)):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 3 + 1).astype(np.float32)


def _forward_backward(layer, x, weight, bfloat16):
    """The layer's training-mode output and the gradients of a loss for x, gamma and beta (float32 arrays)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x, dtype="bfloat16" if bfloat16 else "float32")
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.cast(layer(xt, training=True), "float32")
            loss = tf.reduce_sum(y * weight + y**2)
        grads = tape.gradient(loss, [xt, layer.gamma, layer.beta])
        return np.asarray(y), [np.asarray(tf.cast(g, "float32")) for g in grads]
    import torch

    xt = torch.tensor(x, dtype=torch.bfloat16 if bfloat16 else torch.float32, requires_grad=True)
    y = layer(xt, training=True).float()
    (y * torch.tensor(weight) + y**2).sum().backward()
    grads = [xt.grad, layer.gamma.value.grad, layer.beta.value.grad]
    return y.detach().numpy(), [g.float().numpy() for g in grads]


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_training_step_matches_keras(dtype, native, monkeypatch):
    """Batch statistics, biased moving variance (the fused kernels average the Bessel-corrected one), and the
    gradients for x, gamma and beta, in float32 and under the mixed bfloat16 policy (on JAX the layer is Keras').
    ``native`` False: a CPU without native bfloat16, where TensorFlow's kernel gets the maps in float32 (oneDNN
    has no bfloat16 BN on AVX2: ``ONEDNN_MAX_CPU_ISA=AVX2`` shows it here)."""
    monkeypatch.setattr(norm, "NATIVE_BF16", native)
    a, b, (_, _, m0, v0) = _pair(dtype)
    x = _x()
    weight = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)  # no cancelling gradient
    if BACKEND in ("tensorflow", "torch"):
        (ya, ga), (yb, gb) = (_forward_backward(layer, x, weight, dtype != "float32") for layer in (a, b))
        tol = 1e-4 if dtype == "float32" else 0.02
        np.testing.assert_allclose(yb, ya, atol=tol * 10)
        for g0, g1 in zip(ga, gb, strict=True):
            np.testing.assert_allclose(g1, g0, rtol=tol, atol=tol * np.abs(g0).max())
    else:
        for layer in (a, b):
            layer(x, training=True)
    # the moving statistics, by hand: 0.9 * old + 0.1 * the batch's mean and biased variance over N, H, W
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    tol = 1e-4 if dtype == "float32" else 0.02  # bfloat16 maps: 8 bits of mantissa
    for layer in (a, b):
        np.testing.assert_allclose(layer.get_weights()[2], 0.9 * m0 + 0.1 * mean, rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.get_weights()[3], 0.9 * v0 + 0.1 * var, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.get_weights()[3], a.get_weights()[3], rtol=1e-4)


def test_inference_uses_moving_statistics():
    a, b, _ = _pair("float32")
    x = _x(seed=2)
    g, beta, m, v = b.get_weights()
    by_hand = g * (x - m) / np.sqrt(v + b.epsilon) + beta
    np.testing.assert_allclose(_np(b(x, training=False)), by_hand, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(b(x, training=False)), _np(a(x, training=False)), atol=1e-5)
    assert np.allclose(b.get_weights()[2], m)  # inference leaves the statistics alone


def test_falls_back_to_keras_where_it_cannot_fuse():
    """A 2D input (no fused kernel for it) and a frozen layer (trainable=False: moving statistics, none updated)."""
    a, b, _ = _pair("float32", channels=4, shape=(None,))
    x = _x(seed=3, shape=(8, 4))
    np.testing.assert_allclose(_np(b(x, training=True)), _np(a(x, training=True)), atol=1e-5)
    np.testing.assert_allclose(b.get_weights()[3], a.get_weights()[3], rtol=1e-5)
    frozen = _pair("float32")[1]
    frozen.trainable = False
    before = frozen.get_weights()
    x = _x(seed=4)
    g, beta, m, v = before
    np.testing.assert_allclose(
        _np(frozen(x, training=True)), g * (x - m) / np.sqrt(v + frozen.epsilon) + beta, rtol=1e-5, atol=1e-5
    )
    for w0, w1 in zip(before, frozen.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)


def test_training_form_uses_it_and_a_keras_file_keeps_it(tmp_path):
    m = build_emotion_vgg16(input_shape=(16, 16, 1), batch_norm=True, width=0.0625)
    norms = [layer for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 13 and all(isinstance(layer, FusedBatchNormalization) for layer in norms)
    m.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert type(back.get_layer("block1_bn1")) is FusedBatchNormalization
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(_np(back(x)), _np(m(x)), rtol=1e-5, atol=1e-6)
