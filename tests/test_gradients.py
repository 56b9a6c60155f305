"""The one gradient primitive (issue 24): ``adapter(model).gradients(x, target, wrt=None)`` on Keras and PyTorch,
and the CAM sanity metrics written once on top of it."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import featuremaps as fm
from featuremaps.cam.metrics import deletion_insertion, randomisation_correlation
from featuremaps.frameworks import adapter
from featuremaps.targets import ChannelMean, ClassScore, Neuron


def _keras_net(activation="tanh", bias=0.0):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation=activation, name="c1", bias_initializer=keras.initializers.Constant(bias))(
        inp
    )
    x = keras.layers.Conv2D(6, 3, activation="tanh", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inp, out)


def _torch_net():
    torch = pytest.importorskip("torch", reason="torch not installed (pip install 'featuremaps[torch]')")
    from torch import nn

    torch.manual_seed(0)
    layers = [
        ("conv1", nn.Conv2d(3, 4, 3)),
        ("act", nn.Tanh()),
        ("conv2", nn.Conv2d(4, 6, 3)),
        ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flat", nn.Flatten()),
        ("fc", nn.Linear(6, 3)),
    ]
    return nn.Sequential(OrderedDict(layers)).eval()


def _directional_check(model, target):
    """``<grad, v>`` against the central difference ``(f(x + eps v) - f(x - eps v)) / 2 eps`` along a random v."""
    ad = adapter(model)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (12, 12, 3)).astype(np.float32)
    v = rng.normal(size=x.shape).astype(np.float32)
    value, grad = ad.gradients(x, target)
    assert grad.shape == x.shape  # channels last, like the input
    eps = 1e-2
    up, _ = ad.gradients(x + eps * v, target)
    down, _ = ad.gradients(x - eps * v, target)
    fd = (up - down) / (2 * eps)
    analytic = float((grad.astype(np.float64) * v).sum())
    assert abs(fd) > 1e-4, fd  # a direction the score moves along
    assert analytic == pytest.approx(fd, rel=2e-2, abs=1e-4)
    return value


def test_keras_class_score_input_gradient_matches_finite_differences():
    _directional_check(_keras_net(), ClassScore(1))


def test_torch_class_score_input_gradient_matches_finite_differences():
    _directional_check(_torch_net(), ClassScore(1))


def test_torch_channel_mean_and_neuron_input_gradients_match_finite_differences():
    net = _torch_net()
    _directional_check(net, ChannelMean("conv1", 2))
    _directional_check(net, Neuron("conv2", 1, 3, 4))


def test_keras_pre_activation_gradient_where_the_relu_is_off():
    """A fused ReLU that is off everywhere (bias -100) cuts the post-activation gradient to zero; the conv's
    output before it still depends on the input."""
    net = _keras_net(activation="relu", bias=-100.0)
    x = np.random.default_rng(0).uniform(0, 1, (12, 12, 3)).astype(np.float32)
    ad = adapter(net)
    pre_value, pre = ad.gradients(x, ChannelMean("c1", 0, pre_activation=True))
    post_value, post = ad.gradients(x, ChannelMean("c1", 0, pre_activation=False))
    assert post_value == 0.0 and not post.any()
    assert pre_value < -50 and np.abs(pre).max() > 1e-3
    _directional_check(_keras_net(), ChannelMean("c1", 0))  # and the pre-activation gradient is the right one


def test_gradient_with_respect_to_a_conv_layer_is_channels_last():
    for net, layer, shape in ((_keras_net(), "c1", (10, 10, 4)), (_torch_net(), "conv1", (10, 10, 4))):
        x = np.random.default_rng(0).uniform(0, 1, (12, 12, 3)).astype(np.float32)
        g = adapter(net).gradients(x, ClassScore(0), wrt=layer)
        assert g.gradient.shape == shape and g.activations.shape == shape and g.output.shape == (3,)


def test_sanity_metrics_run_on_a_torch_model():
    net = _torch_net()
    before = [p.detach().clone() for p in net.parameters()]
    x = np.random.default_rng(0).uniform(0, 1, (12, 12, 3)).astype(np.float32)
    rho = randomisation_correlation(net, x, ["fc", "conv2"], "gradcam")
    assert -1.0 <= rho <= 1.0
    assert all((a == b).all() for a, b in zip(before, net.parameters(), strict=True))  # the model is unchanged
    r = fm.compute_cam(net, x, "gradcam")
    dele, ins = deletion_insertion(net, x, r.heatmap_up, r.class_index, steps=8)
    assert 0.0 <= dele <= 1.0 and 0.0 <= ins <= 1.0
    with pytest.raises(fm.UserError, match="no module 'nope'"):
        randomisation_correlation(net, x, ["nope"])


def test_torch_cam_layer_rule_is_keras_rule():
    """One default-layer rule: a non-conv name says what it is, as for Keras."""
    net = _torch_net()
    x = np.zeros((12, 12, 3), np.float32)
    with pytest.raises(fm.UserError, match="layer 'fc' is a Linear, not a convolutional layer"):
        fm.compute_cam(net, x, "gradcam", layer="fc")


def test_xla_only_where_a_strided_conv_could_crash_onednn():
    """TensorFlow compiles gradients with XLA only for graphs with strided convolutions (oneDNN's backward pass
    of those can corrupt the heap, tests/test_cam_crash.py); stride-1 graphs run faster in graph mode. Both
    give the right gradient."""
    import keras

    from featuremaps.frameworks.keras.gradients import needs_xla

    plain = _keras_net()
    assert not needs_xla(plain)
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="tanh", name="c1")(inp)
    x = keras.layers.MaxPooling2D(2)(x)  # a strided pool is not a strided conv
    assert not needs_xla(keras.Model(inp, x))
    x = keras.layers.Conv2D(6, 1, strides=2, activation="tanh", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    strided = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))
    assert needs_xla(strided)
    inner = keras.Input((12, 12, 3))
    assert needs_xla(keras.Model(inner, keras.layers.Dense(3)(strided(inner))))  # nested models are looked into
    _directional_check(strided, ClassScore(1))
    _directional_check(plain, ChannelMean("c2", 2))
