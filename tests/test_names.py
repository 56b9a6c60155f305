"""Model and layer names TensorFlow cannot trace (a space, '<'): every command still works, eagerly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from featuremaps.cli import main
from featuremaps.frameworks.keras.graph import traceable


@pytest.fixture(scope="module")
def spaced_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="first conv")(x)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv(2)")(h)
    y = keras.layers.Dense(2, activation="softmax", name="class scores")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(x, y, name="my model")
    p = tmp_path_factory.mktemp("m") / "spaced.keras"
    model.save(p)
    return p


def _images(root, n=2, size=(16, 16)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_traceable():
    import keras

    x = keras.Input((4, 4, 1))
    ok = keras.Model(x, keras.layers.Conv2D(1, 1, name="c_1.a-b")(x), name="m")
    bad = keras.Model(x, keras.layers.Conv2D(1, 1, name="c 1")(x), name="m2")
    assert traceable(ok) and not traceable(bad)
    assert not traceable(keras.Sequential([keras.Input((4, 4, 1)), bad], name="outer"))  # nested


@pytest.mark.parametrize("command", ["show", "cam"])
def test_batch_with_untraceable_names(tmp_path, spaced_model, command):
    imgs = _images(tmp_path, 3)  # the 2nd and 3rd image take the path that would trace
    assert main([command, *imgs, "--model", str(spaced_model), "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 3


def test_atlas_with_untraceable_names(tmp_path, spaced_model):
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        _images(tmp_path / "data" / cls, 3)
    out = tmp_path / "atlas"
    args = ["atlas", "--data", str(tmp_path / "data"), "--model", str(spaced_model), "--classes", "a,b"]
    assert main([*args, "--batch-size", "2", "--out", str(out)]) == 0
    assert {la["name"] for la in json.loads((out / "atlas.json").read_text())["layers"]} == {"first conv", "conv(2)"}
