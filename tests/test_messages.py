"""Messages, progress, help texts and pictures (issues 22 §3 and 29 "Messages"): what a user reads and sees."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps.cli import main
from featuremaps.cli.progress import Batch, Progress, duration

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, shape=(20, 20, 3), value=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    a = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def tiny_model(tiny_file) -> Path:
    return tiny_file


# ---------------------------------------------------------------- TensorFlow's start-up lines
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_api_use_keeps_tensorflow_start_up_lines_off_stderr():
    code = "import featuremaps; featuremaps.conv_layers; import tensorflow; print('ok')"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["PYTHONPATH"] = str(ROOT / "src")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert "oneDNN" not in r.stderr and "absl::InitializeLog" not in r.stderr and "cpu_feature" not in r.stderr, (
        r.stderr
    )


# ---------------------------------------------------------------- progress: ETA, no empty parentheses, counts
def test_plain_progress_line_has_an_eta_and_no_empty_parentheses():
    s = io.StringIO()
    p = Progress("atlas ", stream=s, every=0.0)
    p(0, 3589)
    p(1728, 3589)  # atlas passes no item name
    line = s.getvalue().splitlines()[-1]
    assert "()" not in line and line.startswith("atlas: 1728/3589, ETA "), line


def test_terminal_bar_has_an_eta():
    s = io.StringIO()
    p = Progress("evaluate ", stream=s, tty=True)
    p(0, 10, "batch 1")
    p(4, 10, "batch 5")
    assert "ETA " in s.getvalue().split("\r")[-1]


def test_duration_reads_at_a_glance():
    assert [duration(x) for x in (0.25, 42.4, 185, 7800)] == ["0.2 s", "42 s", "3 min 5 s", "2 h 10 min"]


def test_show_end_line_counts_the_skipped_and_one_skip_wording(tmp_path, tiny_model, capsys):
    imgs = tmp_path / "imgs"
    _png(imgs / "a.png")
    (imgs / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (imgs / "c.png").write_bytes(b"")
    assert main(["show", str(imgs), "--model", str(tiny_model), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith("show: 1/3 done, 2 skipped in ") for ln in err), err
    assert not any("3/3 done" in ln for ln in err)
    skips = [ln for ln in err if ln.startswith("featuremaps: warning: skipped")]
    assert len(skips) == 2
    for ln, name in zip(skips, ("b.png", "c.png"), strict=True):  # one wording: "skipped ITEM: REASON"
        assert ln.startswith(f"featuremaps: warning: skipped {imgs / name}: "), ln


def test_batch_skip_wording_is_the_same_whether_or_not_the_reason_names_the_item():
    s = io.StringIO()
    b = Batch("x ", progress=Progress(stream=s))
    b.skip("a.png", "a.png is truncated")
    b.skip("b.png", "no face found")
    lines = s.getvalue().splitlines()
    assert lines == [
        "featuremaps: warning: skipped a.png: a.png is truncated",
        "featuremaps: warning: skipped b.png: no face found",
    ]


# ---------------------------------------------------------------- silent long work: cam per map and per pass
def test_cam_reports_each_map_and_score_cam_passes(tmp_path, tiny_model, capsys):
    img = _png(tmp_path / "a.png")
    argv = ["cam", str(img), "--model", str(tiny_model), "--method", "gradcam,scorecam,ablationcam"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "maps: 3/3 done in " in err, err  # one step per method (and class)
    assert err.count("passes: ") == 2 and "passes: 6/6 done in" in err, err  # c2's 6 channels, twice


def test_cam_engine_names_each_step():
    from featuremaps.cam.methods import ablationcam, scorecam

    seen = []
    acts = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    x = np.ones((8, 8, 3), np.float32)
    scorecam(acts, x=x, class_index=0, predict=lambda b: np.ones((len(b), 2)), passes=lambda i, n: seen.append((i, n)))
    ablationcam(acts, class_index=0, head_scores=lambda a: a.sum(axis=(1, 2)), passes=lambda i, n: seen.append((i, n)))
    assert seen[0] == (0, 3) and seen.count((3, 3)) == 2, seen


# ---------------------------------------------------------------- pictures: a map of float noise is hatched
def test_a_cam_of_float_noise_is_drawn_as_the_all_zero_hatch():
    from types import SimpleNamespace

    from featuremaps.cam.engine import cam_results
    from featuremaps.cam_files import render_panel
    from featuremaps.layers import ConvLayer

    rng = np.random.default_rng(0)
    acts = rng.random((6, 6, 4)).astype(np.float32) + 0.5
    x = rng.random((24, 24, 3)).astype(np.float32)
    engine = SimpleNamespace(layer=ConvLayer(1, "c1", None, "Conv2D"), score="logit", forward=None)
    probs = np.array([0.997, 0.003], np.float32)
    grads = {0: np.full((6, 6, 4), 1e-14, np.float32), 1: rng.standard_normal((6, 6, 4)).astype(np.float32)}
    (tiny,) = cam_results(engine, x, acts, probs, ["gradcam"], [0], ["a", "b"], lambda j: grads[0])
    assert 0 < tiny.heatmap.max() < 1e-11 and not tiny.heatmap_up.any()  # float noise: no stretched overlay
    (real,) = cam_results(engine, x, acts, probs, ["hirescam"], [1], ["a", "b"], lambda j: grads[1])
    assert real.heatmap_up.max() == 1.0
    img = (x * 255).astype(np.uint8)
    hatch = np.array([150, 150, 150], np.uint8)
    noisy = render_panel(img, [("gradcam", [tiny])], cell=96)
    shown = render_panel(img, [("hirescam", [real])], cell=96)
    assert np.all(noisy == hatch, axis=-1).sum() > 200  # the "map all zero" hatch
    assert np.all(shown == hatch, axis=-1).sum() < 20


def test_one_probability_format_in_titles_panels_and_lines(tmp_path, tiny_model, capsys):
    from featuremaps.display import p_equals, percent

    assert [percent(p) for p in (0.003, 0.5421, 1.0, 0.0001, 0.0)] == ["0.3%", "54.2%", "100.0%", "<0.1%", "0.0%"]
    img = _png(tmp_path / "a.png")
    out = tmp_path / "o"
    assert main(["cam", str(img), "--model", str(tiny_model), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "a" / "cam" / "cam.json").read_text())
    p = meta["maps"][0]["probability"]
    assert p_equals(p) in printed  # the same text the panel draws, with the title's number
    assert p_equals(0.0001) == "p < 0.1%" and p_equals(0.003) == "p = 0.3%"


# ---------------------------------------------------------------- help texts
def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def test_a_flag_never_says_default_true(capsys):
    text = _help(["show"], capsys)
    assert "--no-layer-pngs write only the overview" in text and "(default: True)" not in text


def test_top_level_help_lists_every_cam_method_and_offline_examples(capsys):
    from featuremaps.cam import CAM_METHODS

    text = _help([], capsys)
    assert all(m in text for m in CAM_METHODS), text
    for cmd in ("cam", "report"):
        assert all(m in _help([cmd], capsys) for m in CAM_METHODS)
    with pytest.raises(SystemExit):
        main(["--help"])
    examples = [ln.split("#")[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("  featuremaps ")]
    downloads = ("torchvision:", "vgg16", "resnet", "mobilenet", "inception")
    for ln in examples:  # no example needs the internet: named ImageNet models get --weights none
        if " layers " not in ln and any(f"--model {d}" in ln or f"--models {d}" in ln for d in downloads):
            assert "--weights none" in ln, ln


def test_weights_help_agrees_with_what_compare_and_explore_do(capsys):
    compare = _help(["compare"], capsys)
    assert "the bundled emotion model always keeps its trained weights" in compare
    assert "unless given none" not in compare
    explore = _help(["explore"], capsys)
    assert "as in compare, the emotion model keeps its trained weights" in explore
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "in `compare` and `explore --models` the emotion model always keeps its trained weights" in readme


# ---------------------------------------------------------------- model files
def test_an_unimportable_pickled_class_is_named_as_such_and_nothing_is_cut_mid_word(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    mod_dir = tmp_path / "code"
    mod_dir.mkdir()
    name = "featuremaps_test_gone_module_with_a_rather_long_name_for_cutting"
    (mod_dir / f"{name}.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.c = torch.nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n        return self.c(x)\n"
    )
    monkeypatch.syspath_prepend(str(mod_dir))
    module = __import__(name)
    pt = tmp_path / "pickled.pt"
    torch.save(module.Net(), pt)
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(mod_dir)])
    assert main(["layers", str(pt), "--unsafe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a torch file" not in err[0], err
    assert "whose class cannot be imported here" in err[0] and name in err[0], err  # the module named in full


def test_brief_cuts_between_words():
    from featuremaps.errors import brief

    long = "Can't get attribute 'Net' on <module '__main__' from '/home/someone/projects/" + "x" * 40 + "/train.py'>"
    assert brief(long, 60).endswith(" ...") and brief(long, 60)[:-4] in long and "/home" not in brief(long, 60)
    assert brief(ValueError("")) == "ValueError" and brief("one\ntwo") == "one"


def test_compare_classes_names_the_image_without_a_face(tmp_path, capsys):
    from featuremaps.emotion import shipped_weights_available

    if not shipped_weights_available():
        pytest.skip("the bundled emotion weights are not in this checkout")
    faceless = _png(tmp_path / "wall.png", (120, 120, 3), value=128)
    astro = ROOT / "examples" / "astronaut.png"
    assert main(["compare-classes", str(astro), str(faceless), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no face found in" in err[0] and str(faceless) in err[0], err
    assert "--no-face-crop" not in err[0]  # compare-classes has no such option


def test_layers_prints_terminal_escapes_in_layer_names_escaped(tmp_path, capsys):
    import keras

    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(2, 3, name="evil\x1b[31m")(x)
    path = tmp_path / "evil.keras"
    keras.Model(x, y, name="m\x1b[2J").save(path)
    assert main(["layers", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\x1b[31m" in out and "m\\x1b[2J" in out, out


# ---------------------------------------------------------------- atlas data
def test_manifest_labels_may_be_class_indices_mixed_with_names():
    from featuremaps.atlas.manifests import match_labels
    from featuremaps.errors import UserError

    classes, idx = match_labels(["a", "2", "B", "0"], ["a", "b", "c"], "manifest m.csv")
    assert classes == ["a", "b", "c"] and idx.tolist() == [0, 2, 1, 0]
    with pytest.raises(UserError) as e:
        match_labels(["a", "2", "3", "purple"], ["a", "b", "c"], "manifest m.csv")
    assert "label(s) 3, purple are neither" in str(e.value) and "2," not in str(e.value)  # a valid index is not bad
    assert match_labels(["10", "2", "1"], None, "m")[0] == ["1", "2", "10"]  # numbers in numeric order


@pytest.mark.parametrize("content", ["", "emotion,pixels,Usage\n"])
def test_an_empty_fer2013_csv_is_named_as_such(tmp_path, tiny_model, capsys, content):
    csv_file = tmp_path / "fer2013.csv"
    csv_file.write_text(content)
    assert main(["atlas", "--data", str(csv_file), "--model", str(tiny_model), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an empty FER2013 CSV" in err[0] and "manifest" not in err[0].split(";")[0], err


def test_the_duplicate_warning_shows_two_different_classes():
    from types import SimpleNamespace

    from featuremaps.atlas import duplicate_note

    res = SimpleNamespace(duplicates=[[(0, 0), (1, 0), (2, 1)]], classes=["dark", "light"])
    source = SimpleNamespace(sources=["d/x.png", "d/x2.png", "l/x.png"])
    note = duplicate_note(res, source)
    assert "d/x.png (dark) = l/x.png (light) (+1 more copies)" in note, note


def test_atlas_names_a_fifo_inside_a_fer2013_folder(tmp_path, tiny_model, capsys):
    root = tmp_path / "fer"
    for emotion in ("happy", "sad"):
        for i in range(2):
            _png(root / "test" / emotion / f"PrivateTest_{emotion}{i}.png", (48, 48), value=60 + 40 * i)
    os.mkfifo(root / "test" / "sad" / "PrivateTest_pipe.png")
    argv = ["atlas", "--data", str(root), "--model", str(tiny_model), "--out", str(tmp_path / "a")]
    assert main(argv) == 1  # as every batch: 1 = some items skipped, each named
    err = capsys.readouterr().err
    warn = [ln for ln in err.splitlines() if ln.startswith("featuremaps: warning: skipped")]
    assert len(warn) == 1 and "PrivateTest_pipe.png" in warn[0], err


def test_maps_every_negative_is_one_line_naming_the_option(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "x.csv"), "--maps-every", "-1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--maps-every" in err[0] and "every=" not in err[0], err
    assert not (tmp_path / "r").exists()


def test_train_writes_no_keras_progress_bar_into_a_log(tmp_path, monkeypatch, capsys):
    import featuremaps.emotion.train as emotion_train  # the CLI imports it once the backend is chosen

    seen = {}

    def fake_train(*a, **kw):
        seen.update(kw)
        return {"best_val_accuracy": 0.5, "best_epoch": 1}

    monkeypatch.setattr(emotion_train, "train", fake_train)
    assert main(["train", "--data", str(tmp_path / "fer.csv"), "--out", str(tmp_path / "r"), "--backend", "auto"]) == 0
    assert seen["verbose"] == 2  # stdout is not a terminal here: one plain line per epoch, no bar


def test_atlas_says_what_it_does_before_its_bar_on_a_terminal(tmp_path, tiny_model, capsys, monkeypatch):
    root = tmp_path / "imgs"
    for k, cls in enumerate(("a", "b", "c")):
        for i in range(2):
            _png(root / cls / f"{i}.png", (16, 16, 3), value=40 * k + 10 * i)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["atlas", "--data", str(root), "--model", str(tiny_model), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    first_bar = err.index("[")
    assert "loading the model" in err[:first_bar] and f"reading {root}" in err[:first_bar], err


# ---------------------------------------------------------------- benchmarks: data as the CLI takes it
@pytest.mark.slow
@pytest.mark.parametrize("script", ["cam_sanity.py", "bench_atlas.py"])
def test_benchmarks_without_data_say_so_in_one_line(tmp_path, script):
    env = {k: v for k, v in os.environ.items() if k != "FEATUREMAPS_FER2013"}
    env["PYTHONPATH"] = str(ROOT / "src")
    cmd = [sys.executable, str(ROOT / "benchmarks" / script)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "pass --data PATH" in lines[0] and "FEATUREMAPS_FER2013" in lines[0] and "Traceback" not in r.stderr


# ---------------------------------------------------------------- Ray: no error-level line on a good run
@pytest.mark.slow
def test_ray_atlas_on_a_local_ray_prints_no_error_level_line(tmp_path, tiny_model, capfd):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process; the test needs the command to start its own")
    from featuremaps.atlas.ray import actor_options

    assert actor_options(0.0, local=True) == {"max_restarts": 0}
    assert actor_options(1.0, local=False) == {"num_gpus": 1.0}  # a cluster keeps Ray's restarts
    root = tmp_path / "imgs"
    for k, cls in enumerate(("a", "b", "c")):
        _png(root / cls / "0.png", (16, 16, 3), value=50 * k + 20)
    argv = ["atlas", "--data", str(root), "--model", str(tiny_model), "--engine", "ray", "--actors", "1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capfd.readouterr().err
    assert "core_worker" not in err and "max_restarts" not in err, err


# ---------------------------------------------------------------- pictures: compare heads in line
def test_compare_head_sections_start_at_one_height_when_a_name_wraps(tmp_path):
    import keras

    from featuremaps import models
    from featuremaps.compare import compare_models

    paths = []
    for name in ("a", "a_model_with_a_name_long_enough_to_wrap_over_two_lines_in_its_column"):
        keras.utils.set_random_seed(0)
        x = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
        y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
        paths.append(tmp_path / f"{name}.keras")
        keras.Model(x, y, name=name).save(paths[-1])
    lms = [models.load(str(p)) for p in paths]
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pic, *_ = compare_models(lms, rgb, rows=1, maps=2)
    ink = (pic < 200).any(axis=-1)
    col_w = (pic.shape[1] - 118 - 8) // 2
    cols = [ink[:, 118 + k * col_w + 4 : 118 + (k + 1) * col_w - 8] for k in range(2)]
    dense = np.flatnonzero(cols[0].mean(axis=1) > 0.5)
    runs = np.split(dense, np.flatnonzero(np.diff(dense) > 1) + 1)
    thumb_bottom = next(r for r in runs if len(r) >= 50)[-1]  # the thumbnail: the first tall block of ink
    labels = np.flatnonzero(ink[thumb_bottom + 1 :, 4:110].any(axis=1)) + thumb_bottom + 1  # "depth 100%"
    region = range(thumb_bottom + 1, labels[0] - 20)  # the heads' text, above the grid
    same = [y for y in region if cols[0][y].any() and np.array_equal(cols[0][y], cols[1][y])]
    assert len(same) >= 8, same  # the info and prediction lines (the same text) on the same pixel rows


# ---------------------------------------------------------------- pictures: report grids use the page's width
@pytest.mark.slow
def test_report_grids_use_the_width_of_a_wide_page(tmp_path):
    import keras

    sys.path.insert(0, str(Path(__file__).parent))
    from _chromium import load_page, why_unavailable

    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv16")(x)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = tmp_path / "m.keras"
    keras.Model(x, y, name="wide16").save(model)
    out = tmp_path / "r.html"
    img = _png(tmp_path / "a.png", (32, 32, 3))
    assert main(["report", str(img), "--model", str(model), "--method", "none", "--out", str(out)]) == 0
    why = why_unavailable()
    if why:
        pytest.skip(why)
    script = (
        "Math.max(...Array.from(document.querySelectorAll('.layer img')).map(i => i.getBoundingClientRect().width))"
    )
    res = load_page(out, width=1400, height=900, script=script)
    assert res.evaluated >= 700, res.evaluated  # 16 maps 8 a row beside the statistics, not a 4x4 block of ~400 px
