"""The same model and image give the same normalised CAM, and the same normalised input gradients, on TensorFlow,
JAX and torch (max abs diff <= 1e-4).

Each backend runs in its own subprocess (KERAS_BACKEND is read once, at import); the weights travel as an
.npz file written by the TensorFlow run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a subprocess per Keras backend

SCRIPT = """
import sys
import numpy as np
import keras
from keras import layers
from featuremaps.cam import CAM_METHODS, compute_cam

weights, out = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
inp = keras.Input((20, 20, 1))
a = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
r = layers.Conv2D(8, 1, strides=2, padding="same", name="short")(a)
b = layers.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(a)
b = layers.BatchNormalization(name="bn")(b)
c = layers.Conv2D(8, 3, padding="same", activation="relu", name="c3")(layers.Add()([b, r]))
y = layers.Dense(3, activation="softmax", name="out")(layers.GlobalAveragePooling2D()(c))
model = keras.Model(inp, y)
if keras.backend.backend() == "tensorflow":
    np.savez(weights, *[np.asarray(w) for w in model.get_weights()])
with np.load(weights) as f:
    model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
x = np.random.default_rng(0).uniform(0, 1, (20, 20, 1)).astype("float32")
res = {}
for method in CAM_METHODS:
    for layer in (None, "C1"):
        for c in (0, 2):
            r = compute_cam(model, x, method, layer=layer, class_index=c)
            res[f"{method}/{layer}/{c}"] = r.heatmap_up
# the one gradient primitive on this backend: input gradients of a class score and of a pre-activation channel
from featuremaps.frameworks import adapter
from featuremaps.targets import ChannelMean, ClassScore
ad = adapter(model)
for name, target in (("class", ClassScore(1)), ("channel", ChannelMean("c3", 2))):
    g = ad.gradients(x, target).gradient
    res[f"gradient/{name}"] = np.abs(g) / np.abs(g).max()
np.savez(out, **res)
"""


def _run(backend, tmp_path):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / f"{backend}.npz"
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path / "w.npz"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, f"{backend}: exit {p.returncode}: {p.stderr[-1500:]}"
    return dict(np.load(out))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_map_on_every_backend(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pip = "jax jaxlib" if backend == "jax" else "torch"
        pytest.skip(f"{backend} is not installed (pip install {pip})")
    ref = _run("tensorflow", tmp_path)
    other = _run(backend, tmp_path)
    assert ref.keys() == other.keys()
    for k in ref:
        assert ref[k].max() > 0, k
        assert np.abs(ref[k] - other[k]).max() <= 1e-4, f"{k}: {np.abs(ref[k] - other[k]).max():.2e}"
