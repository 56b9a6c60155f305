"""``train``'s speed probe (featuremaps.emotion.probe): its choice from stubbed timings, its cache, its budget,
and when it does not run. The real subprocess measurement is one slow test."""

from __future__ import annotations

import json
import os
from argparse import Namespace

import pytest

from featuremaps.emotion import probe

RATES = {
    ("tensorflow", "float32"): 176.0,
    ("tensorflow", "bfloat16"): 226.0,
    ("torch", "float32"): 67.0,
    ("torch", "bfloat16"): 153.0,
}


def stub(rates=RATES, calls=None, fail=()):
    """A Measure returning ``rates`` (img/s) for the asked precisions; backends in ``fail`` measure nothing."""

    def measure(backend, precisions, deadline_s):
        if calls is not None:
            calls.append((backend, tuple(precisions), deadline_s))
        if backend in fail:
            return {}
        return {p: rates[(backend, p)] for p in precisions if (backend, p) in rates}

    return measure


def test_candidates_follow_the_cpu_and_what_is_installed():
    both = lambda b: b in ("tensorflow", "torch")  # noqa: E731
    assert probe.candidates(bf16=True, installed=both) == list(RATES)
    assert probe.candidates(bf16=False, installed=both) == [("tensorflow", "float32"), ("torch", "float32")]
    assert probe.candidates("torch", "auto", bf16=True, installed=both) == [("torch", "float32"), ("torch", "bfloat16")]
    assert probe.candidates("auto", "bfloat16", bf16=False, installed=both) == [
        ("tensorflow", "bfloat16"),
        ("torch", "bfloat16"),
    ]  # a precision the user named is kept, even an emulated one
    assert probe.candidates(bf16=True, installed=lambda b: False) == []


def test_has_bf16_reads_the_flags():
    assert probe.has_bf16({"avx512f", "avx512_bf16"}) and probe.has_bf16({"amx_bf16"})
    assert not probe.has_bf16({"avx2", "avx512f"})


def test_the_fastest_measured_wins_and_is_cached(tmp_path):
    calls, cache = [], tmp_path / "probe.json"
    choice = probe.choose(list(RATES), stub(calls=calls), cache, "cpu A")
    assert (choice.backend, choice.precision, choice.cached) == ("tensorflow", "bfloat16", False)
    assert choice.rates == RATES and not choice.notes
    assert [c[:2] for c in calls] == [("tensorflow", ("float32", "bfloat16")), ("torch", ("float32", "bfloat16"))]
    stored = json.loads(cache.read_text())["cpu A"]
    assert stored["backend"] == "tensorflow" and stored["img_per_s"]["torch bfloat16"] == 153.0

    def never(*a):
        raise AssertionError("a cached choice measures nothing")

    again = probe.choose(list(RATES), never, cache, "cpu A")
    assert (again.backend, again.precision, again.cached) == ("tensorflow", "bfloat16", True)
    assert "cached" in again.summary() and "tensorflow bfloat16 226" in again.summary()
    # another CPU or version (another key), or a candidate the cache lacks: measured again
    other = {**RATES, ("torch", "bfloat16"): 400.0}
    assert probe.choose(list(RATES), stub(other), cache, "cpu B").backend == "torch"
    jax = probe.choose([*RATES, ("jax", "float32")], stub({**RATES, ("jax", "float32"): 999.0}), cache, "cpu A")
    assert (jax.backend, jax.cached) == ("jax", False)
    assert set(json.loads(cache.read_text())) == {"cpu A", "cpu B"}


def test_a_failing_backend_is_left_out_with_a_note_and_not_tried_again(tmp_path):
    cache = tmp_path / "c.json"
    choice = probe.choose(list(RATES), stub(fail=("tensorflow",)), cache, "k")
    assert (choice.backend, choice.precision) == ("torch", "bfloat16")
    assert any("tensorflow" in n and "failed" in n for n in choice.notes)
    assert ("tensorflow", "float32") not in choice.rates  # a failure is no speed

    def never(*a):
        raise AssertionError("a failure with the same versions (the same key) is not measured again")

    again = probe.choose(list(RATES), never, cache, "k")
    assert (again.backend, again.precision, again.cached) == ("torch", "bfloat16", True)
    assert any("failed in an earlier probe" in n and "tensorflow float32" in n for n in again.notes)
    calls = []  # new library versions (another key): tried again
    assert probe.choose(list(RATES), stub(calls=calls), cache, "k2").backend == "tensorflow" and calls


def test_a_probe_cut_short_is_finished_by_the_next_run_not_repeated(tmp_path):
    cache, now = tmp_path / "c.json", [0.0]

    def slow(backend, precisions, deadline_s):
        now[0] += 70.0  # tensorflow eats the whole minute
        return stub()(backend, precisions, deadline_s)

    first = probe.choose(list(RATES), slow, cache, "k", clock=lambda: now[0], budget_s=60)
    assert set(first.rates) == {("tensorflow", "float32"), ("tensorflow", "bfloat16")}
    assert json.loads(cache.read_text())["k"]["complete"] is False
    calls = []
    second = probe.choose(list(RATES), stub(calls=calls), cache, "k")
    assert [c[:2] for c in calls] == [("torch", ("float32", "bfloat16"))]  # only what the first run lacked
    assert second.rates == RATES and (second.backend, second.precision) == ("tensorflow", "bfloat16")
    assert any("from an earlier probe: tensorflow float32, tensorflow bfloat16" in n for n in second.notes)
    assert json.loads(cache.read_text())["k"]["complete"] is True
    assert probe.choose(list(RATES), stub(fail=RATES), cache, "k").cached  # now whole: nothing measured


def test_a_worker_cut_off_by_its_deadline_keeps_the_precisions_it_finished(monkeypatch):
    import subprocess

    def run(cmd, timeout, **kw):
        assert cmd[-1] == "float32,bfloat16" and timeout == 30
        raise subprocess.TimeoutExpired(cmd, timeout, output=b'{"float32": 144.5}\n')  # bfloat16 not reached

    monkeypatch.setattr(probe.subprocess, "run", run)
    measure = probe.measure_in_subprocesses("mobilenet", 1.0, 40, 128)
    assert measure("tensorflow", ["float32", "bfloat16"], 30) == {"float32": 144.5}


def test_nothing_measured_falls_back_to_the_first_candidate(tmp_path):
    choice = probe.choose(list(RATES), stub(fail=("tensorflow", "torch")), tmp_path / "c.json", "k")
    assert (choice.backend, choice.precision) == ("tensorflow", "float32")
    assert any("nothing could be measured" in n for n in choice.notes)


def test_the_budget_stops_the_probe(tmp_path):
    now = [0.0]

    def slow(backend, precisions, deadline_s):
        now[0] += 70.0  # one backend eats the whole minute
        return stub()(backend, precisions, deadline_s)

    choice = probe.choose(list(RATES), slow, tmp_path / "c.json", "k", clock=lambda: now[0], budget_s=60)
    assert choice.backend == "tensorflow" and ("torch", "float32") not in choice.rates
    assert any("budget" in n and "torch" in n for n in choice.notes)
    assert choice.seconds == 70.0


def test_a_backend_cut_off_by_the_budget_is_not_called_failed(tmp_path):
    now = [0.0]

    def measure(backend, precisions, deadline_s):
        now[0] += 40.0  # tensorflow takes 40 s; torch runs into the deadline (a subprocess timeout: nothing)
        return stub()(backend, precisions, deadline_s) if backend == "tensorflow" else {}

    choice = probe.choose(list(RATES), measure, None, "k", clock=lambda: now[0], budget_s=60)
    assert choice.backend == "tensorflow"
    assert any("torch float32, bfloat16: not done within the 60 s probe budget" in n for n in choice.notes)
    assert not any("failed" in n for n in choice.notes)


def test_the_cache_survives_damage_and_a_read_only_home(tmp_path):
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    assert probe.choose(list(RATES), stub(), cache, "k").backend == "tensorflow"
    assert json.loads(cache.read_text())["k"]["precision"] == "bfloat16"  # rewritten whole
    blocked = tmp_path / "file" / "c.json"
    (tmp_path / "file").write_text("a file where the cache folder would be")
    assert probe.choose(list(RATES), stub(), blocked, "k").precision == "bfloat16"


def test_cache_file_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREMAPS_CACHE", str(tmp_path / "fm"))
    assert probe.cache_file() == tmp_path / "fm" / "train-probe.json"
    monkeypatch.delenv("FEATUREMAPS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert probe.cache_file() == tmp_path / "xdg" / "featuremaps" / "train-probe.json"


def test_cache_key_names_the_cpu_versions_step_and_network(monkeypatch):
    key = probe.cache_key("resnet", 1.0, 40, 128)
    assert "keras==" in key and "resnet w1 40px b128" in key
    monkeypatch.setattr(probe, "STEP_FORM", probe.STEP_FORM + 1)  # a new step: rates measured before are stale
    assert probe.cache_key("resnet", 1.0, 40, 128) != key
    assert key != probe.cache_key("mobilenet", 1.0, 40, 128) != probe.cache_key("resnet", 1.0, 44, 128)


def test_short_runs_skip_the_probe(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i}.png").write_bytes(b"x")
    assert probe.faces_at_most(folder) == 20 and probe.short_run(folder, None, 30)
    big = tmp_path / "fer2013.tar.gz"
    with open(big, "wb") as f:  # sparse: the size of the real archive, no disk
        f.truncate(59_821_944)
    assert probe.faces_at_most(big) >= 35_887 and not probe.short_run(big, None, 3)
    assert probe.short_run(big, 5, 30)  # --limit-per-class 5: 35 faces
    assert probe.short_run(tmp_path / "missing.csv", None, 100)  # train says the data is missing, at once


def _args(**kw):
    base = dict(resume=False, backend="auto", precision="auto", limit=None, epochs=30, arch="resnet", crop=40)
    return Namespace(**{**base, "width": 1.0, "batch_size": 128, **kw})


class _Progress:
    def __init__(self):
        self.lines = []

    def status(self, m):
        self.lines.append(m)

    note = status


def test_cli_picks_what_the_probe_measured(tmp_path, monkeypatch):
    import featuremaps.cli.train as cli_train

    monkeypatch.setenv("FEATUREMAPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "candidates", lambda b, p: [c for c in RATES if b in ("auto", c[0])])
    monkeypatch.setattr(probe, "measure_in_subprocesses", lambda *a, **k: stub())
    chosen = []
    monkeypatch.setattr(cli_train, "train_backend", lambda b, arch="vgg16", resumed=None: chosen.append(b) or b)
    data = tmp_path / "fer2013.tar.gz"
    with open(data, "wb") as f:
        f.truncate(59_821_944)
    args, progress = _args(), _Progress()
    record = cli_train.pick_configuration(args, str(data), progress)
    assert (args.backend, args.precision, chosen) == ("tensorflow", "bfloat16", ["tensorflow"])
    assert record["backend"] == "tensorflow" and record["img_per_s"]["torch float32"] == 67.0
    assert any("tensorflow bfloat16 is fastest" in line for line in progress.lines)
    # explicit flags win: no probe, nothing recorded
    args = _args(backend="torch", precision="float32")
    assert cli_train.pick_configuration(args, str(data), progress) is None
    assert (args.backend, args.precision) == ("torch", "float32")
    # a named backend, precision auto: only that backend's precisions are timed
    args = _args(backend="torch")
    assert cli_train.pick_configuration(args, str(data), progress)["img_per_s"].keys() == {
        "torch float32",
        "torch bfloat16",
    }
    assert (args.backend, args.precision) == ("torch", "bfloat16")
    # a short run of the configuration probed above: the cached answer, nothing measured
    monkeypatch.setattr(probe, "measure_in_subprocesses", lambda *a, **k: pytest.fail("a short run measured"))
    args = _args(limit=5)
    record = cli_train.pick_configuration(args, str(data), progress)
    assert (args.backend, args.precision) == ("tensorflow", "bfloat16") and record["cached"]
    # a short run with nothing cached for it: float32 on the default backend, nothing measured
    args = _args(limit=5, batch_size=32)
    assert cli_train.pick_configuration(args, str(data), progress) is None and args.precision == "float32"
    # a resumed run keeps its own (train reads the recipe)
    args = _args(resume=True)
    assert cli_train.pick_configuration(args, str(data), progress) is None


def test_cached_choice_needs_every_candidate(tmp_path):
    cache, key = tmp_path / "probe.json", "cpu | keras==3 | vgg16 w1 40px b128"
    assert probe.cached_choice(list(RATES), cache, key) is None  # no cache
    probe.choose(list(RATES)[:2], stub(), cache, key)  # tensorflow only
    assert probe.cached_choice(list(RATES), cache, key) is None  # torch was never measured
    got = probe.cached_choice(list(RATES)[:2], cache, key)
    assert (got.backend, got.precision, got.cached) == ("tensorflow", "bfloat16", True)
    probe.choose(list(RATES), stub(fail=("tensorflow",)), cache, "other")  # tensorflow failed there
    got = probe.cached_choice(list(RATES), cache, "other")
    assert (got.backend, got.precision) == ("torch", "bfloat16")
    assert probe.cached_choice(list(RATES)[:2], cache, "other") is None  # nothing that ran


def test_unprobed_runs_take_the_backend_measured_fastest_for_the_cpu(monkeypatch):
    from featuremaps.cli import options

    monkeypatch.setattr(options, "has_bf16", lambda: False)  # the AVX2-only EPYC: torch won the VGG-16
    assert options.fastest_backend("vgg16") == "torch" and options.fastest_backend("resnet") == "tensorflow"
    monkeypatch.setattr(options, "has_bf16", lambda: True)  # Zen 4 and the Xeon with AMX: TensorFlow
    assert options.fastest_backend("vgg16") == options.fastest_backend("mobilenet") == "tensorflow"


@pytest.mark.slow
def test_the_real_probe_times_every_installed_backend(tmp_path):
    """The subprocess workers on a tiny network: a positive rate per precision asked."""
    measure = probe.measure_in_subprocesses("resnet", 0.1, 16, 8, steps=1)
    got = measure(os.environ.get("KERAS_BACKEND", "tensorflow"), ["float32"], 120)
    assert set(got) == {"float32"} and got["float32"] > 0
