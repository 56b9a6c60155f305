"""featuremaps atlas: per-class means and selectivity checked by hand, top-k tables, CLI files, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import class_means, hooked_channel_means, needs_fer, torch_and_onnx_files
from PIL import Image

from featuremaps import colormap, models
from featuremaps.atlas import AtlasStats, compute_atlas, open_source, selectivity, write_atlas
from featuremaps.atlas.crops import fitted
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


@pytest.fixture(scope="module")
def hand_model_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("hand") / "hand.keras"
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


def test_selectivity_of_signed_class_means_stays_in_0_1():
    """Raw torch/ONNX conv outputs can average below 0: class means -0.9 and 1.0 would give (1 + 0.9) / 0.1 = 19
    unclipped; over means clipped at 0 it is 1 (one class only), and all-negative channels prefer no class."""
    si, pref = selectivity(np.array([[-0.9, -0.5, 0.2], [1.0, -0.2, 0.6]]))
    np.testing.assert_allclose(si, [1.0, 0.0, (0.6 - 0.2) / 0.8])
    assert pref.tolist() == [1, 1, 1] and ((si >= 0) & (si <= 1)).all()


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


@pytest.mark.slow
@needs_fer()
def test_atlas_fer_archive_small(tmp_path):
    from conftest import FER_ARCHIVE

    lm = models.load("emotion", weights="none")
    src = open_source(FER_ARCHIVE, "PrivateTest", lm.classes)
    assert len(src) == 3589
    res = compute_atlas(lm, src, layers="C1,C13", limit=70, batch_size=35)
    assert res.images == 70 and res.counts.sum() == 70 and (res.counts > 0).sum() >= 6
    assert res.means[1].shape == (7, 512)


# ---------------------------------------------------------------- mergeable statistics, manifests, bad images
def _stats_over(acts, labels, parts, k=9):
    """One AtlasStats per part (updated in batches of 5), merged in the given order."""
    from featuremaps.atlas import AtlasStats

    partials = []
    for ids in parts:
        st = AtlasStats([a.shape[1] for a in acts], 3, k=k)
        for b in range(0, ids.size, 5):
            sl = ids[b : b + 5]
            st.update([a[sl] for a in acts], labels[sl], sl)
        partials.append(st)
    total = partials[0]
    for p in partials[1:]:
        total.merge(p)
    return total


def test_merge_is_exact_and_order_independent_with_ties():
    rng = np.random.default_rng(1)
    n = 200
    # quantised values: many exact ties (and a dead channel, all 0): top ids must not depend on the partition
    acts = [np.round(rng.random((n, 4)) * 5).astype(np.float32), np.zeros((n, 2), np.float32)]
    acts[0][:, 3] = np.maximum(acts[0][:, 3] - 3, 0)  # post-ReLU: mostly zeros
    labels = rng.integers(0, 3, n)
    ids = np.arange(n)
    one = _stats_over(acts, labels, [ids])
    pick = np.sort(rng.permutation(n)[:90])
    splits = [
        [ids[:50], ids[50:]],
        [ids[150:], ids[:70], ids[70:150]],  # partials arriving out of order
        [pick, np.setdiff1d(ids, pick)],
        [np.sort(s) for s in np.array_split(rng.permutation(n), 7)][::-1],
    ]
    for parts in splits:
        st = _stats_over(acts, labels, parts)
        assert st.counts.tolist() == one.counts.tolist() and st.images == n
        for j in range(2):
            np.testing.assert_allclose(st.sums[j], one.sums[j], rtol=1e-12)
            assert (st.top_idx[j] == one.top_idx[j]).all()
            np.testing.assert_array_equal(st.top_vals[j], one.top_vals[j])
    # the tie-break is "highest value, then lowest id": the dead channel's top 9 are images 0..8
    assert one.top_idx[1][0].tolist() == list(range(9))
    for c in range(4):
        expect = np.lexsort((ids, -acts[0][:, c]))[:9]
        assert one.top_idx[0][c].tolist() == expect.tolist()


def test_merge_counts_bad_images_and_refuses_other_shapes():
    from featuremaps.atlas import AtlasStats

    a, b = AtlasStats([3], 2), AtlasStats([3], 2)
    a.add_bad(7, "x7 is corrupt")
    b.add_bad(2, "x2 is corrupt")
    a.merge(b)
    assert a.bad_count == 2 and [m for _, m in a.bad] == ["x2 is corrupt", "x7 is corrupt"]
    with pytest.raises(ValueError, match="different shapes"):
        a.merge(AtlasStats([4], 2))


def _manifest_rows(hand_data):
    """(relative path, label) of the hand data set, in a fixed order."""
    return [(p.relative_to(hand_data.parent).as_posix(), p.parent.name) for p in sorted(hand_data.rglob("*.png"))]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_manifest_gives_the_same_atlas_as_the_folder(tmp_path, hand_data, kind):
    lm = models.wrap(_hand_model(), classes=CLASSES)
    rows = _manifest_rows(hand_data)
    if kind == "csv":
        man = tmp_path / "m.csv"  # next to data/: paths relative to the manifest's folder; other column names
        man.write_text("file,extra,cls\n" + "".join(f"{p},x,{lab.upper()}\n" for p, lab in rows))
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        man = tmp_path / "m.parquet"
        pq.write_table(pa.table({"file": [p for p, _ in rows], "cls": [lab for _, lab in rows]}), man)
    src = open_source(man, "PrivateTest", lm.classes, path_column="file", label_column="cls")
    assert len(src) == 5 and src.classes == CLASSES and src.labels.tolist() == [0, 0, 1, 1, 1]
    res = compute_atlas(lm, src, batch_size=2)
    np.testing.assert_allclose(res.means[0], [[0.3, 0.7], [0.6, 0.4]], atol=1e-5)


def test_manifest_of_file_uris_reads_through_pyarrow_and_names_a_bad_uri(tmp_path, hand_data, hand_model_file, capsys):
    """A manifest of ``file://`` URIs (what an ``s3://``/``gs://`` manifest is, on a local file system) goes through
    pyarrow's file systems and gives the folder's atlas; a URI that cannot be read is counted, named and skipped."""
    pytest.importorskip("pyarrow")
    rows = _manifest_rows(hand_data)
    man = tmp_path / "uris.csv"
    uris = [((hand_data.parent / p).resolve().as_uri(), lab) for p, lab in rows]
    uris.insert(2, ((tmp_path / "gone" / "missing.png").as_uri(), "light"))
    man.write_text("path,label\n" + "".join(f"{u},{lab}\n" for u, lab in uris))
    args = ["--model", str(hand_model_file), "--classes", "dark,light", "--batch-size", "2"]
    assert main(["atlas", "--data", str(hand_data), *args, "--out", str(tmp_path / "folder")]) == 0
    assert main(["atlas", "--data", str(man), *args, "--out", str(tmp_path / "uris")]) == 1  # one skipped
    err = capsys.readouterr().err
    assert "warning: skipped 1 unreadable image(s):" in err and "missing.png" in err
    meta = json.loads((tmp_path / "uris" / "atlas.json").read_text())
    assert meta["images"] == 5 and meta["counts"] == [2, 3] and meta["unreadable"] == 1
    assert "missing.png" in meta["unreadable_images"][0]
    with np.load(tmp_path / "folder" / "atlas.npz") as za, np.load(tmp_path / "uris" / "atlas.npz") as zb:
        for k in za.files:
            if k.endswith("/means"):
                np.testing.assert_allclose(zb[k], za[k], rtol=1e-6)


def test_manifest_integer_labels_index_the_model_classes(tmp_path, hand_data):
    man = tmp_path / "m.csv"
    man.write_text("path,label\n" + "".join(f"{p},{CLASSES.index(lab)}\n" for p, lab in _manifest_rows(hand_data)))
    src = open_source(man, "PrivateTest", CLASSES)
    assert src.labels.tolist() == [0, 0, 1, 1, 1]


def test_unreadable_images_are_counted_named_and_skipped(tmp_path, hand_data, hand_model_file, capsys):
    (hand_data / "light" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "atlas"
    args = ["atlas", "--data", str(hand_data), "--model", str(hand_model_file), "--classes", "dark,light"]
    assert main([*args, "--batch-size", "2", "--out", str(out)]) == 1  # the batch rule: 1 = something skipped
    printed = capsys.readouterr().err
    assert "warning: skipped 1 unreadable image(s):" in printed and "broken.png" in printed
    meta = json.loads((out / "atlas.json").read_text())
    assert meta["images"] == 5 and meta["counts"] == [2, 3] and meta["unreadable"] == 1
    assert "broken.png" in meta["unreadable_images"][0]


def _bad_manifest(tmp_path, hand_data, case):
    man = tmp_path / "m.csv"
    rows = _manifest_rows(hand_data)
    if case == "manifest_columns":
        man.write_text("file,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    elif case == "manifest_labels":
        man.write_text(
            "path,label\n" + "".join(f"{p},{'purple' if i == 2 else lab}\n" for i, (p, lab) in enumerate(rows))
        )
    return man


@pytest.mark.parametrize("case", ["manifest_columns", "manifest_labels", "ray_options_without_ray", "ray_missing"])
def test_atlas_scale_out_bad_input_exit_2(tmp_path, hand_data, hand_model_file, case, capsys, monkeypatch):
    import sys

    data = hand_data
    extra = []
    if case.startswith("manifest"):
        data = _bad_manifest(tmp_path, hand_data, case)
    elif case == "ray_options_without_ray":
        extra = ["--actors", "2"]
    elif case == "ray_missing":  # a user without the [ray] extra
        monkeypatch.setitem(sys.modules, "ray", None)
        monkeypatch.delitem(sys.modules, "featuremaps.atlas.ray", raising=False)
        extra = ["--engine", "ray"]
    out = tmp_path / "out" / "atlas"
    args = ["atlas", "--data", str(data), "--model", str(hand_model_file), "--classes", "dark,light"]
    assert main([*args, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error:") and "\n" not in err
    expect = {
        "manifest_columns": "has no column 'path'",
        "manifest_labels": "label(s) purple are neither the model's classes",
        "ray_options_without_ray": "need --engine ray",
        "ray_missing": "pip install 'featuremaps[ray]'",
    }[case]
    assert expect in err
    assert not out.exists()


def test_a_photo_in_two_classes_is_named_and_equal_classes_prefer_none(tmp_path, hand_model_file, capsys):
    """The same photo filed under both classes: one warning naming both copies (atlas.json lists them), and
    with nothing else in the classes their means are equal, so no channel is said to prefer either."""
    import shutil

    root = tmp_path / "dup"
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 80, np.uint8)).save(root / "dark" / "x.png")
    shutil.copy(root / "dark" / "x.png", root / "light" / "copy.png")
    out = tmp_path / "atlas"
    rc = main(
        ["atlas", "--data", str(root), "--model", str(hand_model_file), "--classes", "dark,light", "--out", str(out)]
    )
    cap = capsys.readouterr()
    assert rc == 0
    warn = [ln for ln in cap.err.splitlines() if "more than one class" in ln]
    assert len(warn) == 1 and "x.png (dark)" in warn[0] and "copy.png (light)" in warn[0]
    assert "no channel prefers a class" in cap.out
    meta = json.loads((out / "atlas.json").read_text())
    assert [[d["label"] for d in group] for group in meta["duplicates"]] == [["dark", "light"]]
    listed = meta["layers"][0]["most_selective"]
    assert listed and all(it["preferred_class"] is None for it in listed)
    assert "more than one class" in (out / "index.html").read_text()


def test_duplicates_are_found_across_merged_partials():
    """A photo's copies in two partials (two Ray blocks) are found after the merge; same-class copies are not
    reported (they do not blur two classes)."""
    a, b = AtlasStats([2], 2), AtlasStats([2], 2)
    a.add_digests([11, 22, 33], [0, 0, 1], [0, 1, 2])
    b.add_digests([22, 33, 44], [1, 1, 1], [3, 4, 5])
    assert a.merge(b).duplicates() == [[(1, 0), (3, 1)]]


def _rgb_folder(root, classes, n, side, seed=0):
    """ROOT/<class>/*.png of random RGB images (brightness grows with the class); (images, labels) in file order."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            im = (rng.integers(0, 256, (side, side, 3)) * (0.5 + 0.25 * k)).clip(0, 255).astype(np.uint8)
            Image.fromarray(im).save(root / cls / f"{i}.png")
            images.append(im)
            labels.append(k)
    return images, labels


@pytest.mark.slow
def test_atlas_of_a_torchvision_model_uses_its_imagenet_preprocessing(tmp_path, capsys):
    """--model torchvision:resnet18 --weights none: the images go in with torchvision's ImageNet mean/std (as
    in show), and C1/C2's class means equal a hooked forward of the same random-weight resnet18."""
    torch = pytest.importorskip("torch")
    from featuremaps.errors import UserError
    from featuremaps.frameworks.torch import torchvision_models

    try:
        tvm = torchvision_models()
    except UserError as e:
        pytest.skip(str(e))
    images, labels = _rgb_folder(tmp_path / "data", ["a", "b"], 2, 224)
    out = tmp_path / "atlas"
    argv = ["atlas", "--data", str(tmp_path / "data"), "--model", "torchvision:resnet18", "--weights", "none"]
    torch.manual_seed(0)  # the random weights the command draws, drawn again below for the hand computation
    assert main([*argv, "--layers", "C1,C2", "--batch-size", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    torch.manual_seed(0)
    ref = tvm.get_model("resnet18", weights=None).eval()
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    per_image = hooked_channel_means(ref, images, lambda x: ((x / 255.0 - mean) / std).astype(np.float32))
    meta = json.loads((out / "atlas.json").read_text())
    assert [ly["name"] for ly in meta["layers"]] == ["conv1", "layer1.0.conv1"] and meta["resized"] == 0
    with np.load(out / "atlas.npz") as z:
        for j, ly in enumerate(meta["layers"]):
            want = class_means(per_image[j], labels, 2)
            np.testing.assert_allclose(z[f"{ly['npz_prefix']}/means"], want, rtol=1e-5, atol=1e-5)


def test_atlas_input_shape_for_a_dynamic_size_onnx_file(tmp_path, capsys):
    """An ONNX file with a free height and width: without --input-shape one line saying to pass it, exit 2,
    nothing written; with --input-shape 24,24,3 the images (24 px: not resized) give the class means of a
    hooked forward of the torch module it was exported from. A bad --input-shape is one line too."""
    net, _, ox = torch_and_onnx_files(tmp_path / "models", dynamic_size=True)
    images, labels = _rgb_folder(tmp_path / "data", CLASSES, 3, 24)
    base = ["atlas", "--data", str(tmp_path / "data"), "--model", str(ox), "--batch-size", "4"]
    for extra, match in (([], "dynamic input size; pass --input-shape"), (["--input-shape", "24x24"], "H,W,C")):
        assert main([*base, *extra, "--out", str(tmp_path / "no")]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "no").exists()
    out = tmp_path / "atlas"
    assert main([*base, "--input-shape", "24,24,3", "--out", str(out)]) == 0, capsys.readouterr().err
    meta = json.loads((out / "atlas.json").read_text())
    assert meta["input_shape"] == [24, 24, 3] and meta["resized"] == 0 and meta["images"] == 6
    per_image = hooked_channel_means(net, images, lambda x: x / 255.0)
    with np.load(out / "atlas.npz") as z:
        for j, ly in enumerate(meta["layers"]):
            np.testing.assert_allclose(z[f"{ly['npz_prefix']}/means"], class_means(per_image[j], labels, 2), atol=1e-5)


def test_heatmap_of_a_few_channels_has_room_for_its_legend():
    """A layer of 4 channels with signed class means: the map is narrow, the colour bar's label long; the page
    is as wide as its widest line (nothing drawn up to the right edge, where text would be cut)."""
    from types import SimpleNamespace

    from featuremaps.atlas import AtlasResult

    means = np.array([[0.5, -0.1987, 0.2, 0.9], [-0.3, 0.4, 0.1, 0.05]], np.float32)
    layer = SimpleNamespace(label="C1", name="Conv1")
    res = AtlasResult(
        ["cat", "face"], np.array([2, 1]), [layer], [means], [np.array([1.0, 1.0, 0.3, 0.9])],
        [np.array([0, 1, 0, 0])], [None], [None], 3, 0, (8, 8, 3),
    )  # fmt: skip
    pic = res.heatmap(0)
    right = pic[:, -5:]  # the title block wraps 6 px short of the edge; a cut line runs into it
    assert (right == right[0, 0]).all(), "something is drawn up to the right edge"
    assert pic.shape[1] > 560  # wider than the old fixed minimum, which cut "... span -0.199 to 0.9)"


def test_a_manifest_csv_that_is_not_utf8_is_one_line(tmp_path, hand_data, hand_model_file, capsys):
    rows = _manifest_rows(hand_data)
    args = ["atlas", "--model", str(hand_model_file), "--classes", "dark,light", "--out", str(tmp_path / "atlas")]
    for name, body in (
        (
            "latin1.csv",
            ("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows) + "café.png,dark\n").encode("latin-1"),
        ),
        ("header.csv", "pfad,étiquette\n".encode("cp1252")),  # the header alone, read to tell a manifest from FER's
    ):
        (tmp_path / name).write_bytes(body)
        assert main([*args[:1], "--data", str(tmp_path / name), *args[1:]]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"{name} is not UTF-8 text" in err[0] and "save the CSV as UTF-8" in err[0], err
    assert not (tmp_path / "atlas").exists()


# ---------------------------------------------------------------- crops of the top images
def _spot_model():
    """One valid 3x3 conv: channel 0 = ReLU(mean of the 3x3 patch), channel 1 = ReLU(1 - that mean) (x = pixel/255)."""
    import keras

    x = keras.Input((12, 12, 1))
    conv = keras.layers.Conv2D(2, 3, activation="relu", name="spot")
    h = conv(x)
    w = np.stack([np.full((3, 3, 1), 1 / 9), np.full((3, 3, 1), -1 / 9)], axis=-1).astype(np.float32)
    conv.set_weights([w, np.array([0.0, 1.0], np.float32)])
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(x, y, name="spot_model")


SPOTS = [(6, 2), (1, 7), (9, 0)]  # top-left corners of the 3x3 white spot of each 'light' image


@pytest.fixture
def spot_data(tmp_path):
    """'light' images: black 12x12 with a white 3x3 spot at SPOTS[i]; 'dark' images: black."""
    root = tmp_path / "spots"
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
    for i, (r, c) in enumerate(SPOTS):
        im = np.zeros((12, 12), np.uint8)
        im[r : r + 3, c : c + 3] = 255
        Image.fromarray(im).save(root / "light" / f"{i}.png")
    for i in range(2):
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / "dark" / f"{i}.png")
    return root


def test_top_images_are_cropped_to_the_field_around_the_planted_maximum(tmp_path, spot_data, capsys):
    """Channel 0 peaks (value 1) exactly where its 3x3 window is the spot: output (r, c) of a valid 3x3 conv sees
    input rows r..r+2, cols c..c+2 (field 3, jump 1, start 1), so each light image's box is the spot itself;
    atlas.json and atlas.npz carry the same boxes, the figure says how its tiles are cut."""
    from featuremaps.atlas import render_top_images
    from featuremaps.atlas.figures import crop_text

    lm = models.wrap(_spot_model(), classes=CLASSES)
    src = open_source(spot_data, "PrivateTest", lm.classes)
    res = compute_atlas(lm, src, batch_size=2)
    assert res.crops is not None and res.crops[0].note == ""
    light = {int(i): k for k, i in enumerate(np.flatnonzero(src.labels == 1))}
    boxes = res.crops[0].boxes[0]
    for t, idx in enumerate(res.top_idx[0][0]):
        if int(idx) in light:
            r, c = SPOTS[light[int(idx)]]
            assert boxes[t] == {"top": r, "left": c, "bottom": r + 2, "right": c + 2}, (t, idx)
    assert sum(int(i) in light for i in res.top_idx[0][0]) == 3
    assert "cropped to the receptive field around the channel's maximum" in crop_text(res, 0)
    pic = render_top_images(res, 0, src)
    assert pic.shape[1] > 400 and pic.std() > 10
    out = tmp_path / "atlas"
    model_file = tmp_path / "spot.keras"
    _spot_model().save(model_file)
    assert main(["atlas", "--data", str(spot_data), "--model", str(model_file), "--classes", "dark,light",
                 "--out", str(out)]) == 0  # fmt: skip
    meta = json.loads((out / "atlas.json").read_text())
    ch0 = next(it for it in meta["layers"][0]["most_selective"] if it["channel"] == 0)
    got = {Path(t["source"]).name: t["box"] for t in ch0["top_images"] if t["label"] == "light"}
    assert got == {f"{i}.png": {"top": r, "left": c, "bottom": r + 2, "right": c + 2} for i, (r, c) in enumerate(SPOTS)}
    with np.load(out / "atlas.npz") as z:
        box = z["spot/top_box"]
    assert box.shape == (2, 9, 4)
    for t, tile in enumerate(ch0["top_images"]):
        assert box[0, t].tolist() == [tile["box"][k] for k in ("top", "left", "bottom", "right")]


def _conv_maps(net, images: list[np.ndarray]) -> list[np.ndarray]:
    """Per Conv2d of ``net``, its (N, h, w, C) maps over ``images`` (uint8, /255), from hooks."""
    import torch

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    outs = {i: [] for i in range(len(convs))}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, i=i: outs[i].append(o.detach().permute(0, 2, 3, 1).numpy()))
        for i, m in enumerate(convs)
    ]
    try:
        with torch.no_grad():
            for im in images:
                net(torch.from_numpy(im[None].astype(np.float32) / 255.0).permute(0, 3, 1, 2))
    finally:
        for h in hooks:
            h.remove()
    return [np.concatenate(outs[i]) for i in range(len(convs))]


def test_crops_for_torch_and_onnx_and_whole_images_where_the_field_is_unknown(tmp_path):
    """The tiny torch CNN (conv 3x3 pad 1; conv 3x3 stride 2): fields by hand, first: size 3, start 0, jump 1 ->
    rows y-1..y+1; second: size 5, start 1, jump 2 -> rows 2y-1..2y+3 (clipped to 0..31). The module and its
    ONNX export crop there around the maximum of a hooked forward; TorchScript gives no graph: whole images, and
    the figure's subtitle says so."""
    from featuremaps.atlas.figures import crop_text

    net, pt, ox = torch_and_onnx_files(tmp_path / "models")
    classes = ["cat", "dog", "owl"]  # the tiny CNN's three outputs
    images, _ = _rgb_folder(tmp_path / "data", classes, 3, 32)
    maps = _conv_maps(net, images)

    def hand(j, y, x):  # first: centre y, half 1; second: centre 1 + 2y, half 2
        (cy, cx), half = ((y, x), 1) if j == 0 else ((1 + 2 * y, 1 + 2 * x), 2)
        return {"top": max(0, cy - half), "left": max(0, cx - half), "bottom": min(31, cy + half),
                "right": min(31, cx + half)}  # fmt: skip

    for model in (net, str(ox)):
        lm = models.wrap(net, classes=classes) if model is net else models.load(model, classes=classes)
        res = compute_atlas(lm, open_source(tmp_path / "data", "PrivateTest", lm.classes), batch_size=3)
        for j in range(2):
            assert res.crops[j].note == ""
            for ch, boxes in res.crops[j].boxes.items():
                for t, idx in enumerate(res.top_idx[j][ch]):
                    y, x = np.unravel_index(np.argmax(maps[j][int(idx), ..., ch]), maps[j].shape[1:3])
                    assert boxes[t] == hand(j, int(y), int(x)), (model, j, ch, t)
    lm = models.load(str(pt), classes=classes)
    res = compute_atlas(lm, open_source(tmp_path / "data", "PrivateTest", lm.classes), batch_size=3)
    whole = {"top": 0, "left": 0, "bottom": 31, "right": 31}
    assert all(b == whole for tc in res.crops for v in tc.boxes.values() for b in v)
    assert res.crops[0].note and crop_text(res, 0).startswith("whole images: the receptive field is unknown")


def test_figures_are_still_written_atomically(tmp_path, spot_data, monkeypatch):
    """A failure while drawing a later picture leaves the previous atlas folder as it was, and no temporary."""
    import featuremaps.atlas.writing as writing

    model_file = tmp_path / "spot.keras"
    _spot_model().save(model_file)
    out = tmp_path / "atlas"
    argv = ["atlas", "--data", str(spot_data), "--model", str(model_file), "--classes", "dark,light", "--out", str(out)]
    assert main(argv) == 0
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def failing(*a, **k):
        calls.append(1)
        raise RuntimeError("disk gone while drawing")

    monkeypatch.setattr(writing, "render_top_images", failing)
    with pytest.raises(RuntimeError):
        main(argv)
    assert calls
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas", "spot.keras", "spots"]  # no temporary left


def test_a_crop_trained_emotion_model_sees_the_centre_of_each_face_as_show_feeds_it(tmp_path):
    """A model trained with ``--crop 40`` is fed the centre 40x40 of each 48 px face (as ``show``, ``patterns``
    and training's validation feed it), not the face squeezed to 40 px: with a 1x1 identity conv, channel 0's
    class mean is the mean of the centre 40x40 of that class' faces, by hand; a 48 px face counts as cut, not
    resized; the top-image figure's tiles are those centres."""
    import keras

    x = keras.Input((40, 40, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="pixel")
    h = conv(x)
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32)])
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    lm = dataclasses.replace(models.wrap(keras.Model(x, y), preprocess="raw", classes=CLASSES), is_emotion=True)
    root = tmp_path / "faces"
    faces = {}
    rng = np.random.default_rng(0)
    for cls, ring in zip(CLASSES, (255, 0), strict=True):  # 'dark' faces have a white 4 px ring, 'light' a black one
        (root / cls).mkdir(parents=True)
        faces[cls] = []
        for i in range(3):
            im = rng.integers(40, 200, (48, 48), dtype=np.uint8)
            im[:4], im[-4:], im[:, :4], im[:, -4:] = ring, ring, ring, ring
            Image.fromarray(im).save(root / cls / f"{i}.png")
            faces[cls].append(im)
    res = compute_atlas(lm, open_source(root, "PrivateTest", lm.classes), batch_size=2)
    assert res.input_shape == (40, 40, 1) and res.centre and res.resized == 0
    for k, cls in enumerate(CLASSES):
        want = np.mean([f[4:44, 4:44].astype(np.float64).mean() for f in faces[cls]])
        assert res.means[0][k, 0] == pytest.approx(want, abs=1e-3), cls  # squeezed, the ring would weigh in
    seen = fitted([faces["dark"][0]], res.input_shape, res.centre)[0, ..., 0]
    np.testing.assert_array_equal(seen, faces["dark"][0][4:44, 4:44])
    squeezed = fitted([faces["dark"][0]], res.input_shape)[0, ..., 0]  # a model that was not trained with --crop
    assert squeezed.max() == 255  # the ring is in
    out = tmp_path / "atlas"
    write_atlas(res, open_source(root, "PrivateTest", lm.classes), out, lm)
    assert "the centre 40x40 of it resized to 48x48" in json.loads((out / "atlas.json").read_text())["top_images"]
