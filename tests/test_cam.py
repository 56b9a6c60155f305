"""Grad-CAM family: hand-computed maps, Score-CAM masking, layer/class choice, nested models, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featuremaps.cam import (
    CAM_METHODS,
    CamEngine,
    compute_cam,
    gradcam,
    gradcam_pp,
    layercam,
    normalise01,
    overlay,
    scorecam,
    scorecam_masks,
)
from featuremaps.cli import main
from featuremaps.errors import UserError

# A 4x4x2 input; a 1x1 identity conv (so A = x); GAP; Dense(2) with known weights.
W = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)  # (channels, classes)


def _known_model(activation=None):
    import keras

    inp = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inp)
    y = keras.layers.Dense(2, activation=activation, name="out")(keras.layers.GlobalAveragePooling2D()(a))
    m = keras.Model(inp, y, name="known")
    m.get_layer("conv").set_weights([np.eye(2, dtype=np.float32)[None, None]])
    m.get_layer("out").set_weights([W, np.zeros(2, np.float32)])
    return m


def _x():
    return np.random.default_rng(1).uniform(0, 1, (4, 4, 2)).astype(np.float32)


@pytest.mark.parametrize("activation", [None, "softmax"])
@pytest.mark.parametrize("c", [0, 1])
def test_gradcam_by_hand(activation, c):
    x = _x()
    g = W[:, c] / 16.0  # d(mean_ij A_k) / dA_kij = 1/16; the score is the logit even under softmax
    expected_gradcam = np.maximum(x @ g, 0)
    expected_layercam = np.maximum(x @ np.maximum(g, 0), 0)
    s = x.sum(axis=(0, 1))
    alpha = g**2 / (2 * g**2 + s * g**3)
    alpha = alpha / 16 / alpha  # normalised over the 16 positions (authors' code): 1/16 each
    expected_pp = np.maximum(x @ (16 * alpha * np.maximum(g, 0)), 0)
    m = _known_model(activation)
    for method, expected in (
        ("gradcam", expected_gradcam),
        ("layercam", expected_layercam),
        ("gradcam++", expected_pp),
    ):
        r = compute_cam(m, x, method, class_index=c)
        assert r.layer.name == "conv" and r.class_index == c
        assert r.score == ("logit" if activation else "output")
        np.testing.assert_allclose(r.heatmap, expected, rtol=1e-5, atol=1e-6)
        assert r.heatmap_up.shape == (4, 4)
        np.testing.assert_allclose(r.heatmap_up, normalise01(expected), atol=1e-5)


def test_method_functions_on_arrays():
    acts = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    grads = np.array([[[1, -1], [2, 0]], [[0, 1], [-1, 1]]], np.float32)
    # by hand: channel weights = mean gradients (0.5, 0.25); position (i, j) has activations (2k, 2k + 1), k = 2i + j
    np.testing.assert_allclose(gradcam(acts, grads), [[0.25, 1.75], [3.25, 4.75]])
    assert not gradcam(acts, -grads).any()  # weights (-0.5, -0.25): every position negative, ReLU'd to 0
    # LayerCAM: sum over channels of ReLU(g) * A, position by position: 1*0 + 0*1, 2*2 + 0*3, 0*4 + 1*5, 0*6 + 1*7
    np.testing.assert_allclose(layercam(acts, grads), [[0.0, 4.0], [5.0, 7.0]])
    # Grad-CAM++: channel 0 (A sum 2, g = 1, 2, 0, 0): alpha = 1/(2+2), 4/(8+16), normalised 3/5, 2/5 -> w0 = 7/5;
    # channel 1 (A sum -3, g = 1): alpha = 1/(2-3) = -1 everywhere, normalised 1/4 -> w1 = 1; then ReLU
    acts = np.zeros((2, 2, 2), np.float32)
    acts[..., 0] = [[1, 0], [0, 1]]
    acts[1, 1, 1] = -3
    grads = np.ones((2, 2, 2), np.float32)
    grads[..., 0] = [[1, 2], [0, 0]]
    np.testing.assert_allclose(gradcam_pp(acts, grads), [[1.4, 0.0], [0.0, 0.0]], rtol=1e-6)  # 1.4 - 3 < 0 at (1, 1)
    assert {"gradcam", "gradcam++", "scorecam", "layercam"} <= set(CAM_METHODS)


def test_scorecam_masks_and_weights():
    acts = np.zeros((2, 2, 3), np.float32)
    acts[..., 0] = [[0, 2], [4, 8]]
    acts[..., 1] = 5.0  # constant: no spatial information, skipped
    acts[..., 2] = [[1, 0], [0, 0]]
    masks, keep = scorecam_masks(acts, (2, 2))
    assert list(keep) == [0, 2]
    np.testing.assert_allclose(masks[0], [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(masks[1], [[1, 0], [0, 0]])
    x = np.full((2, 2, 1), 2.0, np.float32)
    seen = []

    def predict(batch):
        seen.append(batch.copy())
        return np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)[: len(batch)]

    h = scorecam(acts, x=x, class_index=1, predict=predict)
    batch = np.concatenate(seen)
    np.testing.assert_allclose(batch[..., 0], 2.0 * masks)  # input times each mask
    np.testing.assert_allclose(h, np.maximum(0.9 * acts[..., 0] + 0.3 * acts[..., 2], 0))


def test_scorecam_on_model_upsamples_masks():
    import keras

    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(3, 2, strides=2, name="c")(inp)
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(a))
    m = keras.Model(inp, y)
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 1)).astype(np.float32)
    r = compute_cam(m, x, "scorecam", class_index=0)
    assert r.heatmap.shape == (4, 4) and r.heatmap_up.shape == (8, 8)
    assert 0 <= r.heatmap_up.min() and r.heatmap_up.max() <= 1


@pytest.mark.parametrize("fixture", ["tiny_sequential", "tiny_functional", "tiny_nested"])
def test_every_method_every_model_kind(fixture, request):
    model = request.getfixturevalue(fixture)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    for method in CAM_METHODS:
        r = compute_cam(model, x, method)
        assert r.heatmap.ndim == 2 and r.heatmap.min() >= 0
        assert r.heatmap_up.shape == (16, 16) and r.heatmap_up.dtype == np.float32
        assert r.probs is not None and r.class_index == int(np.argmax(r.probs))
        assert r.probability == pytest.approx(float(r.probs.max()))


def test_split_matches_whole_model_gradient(tiny_functional):
    """Cutting at C2 (its output feeds an Add with a skip from C1) gives the textbook whole-model gradient."""
    import keras
    import tensorflow as tf

    x = np.random.default_rng(3).uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    eng = CamEngine(tiny_functional, (16, 16, 3), "C2")
    cut = eng.adapter.cut(eng.input_shape, eng.layer.name)  # the Keras model cut at C2
    assert eng.layer.name == "c2" and len(cut.head.inputs) == 2  # A and the skip from c1
    res = eng.run(x[0], ["gradcam"], [1])[0]
    c2 = tiny_functional.get_layer("c2")
    inter = keras.Model(tiny_functional.inputs, [c2.output, tiny_functional.output])
    # the model ends in a softmax Dense: the textbook way on the logits is the softmax input, so compare
    # against d logit / dA through the same weights
    dense = tiny_functional.get_layer("out")
    with tf.GradientTape() as tape:
        a, _ = inter(x)
        tape.watch(a)
        rest = tiny_functional.get_layer("c3")(a)
        rest = tiny_functional.get_layer("add")([tiny_functional.get_layer("c1")(x), rest])
        rest = tiny_functional.get_layer("c4")(rest)
        z = tf.reduce_mean(rest, axis=(1, 2)) @ dense.kernel + dense.bias
        score = z[:, 1]
    g = tape.gradient(score, a).numpy()[0]
    np.testing.assert_allclose(res.heatmap, gradcam(a.numpy()[0], g), rtol=1e-4, atol=1e-6)


def test_layer_and_class_selection(tiny_functional, tiny_nested):
    x = np.zeros((16, 16, 3), np.float32) + 0.5
    assert compute_cam(tiny_functional, x).layer.name == "c4"  # last conv by default
    assert compute_cam(tiny_functional, x, layer="C1").layer.name == "c1"
    assert compute_cam(tiny_functional, x, layer=2).layer.name == "c2"
    assert compute_cam(tiny_functional, x, layer="c3").layer.label == "C3"
    assert compute_cam(tiny_functional, x, class_index=1).class_index == 1
    r = compute_cam(tiny_functional, x, class_index="yes", classes=["no", "yes"])
    assert r.class_index == 1 and r.class_name == "yes"
    r = compute_cam(tiny_nested, x * 255)
    assert r.layer.name == "base/block2_conv1" and r.heatmap.shape == (8, 8)
    assert compute_cam(tiny_nested, x * 255, layer="block1_conv1").heatmap.shape == (16, 16)


def test_unbuilt_sequential(tiny_unbuilt):
    r = compute_cam(tiny_unbuilt, np.ones((10, 10, 3), np.float32), "gradcam")
    assert r.layer.name == "u2" and r.heatmap.shape == (6, 6)


def test_api_errors(tiny_functional):
    x = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(UserError, match="unknown CAM method 'gradcamx'.*gradcam, gradcam\\+\\+, scorecam"):
        compute_cam(tiny_functional, x, "gradcamx")
    with pytest.raises(UserError, match="'add' is a Add, not a convolutional layer.*C1-C4"):
        compute_cam(tiny_functional, x, layer="add")
    with pytest.raises(UserError, match="no conv layer 'C9'.*C1-C4 \\(c1, c2, c3, c4\\)"):
        compute_cam(tiny_functional, x, layer="C9")
    with pytest.raises(UserError, match="class 5 does not exist.*2 classes"):
        compute_cam(tiny_functional, x, class_index=5)
    with pytest.raises(UserError, match="unknown class 'cat'; use one of no, yes"):
        compute_cam(tiny_functional, x, class_index="cat", classes=["no", "yes"])


def test_overlay():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    heat = np.zeros((5, 5), np.float32)
    heat[2, 2] = 1
    out = overlay(rgb, heat, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[10, 15], out[0, 0])  # the hot centre differs from the cold corner
    assert overlay(rgb[..., :1], heat).shape == (20, 30, 3)


# ---------------------------------------------------------------- CLI
@pytest.fixture
def model_file(tiny_functional_file):
    return tiny_functional_file


@pytest.fixture
def regression_file(tmp_path):
    import keras

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(2, 3, name="c")(inp)
    m = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(h)))
    p = tmp_path / "reg.keras"
    m.save(p)
    return p


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "gradcam,nope"], "unknown CAM method 'nope'"),
        (["--class", "cat"], "unknown class 'cat'"),
        (["--class", "7"], "class 7 does not exist"),
        (["--layer", "C9"], "no conv layer 'C9'"),
        (["--layer", "add"], "not a convolutional layer"),
        (["--class", "1", "--all-classes"], "exclude each other"),
        (["--cmap", "nocmap"], "unknown colormap"),
    ],
)
def test_cli_bad_input(extra, message, model_file, rgb_image, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["cam", str(rgb_image), "--model", str(model_file), "--classes", "no,yes", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_not_a_classifier(regression_file, rgb_image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cam", str(rgb_image), "--model", str(regression_file), "--out", str(out)]) == 2
    assert "not class scores" in capsys.readouterr().err
    assert not out.exists()


def test_cli_happy_path(model_file, rgb_image, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "cam",
            str(rgb_image),
            "--model",
            str(model_file),
            "--classes",
            "no,yes",
            "--all-classes",
            "--method",
            "gradcam,gradcam++,scorecam,layercam",
            "--layer",
            "C2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    folder = out / "img" / "cam"
    manifest = json.loads((folder / "cam.json").read_text())
    assert manifest["target_layer"]["name"] == "c2" and manifest["score"] == "logit"
    assert len(manifest["maps"]) == 8
    with np.load(folder / "cam.npz") as npz:
        for e in manifest["maps"]:
            assert (folder / e["files"]["heatmap"]).is_file() and (folder / e["files"]["overlay"]).is_file()
            assert npz[e["npz_key"]].shape == tuple(e["map_shape"])
            assert npz[e["npz_key_upsampled"]].shape == (16, 16)
        assert npz["probs"].shape == (2,)
    assert (folder / "panel.png").is_file() and (folder / "input.png").is_file()
    assert {e["class"] for e in manifest["maps"]} == {"no", "yes"}


def test_cli_default_is_predicted_class(model_file, rgb_image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cam", str(rgb_image), "--model", str(model_file), "--out", str(out)]) == 0
    manifest = json.loads((out / "img" / "cam" / "cam.json").read_text())
    (entry,) = manifest["maps"]
    assert entry["method"] == "gradcam" and manifest["target_layer"]["default"]
    assert entry["class_index"] == manifest["prediction"][0]["index"]
    assert "C4 c4" in capsys.readouterr().out


def test_cli_long_names_wrap_the_panel_title(tiny_functional, rgb_image, tmp_path):
    """Text never loses its number: a long model and image name add title lines, the figure stays bounded."""
    import shutil

    from PIL import Image

    long_model = tmp_path / ("a_tiny_functional_model_with_a_really_long_descriptive_file_name_" * 2 + ".keras")
    tiny_functional.save(long_model)
    long_image = tmp_path / ("holiday_photo_of_the_whole_family_at_the_beach_" * 2 + ".png")
    shutil.copy(rgb_image, long_image)
    sizes = []
    for image, out in ((long_image, "long"), (rgb_image, "short")):
        folder = tmp_path / out
        assert main(["cam", str(image), "--model", str(long_model), "--classes", "no,yes", "--out", str(folder)]) == 0
        (panel,) = folder.rglob("panel.png")
        with Image.open(panel) as im:
            sizes.append(im.size)
    (lw, lh), (sw, sh) = sizes
    assert lw == sw and lh > sh  # wrapped onto more lines, not wider, nothing cut


def test_default_target_skips_a_1x1_head_conv_after_pooling():
    """MobileNet's head: global pooling, reshape to 1x1, a 1x1 conv as classifier. The default CAM layer is the
    last conv with more than one pixel (a CAM at the head would be one pixel); the head stays selectable."""
    import keras

    from featuremaps.cam.engine import resolve_layer

    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(x)
    h = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    h = keras.layers.Conv2D(3, 1, name="conv_preds")(h)
    y = keras.layers.Activation("softmax")(keras.layers.Flatten()(h))
    model = keras.Model(x, y)
    assert resolve_layer(model, None).name == "features"
    assert resolve_layer(model, "conv_preds").name == "conv_preds"
    cam = compute_cam(model, np.random.default_rng(0).random((16, 16, 3), np.float32), "gradcam")
    assert cam.layer.name == "features" and cam.heatmap.shape == (16, 16)
