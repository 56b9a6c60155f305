"""Shared fixtures: tiny models built in code (no downloads) and small images written to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: FER2013 as users name it (the FEATUREMAPS_FER2013 environment variable), else ../shared beside the checkout
FER_ARCHIVE = Path(os.environ.get("FEATUREMAPS_FER2013") or SHARED / "data" / "fer2013" / "fer2013.tar.gz")
EXAMPLES = ROOT / "examples"


def needs_fer():
    """Skip marker for tests that read real FER2013 faces (never committed to the repo)."""
    return pytest.mark.skipif(
        not FER_ARCHIVE.is_file(),
        reason=f"FER2013 archive not found at {FER_ARCHIVE} (set FEATUREMAPS_FER2013; a fresh clone has no ../shared)",
    )


@pytest.fixture
def tiny_sequential():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="tiny_seq",
    )


@pytest.fixture
def tiny_functional():
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), name="img")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu", name="c2")(a)
    c = keras.layers.DepthwiseConv2D(3, padding="same", name="c3")(b)
    d = keras.layers.Add(name="add")([a, c])
    e = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="c4")(d)
    y = keras.layers.Dense(2, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D()(e))
    return keras.Model(x, y, name="tiny_fn")


@pytest.fixture
def tiny_nested():
    """The transfer-learning shape: Sequential([Input, Rescaling, base CNN, GAP, Dense])."""
    import keras

    keras.utils.set_random_seed(0)
    bi = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(bi)
    h = keras.layers.MaxPooling2D(name="block1_pool")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block2_conv1")(h)
    base = keras.Model(bi, h, name="base")
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255.0),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ],
        name="transfer",
    )


@pytest.fixture
def tiny_unbuilt():
    import keras

    return keras.Sequential(
        [
            keras.layers.Conv2D(3, 3, activation="relu", name="u1"),
            keras.layers.Conv2D(5, 3, activation="relu", name="u2"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ],
        name="unbuilt",
    )


@pytest.fixture
def rgb_image(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    p = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(p)
    return p
