"""featuremaps compare and compare-classes: alignment, shared scales, files written, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_fer, torch_and_onnx_files
from PIL import Image

from featuremaps import models
from featuremaps.cli import main
from featuremaps.compare import align_rows, compare_models, maps_block
from featuremaps.compare_classes import compare_classes


def _net(name, convs, side=16, classes=3):
    """A tiny CNN: ``convs`` is a list of (filters, stride)."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((side, side, 3))
    h = x
    for i, (f, s) in enumerate(convs, start=1):
        h = keras.layers.Conv2D(f, 3, strides=s, padding="same", activation="relu", name=f"{name}_c{i}")(h)
    y = keras.layers.Dense(classes, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(x, y, name=name)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    a = _net("deep", [(4, 1), (4, 1), (6, 2), (6, 1), (8, 2)])
    b = _net("shallow", [(4, 2), (8, 2)], side=24)
    folder = tmp_path_factory.mktemp("nets")
    pa, pb = folder / "deep.keras", folder / "shallow.keras"
    a.save(pa)
    b.save(pb)
    return pa, pb


@pytest.fixture
def cat(tmp_path):
    p = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(p)
    return p


def test_align_by_depth_and_resolution(nets):
    from featuremaps.images import load_image  # noqa: F401

    lms = [models.load(str(p)) for p in nets]
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    _, runs, labels, picks = compare_models(lms, rgb, rows=3, maps=4)
    assert labels == ["depth 0%", "depth 50%", "depth 100%"]
    assert picks == [[0, 0], [2, 0], [4, 1]]  # 5 layers: C1, C3, C5; 2 layers: C1, C1 (round 0.5 -> 0), C2
    labels, picks = align_rows(runs, 3, "resolution")
    # deep: 16 -> 16,16,8,8,4 ; shallow: 24 -> 12, 6 : levels 0, 1, 2
    assert labels == ["input size", "1/2 of input", "1/4 of input"]
    assert picks == [[1, None], [3, 0], [4, 1]]


def test_every_input_is_drawn_at_one_size(nets):
    """A 16 px and a 24 px input fill the same box (the 24 px one was drawn at 96 px beside 112 px: each input
    was enlarged by its own whole factor)."""
    lms = [models.load(str(p)) for p in nets]
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 0] = 255
    pic = compare_models(lms, red, rows=2, maps=4).pic
    mask = (pic[..., 0] > 200) & (pic[..., 1] < 60) & (pic[..., 2] < 60)
    cols = np.flatnonzero(mask.any(axis=0))
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)  # one run of columns per thumbnail
    boxes = [(int(mask[:, r].any(axis=1).sum()), len(r)) for r in runs]
    assert len(boxes) == 2 and boxes[0] == boxes[1] and boxes[0][0] >= 100, boxes


def test_shared_norm_uses_one_scale_per_row(nets):
    lms = [models.load(str(p)) for p in nets]
    rgb = np.full((24, 24, 3), 128, np.uint8)
    pic_map, *_ = compare_models(lms, rgb, rows=2, maps=4, norm="map")
    pic_shared, *_ = compare_models(lms, rgb, rows=2, maps=4, norm="shared")
    assert pic_map.shape == pic_shared.shape and pic_map.dtype == np.uint8
    assert not np.array_equal(pic_map, pic_shared)


def test_maps_block_layout():
    m = np.zeros((4, 4, 5), np.float32)
    m[..., 4] = 1.0
    b = maps_block(m, cols=4, side=8)
    assert b.shape == (2 * 8 + 2, 4 * 8 + 3 * 2, 3)
    assert (b[10:18, 0:8] != 255).any() and (b[10:18, 10:18] == 255).all()  # 5th map in row 2, col 1 only


def test_compare_cli_writes_png_html_json(tmp_path, nets, cat):
    out = tmp_path / "out"
    rc = main(
        [
            "compare",
            str(cat),
            "--models",
            f"{nets[0]},{nets[1]}",
            "--rows",
            "3",
            "--maps",
            "4",
            "--align",
            "resolution",
            "--norm",
            "shared",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    folder = out / "compare_cat"
    assert {p.name for p in folder.iterdir()} == {"compare.png", "compare.html", "compare.json"}
    meta = json.loads((folder / "compare.json").read_text())
    assert [m["name"] for m in meta["models"]] == ["deep", "shallow"]
    assert meta["rows"][0]["layers"][1] is None
    with Image.open(folder / "compare.png") as im:
        assert im.width > 300 and im.height > 200
    html = (folder / "compare.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html


@pytest.mark.slow
def test_compare_keras_applications_random_weights(tmp_path, cat):
    rc = main(
        [
            "compare",
            str(cat),
            "--models",
            "mobilenetv2",
            "--weights",
            "none",
            "--rows",
            "2",
            "--maps",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0 and (tmp_path / "compare_cat" / "compare.png").is_file()


def _compare(cat, models_arg, out, *extra):
    return main(["compare", str(cat), "--models", models_arg, "--rows", "3", "--maps", "4", *extra, "--out", str(out)])


def test_compare_mixed_frameworks_keras_torchscript_onnx(tmp_path, nets, cat, capsys):
    """A .keras file (5 convs), a TorchScript .pt and an .onnx file (2 convs each): one figure, and compare.json
    names each model and, per row, the layer of each at that relative depth (C1 and the last at the ends)."""
    _, pt, ox = torch_and_onnx_files(tmp_path / "models")
    out = tmp_path / "out"
    assert _compare(cat, f"{nets[0]},{pt},{ox}", out) == 0, capsys.readouterr().err
    folder = out / "compare_cat"
    assert {p.name for p in folder.iterdir()} == {"compare.png", "compare.html", "compare.json"}
    meta = json.loads((folder / "compare.json").read_text())
    assert [m["name"] for m in meta["models"]] == ["deep", "net.pt", "net.onnx"]  # two 'net's told apart
    assert [Path(m["source"]).suffix for m in meta["models"]] == [".keras", ".pt", ".onnx"]
    # the TorchScript file fixes no size: the image's (30x40, at least 32 a side); the ONNX file was exported at 32
    shapes = [(m["conv_layers"], m["input_shape"]) for m in meta["models"]]
    assert shapes == [(5, [16, 16, 3]), (2, [32, 40, 3]), (2, [32, 32, 3])]
    assert [r["label"] for r in meta["rows"]] == ["depth 0%", "depth 50%", "depth 100%"]
    got = [[(ly["label"], ly["name"]) for ly in r["layers"]] for r in meta["rows"]]
    assert got == [
        [("C1", "deep_c1"), ("C1", "first"), ("C1", "first")],
        [("C3", "deep_c3"), ("C1", "first"), ("C1", "first")],  # 2 convs: depth 50% rounds to C1
        [("C5", "deep_c5"), ("C2", "second"), ("C2", "second")],
    ]
    assert [ly["shape"] for ly in meta["rows"][2]["layers"]] == [[4, 4, 8], [15, 19, 6], [15, 15, 6]]
    with Image.open(folder / "compare.png") as im:
        assert im.width > 300 and im.height > 200
    html = (folder / "compare.html").read_text()
    assert "<th>deep</th>" in html and "<th>net.pt</th>" in html and "<th>net.onnx</th>" in html


def test_distinct_names_tell_models_of_one_name_apart():
    from types import SimpleNamespace as NS

    from featuremaps.compare import distinct_names

    lms = [NS(name="net", source="/m/net.pt"), NS(name="net", source="/m/net.onnx"), NS(name="vgg16", source="vgg16")]
    lms += [NS(name="vgg16", source="vgg16"), NS(name="deep", source="/m/deep.keras")]
    assert [m.name for m in distinct_names(lms)] == ["net.pt", "net.onnx", "vgg16", "vgg16 #2", "deep"]


def test_compare_input_shape_for_a_dynamic_size_onnx_file(tmp_path, nets, cat, capsys):
    """--input-shape feeds the model whose input size is free (an ONNX file with a dynamic height and width);
    the .keras file keeps its own 16x16. Without it: the one line that says to pass it, nothing written."""
    _, _, ox = torch_and_onnx_files(tmp_path / "models", dynamic_size=True)
    out = tmp_path / "out"
    for extra, match in (([], "dynamic input size; pass --input-shape"), (["--input-shape", "40,40"], "H,W,C")):
        assert _compare(cat, f"{nets[0]},{ox}", out, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    assert _compare(cat, f"{nets[0]},{ox}", out, "--input-shape", "40,40,3") == 0, capsys.readouterr().err
    meta = json.loads((out / "compare_cat" / "compare.json").read_text())
    assert [m["input_shape"] for m in meta["models"]] == [[16, 16, 3], [40, 40, 3]]
    assert meta["rows"][-1]["layers"][1]["shape"] == [19, 19, 6]


@pytest.mark.parametrize("models_arg", ["vgg16,notanet", "", "missing.keras"])
def test_compare_unknown_model_exit_2(tmp_path, cat, models_arg, capsys):
    out = tmp_path / "out"
    assert main(["compare", str(cat), "--models", models_arg, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error:") and "\n" not in err
    assert not out.exists()


def test_compare_classes_with_images_of_different_sizes(tmp_path, capsys):
    import keras

    x = keras.Input((48, 48, 1))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="k1")(x)
    h = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="k2")(h)
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    p = tmp_path / "m.keras"
    keras.Model(x, y, name="two").save(p)
    rng = np.random.default_rng(0)
    imgs = []
    for name, size in (("happy", (48, 48)), ("sad", (60, 40))):
        q = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(q)
        imgs.append(str(q))
    out = tmp_path / "out"
    rc = main(
        [
            "compare-classes",
            *imgs,
            "--model",
            str(p),
            "--classes",
            "happy,sad",
            "--maps",
            "3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "resized to 48x48: sad 40x60" in text
    folder = out / "compare-classes"
    assert {"C01_k1.png", "C02_k2.png", "index.html", "manifest.json"} <= {q.name for q in folder.iterdir()}
    man = json.loads((folder / "manifest.json").read_text())
    assert [f["label"] for f in man["faces"]] == ["happy", "sad"]
    assert all(f["predicted"].split()[0] in ("happy", "sad") for f in man["faces"])


def test_compare_classes_same_channels_for_all_faces(tmp_path):
    lm = models.load("emotion", weights="none")
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    pics, preds, notes = compare_classes(lm, faces, ["a", "b", "c"], layers="C1,C13", maps=4)
    assert [c.label for c, _ in pics] == ["C1", "C13"] and len(preds) == 3 and notes == []
    assert all(pic.dtype == np.uint8 and pic.shape[0] > 3 * 64 for _, pic in pics)


def test_compare_classes_select_like_show(tmp_path, capsys):
    from featuremaps.compare_classes import top_channels
    from featuremaps.extractor import LayerMaps

    maps = np.zeros((2, 3, 3, 5), np.float32)
    maps[0, ..., 3], maps[1, ..., 1], maps[:, ..., 4] = 5.0, 4.0, 1.0  # means over faces: ch3 2.5, ch1 2, ch4 1
    r = top_channels(LayerMaps(None, (3, 3, 5), maps, np.tile(np.arange(5), (2, 1)), np.zeros((2, 4))), 2, "top-mean")
    assert r.channels.tolist() == [[1, 3], [1, 3]]  # the same channels for both faces, in channel order
    np.testing.assert_array_equal(r.maps, maps[..., [1, 3]])

    lm = models.load("emotion", weights="none")
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2)]
    for select in ("top-mean", "top-max", "5,9,2"):
        pics, _, _ = compare_classes(lm, faces, ["a", "b"], layers="C2", maps=3, select=select)
        assert len(pics) == 1 and pics[0][1].dtype == np.uint8
    paths = []
    for i, f in enumerate(faces):
        paths.append(tmp_path / f"f{i}.png")
        Image.fromarray(f).save(paths[-1])
    args = ["compare-classes", *map(str, paths), "--model", "emotion", "--weights", "none", "--layers", "C1"]
    assert main([*args, "--select", "top-mean", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "compare-classes" / "C01_block1_conv1.png").is_file()
    assert main([*args, "--select", "99", "--out", str(tmp_path / "o2")]) == 2
    assert "channel 99 does not exist" in capsys.readouterr().err


def test_compare_classes_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    one = tmp_path / "one.png"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(one)
    assert main(["compare-classes", str(one), "--model", "emotion", "--weights", "none", "--out", str(out)]) == 2
    assert main(["compare-classes", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.slow
@needs_fer()
def test_compare_classes_fer_privatetest(tmp_path):
    from conftest import FER_ARCHIVE

    out = tmp_path / "out"
    assert (
        main(
            [
                "compare-classes",
                "--data",
                str(FER_ARCHIVE),
                "--model",
                "emotion",
                "--weights",
                "none",
                "--layers",
                "C1",
                "--maps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    man = json.loads((out / "compare-classes" / "manifest.json").read_text())
    assert [f["label"] for f in man["faces"]] == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
    ]
    assert all("PrivateTest" in f["source"] for f in man["faces"])
