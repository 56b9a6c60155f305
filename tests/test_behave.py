"""Commands that behave alike (issue 12) and bad input ending in one line (issue 11), through ``cli.main``.

Batches skip an unusable image with a warning on its own line and go on (exit 1), nothing usable is exit 2;
progress draws a bar only on a terminal; every option shows its help and default; random weights are said.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps.cli import main
from featuremaps.cli.options import build_parser
from featuremaps.cli.progress import Batch, Progress
from featuremaps.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_file):
    import keras

    d = tmp_path_factory.mktemp("behave_models")
    shutil.copy(tiny_file, d / "tiny.keras")
    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    # 1000 classes, as an ImageNet head: cam --all-classes must stay bounded
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="k1")(x)
    z = keras.layers.Dense(1000)(keras.layers.GlobalAveragePooling2D()(h))
    keras.Model(x, z, name="wide").save(d / "wide.keras")
    return d


def _png(path: Path, shape=(20, 20, 3), value=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = (
        np.full(shape, value, np.uint8)
        if value is not None
        else np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    )
    Image.fromarray(a).save(path)
    return path


def _err_lines(capsys) -> tuple[str, list[str]]:
    cap = capsys.readouterr()
    return cap.out, [ln for ln in cap.err.splitlines() if ln.strip()]


def _folder_with_bad_images(root: Path) -> Path:
    src = root / "imgs"
    _png(src / "a_good.png")
    (src / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "c_empty.png").write_bytes(b"")
    os.mkfifo(src / "d_fifo.png")
    _png(src / "e_good.png", value=90)
    return src


# ---------------------------------------------------------------- 1. batches never stop on one image
def test_show_batch_skips_unusable_images_and_exits_1(models_dir, tmp_path, capsys):
    src = _folder_with_bad_images(tmp_path)
    out = tmp_path / "out"
    rc = main(["show", str(src / "a_good.png"), str(src / "b_broken.png"), str(src / "c_empty.png"),
               str(src / "d_fifo.png"), str(src / "e_good.png"),
               "--model", str(models_dir / "tiny.keras"), "--out", str(out), "--no-layer-pngs"])  # fmt: skip
    assert rc == 1
    stdout, err = _err_lines(capsys)
    skipped = [ln for ln in err if ln.startswith("featuremaps: warning: skipped")]
    assert len(skipped) == 3, err
    assert "b_broken.png" in skipped[0] and "not an image Pillow can read" in skipped[0]
    assert "c_empty.png" in skipped[1]
    assert "d_fifo.png" in skipped[2] and "not a regular file" in skipped[2]  # a FIFO never blocks
    assert err[-1] == "featuremaps: skipped 3 of 5 images; the other 2 are done"
    assert all("\r" not in ln for ln in err)  # not a terminal: no bar, no carriage returns
    assert sorted(p.name for p in out.iterdir()) == ["a_good", "e_good"]
    assert (out / "e_good" / "overview.png").is_file() and "e_good" in stdout


def test_show_batch_nothing_usable_exits_2(models_dir, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "x.png").write_bytes(b"nope")
    (src / "y.png").write_bytes(b"nope either")
    out = tmp_path / "out"
    assert main(["show", str(src), "--model", str(models_dir / "tiny.keras"), "--out", str(out)]) == 2
    _, err = _err_lines(capsys)
    assert err[-1] == "featuremaps: error: none of the 2 images could be used (reasons above)"
    assert not out.exists() or list(out.iterdir()) == []


def test_slivers_are_drawn(models_dir, tmp_path, capsys):
    for shape in ((3, 300, 3), (300, 3, 3), (1, 1, 3)):
        img = _png(tmp_path / f"s{shape[0]}x{shape[1]}.png", shape)
        argv = ["show", str(img), "--model", str(models_dir / "tiny.keras"), "--no-layer-pngs"]
        assert main([*argv, "--out", str(tmp_path / "out")]) == 0, shape


def test_show_emotion_model_skips_faceless_photo(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (src / name).write_bytes((ROOT / "examples" / name).read_bytes())
    out = tmp_path / "out"
    rc = main(["show", str(src), "--out", str(out), "--layers", "C1", "--maps", "2", "--no-layer-pngs"])
    assert rc == 1
    stdout, err = _err_lines(capsys)
    assert any("skipped" in ln and "chelsea.png" in ln and "no face found" in ln for ln in err), err
    assert sorted(p.name for p in out.iterdir()) == ["astronaut"]
    assert "predicted" in stdout


def test_readme_report_example_works_cat_gets_a_note(tmp_path, capsys):
    out = tmp_path / "report.html"
    rc = main(
        ["report", str(ROOT / "examples"), "--out", str(out), "--layers", "C1", "--maps", "2", "--method", "none"]
    )
    assert rc == 0
    html = out.read_text()
    assert "chelsea.png" in html and "astronaut.png" in html
    assert "No face found in chelsea.png: the whole image was fed" in html
    _, err = _err_lines(capsys)
    assert not any("error" in ln for ln in err)


def test_report_skips_unreadable_image_and_lists_it(models_dir, tmp_path, capsys):
    src = tmp_path / "imgs"
    _png(src / "a.png")
    (src / "b.png").write_bytes(b"junk")
    out = tmp_path / "r.html"
    rc = main(["report", str(src), "--model", str(models_dir / "tiny.keras"), "--out", str(out), "--method", "none"])
    assert rc == 1
    _, err = _err_lines(capsys)
    assert any(ln.startswith("featuremaps: warning: skipped") and "b.png" in ln for ln in err), err
    html = out.read_text()
    assert "1 image(s) left out" in html and "b.png" in html


def test_report_size_cap_skips_the_rest_and_says_so(models_dir, tmp_path, capsys):
    src = tmp_path / "imgs"
    for i in range(3):
        _png(src / f"im{i}.png", value=40 * i)
    out = tmp_path / "r.html"
    argv = ["report", str(src), "--model", str(models_dir / "tiny.keras"), "--out", str(out), "--method", "none"]
    assert main([*argv, "--max-mb", "0.001"]) == 1
    _, err = _err_lines(capsys)
    assert sum("MB cap" in ln for ln in err) == 2  # the first image always goes in
    assert out.read_text().count('<section class="image"') == 1


def test_report_cam_is_a_deprecated_alias_of_method(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    out = tmp_path / "r.html"
    assert (
        main(["report", str(img), "--model", str(models_dir / "tiny.keras"), "--out", str(out), "--cam", "none"]) == 0
    )
    _, err = _err_lines(capsys)
    assert any("--cam is deprecated; use --method" in ln for ln in err)
    assert "CAM overlays turned off" in out.read_text()


# ---------------------------------------------------------------- 2. progress
def test_progress_plain_lines_off_a_terminal():
    s = io.StringIO()
    p = Progress("show ", stream=s, every=0.0)
    for i in range(3):
        p(i, 3, Path(f"im{i}.png"))
    p(3, 3)
    text = s.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines()[-1].startswith("show: 3/3 done in")


def test_progress_warning_on_a_fresh_line_on_a_terminal():
    s = io.StringIO()
    p = Progress("cam ", stream=s, tty=True)
    p(1, 4, Path("a.png"))
    p.warn("skipped b.png: no face")
    text = s.getvalue()
    assert "\r\x1b[K" + "featuremaps: warning: skipped b.png: no face\n" in text  # the bar's line cleared first
    assert text.rstrip("\n").endswith("a.png".ljust(41))  # the bar redrawn under the warning


def test_progress_escapes_control_characters_in_names():
    s = io.StringIO()
    Progress(stream=s).warn("skipped evil\x1b[31m\nname.png")
    assert s.getvalue() == "featuremaps: warning: skipped evil\\x1b[31m\\nname.png\n"


def test_batch_single_item_reraises():
    b = Batch("x ", progress=Progress(stream=io.StringIO()))
    with pytest.raises(UserError):
        b.run([1], lambda i: (_ for _ in ()).throw(UserError("bad")))


# ---------------------------------------------------------------- 3. compare
def test_compare_folder_is_one_line(tmp_path, capsys):
    _png(tmp_path / "imgs" / "a.png")
    out = tmp_path / "out"
    assert main(["compare", str(tmp_path / "imgs"), "--models", "vgg16", "--weights", "none", "--out", str(out)]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "compare takes one image" in err[0] and "is a folder" in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_compare_face_crops_for_emotion_and_weights_only_for_applications(tmp_path, capsys):
    from featuremaps import models
    from featuremaps.compare import run_model
    from featuremaps.images import load_image
    from featuremaps.pipeline import prepare

    out = tmp_path / "out"
    astro = ROOT / "examples" / "astronaut.png"
    argv = ["compare", str(astro), "--models", "emotion", "--weights", "none", "--rows", "2", "--maps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    man = json.loads((out / "compare_astronaut" / "compare.json").read_text())
    m = man["models"][0]
    assert m["random_weights"] is False and "bundled" in m["source"]  # --weights none left it trained
    assert m["prediction"] and m["prediction"][0]["class"] == "happy"  # the face, not the whole photo
    lm = models.load("emotion")
    rgb = load_image(astro)
    np.testing.assert_array_equal(run_model(lm, rgb, 2).shown, prepare(lm, rgb).shown)  # exactly like show


@pytest.mark.slow
def test_compare_random_weights_said_in_title(tmp_path, capsys):
    out = tmp_path / "out"
    img = _png(tmp_path / "cat.png", (64, 64, 3))
    argv = ["compare", str(img), "--models", "mobilenetv2", "--weights", "none", "--rows", "2", "--maps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    man = json.loads((out / "compare_cat" / "compare.json").read_text())
    assert man["models"][0]["random_weights"] is True and man["models"][0]["prediction"] == []
    assert "mobilenetv2 (random weights)" in (out / "compare_cat" / "compare.html").read_text()


# ---------------------------------------------------------------- 4. random weights, many classes
def test_show_random_weights_no_prediction_and_said(tmp_path, capsys):
    img = _png(tmp_path / "face.png", (48, 48, 3))
    out = tmp_path / "out"
    argv = ["show", str(img), "--model", "emotion", "--weights", "none", "--layers", "C1", "--maps", "2"]
    assert main([*argv, "--out", str(out), "--no-layer-pngs"]) == 0
    stdout, _ = _err_lines(capsys)
    assert "predicted" not in stdout
    assert json.loads((out / "face" / "manifest.json").read_text())["prediction"] == []


def test_cam_all_classes_on_1000_classes_is_top_k_and_bounded(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "x.png", (16, 16, 3))
    out = tmp_path / "out"
    argv = ["cam", str(img), "--model", str(models_dir / "wide.keras"), "--all-classes", "--top-classes", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    stdout, err = _err_lines(capsys)
    assert "4 classes (the most probable of 1000)" in stdout
    folder = out / "x" / "cam"
    meta = json.loads((folder / "cam.json").read_text())
    probs = np.load(folder / "cam.npz")["probs"]
    want = sorted(np.argsort(-probs, kind="stable")[:4].tolist())
    assert sorted(m["class_index"] for m in meta["maps"]) == want
    assert len(list(folder.glob("gradcam_*_overlay.png"))) == 4
    with Image.open(folder / "panel.png") as im:
        assert im.width < 2000 and im.height < 2000
    assert any("maps: 4/4 done" in ln for ln in err)  # per-map progress, a map per class (plain line off a terminal)
    # default 10
    assert main([*argv[:-2], "--out", str(tmp_path / "o2")]) == 0
    assert len(json.loads((tmp_path / "o2" / "x" / "cam" / "cam.json").read_text())["maps"]) == 10


# ---------------------------------------------------------------- 5. names, help, defaults
def _subparsers():
    top = build_parser()
    sub = next(a for a in top._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_option_has_help_with_default_and_every_command_examples():
    for name, p in _subparsers().items():
        text = p.format_help()
        assert "examples:" in text and f"featuremaps {name}" in text.split("examples:")[1], name
        for a in p._actions:
            if a.help == "==SUPPRESS==" or a.dest == "help":
                continue
            assert a.help, f"{name} {a.option_strings or a.dest} has no help"
            if a.option_strings and a.default not in (None, False):
                assert "default" in (p._get_formatter()._get_help_string(a) or ""), (name, a.option_strings)


def test_one_name_per_idea():
    cmds = _subparsers()
    opts = {n: {o for a in p._actions for o in a.option_strings} for n, p in cmds.items()}
    assert "--method" in opts["cam"] and "--method" in opts["report"]
    assert "--split" in opts["atlas"] and "--split" in opts["evaluate"]
    assert "--limit-per-class" in opts["train"]
    assert all("--out" in o for n, o in opts.items() if n not in ("layers", "explore"))  # these two write no files


def test_no_development_path_default_for_fer(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FEATUREMAPS_FER2013", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["compare-classes", "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert err == ["featuremaps: error: no FER2013 data given; pass --data PATH (folder, CSV or .tar.gz) "
                   "or set FEATUREMAPS_FER2013"]  # fmt: skip
    monkeypatch.setenv("FEATUREMAPS_FER2013", str(tmp_path / "missing.tar.gz"))
    assert main(["compare-classes", "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "missing.tar.gz" in err[0]


def test_train_never_claims_files_it_did_not_write(tmp_path, monkeypatch, capsys):
    import featuremaps.emotion.train as emotion_train  # the CLI imports it once the backend is chosen

    def fake_train(data, out, **kw):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "log.csv").write_text("epoch\n")
        return {"best_val_accuracy": 0.5, "best_epoch": 1}

    monkeypatch.setattr(emotion_train, "train", fake_train)
    out = tmp_path / "run"
    assert main(["train", "--data", "x.tar.gz", "--out", str(out)]) == 0
    stdout, _ = _err_lines(capsys)
    assert "log.csv in" in stdout and "curves.png" not in stdout  # the fake run drew no curves: none claimed


# ---------------------------------------------------------------- issue 11: one line, exit 2
@pytest.mark.parametrize(
    "argv, match",
    [
        (["show", "{img}", "--cell", "100000"], "over the limit of 1024"),
        (["show", "{img}", "--maps", "100000"], "over the limit"),
        (["show", "{img}", "--select", "3,3,1"], "names channel F4 more than once"),
        (["show", "{img}", "--input-shape", "0,16,3"], "each size must be 1-8192"),
        (["show", "{img}", "--input-shape=-4,16,3"], "each size must be 1-8192"),
        (["show", "{img}", "--input-shape", "100000,16,3"], "each size must be 1-8192"),
        (["cam", "{img}", "--input-shape", "100000,16,3"], "each size must be 1-8192"),
        (["compare", "{img}", "--rows", "100000"], "over the limit of 64"),
        (["compare", "{img}", "--maps", "100000"], "over the limit of 64"),
        (["cam", "{img}", "--all-classes", "--top-classes", "500"], "over the limit of 20"),
        (["train", "--data", "x", "--lr", "nan"], "must be a number above 0"),
        (["train", "--data", "x", "--lr", "-1"], "must be a number above 0"),
        (["train", "--data", "x", "--width", "nan"], "must be a number above 0"),
        (["train", "--data", "x", "--width", "-2"], "must be a number above 0"),
        (["train", "--data", "x", "--seed", "-1"], "at least 0"),
        (["evaluate", "--data", "x", "--split", ","], "names no split"),
        (["evaluate", "{model}", "--data", "x"], "is not an emotion model"),
    ],
)
def test_bad_values_one_line_exit_2(models_dir, tmp_path, capsys, argv, match):
    import re

    img = _png(tmp_path / "a.png")
    fill = {"img": img, "model": models_dir / "tiny.keras"}
    argv = [a.format(**fill) for a in argv]
    if argv[0] in ("show", "cam") and "--model" not in argv:
        argv += ["--model", str(models_dir / "tiny.keras")]
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("featuremaps: error: ") and re.search(match, err[0]), err
    assert not out.exists()


def test_select_accepts_f_numbers(models_dir, tmp_path):
    img = _png(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = ["show", str(img), "--model", str(models_dir / "tiny.keras"), "--layers", "C1", "--select", "F2,F4"]
    assert main([*argv, "--out", str(out), "--no-layer-pngs"]) == 0
    assert json.loads((out / "a" / "manifest.json").read_text())["layers"][0]["channels"] == [1, 3]


def test_train_resume_with_cut_state_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text('{"epoch": 3, "reci')
    (run / "last.keras").write_bytes(b"PK")
    assert main(["train", "--data", "x", "--out", str(run), "--resume", "--epochs", "5"]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "state.json is damaged" in err[0]


def test_tiny_image_through_face_detector_is_one_line(tmp_path, capsys):
    img = _png(tmp_path / "tall.png", (30000, 3, 3), value=128)  # cv2.resize to 0 px wide crashed
    assert main(["show", str(img), "--out", str(tmp_path / "out"), "--layers", "C1"]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "no face found" in err[0]


def test_pixel_limit_message_has_real_numbers(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    assert main(["show", str(img), "--model", str(models_dir / "tiny.keras"), "--max-pixels", "100"]) == 2
    _, err = _err_lines(capsys)
    assert "is 20x20 = 400 pixels, over the 100 pixels limit" in err[0]


# ---------------------------------------------------------------- issue 11 part 5: SIGTERM, stale temp files
@pytest.mark.slow
def test_sigterm_mid_write_removes_temp_files_and_exits_143(models_dir, tmp_path):
    img = _png(tmp_path / "a.png")
    out = tmp_path / "out"
    code = (
        "import os, signal, sys\n"
        "import featuremaps.pipeline as pl\n"
        "real = pl.save_json\n"
        "def kill(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "pl.save_json = kill\n"
        "from featuremaps.cli import main\n"
        f"sys.exit(main(['show', {str(img)!r}, '--model', {str(models_dir / 'tiny.keras')!r}, "
        f"'--out', {str(out)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 143, r.stderr
    assert "featuremaps: terminated (SIGTERM); unfinished files removed" in r.stderr
    assert "Traceback" not in r.stderr
    assert list(out.iterdir()) == []  # the half-made image folder is gone, no .tmp left


def test_stale_temp_files_of_featuremaps_are_swept(models_dir, tmp_path):
    from featuremaps.io import sweep_stale

    out = tmp_path / "out"
    out.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    old_tmp = out / f".featuremaps-{dead}-0123456789ab.a.tmp"
    old_tmp.mkdir()
    (old_tmp / "overview.png").write_bytes(b"x" * 10)
    old_file = out / f".featuremaps-{dead}-abcdef012345.last.keras.tmp"
    old_file.write_bytes(b"x")
    fresh = out / f".featuremaps-{dead}-99aa99aa99aa.b.tmp"
    fresh.write_bytes(b"x")
    # a user's hidden entries, old-style featuremaps names included: never featuremaps' pattern now
    users = [out / ".hidden.tmp", out / "notes.k2j4h5g6.tmp", out / ".config", out / ".a.k2j4h5g6.tmp"]
    for u in users:
        u.write_text("mine")
    past = time.time() - 2 * 3600
    for p in (old_tmp, old_file, *users):
        os.utime(p, (past, past))
    assert sorted(p.name for p in sweep_stale(out)) == sorted(p.name for p in (old_tmp, old_file))
    assert fresh.exists() and all(u.exists() for u in users)  # young, or not named by featuremaps' pattern
    # and a command writing there sweeps them
    old_file.write_bytes(b"x")
    os.utime(old_file, (past, past))
    img = _png(tmp_path / "b.png")
    assert main(["show", str(img), "--model", str(models_dir / "tiny.keras"), "--out", str(out)]) == 0
    assert not old_file.exists() and fresh.exists()


# ---------------------------------------------------------------- issue 11 parts 2-4: more one-line cases
def _fer_csv(path: Path, rows: list[str], bom: bool = False, raw: bytes | None = None) -> Path:
    text = "emotion,pixels,Usage\n" + "".join(r + "\n" for r in rows)
    path.write_bytes(raw if raw is not None else (b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_fer_csv_bom_nan_non_utf8_and_huge_field(tmp_path):
    from featuremaps.emotion import data as fer

    px = " ".join(["7"] * 48 * 48)
    d = fer.load(_fer_csv(tmp_path / "bom.csv", [f"3,{px},Training"], bom=True))
    assert len(d["Training"]) == 1  # a BOM before the header is accepted
    nan = " ".join(["nan"] + ["7"] * (48 * 48 - 1))
    with pytest.raises(UserError, match="row 2: pixels include nan or inf"):
        fer.load(_fer_csv(tmp_path / "nan.csv", [f"3,{nan},Training"]))
    bad = b"emotion,pixels,Usage\n3,\xff\xfe,Training\n"
    with pytest.raises(UserError, match="is not UTF-8 text") as e:
        fer.load(_fer_csv(tmp_path / "latin.csv", [], raw=bad))
    assert "\n" not in str(e.value)
    huge = b'emotion,pixels,Usage\n3,"' + b"1 " * 100_000 + b'",Training\n'
    with pytest.raises(UserError, match="not a readable CSV") as e:
        fer.load(_fer_csv(tmp_path / "huge.csv", [], raw=huge))
    assert "\n" not in str(e.value)


def test_truncated_archive_blamed_on_the_archive(tmp_path):
    import tarfile

    from featuremaps.emotion import data as fer

    src = tmp_path / "fer2013" / "train" / "happy"
    src.mkdir(parents=True)
    for i in range(40):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)).save(src / f"{i}.png")
    arc = tmp_path / "fer.tar.gz"
    with tarfile.open(arc, "w:gz") as t:
        t.add(tmp_path / "fer2013", arcname="fer2013")
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot read the archive, it is truncated or corrupt") as e:
        fer.load(arc, skip_bad=True)
    assert "\n" not in str(e.value)


def test_messages_that_misled(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    tiny = str(models_dir / "tiny.keras")
    out = str(tmp_path / "out")
    cases = [
        (["show", str(img), "--model", tiny, "--layers", "C2-C1"], "is reversed; write it low to high: C1-C2"),
        (["show", str(img), "--model", tiny, "--classes", "a,b"], "names 2 classes but the model has 3 outputs"),
    ]
    h5 = tmp_path / "legacy.keras"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    cases.append((["show", str(img), "--model", str(h5)], "is an HDF5 (legacy .h5) model named .keras; rename it"))
    npz = tmp_path / "w.npz"
    npz.write_text("hello")
    cases.append((["show", str(img), "--model", "emotion", "--weights", str(npz)], "is not an .npz file"))
    for argv, match in cases:
        assert main([*argv, "--out", out]) == 2, argv
        _, err = _err_lines(capsys)
        assert len(err) == 1 and match in err[0], err
        assert "allow_pickle" not in err[0] and "File not found" not in err[0]


def test_newline_and_escapes_in_file_names_stay_on_one_line(models_dir, tmp_path, capsys):
    bad = tmp_path / "evil\n\x1b[31mname.png"
    bad.write_bytes(b"not an image")
    assert main(["show", str(bad), "--model", str(models_dir / "tiny.keras"), "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "\\n\\x1b[31mname.png" in err[0] and "\x1b" not in err[0]


def test_non_utf8_file_name_in_report(models_dir, tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: a lone surrogate in Python
    img = _png(tmp_path / name)
    out = tmp_path / "r.html"
    argv = ["report", str(img), "--model", str(models_dir / "tiny.keras"), "--method", "none"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "caf?.png" in out.read_text(encoding="utf-8")  # the undecodable byte shown as ?


def test_report_out_where_no_temp_file_can_be_made(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    argv = ["report", str(img), "--model", str(models_dir / "tiny.keras"), "--method", "none"]
    assert main([*argv, "--out", "/proc/featuremaps-report.html"]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("featuremaps: error: cannot write /proc/featuremaps-report.html")


def test_32_bit_tiff_keeps_its_range(tmp_path):
    from featuremaps.images import load_image

    a = np.array([[0, 1 << 20], [1 << 19, 1 << 20]] * 4, dtype=np.int32).repeat(4, 1)
    p = tmp_path / "i32.tif"
    Image.fromarray(a, mode="I").save(p)
    g = load_image(p)[..., 0]
    assert g.max() == 255 and 120 <= g[1, 0] <= 135 and g.min() == 0  # scaled by its max, not clipped


def test_forgotten_weights_none_fails_before_building_with_the_url(tmp_path, monkeypatch, capsys):
    from featuremaps.frameworks.keras import loaders

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(loaders, "reachable", lambda host, timeout=3.0: False)
    built = []
    monkeypatch.setattr(loaders.keras.applications, "VGG16", lambda **kw: built.append(kw))
    img = _png(tmp_path / "a.png")
    assert main(["show", str(img), "--model", "vgg16", "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "https://storage.googleapis.com/tensorflow/keras-applications/" in err[0]
    assert "--weights none" in err[0] and built == []


def test_250_character_file_names(models_dir, tmp_path, capsys):
    img = _png(tmp_path / ("y" * 251 + ".png"))
    tiny = str(models_dir / "tiny.keras")
    out = tmp_path / "out"
    assert main(["show", str(img), "--model", tiny, "--out", str(out), "--no-layer-pngs"]) == 0
    assert main(["compare", str(img), "--models", tiny, "--rows", "1", "--maps", "1", "--out", str(out)]) == 0
    assert main(["report", str(img), "--model", tiny, "--method", "none", "--out", str(tmp_path / "r.html")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["compare_" + "y" * 200, "y" * 200]


def test_overview_size_is_bounded(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    argv = ["show", str(img), "--model", str(models_dir / "tiny.keras"), "--maps", "1024", "--cell", "1024"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "Mpixels); lower --maps or --cell" in err[0]


def test_evaluate_refuses_imagenet_models_before_loading(tmp_path, capsys):
    assert main(["evaluate", "vgg16", "--data", str(tmp_path)]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "is an ImageNet model" in err[0] and "--weights" not in err[0]


def test_resume_trims_log_rows_written_after_the_last_checkpoint(tmp_path):
    from featuremaps.emotion.train import trim_log

    log = tmp_path / "log.csv"
    log.write_text("epoch,accuracy\n0,0.2\n1,0.3\n2,0.35\n")  # killed after epoch 3's row, before its checkpoint
    trim_log(log, 2)
    assert log.read_text() == "epoch,accuracy\n0,0.2\n1,0.3\n"
    trim_log(log, 2)
    assert log.read_text() == "epoch,accuracy\n0,0.2\n1,0.3\n"


def test_cam_random_weights_says_so(tmp_path, capsys):
    img = _png(tmp_path / "face.png", (48, 48, 3))
    out = tmp_path / "out"
    assert main(["cam", str(img), "--model", "emotion", "--weights", "none", "--out", str(out)]) == 0
    stdout, _ = _err_lines(capsys)
    assert "random weights: the class is arbitrary" in stdout and "p = " not in stdout
    meta = json.loads((out / "face" / "cam" / "cam.json").read_text())
    assert meta["model"]["random_weights"] is True and meta["prediction"] == []


# ---------------------------------------------------------------- audit of issue 11: more cases through main()
def _options_of(command: str) -> set[str]:
    return {o for a in _subparsers()[command]._actions for o in a.option_strings}


def test_atlas_skips_oversized_and_empty_images_with_advice_it_can_take(models_dir, tmp_path, capsys):
    import re

    root = tmp_path / "data"
    for i, cls in enumerate(("a", "b", "c")):
        for j in range(2):
            _png(root / cls / f"{j}.png", (16, 16, 3), value=40 * i + j)
    _png(root / "a" / "big.png", (40, 40, 3))  # 1600 pixels, over --max-pixels 1000
    (root / "b" / "empty.png").write_bytes(b"")
    out = tmp_path / "atlas"
    argv = ["atlas", "--data", str(root), "--model", str(models_dir / "tiny.keras"), "--classes", "a,b,c"]
    assert main([*argv, "--max-pixels", "1000", "--out", str(out)]) == 1
    _, err = _err_lines(capsys)
    warn = [ln for ln in err if ln.startswith("featuremaps: warning: skipped 2 unreadable image(s)")]
    assert len(warn) == 1 and "big.png is 40x40 = 1600 pixels, over the 1000 pixels limit" in warn[0], err
    assert "empty.png" in warn[0]
    advice = set(re.findall(r"--[a-z][a-z-]+", " ".join(err)))
    assert advice and advice <= _options_of("atlas"), advice  # "raise --max-pixels": atlas has it
    assert json.loads((out / "atlas.json").read_text())["unreadable"] == 2
    # without the option the default limit applies and the big image is read
    assert main([*argv, "--out", str(out)]) == 1  # the empty file is still skipped
    assert json.loads((out / "atlas.json").read_text())["unreadable"] == 1


def test_input_too_small_for_a_free_size_model_names_the_layer(tmp_path, capsys):
    import keras

    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(h)
    y = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = tmp_path / "free.keras"
    keras.Model(x, y, name="free").save(model)
    img = _png(tmp_path / "a.png", (8, 8, 3))
    want = {
        "3,3,3": "the input 3x3 is too small for this model (its layer MaxPooling2D 'pool' gets 1x1 and needs at "
        "least 2x2); pass a larger --input-shape",
        "2,2,3": "the input 2x2 is too small for this model (its layer Conv2D 'c1' gets 2x2 and needs at least "
        "3x3); pass a larger --input-shape",
    }
    for shape, msg in want.items():
        for cmd in ("show", "cam"):
            argv = [cmd, str(img), "--model", str(model), "--input-shape", shape, "--out", str(tmp_path / "o")]
            assert main(argv) == 2, (cmd, shape)
            _, err = _err_lines(capsys)
            assert err == [f"featuremaps: error: {msg}"], err
    assert "please report" not in msg


def test_non_utf8_file_name_in_compare(models_dir, tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.png")
    img = _png(tmp_path / name)
    out = tmp_path / "out"
    argv = ["compare", str(img), "--models", str(models_dir / "tiny.keras"), "--rows", "1", "--maps", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    (folder,) = out.iterdir()
    assert "caf?.png" in (folder / "compare.html").read_text(encoding="utf-8")


def test_report_on_a_model_named_with_spaces_and_parentheses(tmp_path, capsys):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="first conv")(x)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv(2)")(h)
    y = keras.layers.Dense(2, activation="softmax", name="class scores")(keras.layers.GlobalAveragePooling2D()(h))
    model = tmp_path / "spaced.keras"
    keras.Model(x, y, name="my model").save(model)
    img = _png(tmp_path / "a.png", (16, 16, 3))
    out = tmp_path / "r.html"
    assert main(["report", str(img), "--model", str(model), "--method", "gradcam,layercam", "--out", str(out)]) == 0
    html = out.read_text()
    assert "failed" not in html and "gradcam on conv(2)" in html and "layercam on conv(2)" in html


def _one_face_csv(path: Path, usage: str = "PrivateTest", pixels: str | None = None, bom: bool = False) -> Path:
    px = pixels if pixels is not None else " ".join(["7"] * 48 * 48)
    return _fer_csv(path, [f"3,{px},{usage}"], bom=bom)


def test_fer_csv_cases_through_the_commands(tmp_path, capsys):
    out = tmp_path / "eval"
    ok = _one_face_csv(tmp_path / "bom.csv", bom=True)
    assert main(["evaluate", "--data", str(ok), "--split", "PrivateTest", "--out", str(out)]) == 0
    stdout, _ = _err_lines(capsys)
    assert "PrivateTest: accuracy" in stdout and "on 1 faces" in stdout
    nan = _one_face_csv(tmp_path / "nan.csv", pixels=" ".join(["nan"] + ["7"] * (48 * 48 - 1)))
    latin = _fer_csv(tmp_path / "latin.csv", [], raw=b"emotion,pixels,Usage\n3,\xff\xfe,Training\n")
    huge = _fer_csv(tmp_path / "huge.csv", [], raw=b'emotion,pixels,Usage\n3,"' + b"1 " * 100_000 + b'",Training\n')
    cases = [
        (["evaluate", "--data", str(nan), "--split", "PrivateTest"], "nan.csv row 2: pixels include nan or inf"),
        (["train", "--data", str(nan)], "nan.csv row 2: pixels include nan or inf"),
        (["train", "--data", str(latin)], "is not UTF-8 text; re-save the CSV as UTF-8"),
        (["evaluate", "--data", str(huge), "--split", "PrivateTest"], "huge.csv: not a readable CSV"),
        (["train", "--data", str(huge)], "huge.csv: not a readable CSV"),
    ]
    for argv, match in cases:
        where = tmp_path / f"out_{argv[0]}"
        assert main([*argv, "--out", str(where)]) == 2, argv
        _, err = _err_lines(capsys)
        assert len(err) == 1 and err[0].startswith("featuremaps: error: ") and match in err[0], (argv, err)
        assert not where.exists() or not any(where.iterdir()), argv


def test_truncated_archive_through_evaluate(tmp_path, capsys):
    import tarfile

    src = tmp_path / "fer2013" / "test" / "happy"
    src.mkdir(parents=True)
    for i in range(40):
        face = np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)
        Image.fromarray(face).save(src / f"PrivateTest_{i}.png")
    arc = tmp_path / "fer.tar.gz"
    with tarfile.open(arc, "w:gz") as t:
        t.add(tmp_path / "fer2013", arcname="fer2013")
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(arc), "--split", "PrivateTest", "--out", str(out)]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "fer.tar.gz: cannot read the archive, it is truncated or corrupt" in err[0], err
    assert "PrivateTest_" not in err[0] and not out.exists()


def test_resume_with_a_valid_state_and_a_cut_checkpoint_is_one_line(tmp_path, capsys):
    import keras
    from test_train import _tiny_folder

    data = _tiny_folder(tmp_path / "fer", per_class=1)
    run = tmp_path / "run"
    run.mkdir()
    state = {"epoch": 1, "recipe": {"arch": "vgg16", "backend": keras.backend.backend(), "lr": 0.01, "seed": 0}}
    (run / "state.json").write_text(json.dumps(state))
    (run / "last.keras").write_bytes(b"PK\x03\x04 cut short")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--data", str(data), "--out", str(run), "--resume", "--epochs", "3"]) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "last.keras cannot be loaded" in err[0] and "cannot be resumed" in err[0], err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_max_pixels_over_pillows_limit_says_it_cannot_be_raised(models_dir, tmp_path, capsys):
    from test_images import _png_header_only

    bomb = _png_header_only(tmp_path / "bomb.png", 50_000, 50_000)
    big = _png_header_only(tmp_path / "big.png", 9_000, 9_000)
    tiny = str(models_dir / "tiny.keras")
    for img, limit, says in (
        (bomb, "2000000000", "over Pillow's decompression-bomb limit"),
        (big, "1000000", "over the 1 Mpixels limit; shrink it or raise --max-pixels"),
    ):
        assert main(["show", str(img), "--model", tiny, "--max-pixels", limit, "--out", str(tmp_path / "o")]) == 2
        _, err = _err_lines(capsys)
        assert len(err) == 1 and says in err[0], err
        assert ("cannot raise" in err[0]) == (img == bomb)


def test_compare_max_pixels_is_one_line(models_dir, tmp_path, capsys):
    img = _png(tmp_path / "a.png")
    argv = ["compare", str(img), "--models", str(models_dir / "tiny.keras"), "--max-pixels", "100"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    _, err = _err_lines(capsys)
    assert err == [
        f"featuremaps: error: {img} is 20x20 = 400 pixels, over the 100 pixels limit; shrink it or raise --max-pixels"
    ]
    assert not (tmp_path / "o").exists()


def test_compare_lambda_model_names_unsafe_and_runs_with_it(tmp_path, capsys):
    import keras

    model = tmp_path / "lam.keras"
    keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Conv2D(2, 3, name="c")]
    ).save(model)
    img = _png(tmp_path / "a.png", (16, 16, 3))
    argv = ["compare", str(img), "--models", str(model), "--rows", "1", "--maps", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    _, err = _err_lines(capsys)
    assert len(err) == 1 and "--unsafe" in err[0], err
    assert "--unsafe" in _options_of("compare")
    assert main([*argv, "--unsafe"]) == 0
    assert (tmp_path / "o" / "compare_a" / "compare.png").is_file()


@pytest.mark.slow
def test_constant_image_prints_no_runtime_warning(models_dir, tmp_path):
    img = _png(tmp_path / "grey.png", (16, 16, 3), value=128)
    tiny = str(models_dir / "tiny.keras")
    out = str(tmp_path / "o")
    runs = [
        ["show", str(img), "--model", tiny, "--norm", "global", "--select", "top-mean", "--out", out],
        ["cam", str(img), "--model", tiny, "--method", "gradcam,scorecam,eigencam", "--out", out],
        ["report", str(img), "--model", tiny, "--out", str(tmp_path / "r.html")],
        ["compare", str(img), "--models", tiny, "--norm", "global", "--rows", "1", "--maps", "1", "--out", out],
    ]
    code = "import sys\nfrom featuremaps.cli import main\n" + "".join(
        f"rc = main({argv!r})\nassert rc == 0, ({argv[0]!r}, rc)\n" for argv in runs
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "RuntimeWarning" not in r.stderr and "Warning:" not in r.stderr, r.stderr[-3000:]
