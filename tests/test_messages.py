"""Messages, progress, help texts and pictures (issues 22 §3 and 29 "Messages"): what a user reads and sees."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, shape=(20, 20, 3), value=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    a = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(a)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(b))
    path = tmp_path_factory.mktemp("messages") / "tiny.keras"
    keras.Model(x, y, name="tiny").save(path)
    return path


# ---------------------------------------------------------------- TensorFlow's start-up lines
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
