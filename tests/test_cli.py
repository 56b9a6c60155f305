"""``featuremaps show`` / ``layers`` through ``cli.main``: files written, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import torch_and_onnx_files
from PIL import Image

import featuremaps as fm
from featuremaps.cli import main


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("cli_models")
    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), name="img")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = keras.layers.SeparableConv2D(20, 3, padding="same", activation="relu", name="c2")(a)
    c = keras.layers.MaxPooling2D()(b)
    e = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3")(c)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(e))
    keras.Model(x, y, name="tiny").save(d / "tiny.keras")

    bi = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(bi)
    h = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="block2_conv1")(h)
    base = keras.Model(bi, h, name="base")
    keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255.0),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ],
        name="transfer",
    ).save(d / "nested.keras")
    keras.Sequential([keras.layers.Conv2D(3, 3, name="u1"), keras.layers.Conv2D(2, 3, name="u2")], name="unbuilt").save(
        d / "unbuilt.keras"
    )
    keras.Sequential(
        [keras.Input((12, 24, 1)), keras.layers.Conv2D(3, 3, padding="same", name="g1")], name="gray_wide"
    ).save(d / "gray.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mlp").save(d / "dense.keras")
    keras.Sequential([keras.Input((16, 2)), keras.layers.Conv1D(2, 3)], name="seq1d").save(d / "conv1d.keras")
    keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Conv2D(2, 3)],
        name="lam",
    ).save(d / "lambda.keras")
    (d / "text.keras").write_text("not a model")
    return d


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "in" / "cat photo.png"
    p.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(p)
    return p


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def show(*args):
    return main(["show", *map(str, args)])


def test_show_writes_everything(models_dir, image, tmp_path, capsys):
    out = tmp_path / "out"
    assert show(image, "--model", models_dir / "tiny.keras", "--out", out) == 0
    folder = out / "cat_photo"
    assert _files(out) == [
        "cat_photo/activations.npz",
        "cat_photo/input.png",
        "cat_photo/layers/C01_c1.png",
        "cat_photo/layers/C02_c2.png",
        "cat_photo/layers/C03_c3.png",
        "cat_photo/manifest.json",
        "cat_photo/overview.png",
    ]
    stdout = capsys.readouterr().out
    assert "overview.png" in stdout and "pictures are in" in stdout
    m = json.loads((folder / "manifest.json").read_text())
    assert m["model"]["name"] == "tiny" and m["model"]["input_shape"] == [16, 16, 3]
    assert m["preprocessing"]["resize"] == "crop" and m["preprocessing"]["scaling"].startswith("x / 255")
    assert m["selection"] == {"maps": 16, "select": "first", "norm": "map", "colormap": "viridis"}
    assert [(r["label"], r["name"], r["type"], r["output_shape"]) for r in m["layers"]] == [
        ("C1", "c1", "Conv2D", [16, 16, 4]),
        ("C2", "c2", "SeparableConv2D", [16, 16, 20]),
        ("C3", "c3", "Conv2D", [8, 8, 6]),
    ]
    assert m["layers"][1]["channels"] == list(range(16)) and m["layers"][0]["channels"] == [0, 1, 2, 3]
    assert "showing all" in m["layers"][0]["note"]
    assert len(m["prediction"]) == 3
    with np.load(folder / "activations.npz") as z:
        for r in m["layers"]:
            maps = z[r["npz_key"]]
            assert maps.dtype == np.float32 and maps.shape == (*r["output_shape"][:2], len(r["channels"]))
            assert z[r["npz_key"].replace("/maps", "/channels")].tolist() == r["channels"]
            st = r["stats"]
            assert set(st) == {"mean", "max", "zero_fraction"} and 0 <= st["zero_fraction"] <= 1
            assert st["max"] >= maps.max() - 1e-6
    with Image.open(folder / "overview.png") as im:
        assert im.mode == "RGB" and im.width > 16 * 112
    with Image.open(folder / "input.png") as im:
        assert im.size == (16, 16)
    assert not [p for p in out.rglob(".*")]  # no temporary files or folders


def test_show_selection_options(models_dir, image, tmp_path):
    out = tmp_path / "out"
    assert (
        show(
            image,
            "--model",
            models_dir / "tiny.keras",
            "--out",
            out,
            "--layers",
            "C2-C3",
            "--maps",
            "3",
            "--select",
            "top-max",
            "--norm",
            "layer",
            "--cmap",
            "magma",
            "--overlay",
            "--cell",
            "40",
        )
        == 0
    )
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert [r["label"] for r in m["layers"]] == ["C2", "C3"]
    with np.load(out / "cat_photo" / "activations.npz") as z:
        for r in m["layers"]:
            assert len(r["channels"]) == 3 and z[r["npz_key"]].shape[-1] == 3
    assert (
        show(
            image,
            "--model",
            models_dir / "tiny.keras",
            "--out",
            out,
            "--layers",
            "c3",
            "--select",
            "5,0",
            "--norm",
            "global",
            "--no-layer-pngs",
        )
        == 0
    )
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert [r["channels"] for r in m["layers"]] == [[5, 0]]
    assert _files(out) == [
        "cat_photo/activations.npz",
        "cat_photo/input.png",
        "cat_photo/manifest.json",
        "cat_photo/overview.png",
    ]  # the second run replaced the first whole


def test_show_nested_model(models_dir, image, tmp_path):
    out = tmp_path / "out"
    assert show(image, "--model", models_dir / "nested.keras", "--out", out) == 0
    assert _files(out / "cat_photo" / "layers") == ["C01_base.block1_conv1.png", "C02_base.block2_conv1.png"]
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert [r["output_shape"] for r in m["layers"]] == [[16, 16, 4], [8, 8, 5]]
    assert len(m["prediction"]) == 7


def test_show_never_built_model(models_dir, image, tmp_path):
    out = tmp_path / "out"
    assert show(image, "--model", models_dir / "unbuilt.keras", "--out", out) == 0  # the image's own size
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert m["model"]["input_shape"] == [40, 32, 3]
    assert show(image, "--model", models_dir / "unbuilt.keras", "--out", out, "--input-shape", "20,36,3") == 0
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert m["model"]["input_shape"] == [20, 36, 3] and m["layers"][1]["output_shape"] == [16, 32, 2]


def test_show_grayscale_non_square_model(models_dir, image, tmp_path):
    out = tmp_path / "out"
    assert show(image, "--model", models_dir / "gray.keras", "--out", out, "--resize", "pad") == 0
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert m["model"]["input_shape"] == [12, 24, 1] and m["preprocessing"]["resize"] == "pad"
    with Image.open(out / "cat_photo" / "input.png") as im:
        a = np.asarray(im)
    assert a.shape == (12, 24, 3) and (a[..., 0] == a[..., 1]).all()  # grey, as the model saw it


def test_show_folder_progress(models_dir, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), i * 50, np.uint8)).save(src / f"im{i}.png")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert show(src, "--model", models_dir / "tiny.keras", "--out", out, "--no-layer-pngs") == 0
    assert sorted(p.name for p in out.iterdir()) == ["im0", "im1", "im2"]
    err = capsys.readouterr().err
    assert "show: 3/3 done in" in err and "\r" not in err  # not a terminal: a plain line, no bar


@pytest.mark.slow
def test_show_named_model_random_weights(image, tmp_path):
    out = tmp_path / "out"
    assert (
        show(
            image,
            "--model",
            "mobilenetv2",
            "--weights",
            "none",
            "--layers",
            "C1,C2",
            "--maps",
            "4",
            "--out",
            out,
            "--no-layer-pngs",
        )
        == 0
    )
    m = json.loads((out / "cat_photo" / "manifest.json").read_text())
    assert m["model"]["input_shape"] == [224, 224, 3]
    assert m["preprocessing"]["scaling"] == "keras.applications.mobilenet_v2.preprocess_input"
    assert [r["name"] for r in m["layers"]] == ["Conv1", "expanded_conv_depthwise"]


def _bomb(path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "case, args, match",
    [
        ("missing image", ["{tmp}/nope.png"], "does not exist"),
        ("not an image", ["{text}"], "not an image"),
        ("truncated", ["{trunc}"], "truncated or corrupt"),
        ("pixel limit", ["{img}", "--max-pixels", "100"], "pixels limit; shrink it or raise --max-pixels"),
        ("bomb", ["{bomb}"], "--max-pixels"),
        ("model missing", ["{img}", "--model", "{tmp}/none.keras"], "does not exist"),
        ("not a model", ["{img}", "--model", "{models}/text.keras"], "not a Keras model"),
        ("unknown name", ["{img}", "--model", "vgg17"], "unknown model 'vgg17'"),
        ("no conv", ["{img}", "--model", "{models}/dense.keras"], "no convolutional layers"),
        ("conv1d", ["{img}", "--model", "{models}/conv1d.keras"], "not support"),
        ("lambda", ["{img}", "--model", "{models}/lambda.keras"], "--unsafe"),
        ("unknown layer", ["{img}", "--layers", "conv9"], r"no conv layer matches 'conv9'.*c1, c2, c3"),
        ("unknown C", ["{img}", "--layers", "C7"], "the model has C1-C3"),
        ("bad range", ["{img}", "--layers", "C2-C9"], "outside C1-C3"),
        (
            "unknown channel",
            ["{img}", "--select", "0,4"],
            r"channel 4 does not exist in C1 c1 \(4 channels: 0-3\)",
        ),
        ("bad select", ["{img}", "--select", "loudest"], "--select 'loudest'"),
        ("maps 0", ["{img}", "--maps", "0"], "must be at least 1"),
        ("maps x", ["{img}", "--maps", "x"], "not a whole number"),
        ("bad norm", ["{img}", "--norm", "loud"], "invalid choice"),
        ("bad resize", ["{img}", "--resize", "zoom"], "invalid choice"),
        ("bad cmap", ["{img}", "--cmap", "nosuch"], "unknown colormap 'nosuch'"),
        ("bad shape", ["{img}", "--input-shape", "1,x"], "H,W,C"),
        ("shape conflict", ["{img}", "--input-shape", "20,20,3"], "conflicts with the model's input"),
        ("unknown option", ["{img}", "--frobnicate"], "unrecognized arguments"),
        ("out under file", ["{img}", "--out", "{text}/out"], "cannot create output folder"),
    ],
)
def test_errors_one_line_exit_2_nothing_written(models_dir, image, tmp_path, capsys, case, args, match):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    trunc = tmp_path / "trunc.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:100])
    bomb = tmp_path / "bomb.png"
    _bomb(bomb)
    fill = {"tmp": tmp_path, "text": text, "trunc": trunc, "img": image, "bomb": bomb, "models": models_dir}
    argv = [a.format(**fill) for a in args]
    if "--model" not in argv:
        argv += ["--model", str(models_dir / "tiny.keras")]
    out = tmp_path / "out"
    if "--out" not in argv:
        argv += ["--out", str(out)]
    assert main(["show", *argv]) == 2, case
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("featuremaps: error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(match, lines[0]), lines[0]
    assert _files(out) == []  # nothing half-written (not even a temporary file)


def test_error_in_second_image_keeps_first_complete(models_dir, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / "a.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert show(src, "--model", models_dir / "tiny.keras", "--out", out) == 1  # 1: some skipped, the rest done
    err = capsys.readouterr().err
    assert "featuremaps: warning: skipped" in err and "b.png" in err and "skipped 1 of 2 images" in err
    assert "a/manifest.json" in _files(out) and not any(
        f.startswith("b") or "/." in f or f.startswith(".") for f in _files(out)
    )


def test_unsafe_allows_lambda(models_dir, image, tmp_path):
    assert (
        show(
            image,
            "--model",
            models_dir / "lambda.keras",
            "--unsafe",
            "--out",
            tmp_path / "o",
            "--no-layer-pngs",
        )
        == 0
    )


def test_layers_table(models_dir, capsys):
    assert main(["layers", str(models_dir / "nested.keras")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "transfer: 2 conv layers, input 16x16x3"
    assert out[1].split() == ["C#", "name", "type", "output", "shape", "params"]
    assert out[2].split() == ["C1", "base/block1_conv1", "Conv2D", "16x16x4", "112"]
    assert out[3].split() == ["C2", "base/block2_conv1", "Conv2D", "8x8x5", "185"]
    assert main(["layers", str(models_dir / "unbuilt.keras"), "--input-shape", "10,12,3"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:4] == ["C1", "u1", "Conv2D", "8x10x3"]
    assert main(["layers", str(models_dir / "dense.keras")]) == 2


@pytest.mark.slow
def test_layers_vgg16_random_weights(capsys):
    assert main(["layers", "vgg16"]) == 0  # --weights none is the default for the table
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "vgg16: 13 conv layers, input 224x224x3"
    assert out[2].split() == ["C1", "block1_conv1", "Conv2D", "224x224x64", "1,792"]
    assert out[-1].split()[:4] == ["C13", "block5_conv3", "Conv2D", "14x14x512"]


def test_help_has_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["show", "--help"])
    assert "featuremaps show cat.png" in capsys.readouterr().out
    assert main([]) == 2


@pytest.mark.slow
def test_help_imports_no_deep_learning_framework():
    code = (
        "import featuremaps.cli, sys; featuremaps.cli.build_parser(); "
        "print('keras' in sys.modules, 'tensorflow' in sys.modules, 'numpy' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "False", "False"], r.stderr
    r = subprocess.run([sys.executable, "-m", "featuremaps.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout


def test_a_missing_optional_extra_is_one_line(monkeypatch, capsys):
    """`featuremaps explore` without the [explore] extra (no uvicorn): one line naming the package and the pip
    command, exit 2, never a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails as if not installed
    monkeypatch.delitem(sys.modules, "featuremaps.cli.explore", raising=False)
    assert main(["explore", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "featuremaps: error: explore needs uvicorn, which is not installed; pip install 'featuremaps[explore]'"
    ]


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    """``python -m featuremaps`` is the featuremaps command: same parser, same exit codes."""
    import runpy

    monkeypatch.setattr("sys.argv", ["featuremaps", "layers", "no-such-model"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("featuremaps", run_name="__main__")
    assert e.value.code == 2 and "no-such-model" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-0.5", "two"])
def test_gpus_per_actor_must_be_a_finite_count(value, tmp_path, capsys):
    """atlas --gpus-per-actor nan/inf/negative: one line, exit 2 (nan was accepted and reached Ray)."""
    argv = ["atlas", "--data", str(tmp_path), "--engine", "ray", f"--gpus-per-actor={value}", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gpus-per-actor" in err, err


def test_nested_model_sharing_a_layer_name_with_the_outer_one(image, tmp_path, capsys):
    """`conv` inside a nested model and `conv` outside: show, cam and the API work (Keras refused the replayed
    graph: "The name "conv" is used 2 times"), and the model's names are as they were afterwards."""
    import keras

    import featuremaps as fm

    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, padding="same", name="conv")],
                             name="inner")  # fmt: skip
    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(5, 3, name="conv")(inner(x))
    model = keras.Model(x, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(y)))
    path = tmp_path / "dup.keras"
    model.save(path)
    for command in ("show", "cam"):
        assert main([command, str(image), "--model", str(path), "--out", str(tmp_path / command)]) == 0, command
    assert "Traceback" not in capsys.readouterr().err
    maps = fm.extract(model, np.zeros((16, 16, 3), np.float32))
    assert list(maps) == ["inner/conv", "conv"] and maps["conv"].shape == (14, 14, 5)
    assert [layer.name for layer in inner.layers] == ["conv"] and model.layers[-3].name == "conv"


def test_python_show_takes_model_objects(tiny_functional, rgb_image, tmp_path):
    """featuremaps.show(model=...) takes a Keras model, a path, and (where installed) an nn.Module and an ONNX
    session, as extract, plot and compute_cam do."""
    keras_file = tmp_path / "tiny.keras"
    tiny_functional.save(keras_file)
    for i, model in enumerate([tiny_functional, keras_file, str(keras_file)]):
        (r,) = fm.show([rgb_image], model=model, out=tmp_path / f"k{i}", layers="C1", maps=2, layer_pngs=False)
        assert (r.folder / "overview.png").is_file()
    net, _, onnx_file = torch_and_onnx_files(tmp_path / "tv")
    ort = pytest.importorskip("onnxruntime")
    for i, model in enumerate([net, ort.InferenceSession(str(onnx_file)), onnx_file]):
        (r,) = fm.show([rgb_image], model=model, out=tmp_path / f"o{i}", maps=2, layer_pngs=False)
        assert (r.folder / "overview.png").is_file()


@pytest.mark.parametrize("command", ["show", "report", "compare-classes"])
def test_a_bad_colormap_is_one_line_before_the_model_loads(command, rgb_image, tmp_path, capsys, monkeypatch):
    """--cmap travels in one record (render.Look) checked before any work: one error line, exit 2, no model
    loaded (models.load would fail the test) and no per-image warnings."""
    from featuremaps import models

    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    images = [str(rgb_image)] * (2 if command == "compare-classes" else 1)
    out = tmp_path / ("r.html" if command == "report" else "out")
    assert main([command, *images, "--cmap", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("featuremaps: error: unknown colormap 'nope'") and err.count("\n") == 1, err
    assert not out.exists()
