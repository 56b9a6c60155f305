"""The emotion VGG-16's siblings (ResNet-18, MobileNetV2 style): structure, names, BN folding, input sizes,
per-arch weights/cards, and ``--model emotion-resnet`` before their weights ship."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from featuremaps.emotion.model import (
    ARCHS,
    arch_of,
    build_emotion_model,
    card_file,
    fold_batch_norm,
    shipped_weights_available,
    weights_file,
)
from featuremaps.errors import UserError
from featuremaps.layers import conv_layers


def _randomise_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
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


def test_resnet_structure_names_and_order():
    m = build_emotion_model("resnet", width=0.125)
    names = [c.short_name for c in conv_layers(m)]
    assert names[:4] == ["stem_conv", "stage1_block1_conv1", "stage1_block1_conv2", "stage1_block1_shortcut"]
    assert len(names) == 1 + 4 * 4 + 4  # stem, 8 blocks of 2 convs, 4 projection shortcuts (ResNet-18: 17 + 4)
    assert names[-1] == "stage4_block2_conv2"
    # forward order: each stage's maps are half the size of the previous stage's
    sides = {n.split("_")[0]: m.get_layer(n).output.shape[1] for n in names}
    assert [sides[s] for s in ("stem", "stage1", "stage2", "stage3", "stage4")] == [48, 24, 12, 6, 3]
    assert m.name == "emotion_resnet" and arch_of(m) == "resnet"
    assert any(isinstance(layer, keras.layers.Add) for layer in m.layers)


def test_mobilenet_structure_names_and_order():
    m = build_emotion_model("mobilenet", width=0.125)
    convs = conv_layers(m)
    names = [c.short_name for c in convs]
    assert names[:5] == ["stem_conv", "block1_depthwise", "block1_project", "block2_expand", "block2_depthwise"]
    assert names[-1] == "head_conv" and len(names) == 1 + 2 + 16 * 3 + 1
    assert sum(c.kind == "DepthwiseConv2D" for c in convs) == 17
    assert m.get_layer("block17_project").output.shape[1] == 3
    assert arch_of(m) == "mobilenet"


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_batch_norm_is_exact_for_every_arch(arch):
    m = build_emotion_model(arch, batch_norm=True, width=0.125)
    _randomise_bn(m)
    folded = fold_batch_norm(m, width=0.125)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert [c.short_name for c in conv_layers(folded)] == [c.short_name for c in conv_layers(m)]
    x = np.random.default_rng(1).random((3, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(m(x, training=False)), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_takes_44_px_crops_with_the_same_weights(arch):
    """--crop 44: the last pooling covers the whole final map, so weights fit 44 and 48 px inputs alike."""
    m48 = build_emotion_model(arch, width=0.125)
    m44 = build_emotion_model(arch, width=0.125, input_shape=(44, 44, 1))
    m44.set_weights(m48.get_weights())
    p = np.asarray(m44(np.random.default_rng(0).random((2, 44, 44, 1), dtype=np.float32)))
    assert p.shape == (2, 7) and np.allclose(p.sum(1), 1, atol=1e-4)


def test_per_arch_files_and_unshipped_siblings_fail_in_one_line():
    from featuremaps import models

    assert weights_file("resnet") == "emotion_resnet.weights.npz" and card_file("mobilenet").startswith("emotion_mob")
    for name, arch in (("emotion-resnet", "resnet"), ("emotion-mobilenet", "mobilenet")):
        if shipped_weights_available(arch):
            assert models.load(name).model.name == f"emotion_{arch}"
            continue
        with pytest.raises(UserError, match=f"--arch {arch}") as e:
            models.load(name)
        assert "not trained/shipped yet" in str(e.value) and "\n" not in str(e.value)
        lm = models.load(name, weights="none")  # the architecture itself, random weights
        assert lm.model.name == f"emotion_{arch}" and lm.is_emotion and "random" in lm.source
    with pytest.raises(UserError, match="unknown architecture"):
        build_emotion_model("vgg19")


def test_a_sibling_not_shipped_is_one_line_even_once_both_ship(monkeypatch):
    """The "not trained/shipped yet" path keeps its coverage after the siblings ship: with the install's
    weights hidden, loading by name fails in one line naming the fix, and ``--weights none`` still builds it."""
    from featuremaps import models
    from featuremaps.emotion import model as emotion_model

    monkeypatch.setattr(emotion_model, "shipped_weights_available", lambda arch="vgg16": arch == "vgg16")
    for name, arch in (("emotion-resnet", "resnet"), ("emotion-mobilenet", "mobilenet")):
        with pytest.raises(UserError, match=f"--arch {arch}") as e:
            models.load(name)
        assert "not trained/shipped yet" in str(e.value) and "\n" not in str(e.value)
        assert models.load(name, weights="none").model.name == f"emotion_{arch}"


def test_crops_and_evaluation_of_a_crop_model():
    from featuremaps.emotion.augment import centre_crop, random_crop_flip, ten_crop
    from featuremaps.emotion.evaluate import predict

    x = np.arange(2 * 48 * 48, dtype=np.float32).reshape(2, 48, 48) / (2 * 48 * 48)
    c = random_crop_flip(x, 44, np.random.default_rng(0))
    assert c.shape == (2, 44, 44)
    for i in range(2):  # each crop is a window of its face, maybe mirrored
        face = x[i]
        found = any(
            np.array_equal(c[i], w)
            for y in range(5)
            for x0 in range(5)
            for w in (face[y : y + 44, x0 : x0 + 44], face[y : y + 44, x0 : x0 + 44][:, ::-1])
        )
        assert found
    np.testing.assert_array_equal(centre_crop(x, 44), x[:, 2:46, 2:46])
    views = ten_crop(x[..., None], 44)
    assert len(views) == 10 and all(v.shape == (2, 44, 44, 1) for v in views)
    np.testing.assert_array_equal(views[5], views[0][:, :, ::-1])
    m44 = build_emotion_model("vgg16", width=0.125, input_shape=(44, 44, 1))
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    p = predict(m44, faces)
    expect = np.asarray(m44(centre_crop(faces[..., None].astype(np.float32) / 255.0, 44)))
    np.testing.assert_allclose(p, expect, atol=1e-5)
    pt = predict(m44, faces, tta=True)
    assert pt.shape == (3, 7) and np.allclose(pt.sum(1), 1, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_decay_is_an_l2_on_kernels_only(arch):
    """weight_decay=wd: a penalty wd/2 * sum(w^2) over the conv and dense kernels (torch SGD's coupled decay),
    none on BN, biases or depthwise kernels; the inference form and wd=0 carry none."""
    wd = 1e-3
    m = build_emotion_model(arch, input_shape=(40, 40, 1), batch_norm=True, width=0.125, weight_decay=wd)
    kernels = [
        layer.kernel
        for layer in m.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    want = wd / 2 * sum(float(np.sum(np.square(keras.ops.convert_to_numpy(k)))) for k in kernels)
    got = sum(float(keras.ops.convert_to_numpy(loss)) for loss in m.losses)
    assert len(m.losses) == len(kernels) and got == pytest.approx(want, rel=1e-5)
    assert not build_emotion_model(arch, input_shape=(40, 40, 1), batch_norm=True, width=0.125).losses
    assert not build_emotion_model(arch, input_shape=(40, 40, 1), width=0.125, weight_decay=wd).losses


def test_recalibrate_batch_norm_measures_the_current_weights_statistics():
    """After recalibration the first BN's moving mean/variance are the average of the stem conv's per-batch
    statistics over the faces' batches (each batch weighs the same, in any order), whatever they were before."""
    from featuremaps.emotion.model import recalibrate_batch_norm

    m = build_emotion_model("resnet", input_shape=(16, 16, 1), batch_norm=True, width=0.125)
    _randomise_bn(m)
    x = np.random.default_rng(1).random((48, 16, 16, 1), dtype=np.float32)
    x[32:] *= 0.25  # a last batch unlike the others: a momentum average would lean to it or away from it
    conv, bn = m.get_layer("stem_conv"), m.get_layer("stem_conv_bn")
    z = [keras.ops.convert_to_numpy(conv(x[i : i + 16])).reshape(-1, conv.filters) for i in (0, 16, 32)]
    recalibrate_batch_norm(m, x, batch_size=16)
    mean, var = np.mean([b.mean(0) for b in z], 0), np.mean([b.var(0) for b in z], 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), var, rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.9  # restored
