"""Extraction: one intermediate model, maps equal to what the original layers compute, in-graph selection."""

from __future__ import annotations

import numpy as np
import pytest

from featuremaps import FeatureExtractor, UserError, extract
from featuremaps.extractor import STATS, parse_select


def _img(shape, seed=0, scale=255.0):
    return np.random.default_rng(seed).uniform(0, scale, shape).astype(np.float32)


def _reference(model, layer_name, x):
    import keras

    sub = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    return np.asarray(sub(x[None], training=False))[0]


def test_sequential_maps_equal_keras_submodel(tiny_sequential):
    x = _img((16, 16, 3), scale=1.0)
    got = extract(tiny_sequential, x)
    assert list(got) == ["conv_a", "conv_b"]  # layer order
    for name in got:
        np.testing.assert_allclose(got[name], _reference(tiny_sequential, name, x), rtol=1e-5, atol=1e-5)
        assert got[name].dtype == np.float32


def test_functional_branches_equal_keras_submodel(tiny_functional):
    x = _img((16, 16, 3), scale=1.0)
    got = extract(tiny_functional, x)
    assert {k: v.shape for k, v in got.items()} == {
        "c1": (16, 16, 4),
        "c2": (16, 16, 4),
        "c3": (16, 16, 4),
        "c4": (32, 32, 5),
    }
    for name in got:
        np.testing.assert_allclose(got[name], _reference(tiny_functional, name, x), rtol=1e-5, atol=1e-5)


def test_nested_model_no_graph_disconnected(tiny_nested):
    """Inner layers of Sequential([Input, Rescaling, base, GAP, Dense]) equal the inner model's outputs."""
    import keras

    x = _img((16, 16, 3))
    fx = FeatureExtractor(tiny_nested, x.shape, maps=None)
    assert len(fx.intermediate.inputs) == 1
    results, preds = fx(x[None])
    base = tiny_nested.get_layer("base")
    for r in results:
        inner = keras.Model(base.inputs[0], base.get_layer(r.conv.short_name).output)
        want = np.asarray(inner(x[None] / 255.0))[0]
        np.testing.assert_allclose(r.maps[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(preds, np.asarray(tiny_nested(x[None])), rtol=1e-5, atol=1e-6)


def test_nested_model_does_not_change_user_model(tiny_nested):
    n_layers = len(tiny_nested.layers)
    FeatureExtractor(tiny_nested, (16, 16, 3))
    assert len(tiny_nested.layers) == n_layers
    assert tiny_nested.outputs[0].shape == (None, 7)


def test_never_built_sequential_is_built_from_image_shape(tiny_unbuilt):
    got = extract(tiny_unbuilt, _img((10, 20, 3)))
    assert {k: v.shape for k, v in got.items()} == {"u1": (8, 18, 3), "u2": (6, 16, 5)}
    u1 = tiny_unbuilt.get_layer("u1")
    x = _img((10, 20, 3))
    import keras

    want = np.asarray(keras.ops.relu(keras.ops.conv(x[None], u1.kernel) + u1.bias))[0]
    np.testing.assert_allclose(extract(tiny_unbuilt, x, layers="u1")["u1"], want, rtol=1e-5, atol=1e-5)


def test_grayscale_2d_image_gets_channel_axis():
    import keras

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="g")])
    assert extract(m, _img((8, 8)))["g"].shape == (6, 6, 2)


def test_layers_subset_and_default_all_channels(tiny_functional):
    got = extract(tiny_functional, _img((16, 16, 3)), layers="C2,c4")
    assert list(got) == ["c2", "c4"]
    assert got["c4"].shape[-1] == 5  # maps=None: every channel


def test_first_n_and_note_when_n_exceeds_channels(tiny_sequential):
    fx = FeatureExtractor(tiny_sequential, (16, 16, 3), maps=5)
    results, preds = fx(_img((1, 16, 16, 3), scale=1.0))
    a, b = results
    assert a.maps.shape == (1, 16, 16, 4) and a.channels.tolist() == [[0, 1, 2, 3]]
    assert "5 maps asked, layer has 4: showing all" == a.note
    assert b.maps.shape == (1, 8, 8, 5) and b.channels.tolist() == [[0, 1, 2, 3, 4]] and b.note == ""
    assert a.shape == (16, 16, 4) and b.shape == (8, 8, 6)
    assert preds.shape == (1, 3)


@pytest.mark.parametrize("mode", ["top-mean", "top-max"])
def test_top_n_selection_matches_numpy(tiny_functional, mode):
    x = _img((16, 16, 3), seed=3, scale=1.0)
    full = extract(tiny_functional, x)
    fx = FeatureExtractor(tiny_functional, x.shape, maps=3, select=mode)
    results, _ = fx(x[None])
    for r in results:
        f = full[r.conv.name]
        score = f.mean(axis=(0, 1)) if mode == "top-mean" else f.max(axis=(0, 1))
        want = np.argsort(-score, kind="stable")[:3]
        assert sorted(score[r.channels[0]].tolist(), reverse=True) == pytest.approx(score[want].tolist(), rel=1e-5)
        np.testing.assert_allclose(r.maps[0], f[..., r.channels[0]], rtol=1e-5, atol=1e-6)


def test_top_n_hand_checked():
    """A 1x1 conv with a diagonal kernel copies the input channels: the order is known by construction."""
    import keras

    m = keras.Sequential([keras.Input((2, 2, 4)), keras.layers.Conv2D(4, 1, use_bias=False, name="id")])
    m.get_layer("id").set_weights([np.eye(4, dtype=np.float32).reshape(1, 1, 4, 4)])
    x = np.zeros((2, 2, 4), np.float32)
    x[..., 0] = [[1, 1], [1, 1]]  # mean 1, max 1
    x[..., 1] = [[0, 0], [0, 9]]  # mean 2.25, max 9
    x[..., 2] = [[3, 3], [3, 3]]  # mean 3, max 3
    x[..., 3] = [[0, 0], [0, 0]]  # mean 0, max 0
    res, _ = FeatureExtractor(m, x.shape, maps=2, select="top-mean")(x[None])
    assert res[0].channels.tolist() == [[2, 1]]
    res, _ = FeatureExtractor(m, x.shape, maps=2, select="top-max")(x[None])
    assert res[0].channels.tolist() == [[1, 2]]
    np.testing.assert_array_equal(res[0].maps[0], x[..., [1, 2]])
    res, _ = FeatureExtractor(m, x.shape, select=[3, 0])(x[None])
    assert res[0].channels.tolist() == [[3, 0]]
    np.testing.assert_array_equal(res[0].maps[0], x[..., [3, 0]])
    r = res[0]
    assert r.stat("mean") == pytest.approx(x.mean())
    assert r.stat("max") == 9.0
    assert r.stat("min") == 0.0
    assert r.stat("zero_fraction") == pytest.approx((x == 0).mean())


def test_explicit_channel_list_string(tiny_sequential):
    res, _ = FeatureExtractor(tiny_sequential, (16, 16, 3), select="3,0")(_img((1, 16, 16, 3)))
    assert [r.channels.tolist() for r in res] == [[[3, 0]], [[3, 0]]]


def test_unknown_channel_lists_what_exists(tiny_sequential):
    with pytest.raises(UserError, match=r"channel 5 does not exist in C1 conv_a \(4 channels: 0-3\)"):
        FeatureExtractor(tiny_sequential, (16, 16, 3), select="1,5")


def test_stats_match_numpy(tiny_functional):
    x = _img((16, 16, 3), scale=1.0)
    full = extract(tiny_functional, x)
    res, _ = FeatureExtractor(tiny_functional, x.shape, maps=2)(x[None])
    assert STATS == ("mean", "max", "zero_fraction", "min")
    for r in res:
        f = full[r.conv.name]
        assert r.stat("mean") == pytest.approx(float(f.mean()), rel=1e-4, abs=1e-6)
        assert r.stat("max") == pytest.approx(float(f.max()), rel=1e-5)
        assert r.stat("zero_fraction") == pytest.approx(float((f == 0).mean()))


def test_batch_of_images_each_selected_separately(tiny_sequential):
    xs = np.stack([_img((16, 16, 3), seed=s, scale=1.0) for s in range(3)])
    fx = FeatureExtractor(tiny_sequential, (16, 16, 3), maps=2, select="top-max")
    res, preds = fx(xs)
    assert res[1].maps.shape == (3, 8, 8, 2) and preds.shape == (3, 3)
    for i in range(3):
        one, _ = fx(xs[i : i + 1])
        np.testing.assert_allclose(res[1].maps[i], one[1].maps[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "spec, want",
    [
        (None, ("first", None)),
        ("first", ("first", None)),
        ("top-mean", ("top-mean", None)),
        ("top-max", ("top-max", None)),
        ("0,5, 9", ("list", [0, 5, 9])),
        ([2, 1], ("list", [2, 1])),
    ],
)
def test_parse_select(spec, want):
    assert parse_select(spec) == want


@pytest.mark.parametrize("spec", ["biggest", "1,x", "-1", ","])
def test_parse_select_errors(spec):
    with pytest.raises(UserError, match="--select"):
        parse_select(spec)


def test_layer_not_on_path_is_reported():
    import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(2, 3, name="used")(x)
    m = keras.Model(x, y)
    dead = keras.layers.Conv2D(2, 3, name="dead")
    dead(keras.Input((8, 8, 3)))  # built, never part of m
    assert list(extract(m, _img((8, 8, 3)))) == ["used"]


def test_a_repeated_forward_is_compiled_and_gives_the_same_maps(tiny_sequential, monkeypatch):
    """``adapter.forward`` runs its first call on a shape eagerly and the same call again through the compiled
    predict step (a loop, such as the diversity term's forward every step): the same numbers either way."""
    import keras

    from featuremaps.frameworks import adapter

    ad = adapter(tiny_sequential)
    batch = _img((3, 16, 16, 3), scale=1.0)
    compiled = []
    real = keras.Model.predict_on_batch
    monkeypatch.setattr(keras.Model, "predict_on_batch", lambda self, x: compiled.append(1) or real(self, x))
    first, p1 = ad.forward(batch, ["conv_b", "conv_a"])
    assert not compiled
    again, p2 = ad.forward(batch, ["conv_b", "conv_a"])
    assert compiled == [1]
    assert list(again) == ["conv_b", "conv_a"]
    for name in first:
        assert again[name].dtype == np.float32
        np.testing.assert_allclose(again[name], first[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p2, p1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        again["conv_a"][0], _reference(tiny_sequential, "conv_a", batch[0]), rtol=1e-5, atol=1e-5
    )
