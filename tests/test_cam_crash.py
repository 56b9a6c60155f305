"""CAM gradients must never kill the process (oneDNN heap corruption on AVX-512 CPUs, see gradients.py).

Each case runs in a subprocess (``sys.executable -c``), so a segfault or abort fails the test instead of
killing the test run. The small Xception-style model has the trigger: 1x1 stride-2 residual shortcuts,
channels-last, 8 -> 16 channels, even spatial size, 64x64x1 input. Targets include the first conv, so the
gradient flows back through those shortcuts.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # keras.applications models in subprocesses

XCEPTION_STYLE = """
import keras
from keras import layers
keras.utils.set_random_seed(0)
inp = keras.Input((64, 64, 1))
x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
for f in (16, 32):
    r = layers.Conv2D(f, 1, strides=2, padding="same", use_bias=False)(x)
    r = layers.BatchNormalization()(r)
    x = layers.SeparableConv2D(f, 3, padding="same", activation="relu")(x)
    x = layers.SeparableConv2D(f, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Add()([x, r])
x = layers.Conv2D(32, 3, padding="same", activation="relu", name="last")(x)
model = keras.Model(inp, layers.Dense(7, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
shape = (64, 64, 1)
"""

APPLICATION = """
import keras
keras.utils.set_random_seed(0)
model = keras.applications.{name}(weights=None)
shape = tuple(model.inputs[0].shape[1:])
"""

RUN = """
import numpy as np
from featuremaps.cam import compute_cam
x = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
for layer in {layers!r}:
    for method in {methods!r}:
        for _ in range({repeat}):
            r = compute_cam(model, x, method, layer=layer)
            assert np.isfinite(r.heatmap).all()
print("ok", r.layer.name)
"""


def _run(build: str, layers, methods=("gradcam", "gradcam++", "layercam"), repeat=3, backend="tensorflow", timeout=600):
    code = textwrap.dedent(build) + RUN.format(layers=list(layers), methods=list(methods), repeat=repeat)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("ONEDNN_MAX_CPU_ISA", None)  # prove the mitigation in the code, not in the environment
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-1500:]}"
    assert "ok" in p.stdout


def _skip_backend(backend):
    mod = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[backend]
    if importlib.util.find_spec(mod) is None:
        pytest.skip(f"{mod} is not installed (pip install {mod})")


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_xception_style_shortcuts_do_not_crash(backend):
    _skip_backend(backend)
    _run(XCEPTION_STYLE, [None, "stem", "C2"], repeat=3, backend=backend)


@pytest.mark.parametrize("name, layers", [("ResNet50", [None, "C2"]), ("Xception", [None, "C2"])])
def test_applications_do_not_crash(name, layers):
    _run(APPLICATION.format(name=name), layers, methods=("gradcam",), repeat=2)
