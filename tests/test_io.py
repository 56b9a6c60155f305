"""Atomic writes: a result file is complete or absent, never half-written; no temporary files left behind."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from featuremaps import UserError
from featuremaps.io import (
    atomic_dir,
    atomic_path,
    encode_png,
    ensure_dir,
    safe_name,
    save_json,
    save_npz,
    save_png,
    save_text,
)
from featuremaps.render import colormap


def _all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_save_png_roundtrip_and_mode(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    p = save_png(tmp_path / "sub" / "a.png", rgb)
    with Image.open(p) as im:
        assert im.mode == "RGB" and im.size == (5, 7)
        np.testing.assert_array_equal(np.asarray(im), rgb)
    assert _all_files(tmp_path) == ["sub", "sub/a.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    save_png(tmp_path / "g.png", rgb[..., 0])
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L"


def test_save_json_numpy_values(tmp_path):
    p = save_json(tmp_path / "m.json", {"a": np.float32(1.5), "b": np.arange(3), "c": tmp_path, "d": np.int64(2)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": str(tmp_path), "d": 2}
    with pytest.raises(TypeError):
        save_json(tmp_path / "bad.json", {"x": object()})
    assert _all_files(tmp_path) == ["m.json"]  # the failed write left nothing


def test_save_npz_and_text(tmp_path):
    save_npz(tmp_path / "a.npz", **{"conv/maps": np.ones((2, 2, 1), np.float32), "conv/channels": np.int32([0])})
    with np.load(tmp_path / "a.npz") as z:
        assert z["conv/maps"].dtype == np.float32 and z["conv/channels"].tolist() == [0]
    assert save_text(tmp_path / "t.txt", "hé\n").read_text(encoding="utf-8") == "hé\n"


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "r.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert _all_files(tmp_path) == ["r.txt"]


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    out = tmp_path / "img"
    with atomic_dir(out) as d:
        save_json(d / "manifest.json", {"featuremaps": "test"})  # what makes the folder featuremaps' own
        (d / "a.txt").write_text("1")
    assert _all_files(tmp_path) == ["img", "img/a.txt", "img/manifest.json"]
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as d:
        (d / "b.txt").write_text("2")
        raise KeyboardInterrupt
    assert _all_files(tmp_path) == ["img", "img/a.txt", "img/manifest.json"]  # old result untouched, no temp
    with atomic_dir(out) as d:
        (d / "c.txt").write_text("3")
    assert _all_files(tmp_path) == ["img", "img/c.txt"]  # replaced whole, old copy removed
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask


def test_output_folder_under_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match=r"cannot create output folder .*; choose another with --out") as e:
        ensure_dir(f / "out")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError):
        save_png(f / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(UserError), atomic_dir(f / "sub"):
        pass


@pytest.mark.parametrize(
    "name, want",
    [
        ("conv", "conv"),
        ("base/block1_conv1", "base.block1_conv1"),
        ("a b:c", "a_b_c"),
        ("../x", "x"),
        ("..", "x"),
        ("", "x"),
        ("/", "x"),
    ],
)
def test_safe_name(name, want):
    assert safe_name(name) == want


@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7), (5, 7, 1), (4, 3, 4), (300, 200, 3)])
@pytest.mark.parametrize("row_filter", [0, 1, 2])
def test_encode_png_roundtrip(shape, row_filter):
    import io as pyio
    import struct
    import zlib

    from featuremaps.io import encode_png

    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(a, row_filter=row_filter)
    with Image.open(pyio.BytesIO(data)) as im:
        got = np.asarray(im)
    np.testing.assert_array_equal(got, a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    (n,) = struct.unpack(">I", data[33:37])
    assert data[37:41] == b"IDAT" and len(zlib.decompress(data[41 : 41 + n])) == shape[0] * (a[0].size + 1)


def test_encode_png_falls_back_for_other_arrays(tmp_path):
    from featuremaps.io import encode_png

    assert encode_png(np.zeros((2, 2), np.uint16)) is None
    p = save_png(tmp_path / "b.png", np.zeros((2, 2), bool))
    with Image.open(p) as im:
        assert im.size == (2, 2)


def test_encode_png_indexed_by_a_palette():
    """A (H, W) array of colormap indices with the colormap as palette: an indexed PNG that decodes to the
    colours, a third of the RGB bytes stored; bad palettes or indices past it give None."""
    lut = colormap("viridis")
    idx = (np.arange(96 * 96) % 256).astype(np.uint8).reshape(96, 96)
    data = encode_png(idx, level=0, palette=lut)
    im = Image.open(io.BytesIO(data))
    assert im.mode == "P"
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), lut[idx])
    assert len(data) < len(encode_png(lut[idx], level=0)) / 2.5
    assert encode_png(idx, palette=lut[:10]) is None  # index 255 is past a 10-colour palette
    assert encode_png(lut[idx], palette=lut) is None  # RGB pixels cannot be indices
