"""Transfer-learning shapes and graphs with operations: featuremaps' maps equal a hand-composed forward pass.

Each test composes the same layer objects by hand (eager calls on arrays, nothing from featuremaps), so a
wrong node index, a missed operation or the wrong call of a shared sub-model shows up as different maps.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from featuremaps import UserError, extract
from featuremaps.cam import compute_cam
from featuremaps.cli import main
from featuremaps.layers import conv_layers


def _x(seed=0, shape=(16, 16, 3)):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


def _np(t):
    from keras import ops

    return ops.convert_to_numpy(t)


def _base():
    import keras

    keras.utils.set_random_seed(0)
    bi = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(bi)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(h)
    return keras.Model(bi, h, name="base")


def _base_by_hand(base, x):
    """{short name: map} of the base's conv layers, composed by hand on one image."""
    c1 = base.get_layer("c1")(x[None])
    c2 = base.get_layer("c2")(base.get_layer("pool")(c1))
    return {"c1": _np(c1)[0], "c2": _np(c2)[0]}


def _head(h):
    import keras

    return keras.layers.Dense(7, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D(name="gap")(h))


def _functional_once():
    import keras

    base = _base()
    inp = keras.Input((16, 16, 3))
    return keras.Model(inp, _head(base(inp)), name="transfer_fn")


def _check(got, want, prefix="base/"):
    assert list(got) == [f"{prefix}{k}" for k in want]
    for k, v in want.items():
        np.testing.assert_allclose(got[f"{prefix}{k}"], v, rtol=1e-5, atol=1e-5)


def test_functional_in_functional_called_once():
    m = _functional_once()
    x = _x()
    _check(extract(m, x), _base_by_hand(m.get_layer("base"), x))
    r = compute_cam(m, x, layer="C2")
    assert r.layer.name == "base/c2" and r.heatmap.shape == (8, 8)


def test_functional_in_functional_after_keras_round_trip(tmp_path):
    import keras

    p = tmp_path / "m.keras"
    _functional_once().save(p)
    m = keras.saving.load_model(p)
    x = _x(1)
    _check(extract(m, x), _base_by_hand(m.get_layer("base"), x))
    assert compute_cam(m, x, method="gradcam++").heatmap.shape == (8, 8)


def test_sequential_wrapping_functional_base():
    import keras

    base = _base()
    m = keras.Sequential([keras.Input((16, 16, 3)), base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = _x(2)
    _check(extract(m, x), _base_by_hand(base, x))


def _called_twice():
    """Siamese: the base on the image and on the image scaled by 0.5 (shared weights), GAPs concatenated."""
    import keras

    base = _base()
    inp = keras.Input((16, 16, 3))
    h1 = base(inp)
    h2 = base(keras.layers.Rescaling(0.5, name="half")(inp))
    g = keras.layers.Concatenate(name="cat")([keras.layers.GlobalAveragePooling2D()(h) for h in (h1, h2)])
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(g), name="siamese")


def test_submodel_called_twice_every_call_drawn(tmp_path):
    import keras

    m = _called_twice()
    names = [c.name for c in conv_layers(m)]
    assert names == ["base/c1", "base/c2", "base@2/c1", "base@2/c2"]
    x = _x(3)
    got = extract(m, x)
    base = m.get_layer("base")
    _check({k: v for k, v in got.items() if k.startswith("base/")}, _base_by_hand(base, x))
    _check({k: v for k, v in got.items() if k.startswith("base@2/")}, _base_by_hand(base, 0.5 * x), "base@2/")
    assert not np.allclose(got["base/c1"], got["base@2/c1"])
    # CAMs of either call: the same numbering (C4 = base@2/c2), different maps
    first, second = compute_cam(m, x, layer="C2", class_index=0), compute_cam(m, x, layer="C4", class_index=0)
    assert (first.layer.name, second.layer.name) == ("base/c2", "base@2/c2")
    assert not np.allclose(first.heatmap, second.heatmap)
    # after a .keras round trip too
    p = tmp_path / "s.keras"
    m.save(p)
    m2 = keras.saving.load_model(p)
    got2 = extract(m2, x)
    for k in got:
        np.testing.assert_allclose(got2[k], got[k], rtol=1e-5, atol=1e-5)


def test_graph_with_operations_that_are_not_layers():
    """``x + y``, ``x * 2``, slicing and ``keras.ops`` between conv layers (ConvNeXt's residual ``Add``)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    ca, cb = (keras.layers.Conv2D(4, 3, padding="same", name=n) for n in ("ca", "cb"))
    cc = keras.layers.Conv2D(5, 3, padding="same", name="cc")
    a, b = ca(inp), cb(inp)
    h = keras.ops.relu((a + b) * 2.0)[:, 2:14, :, 0:3]
    h = cc(keras.ops.concatenate([h, -h], axis=-1))
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h)))
    assert len(m.operations) > len(m.layers)
    x = _x(4)
    got = extract(m, x)
    ha, hb = ca(x[None]), cb(x[None])
    hh = _np(keras.ops.relu((ha + hb) * 2.0))[:, 2:14, :, 0:3]
    want_c = _np(cc(np.concatenate([hh, -hh], axis=-1)))[0]
    assert list(got) == ["ca", "cb", "cc"]
    np.testing.assert_allclose(got["ca"], _np(ha)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["cb"], _np(hb)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["cc"], want_c, rtol=1e-5, atol=1e-5)
    assert got["cc"].shape == (12, 16, 5)
    for layer in ("C1", "C3"):
        assert compute_cam(m, x, layer=layer).heatmap.ndim == 2


def _unreplayable(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="featuremaps_test")
    class OnlyOnce(keras.layers.Layer):
        """A layer that refuses to be called on a second input (as some custom layers do)."""

        def __init__(self, **kw):
            super().__init__(**kw)
            self.calls = 0

        def call(self, x):
            return x

        def compute_output_spec(self, x):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("OnlyOnce was already called\nsecond line")
            return keras.KerasTensor(x.shape, x.dtype)

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(2, 3, name="c")(OnlyOnce(name="once")(inp))
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h)))


def test_unreplayable_layer_is_one_line_naming_its_type(tmp_path):
    m = _unreplayable(tmp_path)
    with pytest.raises(UserError, match=r"cannot replay OnlyOnce 'once'.*already called\);"):
        extract(m, _x())
    with pytest.raises(UserError, match="OnlyOnce"):
        compute_cam(m, _x())


def _one_line_exit_2(argv, capsys, *needles):
    """``featuremaps ARGV`` ends in exit 2 with one ``featuremaps: error:`` line holding every needle."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("featuremaps: error:") and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("command", ["show", "cam", "report"])
def test_cli_unreplayable_exit_2(tmp_path, rgb_image, capsys, command):
    m = _unreplayable(tmp_path)
    p = tmp_path / "once.keras"
    m.save(p)
    out = tmp_path / ("out.html" if command == "report" else "out")
    _one_line_exit_2([command, str(rgb_image), "--model", str(p), "--out", str(out)], capsys, "OnlyOnce")
    assert not out.exists()


def _subclassed():
    """A subclassed keras.Model: its graph is Python code in ``call``, which featuremaps cannot re-call."""
    import keras

    @keras.saving.register_keras_serializable(package="featuremaps_test")
    class TinyNet(keras.Model):
        def __init__(self, name="my_tiny_net", **kw):  # the name a reloaded model gets too
            super().__init__(name=name, **kw)
            self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
            self.gap = keras.layers.GlobalAveragePooling2D()
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(self.gap(self.conv(x)))

    keras.utils.set_random_seed(0)
    m = TinyNet()
    m(np.zeros((1, 16, 16, 3), np.float32))
    return m


def _two_inputs():
    import keras

    keras.utils.set_random_seed(0)
    a, b = keras.Input((16, 16, 3), name="left"), keras.Input((16, 16, 3), name="right")
    h = keras.layers.Conv2D(4, 3, padding="same", name="c")(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], _head(h), name="two_eyes")


@pytest.mark.parametrize(
    "build, needles",
    [(_subclassed, ("'my_tiny_net'", "TinyNet", "subclassed")), (_two_inputs, ("'two_eyes'", "2 inputs"))],
    ids=["subclassed", "two-inputs"],
)
def test_models_featuremaps_cannot_replay_are_one_line(tmp_path, rgb_image, capsys, build, needles):
    """A subclassed keras.Model (the message names the model and its class) and a model of two image inputs:
    the API raises UserError, the CLI says it in one line, exit 2, nothing written."""
    m = build()
    match = ".*".join(map(re.escape, needles))
    with pytest.raises(UserError, match=match):
        extract(m, _x())
    with pytest.raises(UserError, match=match):
        compute_cam(m, _x())
    p = tmp_path / "model.keras"
    m.save(p)
    out = tmp_path / "out"
    _one_line_exit_2(["show", str(rgb_image), "--model", str(p), "--out", str(out)], capsys, *needles)
    assert not out.exists()


def _shared_conv():
    """One Conv2D layer called on the image and on its negative (1 - x; shared weights), then a second conv."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    a = shared(inp)
    b = shared(keras.layers.Rescaling(-1.0, offset=1.0, name="negative")(inp))
    h = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="after")(keras.layers.Add(name="add")([a, b]))
    return keras.Model(inp, _head(h), name="shared_conv")


def test_plain_layer_called_twice_every_call_drawn():
    m = _shared_conv()
    assert [c.name for c in conv_layers(m)] == ["shared", "shared@2", "after"]
    x = _x(4)
    got = extract(m, x)
    shared = m.get_layer("shared")
    first, second = _np(shared(x[None]))[0], _np(shared(1.0 - x[None]))[0]
    after = _np(m.get_layer("after")(m.get_layer("add")([first[None], second[None]])))[0]
    assert list(got) == ["shared", "shared@2", "after"]
    for k, v in (("shared", first), ("shared@2", second), ("after", after)):
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got["shared"], got["shared@2"])
    one, two = compute_cam(m, x, layer="C1", class_index=2), compute_cam(m, x, layer="shared@2", class_index=2)
    assert (one.layer.name, two.layer.name) == ("shared", "shared@2")
    assert not np.allclose(one.heatmap, two.heatmap)


def test_cli_lists_and_draws_every_call(tmp_path, rgb_image, capsys):
    p = tmp_path / "shared.keras"
    _shared_conv().save(p)
    assert main(["layers", str(p)]) == 0
    out = capsys.readouterr().out
    assert "C1  shared " in out and "C2  shared@2 " in out and "C3  after " in out, out
    assert main(["show", str(rgb_image), "--model", str(p), "--layers", "C2", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "img" / "layers" / "C02_shared_2.png").is_file()
