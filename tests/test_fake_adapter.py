"""Report, compare, atlas and explore on a NumPy model (tests/fake_adapter.py): the products on the protocol alone,
no Keras, PyTorch or ONNX model; the fake's own numbers checked first (finite differences, a plain NumPy forward)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_adapter import FakeAdapter, conv2d, fake_loaded
from PIL import Image

from featuremaps.atlas import compute_atlas, open_source
from featuremaps.cam.engine import compute_cam
from featuremaps.compare import compare_models
from featuremaps.extractor import extract
from featuremaps.report import build_report

HERE = Path(__file__).resolve().parent


def _image(path: Path, seed=0, shape=(20, 24, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _x(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (16, 16, 3))


def test_fake_gradients_are_the_finite_differences():
    """The fake's backpropagation against central differences of its own forward, for both layers and the input."""
    ad, x = FakeAdapter(), _x()
    d_logits = np.array([[1.0, -0.5, 2.0]])
    rng = np.random.default_rng(1)
    for name, j in (("conv1", 0), ("conv2", 1), (None, None)):
        outs, _, grad = ad.backprop(x, name, d_logits)
        base = x[None] if name is None else outs[j]
        for _ in range(6):
            pos = tuple(int(rng.integers(0, s)) for s in base.shape[1:])
            if name is not None and base[(0, *pos)] <= 0:
                continue  # a ReLU'd zero: the derivative from below is not defined by a nudge
            nudged = []
            for eps in (1e-5, -1e-5):
                v = base.copy()
                v[(0, *pos)] += eps
                logits = ad._run(v if name is None else None, 0 if name is None else j + 1, v)[1][0]
                nudged.append(float(d_logits[0] @ logits))
            assert grad[(0, *pos)] == pytest.approx((nudged[0] - nudged[1]) / 2e-5, rel=1e-4, abs=1e-7), (name, pos)


def test_fake_forward_is_the_plain_numpy_stack():
    """conv2 of the fake = ReLU(conv(ReLU(conv(x)))) written out with explicit loops over output positions."""
    ad, x = FakeAdapter(), _x(2)
    w1, b1, w2, b2 = ad.weights[:4]
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    a1 = np.maximum([[np.tensordot(xp[i : i + 3, j : j + 3], w1, 3) + b1 for j in range(16)] for i in range(16)], 0)
    ap = np.pad(a1, ((0, 1), (0, 1), (0, 0)))  # stride 2 on 16: TensorFlow's "same" pads 1 after, none before
    a2 = np.maximum(
        [[np.tensordot(ap[i : i + 3, j : j + 3], w2, 3) + b2 for j in range(0, 16, 2)] for i in range(0, 16, 2)], 0
    )
    maps, logits = ad.forward(x[None].astype(np.float32), ["conv1", "conv2"])
    np.testing.assert_allclose(maps["conv1"][0], a1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps["conv2"][0], a2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits[0], a2.mean(axis=(0, 1)) @ ad.weights[4] + ad.weights[5], rtol=1e-5)
    assert conv2d(x[None], w1, b1, 1).shape == (1, 16, 16, 4)


def test_extract_and_gradcam_through_the_protocol():
    """fm.extract and fm.compute_cam take the adapter as a model: the maps are its forward's, Grad-CAM's map is
    ReLU(sum_k mean(dy_c/dA_k) A_k) from the fake's own gradients."""
    ad, x = FakeAdapter(), _x(3).astype(np.float32)
    maps = extract(ad, x)
    assert list(maps) == ["conv1", "conv2"] and maps["conv2"].shape == (8, 8, 6)
    for c in (0, 2):
        r = compute_cam(ad, x, "gradcam", layer="C2", class_index=c)
        _, _, grads = ad.backprop(x, "conv2", np.eye(3)[[c]])
        acts = ad.forward(x[None], ["conv2"])[0]["conv2"][0]
        want = np.maximum(acts @ grads[0].mean(axis=(0, 1)), 0)
        assert r.class_index == c and r.layer.name == "conv2"
        np.testing.assert_allclose(r.heatmap, want, rtol=1e-4, atol=1e-6)
    assert ("gradients", ["conv2"]) in ad.calls


def test_report_on_the_fake_model(tmp_path):
    """The report's page of two 16x16 images: every conv of the fake in order, its CAMs, and the prediction the
    fake gives (softmax of its logits on pixels / 255), named with its classes."""
    images = [_image(tmp_path / "a.png", shape=(16, 16, 3)), _image(tmp_path / "b.png", seed=1, shape=(16, 16, 3))]
    lm = fake_loaded()
    page = build_report(lm, images, cam_methods=("gradcam", "ablationcam"))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for i in (1, 2):
        assert f'id="img{i}-C1"' in page and f'id="img{i}-C2"' in page and f'id="img{i}-cam"' in page
    assert page.count("<h3>C1 <code>conv1</code></h3>") == 2 and page.count("<h3>C2 <code>conv2</code></h3>") == 2
    assert "failed" not in page
    for path in images:
        logits = lm.model.forward(np.asarray(Image.open(path), np.float32)[None] / 255, [])[1][0]
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        c = int(np.argmax(p))
        for method in ("gradcam", "ablationcam"):
            assert f"{method} on conv2 for {lm.classes[c]} ({p[c]:.1%})" in page, (path.name, method)


def test_compare_two_fake_models_aligned_by_depth(tmp_path):
    """compare_models on two fakes (16 px and 24 px inputs): each run holds its model's own maps of the image,
    rows are aligned, and the picture is drawn."""
    rgb = np.asarray(Image.open(_image(tmp_path / "c.png", shape=(30, 40, 3))))
    a, b = fake_loaded(name="small"), fake_loaded(name="wide", input_shape=(24, 24, 3), seed=1)
    pic, runs, labels, picks = compare_models([a, b], rgb, rows=2, maps=4)
    assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[0] > 50
    assert [r.lm.name for r in runs] == ["small", "wide"]
    assert [r.input_shape[:2] for r in runs] == [(16, 16), (24, 24)]
    assert len(labels) == 2 and all(len(p) == 2 for p in picks)
    for r, lm in zip(runs, (a, b), strict=True):
        conv2 = r.results[-1]
        assert conv2.conv.name == "conv2" and conv2.shape == (lm.input_shape[0] // 2, lm.input_shape[1] // 2, 6)


def test_atlas_on_the_fake_model_is_the_mean_of_its_maps(tmp_path):
    """compute_atlas over ROOT/<class>/*.png: the class means of each conv's spatial means are those of the
    fake's own forward on the same 16x16 inputs (pixels / 255)."""
    root = tmp_path / "data"
    classes = ["cat", "dog", "owl"]
    images = {}
    for k, cls in enumerate(classes):
        for i in range(2):
            p = _image(root / cls / f"{i}.png", seed=10 * k + i, shape=(16, 16, 3))
            images.setdefault(cls, []).append(np.asarray(Image.open(p), np.float32) / 255)
    lm = fake_loaded(classes=classes)
    res = compute_atlas(lm, open_source(root, "all", lm.classes), batch_size=4)
    assert [c.name for c in res.layers] == ["conv1", "conv2"]
    for j, name in enumerate(("conv1", "conv2")):
        want = [
            lm.model.forward(np.stack(images[cls]), [name])[0][name].mean(axis=(1, 2)).mean(axis=0) for cls in classes
        ]
        np.testing.assert_allclose(res.means[j], want, rtol=1e-4, atol=1e-6)


def test_explore_api_on_the_fake_model():
    """The explorer's API on the fake: its layers, the maps of an upload (those of the fake's forward), a value,
    and the CAM methods a model with gradients and a head has."""
    fastapi_testclient = pytest.importorskip("fastapi.testclient")
    from featuremaps.explore.app import create_app

    lm = fake_loaded()
    c = fastapi_testclient.TestClient(create_app(lm, []))
    info = c.get("/api/info").json()
    assert info["model"]["framework"] == "numpy"
    assert [ly["name"] for ly in info["layers"]] == ["conv1", "conv2"]
    assert "gradcam" in info["methods"] and "ablationcam" in info["methods"]
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    r = c.post("/api/images", content=buf.getvalue(), headers={"X-Filename": "x.png"})
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    assert c.get(f"/api/images/{iid}/layers/C2").json()["shape"] == [8, 8, 6]
    maps = np.load(io.BytesIO(c.get(f"/api/images/{iid}/layers/C2/maps.npy").content))
    x = np.asarray(Image.open(io.BytesIO(c.get(f"/api/images/{iid}/input.png").content)), np.float32) / 255
    np.testing.assert_allclose(maps, lm.model.forward(x[None], ["conv2"])[0]["conv2"][0], atol=1e-5)
    v = c.get(f"/api/images/{iid}/layers/C2/channels/3/value", params={"y": 1, "x": 2}).json()
    assert v["value"] == pytest.approx(float(maps[1, 2, 3]))
    cam = c.get(f"/api/images/{iid}/cam", params={"layer": "C2", "method": "gradcam"})
    assert cam.status_code == 200 and cam.json()["layer_name"] == "conv2"


FRAMEWORK_FREE = """
import json, sys
import numpy as np
from pathlib import Path
from fake_adapter import fake_loaded
from featuremaps.report import build_report
from featuremaps.compare import compare_models
from featuremaps.atlas import compute_atlas, open_source
lm = fake_loaded()
page = build_report(lm, [Path(sys.argv[1])], cam_methods=("gradcam",))
compare_models([lm], np.zeros((20, 20, 3), np.uint8), rows=2, maps=2)
compute_atlas(lm, open_source(Path(sys.argv[2]), "all", lm.classes))
print(json.dumps(sorted(m for m in ("keras", "tensorflow", "jax", "torch", "onnxruntime") if m in sys.modules)))
"""


@pytest.mark.slow
def test_products_on_the_fake_model_import_no_framework(tmp_path):
    """In a fresh interpreter, a report, a comparison and an atlas of the fake model load no framework."""
    img = _image(tmp_path / "x.png")
    for cls in ("cat", "dog"):
        _image(tmp_path / "data" / cls / "0.png", shape=(16, 16, 3))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    run = subprocess.run(
        [sys.executable, "-c", FRAMEWORK_FREE, str(img), str(tmp_path / "data")],
        capture_output=True, text=True, env=env, cwd=HERE.parent, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
