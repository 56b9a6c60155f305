"""Grad-CAM++'s sign on layers without ReLU, and HiResCAM / XGrad-CAM / EigenCAM / Ablation-CAM by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featuremaps.cam import CAM_METHODS, ablationcam, compute_cam, eigencam, gradcam_pp, hirescam, xgradcam
from featuremaps.cli import main
from featuremaps.errors import UserError

NEW = ("hirescam", "xgradcam", "eigencam", "ablationcam")
W = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)  # (channels, classes)


def _linear_head_model():
    """4x4x2 input; 1x1 identity conv with no activation (A = x); GAP; softmax Dense with weights W."""
    import keras

    inp = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inp)
    y = keras.layers.Dense(2, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D()(a))
    m = keras.Model(inp, y, name="linear_head")
    m.get_layer("conv").set_weights([np.eye(2, dtype=np.float32)[None, None]])
    m.get_layer("out").set_weights([W, np.zeros(2, np.float32)])
    return m


def _negative_evidence_x():
    """Channel 0 mostly negative (sum ~ -120, where the unnormalised Grad-CAM++ alpha turns negative)."""
    rng = np.random.default_rng(0)
    return np.stack([rng.uniform(-20, 5, (4, 4)), rng.uniform(0, 1, (4, 4))], axis=-1).astype(np.float32)


def test_gradcam_pp_keeps_sign_on_a_linear_layer():
    m, x = _linear_head_model(), _negative_evidence_x()
    g = W[:, 0] / 16.0  # constant gradients of logit 0, both positive
    assert 2 + x[..., 0].sum() * g[0] < 0  # the paper's unnormalised alpha of channel 0 is negative here
    pp = compute_cam(m, x, "gradcam++", class_index=0)
    gc = compute_cam(m, x, "gradcam", class_index=0)
    # constant gradients: normalised alphas are 1/16, the weights are ReLU(g), the map is Grad-CAM's
    want = np.maximum(x @ g, 0.0)
    np.testing.assert_allclose(gc.heatmap, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pp.heatmap, want, rtol=1e-5, atol=1e-6)
    assert np.corrcoef(pp.heatmap.ravel(), gc.heatmap.ravel())[0, 1] > 0.99


def test_gradcam_pp_normalised_alphas_by_hand():
    acts = np.array([[[1.0], [2.0]], [[3.0], [4.0]]], np.float32)  # sum 10
    grads = np.array([[[1.0], [0.5]], [[0.0], [-1.0]]], np.float32)
    a = np.array([1 / (2 + 10), 0.25 / (0.5 + 10 * 0.125), 0.0, 1 / (2 - 10)])  # g^2 / (2 g^2 + S g^3)
    a = a / a.sum()
    w = a[0] * 1.0 + a[1] * 0.5  # ReLU(g) keeps the positive gradients
    np.testing.assert_allclose(gradcam_pp(acts, grads), np.maximum(acts[..., 0] * w, 0), rtol=1e-6)


def test_registry_has_the_new_methods():
    assert set(NEW) <= set(CAM_METHODS)


def test_hirescam_by_hand():
    acts = np.array([[[1.0, 2.0], [3.0, -1.0]]], np.float32)  # (1, 2, 2)
    grads = np.array([[[0.5, -1.0], [1.0, 2.0]]], np.float32)
    # position 0: 0.5 - 2 = -1.5 -> 0; position 1: 3 - 2 = 1
    np.testing.assert_allclose(hirescam(acts, grads), [[0.0, 1.0]])


def test_xgradcam_by_hand():
    acts = np.array([[[1.0, 2.0], [3.0, 2.0]]], np.float32)
    grads = np.array([[[2.0, -1.0], [4.0, 1.0]]], np.float32)
    # w0 = (2 + 12) / 4 = 3.5; w1 = (-2 + 2) / 4 = 0
    np.testing.assert_allclose(xgradcam(acts, grads), [[3.5, 10.5]], rtol=1e-6)


def test_eigencam_by_hand_and_sign():
    acts = np.zeros((1, 4, 2), np.float32)
    acts[0, :, 0] = [0.0, 1.0, 2.0, 5.0]  # one varying channel: v1 = +-(1, 0), centred values [-2, -1, 0, 3]
    acts[0, :, 1] = 7.0
    np.testing.assert_allclose(eigencam(acts), [[0.0, 0.0, 0.0, 3.0]], atol=1e-6)
    np.testing.assert_allclose(eigencam(-acts), [[2.0, 1.0, 0.0, 0.0]], atol=1e-6)  # sign follows the sum
    assert not eigencam(np.ones((2, 2, 3), np.float32)).any()


def test_ablationcam_by_hand_and_on_a_model():
    acts = np.array([[[1.0, 3.0]]], np.float32)
    h = ablationcam(acts, class_index=0, head_scores=lambda a: a.sum(axis=(1, 2, 3))[:, None])
    np.testing.assert_allclose(h, [[1 * 0.25 + 3 * 0.75]])  # y = 4, y_0 = 3, y_1 = 1
    # linear head: y = mean(A) @ W[:, c]; zeroing channel k removes mean(A_k) W[k, c]
    m, x = _linear_head_model(), np.random.default_rng(2).uniform(0, 1, (4, 4, 2)).astype(np.float32)
    for c in (0, 1):
        mean = x.mean(axis=(0, 1))
        y = mean @ W[:, c]
        w = mean * W[:, c] / y
        r = compute_cam(m, x, "ablationcam", class_index=c)
        np.testing.assert_allclose(r.heatmap, np.maximum(x @ w, 0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", NEW)
def test_new_methods_through_compute_cam(method, tiny_functional):
    x = np.random.default_rng(3).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    r = compute_cam(tiny_functional, x, method, layer="C1", class_index=1)
    assert r.method == method and r.heatmap.shape == (16, 16) and r.heatmap.min() >= 0
    assert r.heatmap_up.shape == (16, 16)


def test_cli_cam_and_report_with_the_new_methods(tiny_functional_file, rgb_image, tmp_path, capsys):
    p = tiny_functional_file
    out = tmp_path / "out"
    rc = main(["cam", str(rgb_image), "--model", str(p), "--method", ",".join(NEW), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "img" / "cam" / "cam.json").read_text())
    assert [e["method"] for e in manifest["maps"]] == list(NEW)
    html = tmp_path / "r.html"
    rc = main(["report", str(rgb_image), "--model", str(p), "--cam", "eigencam,ablation-cam", "--out", str(html)])
    assert rc == 0, capsys.readouterr().err
    doc = html.read_text()
    assert "eigencam on c4" in doc and "ablation-cam on c4" in doc and "failed" not in doc


# ---------------------------------------------------------------- the registry: one record per method
def toy_cam(acts, grads=None, **_):
    """A toy method for the registry test: the channel mean of the activations."""
    return np.maximum(acts.mean(axis=-1), 0.0).astype(np.float32)


def test_a_new_method_is_one_function_and_one_record(monkeypatch, tiny_functional, rgb_image, tmp_path, capsys):
    """Registering a record is all it takes: the CLI takes it (and its alias), the help lists it, the needs-sets,
    the function table and the exports of featuremaps.cam see it."""
    from featuremaps import cam, registry
    from featuremaps.cam import NEEDS_GRADIENTS, NEEDS_HEAD, parse_methods
    from featuremaps.cli.options import build_parser

    record = registry.CamMethod("toy", f"{__name__}:toy_cam", "nothing", "Nobody, 2026", "channel mean", ("toy-cam",))
    monkeypatch.setitem(registry.CAM_METHODS, "toy", record)
    assert CAM_METHODS["toy"] is toy_cam and cam.toy_cam is toy_cam and "toy_cam" in dir(cam)
    assert "toy" not in NEEDS_GRADIENTS and "toy" not in NEEDS_HEAD and parse_methods("toy-cam") == ["toy"]
    assert "toy" in build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["cam", "--help"])
    assert "toy          channel mean (no gradients; Nobody, 2026)" in capsys.readouterr().out
    p = tmp_path / "m.keras"
    tiny_functional.save(p)
    out = tmp_path / "out"
    rc = main(["cam", str(rgb_image), "--model", str(p), "--method", "gradcam,toy-cam", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "img" / "cam" / "cam.json").read_text())
    assert [e["method"] for e in manifest["maps"]] == ["gradcam", "toy"]
    monkeypatch.undo()
    assert "toy" not in CAM_METHODS and "toy" not in build_parser().format_help()


def test_what_a_new_method_needs_is_checked_from_its_record(monkeypatch):
    """A registered method that re-runs the network from a layer is refused, in one line, by an adapter that cannot
    (the engine's checks read the record, as the needs-sets do)."""
    from featuremaps import registry
    from featuremaps.cam.engine import check_methods, usable_methods
    from featuremaps.frameworks.base import ModelAdapter

    record = registry.CamMethod("toyhead", f"{__name__}:toy_cam", "head", "Nobody, 2026", "re-runs the head")
    monkeypatch.setitem(registry.CAM_METHODS, "toyhead", record)
    plain = ModelAdapter()  # no gradients, no head_scores
    assert "toyhead" not in usable_methods(plain) and "eigencam" in usable_methods(plain)
    with pytest.raises(UserError, match="toyhead re-runs the network"):
        check_methods(plain, ["toyhead"])


def test_the_needs_sets_come_from_the_records():
    from featuremaps import registry
    from featuremaps.cam import NEEDS_GRADIENTS, NEEDS_HEAD

    assert set(NEEDS_GRADIENTS) == {"gradcam", "gradcam++", "layercam", "hirescam", "xgradcam"}
    assert set(NEEDS_HEAD) == {"ablationcam"}
    assert list(CAM_METHODS) == list(registry.CAM_METHODS)
    for m in registry.CAM_METHODS.values():
        assert callable(m.load()) and m.load().__doc__, m.name  # each function exists and says what it computes


def test_readme_lists_exactly_the_registered_methods():
    """The README's method table (| `name` | paper | needs |) names each registered method once, with its paper."""
    import re
    from pathlib import Path

    from featuremaps import registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("| method | paper | needs |\n|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = [re.fullmatch(r"\| `([^`]+)` \| ([^|]+) \| ([^|]+) \|", line) for line in block.splitlines()]
    assert all(rows), block
    table = {r[1]: r[2].strip() for r in rows}
    assert len(table) == len(rows) and sorted(table) == sorted(registry.CAM_METHODS)
    for name, m in registry.CAM_METHODS.items():
        assert table[name].startswith(m.paper), (name, table[name])
