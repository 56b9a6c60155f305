"""The emotion VGG-16: architecture, BN folding, float16 weight files, and the shipped model when present."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from featuremaps.emotion.model import (
    EMOTIONS,
    build_emotion_vgg16,
    fold_batch_norm,
    load_weights_npz,
    model_card,
    pools_of,
    save_weights_npz,
    shipped_build,
    shipped_weights_available,
    unfold_batch_norm,
)
from featuremaps.errors import UserError
from featuremaps.layers import conv_layers


def test_vgg16_structure_and_names():
    m = build_emotion_vgg16()
    convs = conv_layers(m)
    assert [c.short_name for c in convs][:3] == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert len(convs) == 13 and convs[-1].short_name == "block5_conv3"
    assert [c.layer.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert m.outputs[0].shape[-1] == len(EMOTIONS) == 7
    bn = build_emotion_vgg16(batch_norm=True)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in bn.layers) == 13


def test_fold_batch_norm_is_exact():
    import keras

    m = build_emotion_vgg16(batch_norm=True, width=0.125)
    rng = np.random.default_rng(0)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.1, mu.shape),
                    rng.uniform(0.5, 2, v.shape),
                ]
            )
    folded = fold_batch_norm(m, width=0.125)
    x = rng.random((3, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(m(x, training=False)), atol=1e-5)


def test_unfold_batch_norm_keeps_outputs_and_measures_statistics():
    """Unfolding gives the folded model's outputs with stored statistics, and nearly so with batch ones."""
    import keras

    rng = np.random.default_rng(0)
    folded = build_emotion_vgg16(width=0.125)
    faces = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    bn_model = unfold_batch_norm(folded, faces, width=0.125, batch_size=16)
    x = faces[:8, ..., None].astype(np.float32) / 255.0
    np.testing.assert_allclose(np.asarray(bn_model(x, training=False)), np.asarray(folded(x)), atol=1e-5)
    # the stored mean/variance are those of the conv output on the calibration faces (first conv by hand)
    kernel, bias = folded.get_layer("block1_conv1").get_weights()
    z = np.asarray(keras.ops.conv(faces[..., None].astype(np.float32) / 255.0, kernel, padding="same"))
    g, b, mean, var = bn_model.get_layer("block1_bn1").get_weights()
    np.testing.assert_allclose(mean, z.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, z.var((0, 1, 2)), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(b, bias + mean, rtol=1e-5, atol=1e-6)
    # in training mode BN uses the batch's statistics: on the calibration faces these are the stored ones
    conv_bn = keras.Model(bn_model.inputs, bn_model.get_layer("block1_bn1").output)
    conv = keras.Model(folded.inputs, folded.get_layer("block1_conv1").output)
    allx = faces[..., None].astype(np.float32) / 255.0
    pre = np.asarray(conv_bn(allx, training=True))
    np.testing.assert_allclose(np.maximum(pre, 0), np.asarray(conv(allx)), atol=1e-3)
    # and the round trip folds back to the same weights
    again = fold_batch_norm(bn_model, width=0.125)
    for a, c in zip(again.get_weights(), folded.get_weights(), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


def test_npz_roundtrip_float16(tmp_path):
    m = build_emotion_vgg16(width=0.125)
    save_weights_npz(m, tmp_path / "w.npz")
    m2 = build_emotion_vgg16(width=0.125)
    load_weights_npz(m2, tmp_path / "w.npz")
    for a, b in zip(m.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not shipped_weights_available(), reason="package built without the trained weights")
def test_shipped_model_loads_and_has_a_card():
    from featuremaps.emotion.model import load_emotion_model

    m = load_emotion_model()
    card = model_card()
    side = card.get("input_side", 48)  # a card without it is the 48 px model; the shipped one says 40
    assert side in (40, 44, 48) and tuple(m.inputs[0].shape[1:]) == (side, side, 1)
    p = np.asarray(m(np.full((1, side, side, 1), 0.5, np.float32)))
    assert p.shape == (1, 7) and abs(p.sum() - 1) < 1e-4
    assert card["classes"] == list(EMOTIONS)
    assert 0.3 < card["accuracy"]["PrivateTest"] <= 1


def _reach(model, layer: str) -> np.ndarray:
    """(H, W) booleans: whether raising all channels of ``layer``'s map at each position changes the output."""
    from featuremaps.cam import CamEngine

    eng = CamEngine(model, tuple(model.inputs[0].shape[1:]), layer)
    x = np.random.default_rng(0).random((1, *eng.input_shape), dtype=np.float32)
    cut = eng.adapter.cut(eng.input_shape, eng.layer.name)
    acts = keras.ops.convert_to_numpy(cut.body(x))
    base = keras.ops.convert_to_numpy(cut.head([acts])[0])
    out = np.zeros(acts.shape[1:3], bool)
    for i, j in np.ndindex(*out.shape):
        bumped = acts.copy()
        bumped[0, i, j, :] += 10.0
        out[i, j] = not np.allclose(keras.ops.convert_to_numpy(cut.head([bumped])[0]), base)
    return out


def test_every_position_of_the_last_map_reaches_the_head():
    """At 48 px block5_conv3 is 3x3; Keras' 2x2 pool would ignore its bottom row and right column (the mouth),
    so CAMs there would be blank whatever the face. Raising one corner of the map must change the output."""
    reach = _reach(build_emotion_vgg16(width=0.125), "block5_conv3")
    assert reach.shape == (3, 3)
    for i, j in ((2, 2), (0, 2), (2, 0), (0, 0)):
        assert reach[i, j], (i, j)


def test_ceil_pools_let_every_position_of_a_40px_models_maps_reach_the_output():
    """At 40 px block 4's maps are 5x5: a flooring 2x2 pool keeps 2x2 of them, so the bottom row and right column
    of C10 never reach the output (the shipped 70.3% model, trained so); a pool that rounds up (the default
    since) keeps 3x3 and every position counts. Where every map is even (48 px) the two are the same network."""
    ceil = build_emotion_vgg16((40, 40, 1), width=0.125)
    floor = build_emotion_vgg16((40, 40, 1), width=0.125, pools="floor")
    assert ceil.get_layer("block5_conv3").output.shape[1:3] == (3, 3)
    assert floor.get_layer("block5_conv3").output.shape[1:3] == (2, 2)
    assert _reach(ceil, "block4_conv3").all()
    reach = _reach(floor, "block4_conv3")
    assert reach[:4, :4].all() and not reach[4].any() and not reach[:, 4].any()
    a, b = build_emotion_vgg16(width=0.125), build_emotion_vgg16(width=0.125, pools="floor")
    b.set_weights(a.get_weights())
    x = np.random.default_rng(1).random((2, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-6)
    with pytest.raises(UserError, match="pools 'round'"):
        build_emotion_vgg16(pools="round")


def test_folding_keeps_the_pools():
    """fold_batch_norm builds the inference form with the trained model's pools, so it ships what was trained."""
    for pools in ("ceil", "floor"):
        m = build_emotion_vgg16((40, 40, 1), batch_norm=True, width=0.125, pools=pools)
        assert pools_of(m) == pools
        folded = fold_batch_norm(m, width=0.125)
        assert pools_of(folded) == pools
        x = np.random.default_rng(0).random((2, 40, 40, 1), dtype=np.float32)
        np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(m(x, training=False)), atol=1e-5)


def test_shipped_build_reads_the_card():
    """A card without arch/input_side/width/pools (the bundled VGG-16's) builds the 48 px width-1 model with
    flooring pools; a card that names another arch or an input the builders cannot take is refused in one line."""
    old = {"input_shape": (48, 48, 1), "width": 1.0, "pools": "floor"}
    assert shipped_build("vgg16", None) == old
    assert shipped_build("vgg16", {"recipe": {}}) == old
    assert shipped_build("vgg16", {"input_side": 40, "pools": "ceil"})["pools"] == "ceil"
    card = {"arch": "resnet", "input_side": 44, "width": 0.5}
    assert shipped_build("resnet", card) == {"input_shape": (44, 44, 1), "width": 0.5}
    for bad in ({"arch": "resnet"}, {"input_side": 64}, {"input_side": "44"}, {"width": 0}, {"pools": "round"}):
        with pytest.raises(UserError, match="reinstall featuremaps"):
            shipped_build("vgg16", bad)
