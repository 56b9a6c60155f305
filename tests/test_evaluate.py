"""Evaluation metrics on a tiny hand-computed case, TTA views, and the CLI's bad inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps import models
from featuremaps.cli import main
from featuremaps.emotion import shipped as emotion_shipped
from featuremaps.emotion.evaluate import metrics, tta_views
from featuremaps.emotion.model import EMOTIONS, build_emotion_model
from featuremaps.emotion.train import train

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_hand_computed():
    # true:  0 0 0 1 1 2 ; pred: 0 0 1 1 2 2
    m = metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert m["accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(m["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(m["recall"], [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(m["f1"], [0.8, 0.5, 2 / 3])
    np.testing.assert_array_equal(m["support"], [3, 2, 1])


def test_metrics_class_never_predicted_has_zero_precision_not_nan():
    m = metrics([0, 1], [0, 0], 3)
    assert np.isfinite(m["precision"]).all() and m["precision"][1] == 0 and m["recall"][2] == 0


def test_tta_views():
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    v = tta_views(x, shift=1)
    assert len(v) == 10 and all(a.shape == x.shape for a in v)
    np.testing.assert_array_equal(v[0], x)
    np.testing.assert_array_equal(v[5], x[:, :, ::-1])
    np.testing.assert_array_equal(v[1][:, 1:], x[:, :-1])  # shifted down by one row


def test_evaluate_cli_bad_inputs(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "none"), "--splits", "Valid"]) == 2
    assert "unknown split 'Valid'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "w.npz"), "--data", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_a_model_trained_with_crop_is_an_emotion_model_everywhere(tmp_path, capsys):
    """What `featuremaps train --crop 44` writes: evaluated at its own 44 px (centre crop, ten-crop with --tta),
    and loaded as an emotion model (its input size, the emotions' names) by show; compare refuses an emotion
    sibling that is not shipped as show does."""
    from test_train import _tiny_folder

    path = tmp_path / "best.keras"
    build_emotion_model("resnet", input_shape=(44, 44, 1), width=0.0625, batch_norm=True).save(path)
    lm = models.load(str(path))
    assert lm.is_emotion and lm.classes == list(EMOTIONS) and lm.input_shape == (44, 44, 1)
    data = _tiny_folder(tmp_path / "fer", per_class=1)
    for extra in ([], ["--tta"]):
        out = tmp_path / f"eval{len(extra)}"
        argv = ["evaluate", str(path), "--data", str(data), "--split", "PrivateTest", "--out", str(out), *extra]
        assert main(argv) == 0, capsys.readouterr().err
        assert json.loads((out / "metrics.json").read_text())["featuremaps"]
    face = tmp_path / "face.png"
    Image.fromarray(np.full((60, 60, 3), 128, np.uint8)).save(face)
    assert main(["show", str(face), "--model", str(path), "--out", str(tmp_path / "show"), "--maps", "1"]) == 0
    man = json.loads((tmp_path / "show" / "face" / "manifest.json").read_text())
    assert man["model"]["input_shape"] == [44, 44, 1]
    assert {p["class"] for p in man["prediction"]} == set(EMOTIONS)  # named, not "class 2"
    unshipped = [a for a in ("resnet", "mobilenet") if not emotion_shipped.shipped_weights_available(a)]
    if unshipped:  # a sibling not shipped yet: one line, before any model loads
        capsys.readouterr()
        argv = ["compare", str(face), "--models", f"emotion-{unshipped[0]}", "--out", str(tmp_path / "cmp")]
        assert main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"emotion-{unshipped[0]} model is not trained/shipped yet" in err[0], err


@pytest.mark.slow
def test_a_shipped_crop_model_loads_as_the_bundled_one_at_its_own_size(tmp_path, monkeypatch, capsys):
    """tools/ship_emotion.py on a `train --crop 44 --width 0.1` run: the card records arch, input side and
    width; the bundled-model path (`--model emotion`) builds it at 44x44 and feeds it the face's centre crop,
    so show names the emotions with the trained file's probabilities (float16 weights: to 2e-3)."""
    from test_train import _tiny_folder

    spec = importlib.util.spec_from_file_location("ship_emotion", ROOT / "tools" / "ship_emotion.py")
    ship_emotion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_emotion)
    data = _tiny_folder(tmp_path / "fer", per_class=2)
    run = tmp_path / "run"
    train(str(data), run, epochs=1, batch_size=16, width=0.1, crop=44, verbose=0)
    dest, docs = tmp_path / "data", tmp_path / "docs"
    dest.mkdir()
    docs.mkdir()
    # max_drop: float16 may flip an argmax among 14 random faces; the drop check is not what is tested here
    assert ship_emotion.ship(run, str(data), dest=dest, docs=docs, max_drop=100.0) == 0
    card = json.loads((dest / "emotion_vgg16.card.json").read_text())
    assert (card["arch"], card["input_side"], card["width"]) == ("vgg16", 44, 0.1)
    assert (dest / "emotion_vgg16.weights.npz").is_file() and (docs / "emotion_confusion_PrivateTest.png").is_file()
    monkeypatch.setattr(emotion_shipped, "shipped_dir", lambda: dest)
    lm = models.load("emotion")
    assert lm.is_emotion and lm.input_shape == (44, 44, 1) and "44x44 centre crop" in lm.source
    face = tmp_path / "face.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(face)
    probs = {}
    for spec_ in ("emotion", str(run / "best.keras")):
        out = tmp_path / f"show{len(probs)}"
        assert main(["show", str(face), "--model", spec_, "--out", str(out), "--maps", "1"]) == 0, capsys.readouterr()
        man = json.loads((out / "face" / "manifest.json").read_text())
        assert man["model"]["input_shape"] == [44, 44, 1]
        probs[spec_] = {p["class"]: p["probability"] for p in man["prediction"]}
    shipped, trained = probs.values()
    assert set(shipped) == set(EMOTIONS)
    for c in EMOTIONS:
        assert abs(shipped[c] - trained[c]) < 2e-3, (c, shipped, trained)
