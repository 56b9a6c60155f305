"""Keras' backend where TensorFlow is not installed: torch or JAX, never over a working choice of the user."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from featuremaps import keras_backend


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process state before Keras is imported: no KERAS_BACKEND, an empty Keras home."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "unset")  # recorded, so what choose() sets is undone after the test
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def _have(monkeypatch, *backends):
    monkeypatch.setattr(keras_backend, "installed", lambda b: b in backends)


def test_torch_where_tensorflow_is_missing(fresh, monkeypatch):
    _have(monkeypatch, "torch", "jax")
    assert keras_backend.choose() == "torch"
    assert keras_backend.configured() == "torch"  # now in the environment, where Keras reads it


def test_jax_where_only_jax_is_installed(fresh, monkeypatch):
    _have(monkeypatch, "jax")
    assert keras_backend.choose() == "jax"


def test_a_working_choice_stays(fresh, monkeypatch):
    _have(monkeypatch, "tensorflow", "torch")
    assert keras_backend.choose() is None  # TensorFlow, Keras' default, is installed
    (fresh / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    _have(monkeypatch, "jax", "torch")
    assert keras_backend.choose() is None and keras_backend.configured() == "jax"  # keras.json's choice
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the user's explicit choice, even a missing one
    assert keras_backend.choose() is None


def test_keras_json_naming_a_missing_backend_gives_way(fresh, monkeypatch):
    (fresh / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))  # Keras writes this by itself
    _have(monkeypatch, "torch")
    assert keras_backend.choose() == "torch"


def test_nothing_installed_or_keras_already_imported(fresh, monkeypatch):
    _have(monkeypatch)
    assert keras_backend.choose() is None  # Keras' own import error is reported (one line, in the CLI)
    _have(monkeypatch, "torch")
    monkeypatch.setitem(sys.modules, "keras", object())
    assert keras_backend.choose() is None  # its backend is fixed once imported


HIDE_TENSORFLOW = """
import sys

for name in ("tensorflow",):  # as if not installed: find_spec gives None, import raises ModuleNotFoundError
    sys.modules[name] = None
from featuremaps.cli import main
code = main(sys.argv[1:])
import keras
print("backend", keras.backend.backend())
sys.exit(code)
"""


@pytest.mark.slow
def test_cli_runs_on_torch_where_tensorflow_is_not_installed(tmp_path):
    """A user with featuremaps[torch] and no TensorFlow: commands run, Keras models included."""
    pytest.importorskip("torch")
    env = {"KERAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    argv = [sys.executable, "-c", HIDE_TENSORFLOW, "layers", "vgg16", "--weights", "none"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "vgg16: 13 conv layers" in r.stdout and "backend torch" in r.stdout


@pytest.mark.slow
def test_cli_with_no_backend_at_all_is_one_line(tmp_path):
    hide_all = HIDE_TENSORFLOW.replace('("tensorflow",)', '("tensorflow", "torch", "jax")').replace(
        'import keras\nprint("backend", keras.backend.backend())\n', ""
    )
    env = {"KERAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    argv = [sys.executable, "-c", hide_all, "layers", "vgg16", "--weights", "none"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "featuremaps: error: keras models need tensorflow, which is not installed; "
        "pip install 'featuremaps[tensorflow]'"
    ]
