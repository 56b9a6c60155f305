"""Never delete a user's files: featuremaps replaces only the output folders it made, and two inputs or two
layers never share one output name (issue: "Never delete a user's files", part 1)."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from featuremaps.cli import main
from featuremaps.errors import UserError
from featuremaps.io import atomic_dir, made_by_featuremaps, output_names, save_json, unique_names


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="a>b")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a_b")(a)
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(b))
    p = tmp_path_factory.mktemp("models") / "twins.keras"
    keras.Model(x, y, name="twins").save(p)
    return p


def _png(path, value=0, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ io: what is featuremaps' own
def test_made_by_featuremaps(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    save_json(own / "manifest.json", {"featuremaps": "0.1.0"})
    (own / "overview.png").write_bytes(b"x")
    user = tmp_path / "user"
    user.mkdir()
    (user / "main.py").write_text("x")
    foreign_manifest = tmp_path / "foreign"
    foreign_manifest.mkdir()
    (foreign_manifest / "manifest.json").write_text('{"name": "my web app"}')  # a manifest, not ours
    cam_only = tmp_path / "cam_only"
    (cam_only / "cam").mkdir(parents=True)
    save_json(cam_only / "cam" / "cam.json", {"featuremaps": "0.1.0"})
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    os.symlink(own, tmp_path / "link")
    assert made_by_featuremaps(own) and made_by_featuremaps(cam_only) and made_by_featuremaps(tmp_path / "empty")
    for name in ("user", "foreign", "file", "link", "absent"):
        assert not made_by_featuremaps(tmp_path / name), name


def test_atomic_dir_refuses_a_users_folder(tmp_path):
    user = tmp_path / "src"
    user.mkdir()
    (user / "main.py").write_text("print('hi')")
    with pytest.raises(UserError, match="featuremaps replaces only its own output folders") as e:
        with atomic_dir(user) as d:
            (d / "x").write_text("1")
    assert "\n" not in str(e.value)
    assert _tree(tmp_path) == ["src", "src/main.py"]  # untouched, no temp folder left
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match="is a file"), atomic_dir(tmp_path / "f"):
        pass
    assert (tmp_path / "f").read_text() == "mine"


def test_atomic_dir_refuses_the_current_folder(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for p in (".", "..", str(work)):
        with pytest.raises(UserError, match="current folder"), atomic_dir(p):
            pass
    assert work.is_dir()


def test_concurrent_commits_of_one_folder_all_succeed(tmp_path):
    out = tmp_path / "img"
    n, errors = 8, []
    barrier = threading.Barrier(n)

    def commit(i):
        try:
            with atomic_dir(out) as d:
                save_json(d / "manifest.json", {"featuremaps": "test", "writer": i})
                barrier.wait()  # all commit at the same instant
        except Exception as e:  # pragma: no cover - the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _tree(tmp_path) == ["img", "img/manifest.json"]  # one whole folder, no .old or .tmp left
    assert json.loads((out / "manifest.json").read_text())["writer"] in range(n)


def test_unique_names():
    assert unique_names(["a_b", "a_b", "A_B", "c"]) == ["a_b", "a_b-2", "A_B-3", "c"]
    assert output_names(["x.png", "d/x.jpg", "a b.png", "a_b.png", "e/x.png"]) == [
        "x",
        "x_jpg",
        "a_b",
        "a_b_png",
        "x_png",
    ]


def test_long_file_name_temp_name_fits(tmp_path):
    long = tmp_path / ("n" * 250)
    with atomic_dir(long) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})
    assert long.is_dir()


# ------------------------------------------------------------------ the commands
SHOW = ["--layers", "all", "--maps", "2"]


def test_show_never_replaces_a_users_folder(tmp_path, tiny_model, capsys):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "main.py").write_text("x")
    img = _png(proj / "src.png")
    rc = main(["show", str(img), "--model", str(tiny_model), "--out", str(proj), *SHOW])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "featuremaps replaces only its own output folders" in err
    assert (proj / "src" / "main.py").read_text() == "x"
    assert _tree(proj) == ["src", "src.png", "src/main.py"]


def test_show_into_the_input_folder_is_refused(tmp_path, tiny_model, monkeypatch, capsys):
    photos = tmp_path / "photos"
    img = _png(photos / "photos.png")
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(img), "--model", str(tiny_model), "--out", ".", *SHOW]) == 2
    assert _tree(photos) == ["photos.png"]
    monkeypatch.chdir(photos)
    assert main(["show", "photos.png", "--model", str(tiny_model), "--out", "..", *SHOW]) == 2
    assert _tree(photos) == ["photos.png"]
    assert "current folder" in capsys.readouterr().err


def test_show_replaces_its_own_folder_and_keeps_cam(tmp_path, tiny_model):
    img = _png(tmp_path / "cat.png")
    out = tmp_path / "out"
    assert main(["cam", str(img), "--model", str(tiny_model), "--out", str(out)]) == 0
    assert main(["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    assert main(["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    assert (out / "cat" / "manifest.json").is_file() and (out / "cat" / "cam" / "cam.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["cat"]


def test_cam_never_writes_into_a_users_folder(tmp_path, tiny_model):
    (tmp_path / "out" / "cat" / "cam").mkdir(parents=True)
    (tmp_path / "out" / "cat" / "cam" / "notes.txt").write_text("mine")
    img = _png(tmp_path / "cat.png")
    assert main(["cam", str(img), "--model", str(tiny_model), "--out", str(tmp_path / "out")]) == 2
    assert _tree(tmp_path / "out") == ["cat", "cat/cam", "cat/cam/notes.txt"]


def test_same_stem_images_get_their_own_folders(tmp_path, tiny_model, capsys):
    imgs = [
        _png(tmp_path / "x.png", 1),
        _png(tmp_path / "x.jpg", 2),
        _png(tmp_path / "a b.png", 3),
        _png(tmp_path / "a_b.png", 4),
    ]
    out = tmp_path / "out"
    assert main(["show", *map(str, imgs), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["a_b", "a_b_png", "x", "x_jpg"]
    seen = {json.loads((out / f / "manifest.json").read_text())["image"] for f in folders}
    assert seen == {str(p) for p in imgs}  # each folder holds its own image
    assert main(["cam", *map(str, imgs), "--model", str(tiny_model), "--out", str(out)]) == 0
    cams = {json.loads((out / f / "cam" / "cam.json").read_text())["image"] for f in folders}
    assert cams == {str(p) for p in imgs}


def test_layers_with_the_same_safe_name_keep_both_maps(tmp_path, tiny_model):
    img = _png(tmp_path / "cat.png")
    out = tmp_path / "out"
    assert main(["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    man = json.loads((out / "cat" / "manifest.json").read_text())
    keys = [la["npz_key"] for la in man["layers"]]
    assert [la["name"] for la in man["layers"]] == ["a>b", "a_b"] and len(set(keys)) == 2
    with np.load(out / "cat" / "activations.npz") as z:
        assert z[keys[0]].shape[-1] == 2 and z[keys[1]].shape[-1] == 2
        assert not np.array_equal(z[keys[0]], z[keys[1]])


@pytest.fixture
def atlas_data(tmp_path):
    root = tmp_path / "data"
    for i, cls in enumerate(("dark", "light")):
        for j in range(2):
            _png(root / cls / f"{j}.png", 10 * i + j, size=(16, 16))
    return root


def test_atlas_never_replaces_a_users_folder(tmp_path, tiny_model, atlas_data, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    assert main([*args, "--out", str(out)]) == 2
    assert _tree(out) == ["thesis.tex"]
    assert "featuremaps replaces only its own output folders" in capsys.readouterr().err
    fresh = tmp_path / "atlas"
    assert main([*args, "--out", str(fresh)]) == 0
    assert main([*args, "--out", str(fresh)]) == 0  # its own folder: replaced
    meta = json.loads((fresh / "atlas.json").read_text())
    assert len({la["npz_prefix"] for la in meta["layers"]}) == 2  # "a>b" and "a_b" keep their own arrays
    with np.load(fresh / "atlas.npz") as z:
        assert all(f"{la['npz_prefix']}/means" in z for la in meta["layers"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_atlas_read_only_own_folder(tmp_path, tiny_model, atlas_data):
    out = tmp_path / "atlas"
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    assert main([*args, "--out", str(out)]) == 0
    out.chmod(0o555)
    try:
        assert main([*args, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
