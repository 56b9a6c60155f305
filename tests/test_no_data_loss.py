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
def test_atlas_read_only_own_folder(tmp_path, tiny_model, atlas_data, capsys):
    out = tmp_path / "atlas"
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    assert main([*args, "--out", str(out)]) == 0
    before = _tree(out)
    out.chmod(0o555)
    try:
        assert main([*args, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err[-1] == f"featuremaps: error: output folder {out} is not writable; choose another with --out", err
    assert _tree(out) == before


def test_atlas_refuses_a_read_only_users_folder_even_as_root(tmp_path, tiny_model, atlas_data, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    out.chmod(0o555)  # root may write here anyway: the folder is refused for being the user's, not for its mode
    try:
        args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
        assert main([*args, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "a folder featuremaps did not make" in err[0], err
    assert _tree(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "years of work"


def test_atlas_out_current_folder_is_one_line(tmp_path, tiny_model, atlas_data, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    assert main([*args, "--out", "."]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "is the current folder or holds it" in err[0], err
    assert _tree(work) == ["notes.txt"]


def test_atlas_unwritable_out_fails_before_any_work(tmp_path, tiny_model, atlas_data, monkeypatch, capsys):
    import featuremaps.models as fm_models

    loads = []
    monkeypatch.setattr(fm_models, "load", lambda *a, **k: loads.append(a))
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    assert main([*args, "--out", "/proc/featuremaps-atlas"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("featuremaps: error: cannot write into /proc/featuremaps-atlas"), err
    assert loads == []  # refused before the model was loaded, let alone the dataset read


def test_show_out_current_folder_one_line_per_call(tmp_path, tiny_model, monkeypatch, capsys):
    photos = tmp_path / "photos"
    img = _png(photos / "photos.png")
    cases = [
        (tmp_path, ["show", str(img), "--out", "."], "photos is a folder featuremaps did not make"),
        (photos, ["show", "photos.png", "--out", ".."], "is the current folder or holds it"),
        (photos, ["show", "photos.png", "--out", str(tmp_path)], "is the current folder or holds it"),
    ]
    for cwd, argv, match in cases:
        monkeypatch.chdir(cwd)
        assert main([*argv, "--model", str(tiny_model), *SHOW]) == 2, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("featuremaps: error: ") and match in err[0], (argv, err)
        assert _tree(photos) == ["photos.png"]


def test_same_stem_images_stdout_names_distinct_folders(tmp_path, tiny_model, capsys):
    imgs = [_png(tmp_path / "x.png", 1), _png(tmp_path / "x.jpg", 2)]
    out = tmp_path / "out"
    for cmd, shown in ((["show", *SHOW], "overview.png"), (["cam"], "cam/panel.png")):
        capsys.readouterr()
        assert main([cmd[0], *map(str, imgs), "--model", str(tiny_model), "--out", str(out), *cmd[1:]]) == 0
        lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(str(tmp_path / "x."))]
        named = [ln.split(": ", 1)[1].split()[0] for ln in lines]
        assert named == [str(out / "x" / shown), str(out / "x_jpg" / shown)], lines  # one folder each


def test_cam_never_writes_into_a_users_folder_without_cam(tmp_path, tiny_model, capsys):
    (tmp_path / "out" / "cat").mkdir(parents=True)
    (tmp_path / "out" / "cat" / "main.py").write_text("print('mine')")
    img = _png(tmp_path / "cat.png")
    assert main(["cam", str(img), "--model", str(tiny_model), "--out", str(tmp_path / "out")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "featuremaps replaces only its own output folders" in err[0], err
    assert _tree(tmp_path / "out") == ["cat", "cat/main.py"]


def test_compare_never_replaces_a_users_folder(tmp_path, tiny_model, capsys):
    img = _png(tmp_path / "cat.png")
    out = tmp_path / "out"
    (out / "compare_cat").mkdir(parents=True)
    (out / "compare_cat" / "draft.md").write_text("mine")
    argv = ["compare", str(img), "--models", str(tiny_model), "--rows", "1", "--maps", "1", "--out", str(out)]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "featuremaps replaces only its own output folders" in err[0], err
    assert _tree(out) == ["compare_cat", "compare_cat/draft.md"]
    (out / "compare_cat" / "draft.md").unlink()
    assert main(argv) == 0 and main(argv) == 0  # empty, then its own: replaced
    assert (out / "compare_cat" / "compare.json").is_file()


def test_compare_classes_never_replaces_a_users_folder(tmp_path, capsys):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    c = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c")(x)
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(c))
    model = tmp_path / "m.keras"
    keras.Model(x, y).save(model)
    faces = [_png(tmp_path / "in" / f"{n}.png", i, size=(16, 16)) for i, n in enumerate(("happy", "sad"))]
    out = tmp_path / "out"
    (out / "compare-classes").mkdir(parents=True)
    (out / "compare-classes" / "index.html").write_text("<p>my page</p>")
    argv = ["compare-classes", *map(str, faces), "--model", str(model), "--maps", "1", "--out", str(out)]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "featuremaps replaces only its own output folders" in err[0], err
    assert _tree(out) == ["compare-classes", "compare-classes/index.html"]
    assert (out / "compare-classes" / "index.html").read_text() == "<p>my page</p>"


# ------------------------------------------------------------------ files written one by one: report, evaluate, train
def test_report_never_overwrites_a_users_html(tmp_path, tiny_model, capsys):
    from featuremaps.io import PAGE_HEAD_BYTES, PAGE_MARK

    img = _png(tmp_path / "cat.png")
    mine = tmp_path / "mine.html"
    mine.write_text("<html><body>my notes</body></html>")
    argv = ["report", str(img), "--model", str(tiny_model), "--method", "none", "--maps", "1"]
    assert main([*argv, "--out", str(mine)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "featuremaps replaces only its own pages" in err[0] and "mine.html" in err[0], err
    assert mine.read_text() == "<html><body>my notes</body></html>"
    assert _tree(tmp_path) == ["cat.png", "mine.html"]  # no temp file left
    ours = tmp_path / "report.html"
    assert main([*argv, "--out", str(ours)]) == 0
    assert PAGE_MARK.search(ours.read_bytes()[:PAGE_HEAD_BYTES])  # the mark, early in the <head>
    os.utime(ours, (0, 0))
    assert main([*argv, "--out", str(ours)]) == 0  # its own page: replaced
    assert ours.stat().st_mtime > 0 and PAGE_MARK.search(ours.read_bytes()[:PAGE_HEAD_BYTES])
    os.symlink(ours, tmp_path / "link.html")
    assert main([*argv, "--out", str(tmp_path / "link.html")]) == 2
    assert "is a link" in capsys.readouterr().err


def test_a_report_written_before_the_mark_is_still_recognised(tmp_path):
    from featuremaps.io import made_by_featuremaps_page

    old = tmp_path / "old.html"
    old.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width,initial-scale=1"><title>featuremaps report: vgg16</title></head></html>'
    )
    other = tmp_path / "other.html"
    other.write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Mine</title></head>')
    os.mkfifo(tmp_path / "fifo.html")
    assert made_by_featuremaps_page(old)
    assert not made_by_featuremaps_page(other) and not made_by_featuremaps_page(tmp_path / "fifo.html")


def test_evaluate_writes_only_into_its_own_or_a_new_folder(tmp_path, capsys):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"accuracy": 0.93, "note": "my paper"}')
    (mine / "confusion_PrivateTest.png").write_bytes(b"my figure")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    # refused before the data or the model are read (the data path does not even exist)
    assert main(["evaluate", "--data", str(tmp_path / "none.tar.gz"), "--out", str(mine)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "a folder featuremaps did not make" in err[0], err
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", "--data", str(tmp_path / "none.tar.gz"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    # its own output (metrics.json with a "featuremaps" key), an empty folder, a new one: on to the data
    own = tmp_path / "own"
    own.mkdir()
    save_json(own / "metrics.json", {"featuremaps": "0.1.0", "model": "emotion"})
    (tmp_path / "empty").mkdir()
    for out in (own, tmp_path / "empty", tmp_path / "new"):
        assert main(["evaluate", "--data", str(tmp_path / "none.tar.gz"), "--out", str(out)]) == 2
        assert "none.tar.gz does not exist" in capsys.readouterr().err


def test_evaluate_output_is_marked_and_rewritten(tmp_path, capsys):
    from test_train import _tiny_folder

    data = _tiny_folder(tmp_path / "fer", per_class=1)
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(data), "--split", "PrivateTest", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["featuremaps"]
    assert main(argv) == 0  # its own folder: written again
    assert sorted(p.name for p in out.iterdir()) == ["confusion_PrivateTest.png", "metrics.json"]


def test_train_refuses_a_users_non_empty_folder(tmp_path, capsys):
    from featuremaps.emotion.train import _run_leftovers

    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(mine), "--epochs", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "not a featuremaps training run" in err[0], err
    assert _tree(mine) == ["notes.txt"]
    logs = tmp_path / "logs"  # a user's folder holding only a file named as a run's: not a run's
    logs.mkdir()
    (logs / "log.csv").write_text("epoch,my own numbers\n")
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(logs), "--epochs", "1"]) == 2
    assert "not a featuremaps training run" in capsys.readouterr().err
    assert (logs / "log.csv").read_text() == "epoch,my own numbers\n"
    killed = tmp_path / "killed"  # a run killed before its first checkpoint: its mark and its own files
    (killed / "maps").mkdir(parents=True)
    (killed / "run.json").write_text('{"featuremaps": "0.1.0"}')
    (killed / "log.csv").write_text("epoch,accuracy\n0,0.1\n")
    (killed / ".featuremaps-1-abc123def456.last.keras.tmp").write_bytes(b"x")
    assert _run_leftovers(killed) and not _run_leftovers(mine) and not _run_leftovers(logs)
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(killed), "--epochs", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err  # accepted as its own: on to the data


# ------------------------------------------------- part 2: a re-run replaces only what featuremaps wrote
def _note(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("featuremaps: note: kept")]
    assert len(lines) == 1, err
    return lines[0]


def test_an_input_kept_in_its_result_folder_survives_a_rerun(tmp_path, tiny_model, capsys):
    img = _png(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert main(["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    kept = out / "photo" / "photo.png"
    kept.write_bytes(img.read_bytes())
    capsys.readouterr()
    assert main(["show", str(kept), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    assert kept.read_bytes() == img.read_bytes()
    assert "photo.png" in _note(capsys.readouterr().err)
    assert (out / "photo" / "overview.png").is_file()
    assert json.loads((out / "photo" / "manifest.json").read_text())["image"] == str(kept)
    assert sorted(p.name for p in out.iterdir()) == ["photo"]  # no temporary entry left


def test_an_input_featuremaps_wrote_in_the_folder_it_replaces_is_refused(tmp_path, tiny_model, capsys):
    out = tmp_path / "out"
    assert main(["show", str(_png(tmp_path / "in" / "input.png")), "--model", str(tiny_model), "--out", str(out)]) == 0
    own_input = out / "input" / "input.png"  # the picture featuremaps wrote, then shown again into its own folder
    before = own_input.read_bytes()
    capsys.readouterr()
    assert main(["show", str(own_input), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "is both an input and a file featuremaps wrote" in err[0], err
    assert own_input.read_bytes() == before


def test_a_users_files_in_result_folders_are_kept(tmp_path, tiny_model, atlas_data, capsys):
    img = _png(tmp_path / "photo.png")
    out = tmp_path / "out"
    show = ["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]
    cam = ["cam", str(img), "--model", str(tiny_model), "--out", str(out)]
    assert main(show) == 0 and main(cam) == 0
    mine = {
        out / "photo" / "notes.txt": "show notes",
        out / "photo" / "layers" / "todo.md": "a layer's note",
        out / "photo" / "cam" / "notes.txt": "cam notes",
        out / "photo" / "drafts" / "fig.svg": "<svg/>",
    }
    for p, text in mine.items():
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
    capsys.readouterr()
    assert main(show) == 0
    assert "notes.txt" in _note(capsys.readouterr().err)
    assert main(cam) == 0
    assert "notes.txt" in _note(capsys.readouterr().err)
    assert main(show) == 0
    for p, text in mine.items():
        assert p.read_text() == text, p
    assert (out / "photo" / "cam" / "cam.json").is_file() and (out / "photo" / "overview.png").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["photo"]
    args = ["atlas", "--data", str(atlas_data), "--model", str(tiny_model), "--classes", "dark,light"]
    atlas = tmp_path / "atlas"
    assert main([*args, "--out", str(atlas)]) == 0
    (atlas / "notes.txt").write_text("atlas notes")
    capsys.readouterr()
    assert main([*args, "--out", str(atlas)]) == 0
    assert "notes.txt" in _note(capsys.readouterr().err)
    assert (atlas / "notes.txt").read_text() == "atlas notes" and (atlas / "atlas.json").is_file()


def test_the_files_featuremaps_wrote_are_replaced_and_listed(tmp_path, tiny_model):
    img = _png(tmp_path / "photo.png")
    out = tmp_path / "out"
    argv = ["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]
    assert main(argv) == 0
    written = json.loads((out / "photo" / "manifest.json").read_text())["written"]
    assert "overview.png" in written and "layers/C01_a_b.png" in written and "manifest.json" not in written
    assert written["overview.png"] == (out / "photo" / "overview.png").stat().st_size
    assert main([*argv[:-4], "--layers", "C01", "--maps", "2"]) == 0  # fewer layers: the old layer PNGs go
    assert sorted(p.name for p in (out / "photo" / "layers").iterdir()) == ["C01_a_b.png"]


def test_a_copied_manifest_does_not_make_a_users_folder_featuremaps(tmp_path, tiny_model, capsys):
    img = _png(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert main(["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]) == 0
    mine = tmp_path / "mine"
    (mine / "photo").mkdir(parents=True)
    (mine / "photo" / "thesis.tex").write_text("years of work")
    (mine / "photo" / "overview.png").write_bytes(b"my own figure")  # a name featuremaps writes, not its file
    (mine / "photo" / "manifest.json").write_bytes((out / "photo" / "manifest.json").read_bytes())
    legacy = json.loads((out / "photo" / "manifest.json").read_text())
    del legacy["written"]
    (mine / "legacy").mkdir()
    (mine / "legacy" / "thesis.tex").write_text("years of work")
    save_json(mine / "legacy" / "manifest.json", legacy)
    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    for name in ("photo", "legacy"):
        photo = _png(tmp_path / "in" / f"{name}.png")
        assert main(["show", str(photo), "--model", str(tiny_model), "--out", str(mine), *SHOW]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "a folder featuremaps did not make" in err[0], err
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_a_changed_file_of_the_same_name_is_refused_and_kept(tmp_path, tiny_model, capsys):
    img = _png(tmp_path / "photo.png")
    out = tmp_path / "out"
    argv = ["show", str(img), "--model", str(tiny_model), "--out", str(out), *SHOW]
    assert main(argv) == 0
    (out / "photo" / "overview.png").write_bytes(b"annotated by hand")  # no longer the file featuremaps wrote
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "overview.png is not a file featuremaps wrote" in err[0], err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["photo"]


def test_a_folder_written_before_manifests_listed_files(tmp_path):
    old = tmp_path / "photo"
    (old / "layers").mkdir(parents=True)
    save_json(old / "manifest.json", {"featuremaps": "0.1.0", "layers": [{"png": "layers/C01_conv.png"}]})
    for name in ("overview.png", "input.png", "activations.npz", "layers/C01_conv.png"):
        (old / name).write_bytes(b"x")
    (old / "notes.txt").write_text("mine")
    (old / "layers" / "C09_mine.png").write_bytes(b"not named by the manifest")
    kept = []
    with atomic_dir(old, kept=kept) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})
        (d / "overview.png").write_bytes(b"new")
    assert sorted(kept) == ["layers/C09_mine.png", "notes.txt"]
    assert _tree(old) == ["layers", "layers/C09_mine.png", "manifest.json", "notes.txt", "overview.png"]
    assert (old / "overview.png").read_bytes() == b"new"


def test_only_featuremaps_temp_entries_are_swept(tmp_path):
    import subprocess
    import sys

    from featuremaps.io import TEMP_PATTERN, sweep_stale

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has ended
    (tmp_path / ".photos.backup2.tmp").mkdir()
    (tmp_path / ".photos.backup2.tmp" / "img.jpg").write_bytes(b"photo")
    (tmp_path / ".thesis.backup1.tmp").write_text("draft")
    (tmp_path / ".notes.abcdef.tmp").write_text("a name featuremaps used to give its temporary files")
    ours = tmp_path / f".featuremaps-{dead}-0123456789ab.photo.tmp"
    ours.mkdir()
    (ours / "overview.png").write_bytes(b"half")
    mine_running = tmp_path / f".featuremaps-{os.getpid()}-0123456789ab.x.tmp"  # a live process's: left alone
    mine_running.write_bytes(b"x")
    for p in tmp_path.iterdir():
        os.utime(p, (0, 0))  # all of them long unmodified
    assert TEMP_PATTERN.match(ours.name) and not TEMP_PATTERN.match(".thesis.backup1.tmp")
    assert sweep_stale(tmp_path) == [ours]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".photos.backup2.tmp", ".thesis.backup1.tmp", ".notes.abcdef.tmp", mine_running.name]
    )
    assert (tmp_path / ".photos.backup2.tmp" / "img.jpg").read_bytes() == b"photo"


def test_a_killed_commit_loses_no_users_file(tmp_path):
    """A run killed between the swap and the retiring of the old folder: the next sweep deletes only
    featuremaps' files of the old folder and moves the user's into the result folder."""
    import subprocess
    import sys

    from featuremaps.io import sweep_stale

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    result = tmp_path / "photo"
    with atomic_dir(result) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})
        (d / "overview.png").write_bytes(b"new")
    old = tmp_path / f".featuremaps-{dead}-0123456789ab.photo.old"
    with atomic_dir(old) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})
        (d / "overview.png").write_bytes(b"old")
    (old / "notes.txt").write_text("mine")
    os.utime(old, (0, 0))
    assert sweep_stale(tmp_path) == [old]
    assert _tree(tmp_path) == ["photo", "photo/manifest.json", "photo/notes.txt", "photo/overview.png"]
    assert (result / "overview.png").read_bytes() == b"new" and (result / "notes.txt").read_text() == "mine"


def test_many_concurrent_commits_none_refused_and_the_users_file_kept(tmp_path):
    out = tmp_path / "img"
    with atomic_dir(out) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})
    (out / "notes.txt").write_text("mine")
    n, rounds, errors = 6, 40, []
    barrier = threading.Barrier(n)

    def commit(i):
        for r in range(rounds):
            try:
                with atomic_dir(out) as d:
                    save_json(d / "manifest.json", {"featuremaps": "test", "writer": i, "round": r})
                    (d / "overview.png").write_bytes(bytes(i + r))
                    barrier.wait()  # all commit at the same instant
            except Exception as e:  # pragma: no cover - the assertion below names it
                errors.append(e)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _tree(tmp_path) == ["img", "img/manifest.json", "img/notes.txt", "img/overview.png"]
    assert (out / "notes.txt").read_text() == "mine"
