"""featuremaps report: one self-contained HTML file, names escaped, checked in real headless Chromium."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest
from _chromium import load_page, why_unavailable
from conftest import torch_and_onnx_files
from PIL import Image

from featuremaps.cli import main

EVIL_LAYER = "<img src=x onerror=alert(1)>"


def _tiny_model(name, conv_name):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=conv_name)(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(h)
    y = keras.layers.Dense(3, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(x, y, name=name)


@pytest.fixture
def model_file(tiny_sequential_file):
    return tiny_sequential_file


@pytest.fixture
def evil_model_file(tmp_path):
    p = tmp_path / "evil.keras"
    _tiny_model(name="evil_model", conv_name=EVIL_LAYER).save(p)
    return p


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "imgs"
    d.mkdir()
    # different sizes and aspect ratios: each is resized to the model input, and the page says so
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 64, 3), dtype=np.uint8)).save(d / "b&<i>.png")
    return d


def _report(tmp_path, *args):
    out = tmp_path / "report.html"
    rc = main(["report", *map(str, args), "--out", str(out), "--cam", "none"])
    return rc, out


def test_report_self_contained(tmp_path, model_file, images):
    rc, out = _report(tmp_path, images, "--model", model_file)
    assert rc == 0 and out.is_file()
    doc = out.read_text()
    assert doc.startswith("<!DOCTYPE html>")
    srcs = re.findall(r'src="([^"]*)"', doc)
    # per image: input, model input, and one grid per conv layer (2)
    assert len(srcs) == 2 * (2 + 2)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in doc and "https://" not in doc and "<link" not in doc
    for text in (
        "conv_a",
        "conv_b",
        "zero activations",
        "original 30x40",
        "resized (crop) to 16x16x3",
        'href="#img2-C2"',
        'id="img1-C1"',
    ):
        assert text in doc
    assert not list(tmp_path.glob(".report.html*"))  # no temporary file left beside it


def test_report_escapes_layer_and_file_names(tmp_path, evil_model_file, images):
    # two images: the second goes through the compiled predict step, where TensorFlow refuses '<' in a
    # layer (scope) name; the extractor falls back to the eager call
    rc, out = _report(tmp_path, images, "--model", evil_model_file)
    assert rc == 0
    doc = out.read_text()
    assert EVIL_LAYER not in doc and "<i>" not in doc
    assert "&lt;img src=x onerror=alert(1)&gt;" in doc
    assert "b&amp;&lt;i&gt;.png" in doc
    assert doc.count("<img") == len(re.findall(r'src="data:image/png;base64,', doc))


def test_report_cam_section_calls_each_method(tmp_path, model_file, images, monkeypatch):
    calls = []

    def compute_cam(model, x, method="gradcam", layer=None, class_index=None, engine=None):
        calls.append(method)
        hm = np.linspace(0, 1, x.shape[0] * x.shape[1], dtype=np.float32).reshape(x.shape[:2])
        return types.SimpleNamespace(
            method=method,
            layer="conv_b",
            class_index=1,
            probability=0.5,
            probs=np.array([0.2, 0.5, 0.3]),
            heatmap=hm,
            heatmap_up=hm,
        )

    def overlay(rgb, heat, cmap="jet", alpha=0.45):
        return (rgb * 0.5 + 100 * heat[..., None]).astype(np.uint8)

    import featuremaps.report

    monkeypatch.setattr(featuremaps.report, "compute_cam", compute_cam)
    monkeypatch.setattr(featuremaps.report, "overlay", overlay)
    out = tmp_path / "r.html"
    assert (
        main(
            [
                "report",
                str(images / "a.png"),
                "--model",
                str(model_file),
                "--out",
                str(out),
                "--cam",
                "gradcam,layercam",
            ]
        )
        == 0
    )
    doc = out.read_text()
    assert calls == ["gradcam", "layercam"]
    assert "gradcam on conv_b for class 1 (50.0%)" in doc and "layercam on conv_b" in doc


def test_report_without_classifier_notes_no_cam(tmp_path, images):
    import keras

    x = keras.Input((16, 16, 3))
    m = keras.Model(x, keras.layers.Conv2D(3, 3, name="only")(x), name="fcn")
    p = tmp_path / "fcn.keras"
    m.save(p)
    out = tmp_path / "r.html"
    assert main(["report", str(images / "a.png"), "--model", str(p), "--out", str(out)]) == 0
    doc = out.read_text()
    assert "No CAM: the model has no classification output" in doc


@pytest.mark.parametrize("bad", ["unknown_model", "missing_image", "not_html", "bad_layers"])
def test_report_bad_input_exit_2_nothing_written(tmp_path, model_file, images, bad, capsys):
    out = tmp_path / "r.html"
    args = ["report", str(images), "--model", str(model_file), "--out", str(out)]
    if bad == "unknown_model":
        args[args.index("--model") + 1] = "vgg99"
    elif bad == "missing_image":
        args[1] = str(tmp_path / "nope.png")
    elif bad == "not_html":
        out = tmp_path / "r.txt"
        args[-1] = str(out)
    else:
        args += ["--layers", "C9"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error:") and "\n" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]


@pytest.mark.slow
@pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))
def test_report_in_headless_chromium(tmp_path, model_file, images):
    rc, out = _report(tmp_path, images / "b&<i>.png", images / "a.png", "--model", model_file)
    assert rc == 0
    res = load_page(out, script="document.querySelectorAll('section.image').length")
    assert res.console_errors == []
    assert res.requests == [out.resolve().as_uri()]  # the page itself, nothing else
    assert len(res.images) == 8
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0 for i in res.images)
    assert res.evaluated == 2
    assert res.title == "featuremaps report: tiny_seq"
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(res.screenshot)
    with Image.open(shot) as im:
        assert im.size == (1366, 768)
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert a.std() > 20  # not blank: header, text and pictures
    assert (a[:30].mean(axis=(0, 1)) < 80).all()  # the dark sticky header is at the top


def test_report_is_written_section_by_section(tmp_path, model_file, images, monkeypatch):
    """write_report puts each image's section on disk before the next image is read (memory holds one
    section, whatever the number of images), and the page equals build_report's in-memory one."""
    from featuremaps import io as fio
    from featuremaps import models
    from featuremaps import report as rep

    lm = models.load(str(model_file))
    paths = sorted(images.iterdir()) * 3
    events = []
    real_section, real_write = rep.image_section, fio.SpooledText.write
    monkeypatch.setattr(rep, "image_section", lambda *a, **k: events.append("make") or real_section(*a, **k))
    monkeypatch.setattr(fio.SpooledText, "write", lambda self, part: events.append("disk") or real_write(self, part))
    info = rep.write_report(tmp_path / "r.html", lm, paths, cam_methods=())
    assert events == ["make", "disk"] * len(paths)
    assert info.images == len(paths) and not info.skipped
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert info.bytes == len(page.encode())
    monkeypatch.setattr(fio.SpooledText, "write", real_write)
    assert page == rep.build_report(lm, paths, cam_methods=())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("kind, method", [("pt", "gradcam"), ("onnx", "scorecam")])
def test_report_on_torchscript_and_onnx_files(tmp_path, images, kind, method, capsys):
    """A TorchScript .pt (Grad-CAM: autograd) and an .onnx file (Score-CAM: ONNX Runtime has no gradients):
    exit 0 and one page with both conv layers (C1 first, C2 second) of every image and its CAM."""
    _, pt, ox = torch_and_onnx_files(tmp_path / "models")
    out = tmp_path / f"{kind}.html"
    model = pt if kind == "pt" else ox
    rc = main(["report", str(images), "--model", str(model), "--method", method, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = out.read_text()
    assert doc.startswith("<!DOCTYPE html>") and "http://" not in doc and "https://" not in doc
    for text in ("<h3>C1 <code>first</code></h3>", "<h3>C2 <code>second</code></h3>"):
        assert doc.count(text) == 2, text  # both images
    if kind == "onnx":  # exported at 32x32; the TorchScript file takes each image's own size
        assert doc.count("resized (crop) to 32x32x3") == 2
    for i in (1, 2):
        assert f'id="img{i}-C1"' in doc and f'id="img{i}-C2"' in doc and f'id="img{i}-cam"' in doc
    assert len(re.findall(rf"<figcaption>{method} on second for class \d", doc)) == 2
