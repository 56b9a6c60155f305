"""featuremaps atlas: per-class means and selectivity checked by hand, top-k tables, CLI files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_fer
from PIL import Image

from featuremaps import colormap, models
from featuremaps.atlas import AtlasStats, compute_atlas, open_source, selectivity
from featuremaps.cli import main

CLASSES = ["dark", "light"]


def _hand_model():
    """One 1x1 conv: channel 0 = x, channel 1 = 1 - x (x = pixel / 255), then a 2-way softmax head."""
    import keras

    x = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, name="hand")
    h = conv(x)
    conv.set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2), np.array([0.0, 1.0], np.float32)])
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(x, y, name="hand_model")


@pytest.fixture
def hand_data(tmp_path):
    """ROOT/<class>/*.png: 'dark' images of value 51 (0.2) and 102 (0.4), 'light' ones of 153 (0.6)."""
    root = tmp_path / "data"
    for cls, values in (("dark", (51, 102)), ("light", (153, 153, 153))):
        (root / cls).mkdir(parents=True)
        for i, v in enumerate(values):
            Image.fromarray(np.full((4, 4), v, np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def hand_model_file(tmp_path):
    p = tmp_path / "hand.keras"
    _hand_model().save(p)
    return p


def test_class_means_and_selectivity_by_hand(hand_data):
    lm = models.wrap(_hand_model(), classes=CLASSES)
    src = open_source(hand_data, "PrivateTest", lm.classes)
    res = compute_atlas(lm, src, batch_size=2)  # batches split the classes: running sums must add up
    # channel 0 (= x): dark (0.2 + 0.4) / 2 = 0.3, light 0.6; channel 1 (= 1 - x): dark 0.7, light 0.4
    np.testing.assert_allclose(res.means[0], [[0.3, 0.7], [0.6, 0.4]], atol=1e-5)
    assert res.counts.tolist() == [2, 3]
    # SI = (max - rest) / (max + rest): ch0 (0.6 - 0.3) / 0.9 = 1/3 (light); ch1 (0.7 - 0.4) / 1.1 = 3/11
    np.testing.assert_allclose(res.si[0], [1 / 3, 3 / 11], atol=1e-5)
    assert res.preferred[0].tolist() == [1, 0]
    # top images of channel 0: the three light ones (0.6), then 0.4; of channel 1: 0.2 first (0.8)
    vals, idx = res.top_vals[0], res.top_idx[0]
    np.testing.assert_allclose(vals[0][:4], [0.6, 0.6, 0.6, 0.4], atol=1e-5)
    assert sorted(idx[0][:3].tolist()) == [2, 3, 4] and idx[0][3] == 1
    np.testing.assert_allclose(vals[1][:2], [0.8, 0.6], atol=1e-5)
    assert idx[1][:2].tolist() == [0, 1] and (idx[0][5:] == -1).all()  # only 5 images: the rest empty


def test_selectivity_edge_cases():
    si, pref = selectivity(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 2.0], [np.nan, np.nan, np.nan]]))
    np.testing.assert_allclose(si, [1.0, 0.0, 0.0])  # one-class, silent, uniform; the empty class is ignored
    assert pref.tolist()[0] == 0


def test_top_k_is_bounded_and_exact():
    rng = np.random.default_rng(0)
    st = AtlasStats([3], 2, k=4)
    acts = rng.random((100, 3)).astype(np.float32)
    labels = rng.integers(0, 2, 100)
    for b in range(0, 100, 7):
        st.update([acts[b : b + 7]], labels[b : b + 7], np.arange(b, min(100, b + 7)))
    vals, idx = st.top(0)
    assert vals.shape == (3, 4)
    for c in range(3):
        assert idx[c].tolist() == np.argsort(-acts[:, c])[:4].tolist()
    np.testing.assert_allclose(st.sums[0], np.stack([acts[labels == k].sum(0) for k in (0, 1)]), rtol=1e-6)


def test_atlas_cli_writes_everything(tmp_path, hand_data, hand_model_file, capsys):
    out = tmp_path / "atlas"
    rc = main(
        [
            "atlas",
            "--data",
            str(hand_data),
            "--model",
            str(hand_model_file),
            "--classes",
            "dark,light",
            "--batch-size",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {"atlas.json", "atlas.npz", "index.html", "heatmaps/C01_hand.png", "top/C01_hand.png"}
    meta = json.loads((out / "atlas.json").read_text())
    assert meta["images"] == 5 and meta["classes"] == CLASSES and meta["counts"] == [2, 3]
    best = meta["layers"][0]["most_selective"][0]
    assert best["channel"] == 0 and best["preferred_class"] == "light"
    assert abs(best["selectivity"] - 1 / 3) < 1e-5
    assert [t["label"] for t in best["top_images"][:3]] == ["light"] * 3
    with np.load(out / "atlas.npz") as z:
        np.testing.assert_allclose(z["hand/means"], [[0.3, 0.7], [0.6, 0.4]], atol=1e-5)
    for png in ("heatmaps/C01_hand.png", "top/C01_hand.png"):
        with Image.open(out / png) as im:
            assert im.width >= 400 and np.asarray(im).std() > 10
    assert "F1 SI 0.33 (light)" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert 'class="layer wide"' in html and 'class="scroll"' in html  # pictures at full size, text readable
    assert ".layer.wide img{max-width:none}" in html
    with Image.open(out / "heatmaps/C01_hand.png") as im:
        heat = np.asarray(im.convert("RGB"))
    lut = colormap("viridis")
    bar_rows = [y for y in range(heat.shape[0]) if {0, 255} <= _lut_hits(heat[y], lut)]
    assert bar_rows and max(bar_rows) > heat.shape[0] - 60  # a colour bar from the lowest to the top colour...
    assert (heat[max(bar_rows) + 4 :] < 128).any()  # ...with its numbers under it


def _lut_hits(row: np.ndarray, lut: np.ndarray) -> set[int]:
    """LUT indices whose colour occurs in ``row``."""
    colours = {tuple(p) for p in row.tolist()}
    return {i for i, c in enumerate(lut.tolist()) if tuple(c) in colours}


def test_atlas_resizes_images_of_other_sizes(tmp_path, hand_data, hand_model_file, capsys):
    Image.fromarray(np.full((8, 6), 153, np.uint8)).save(hand_data / "light" / "big.png")
    out = tmp_path / "atlas"
    assert (
        main(
            [
                "atlas",
                "--data",
                str(hand_data),
                "--model",
                str(hand_model_file),
                "--classes",
                "dark,light",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "note: 1 of 6 images were resized to 4x4" in capsys.readouterr().err  # notes go to stderr


def _bad(tmp_path, case, hand_data, hand_model_file):
    args = ["atlas", "--data", str(hand_data), "--model", str(hand_model_file), "--classes", "dark,light"]
    if case == "unknown_model":
        args[4] = "resnet9000"
    elif case == "empty_dataset":
        empty = tmp_path / "empty"
        (empty / "dark").mkdir(parents=True)
        args[2] = str(empty)
    elif case == "wrong_classes":
        (hand_data / "purple").mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(hand_data / "purple" / "p.png")
    elif case == "missing_data":
        args[2] = str(tmp_path / "nope")
    elif case == "fer_wrong_split":
        fer = tmp_path / "ferlike"
        (fer / "test" / "happy").mkdir(parents=True)
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(fer / "test" / "happy" / "PublicTest_1.png")
        args[2] = str(fer)
        args[6] = "angry,disgust,fear,happy,neutral,sad,surprise"
    return args


@pytest.mark.parametrize("case", ["unknown_model", "empty_dataset", "wrong_classes", "missing_data", "fer_wrong_split"])
def test_atlas_bad_input_exit_2_nothing_written(tmp_path, hand_data, hand_model_file, case, capsys):
    out = tmp_path / "out" / "atlas"
    assert main([*_bad(tmp_path, case, hand_data, hand_model_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error:") and "\n" not in err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


@needs_fer()
def test_atlas_fer_archive_small(tmp_path):
    from conftest import FER_ARCHIVE

    lm = models.load("emotion", weights="none")
    src = open_source(FER_ARCHIVE, "PrivateTest", lm.classes)
    assert len(src) == 3589
    res = compute_atlas(lm, src, layers="C1,C13", limit=70, batch_size=35)
    assert res.images == 70 and res.counts.sum() == 70 and (res.counts > 0).sum() >= 6
    assert res.means[1].shape == (7, 512)
