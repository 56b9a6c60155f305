"""FER2013 loaders: folder, CSV and archive give the same arrays; bad data is named or counted, never shifted."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from conftest import FER_ARCHIVE, needs_fer
from PIL import Image

from featuremaps.emotion import data as fer
from featuremaps.emotion.model import EMOTIONS
from featuremaps.errors import UserError


def _faces(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def _write_folder(root, faces, labels, splits):
    for i, (f, lab, sp) in enumerate(zip(faces, labels, splits, strict=True)):
        top = "train" if sp == "Training" else "test"
        d = root / top / EMOTIONS[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(f).save(d / f"{sp}_{i:04d}.png")


def _write_csv(path, faces, labels, splits):
    rows = ["emotion,pixels,Usage"]
    for f, lab, sp in zip(faces, labels, splits, strict=True):
        rows.append(f"{fer.CSV_CODES.index(EMOTIONS[lab])},{' '.join(map(str, f.ravel()))},{sp}")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def dataset():
    labels = np.array([i % 7 for i in range(21)])
    splits = ["Training"] * 14 + ["PublicTest"] * 4 + ["PrivateTest"] * 3
    return _faces(21), labels, splits


def _sorted(split):
    order = np.lexsort((split.x.reshape(len(split), -1).sum(1), split.y))
    return split.x[order], split.y[order]


def test_folder_and_csv_give_the_same_faces_and_labels(tmp_path, dataset):
    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer", faces, labels, splits)
    _write_csv(tmp_path / "fer2013.csv", faces, labels, splits)
    a, b = fer.load(tmp_path / "fer"), fer.load(tmp_path / "fer2013.csv")
    for s in fer.SPLITS:
        assert len(a[s]) == len(b[s]) == splits.count(s)
        xa, ya = _sorted(a[s])
        xb, yb = _sorted(b[s])
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_csv_codes_are_mapped_by_name_not_position(tmp_path):
    # CSV code 4 is "sad" and 6 is "neutral": alphabetical order would swap them.
    face = " ".join(["7"] * 2304)
    (tmp_path / "f.csv").write_text(f"emotion,pixels,Usage\n4,{face},Training\n6,{face},Training\n")
    d = fer.load(tmp_path / "f.csv")
    assert [EMOTIONS[i] for i in d["Training"].y] == ["sad", "neutral"]


@pytest.mark.parametrize(
    "row, why",
    [
        ("3,1 2 3,Training", "3 pixels instead of 2304"),
        ("3,{bad},Training", "not all numbers"),
        ("9,{ok},Training", "unknown emotion label '9'"),
        ("3,{ok},Validation", "unknown Usage 'Validation'"),
    ],
)
def test_bad_csv_rows_are_named_or_skipped(tmp_path, row, why):
    ok = " ".join(["1"] * 2304)
    bad = " ".join(["1"] * 2303 + ["x"])
    good = f"0,{ok},Training"
    (tmp_path / "f.csv").write_text(f"emotion,pixels,Usage\n{good}\n{row.format(ok=ok, bad=bad)}\n{good}\n")
    with pytest.raises(UserError, match=f"row 3: .*{why}"):
        fer.load(tmp_path / "f.csv")
    d = fer.load(tmp_path / "f.csv", skip_bad=True)
    assert len(d["Training"]) == 2 and len(d.skipped) == 1 and "row 3" in d.skipped[0]
    np.testing.assert_array_equal(d["Training"].y, [0, 0])  # no shifted labels


def test_csv_missing_columns(tmp_path):
    (tmp_path / "f.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="emotion,pixels,Usage"):
        fer.load(tmp_path / "f.csv")


def test_folder_errors(tmp_path, dataset):
    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer", faces, labels, splits)
    (tmp_path / "fer" / "train" / "happy" / "Training_broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="Training_broken.png: unreadable image"):
        fer.load(tmp_path / "fer")
    assert fer.load(tmp_path / "fer", skip_bad=True).skipped
    (tmp_path / "fer" / "train" / "happy" / "Training_broken.png").unlink()
    (tmp_path / "fer" / "train" / "joy").mkdir()
    Image.fromarray(faces[0]).save(tmp_path / "fer" / "train" / "joy" / "Training_9.png")
    with pytest.raises(UserError, match="class folder 'joy'"):
        fer.load(tmp_path / "fer")


def test_empty_class_folder_and_unknown_split_name(tmp_path, dataset):
    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer", faces, labels, splits)
    for p in (tmp_path / "fer" / "train" / "fear").iterdir():
        p.unlink()
    with pytest.raises(UserError, match="empty class folder"):
        fer.load(tmp_path / "fer")
    _write_folder(tmp_path / "fer2", faces, labels, splits)
    Image.fromarray(faces[0]).save(tmp_path / "fer2" / "test" / "angry" / "img_1.png")
    with pytest.raises(UserError, match="PublicTest_ or PrivateTest_"):
        fer.load(tmp_path / "fer2")


def test_missing_path_and_wrong_kind(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        fer.load(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="not a FER2013 folder"):
        fer.load(tmp_path / "x.txt")


def test_archive_and_folder_agree(tmp_path, dataset):
    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer2013", faces, labels, splits)
    with tarfile.open(tmp_path / "fer2013.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "fer2013", arcname="fer2013")
    a, b = fer.load(tmp_path / "fer2013.tar.gz"), fer.load(tmp_path / "fer2013")
    for s in fer.SPLITS:
        np.testing.assert_array_equal(_sorted(a[s])[0], _sorted(b[s])[0])


@needs_fer()
def test_real_archive_slice():
    d = fer.load(FER_ARCHIVE, limit=5)
    for s in fer.SPLITS:
        # 5 per class and split, except where a class has fewer
        assert len(d[s]) == 35
        assert sorted(set(d[s].y.tolist())) == list(range(7))
        assert d[s].x.shape[1:] == (48, 48) and d[s].x.dtype == np.uint8
        assert 40 < d[s].x.mean() < 200  # real faces, not blank
    assert all(src.split(":")[-1].split("/")[-1].startswith("PrivateTest_") for src in d["PrivateTest"].sources)


@pytest.mark.slow
def test_folder_skips_a_fifo_instead_of_hanging(tmp_path, dataset):
    import os
    import subprocess
    import sys
    from pathlib import Path

    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer", faces, labels, splits)
    fifo = tmp_path / "fer" / "train" / "happy" / "Training_3.png"
    os.mkfifo(fifo)
    # in a child process with a timeout: a blocked open() would hang this test run for good
    code = (
        "import sys\nfrom featuremaps.emotion import data as fer\n"
        f"d = fer.load({str(tmp_path / 'fer')!r})\n"
        "print(len(d['Training']), len(d.skipped), d.skipped[0])\n"
    )
    src = str(Path(fer.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    n, skipped, first = r.stdout.split(" ", 2)
    assert int(n) == splits.count("Training") and int(skipped) == 1
    assert "Training_3.png: not a regular file" in first


def test_folder_faces_go_through_the_shared_loader(tmp_path, dataset):
    faces, labels, splits = dataset
    _write_folder(tmp_path / "fer", faces, labels, splits)
    d = tmp_path / "fer" / "train" / "happy"
    mid = np.full((48, 48), 32768, np.uint16)  # 16-bit mid-grey: convert("L") saturated it to white
    Image.fromarray(mid).save(d / "Training_mid16.png")
    tall = np.zeros((96, 48), np.uint8)  # stored 48 wide x 96 tall, EXIF says rotate: read 96 wide x 48 tall
    tall[:48] = 255  # top half white; after the 90-degree turn it is the left or right half
    im = Image.fromarray(tall)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW
    im.save(d / "Training_exif.png", exif=exif)
    data = fer.load(tmp_path / "fer")
    tr = data["Training"]
    face = tr.x[tr.sources.index(str(d / "Training_mid16.png"))]
    assert 126 <= int(face.mean()) <= 129 and face.max() < 255
    rot = tr.x[tr.sources.index(str(d / "Training_exif.png"))].astype(int)
    assert abs(rot[:, :24].mean() - rot[:, 24:].mean()) > 200  # split left/right, not top/bottom
    assert abs(rot[:24].mean() - rot[24:].mean()) < 30
