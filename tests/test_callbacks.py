"""FeatureMapsCallback: maps of fixed inputs recorded per epoch in a plain model.fit, the epoch x layer sheet's
geometry, nothing recorded or written when switched off, and the sheets reach the disk through io."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image
from test_display import check_bundle

import featuremaps
from featuremaps.callbacks import SHEET_CELL, FeatureMapsCallback, cell_box, render_sheet, sheet_size
from featuremaps.draw import BG
from featuremaps.errors import UserError


def _tiny_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="tiny",
    )


def _fit(cb, epochs=3):
    rng = np.random.default_rng(0)
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    model.fit(rng.random((32, 16, 16, 1), dtype=np.float32), rng.integers(0, 3, 32), epochs=epochs, verbose=0,
              batch_size=8, callbacks=[cb])  # fmt: skip
    return model


def test_maps_recorded_per_epoch_and_sheets_written(tmp_path):
    faces = np.random.default_rng(1).random((2, 16, 16, 1), dtype=np.float32)
    cb = featuremaps.FeatureMapsCallback(faces, layers="all", every=1, out=tmp_path / "maps", names=["a", "b"])
    model = _fit(cb, epochs=3)
    assert [e for e, _ in cb.history] == [1, 2, 3]
    first, last = cb.history[0][1], cb.history[-1][1]
    assert len(first) == 2 and list(first[0]) == ["conv_a", "conv_b"]  # per input, layers in forward order
    assert first[0]["conv_a"].shape == (16, 16) and first[0]["conv_b"].shape == (8, 8)
    assert not np.allclose(first[0]["conv_b"], last[0]["conv_b"])  # the weights changed, so did the maps
    # the last record is the model's current maps (mean over channels)
    probe = keras.Model(model.inputs, model.get_layer("conv_b").output)
    np.testing.assert_allclose(last[1]["conv_b"], np.asarray(probe(faces))[1].mean(-1), atol=1e-5)
    for name in ("a", "b"):
        sheet = np.asarray(Image.open(tmp_path / "maps" / f"{name}.png").convert("RGB"))
        assert sheet.shape[:2] == sheet_size(3, 2)  # 3 epochs x (input + 2 layers)


def test_sheet_geometry_rows_columns_and_cells():
    rng = np.random.default_rng(0)
    maps = [{"c1": rng.random((8, 8)), "c2": rng.random((4, 4)), "c3": np.zeros((2, 2))} for _ in range(4)]
    sheet = render_sheet(rng.random((16, 16, 1)), maps, epochs=[2, 4, 6, 8], cell=40)
    assert sheet.shape == (*sheet_size(4, 3, cell=40), 3)
    for row in range(4):
        for col in range(4):
            y0, x0, y1, x1 = cell_box(row, col, cell=40)
            tile = sheet[y0:y1, x0:x1]
            assert tile.shape == (40, 40, 3)
            assert not (tile == BG).all(axis=-1).any(), (row, col)  # every cell pixel is painted
            if col == 3:  # an all-zero map is one flat colour
                assert len(np.unique(tile.reshape(-1, 3), axis=0)) == 1
            elif col > 0:
                assert len(np.unique(tile.reshape(-1, 3), axis=0)) > 4
        gy = cell_box(row, 0, cell=40)[2]  # the gap under a row is background
        assert (sheet[gy, cell_box(row, 1, cell=40)[1] : cell_box(row, 1, cell=40)[3]] == BG).all()
    assert sheet_size(1, 1) == (sheet_size(1, 1, SHEET_CELL))


def test_nothing_recorded_or_written_when_off(tmp_path):
    faces = np.random.default_rng(1).random((16, 16, 1), dtype=np.float32)  # one image, no batch axis
    cb = FeatureMapsCallback(faces, every=0, out=tmp_path / "maps")
    _fit(cb, epochs=2)
    assert cb.history == [] and not (tmp_path / "maps").exists()
    cb = FeatureMapsCallback(faces, layers="C2", every=2)  # every other epoch, memory only
    _fit(cb, epochs=5)
    assert [e for e, _ in cb.history] == [2, 4] and list(cb.history[0][1][0]) == ["conv_b"]
    assert list(cb.sheets()) == ["image1"]


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="every"):
        FeatureMapsCallback(np.zeros((16, 16, 1)), every=-1)
    with pytest.raises(UserError, match="shape"):
        FeatureMapsCallback(np.zeros((16,)))
    with pytest.raises(UserError, match="one name per image"):
        FeatureMapsCallback(np.zeros((2, 16, 16, 1)), names=["x"])
    with pytest.raises(UserError, match="repeat"):  # two inputs, one sheet file: the second would hide the first
        FeatureMapsCallback(np.zeros((2, 16, 16, 1)), names=["face", "face"])


def test_tensorboard_is_optional(tmp_path):
    import importlib.util

    cb = FeatureMapsCallback(np.zeros((16, 16, 1)), tensorboard_dir=tmp_path / "tb")
    if importlib.util.find_spec("tensorboard") is None:
        assert "tensorboard" in cb.tensorboard_note
    else:
        _fit(cb, epochs=1)
        assert any((tmp_path / "tb").rglob("events.*"))


def test_the_callback_displays_its_sheets_in_a_notebook():
    """A notebook cell ending in the callback shows one sheet per input, epochs so far; before fit, a line."""
    faces = np.random.default_rng(2).random((2, 16, 16, 1), dtype=np.float32)
    cb = featuremaps.FeatureMapsCallback(faces, layers="all", names=["a", "b"])
    empty = cb._repr_mimebundle_()
    assert "no epoch recorded" in empty["text/plain"] and "image/png" not in empty
    _fit(cb, epochs=2)
    b = cb._repr_mimebundle_()
    assert "2 inputs, 2 epochs recorded (last: 2)" in check_bundle(b)
    assert b["text/html"].count("<img") == 2  # a sheet per input
    sheet = np.asarray(Image.open(io.BytesIO(b["image/png"])).convert("RGB"))
    assert sheet.shape[0] >= 2 * sheet_size(2, 2)[0]  # both sheets stacked, each 2 epochs tall
