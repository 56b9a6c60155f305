"""FER2013 loaders: the folder layout and the original CSV give the same arrays for the same faces.

Splits keep their canonical names: ``Training`` (train), ``PublicTest`` (validation, model selection) and
``PrivateTest`` (the final report only). Labels are mapped by *name* to :data:`featuremaps.emotion.EMOTIONS`,
never by position: the CSV codes (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral) are not
in the alphabetical order of the folder names.
"""

from __future__ import annotations

import csv
import io
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from featuremaps.emotion.shipped import EMOTIONS
from featuremaps.errors import UserError
from featuremaps.images import load_image

SPLITS = ("Training", "PublicTest", "PrivateTest")
CSV_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SIDE = 48
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class FerSplit:
    """Faces of one split: ``x`` (N, 48, 48) uint8, ``y`` (N,) int64 indices into ``classes``, ``sources``."""

    x: np.ndarray
    y: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FerData:
    splits: dict[str, FerSplit]
    classes: tuple[str, ...] = EMOTIONS
    skipped: list[str] = field(default_factory=list)

    def __getitem__(self, split: str) -> FerSplit:
        if split not in self.splits or len(self.splits[split]) == 0:
            have = ", ".join(k for k, v in self.splits.items() if len(v)) or "none"
            raise UserError(
                f"the dataset has no {split} faces (splits found: {have}); check the --data path and its layout"
            )
        return self.splits[split]


class _Collector:
    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.rows: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SPLITS}
        self.skipped: list[str] = []

    def bad(self, where: str, why: str, fix: str) -> None:
        if self.skip_bad:
            self.skipped.append(f"{where}: {why}")
            return
        raise UserError(f"{where}: {why}; {fix} (or pass --skip-bad to skip such entries)")

    def add(self, split: str, face: np.ndarray, label: int, source: str) -> None:
        xs, ys, srcs = self.rows[split]
        xs.append(face)
        ys.append(label)
        srcs.append(source)

    def result(self) -> FerData:
        splits = {}
        for s, (xs, ys, srcs) in self.rows.items():
            x = np.stack(xs).astype(np.uint8) if xs else np.zeros((0, SIDE, SIDE), np.uint8)
            splits[s] = FerSplit(x, np.asarray(ys, dtype=np.int64), srcs)
        return FerData(splits, EMOTIONS, self.skipped)


def _decode_face(data: bytes | Path, name: str) -> np.ndarray:
    """A 48x48 uint8 face from a file or an archive member's bytes, read by the shared loader (16-bit by its
    range, EXIF rotation, the pixel limit, regular files only) and made gray as every model input is."""
    rgb = load_image(name, fileobj=io.BytesIO(data)) if isinstance(data, bytes) else load_image(data, name=name)
    im = Image.fromarray(rgb).convert("L")
    if im.size != (SIDE, SIDE):
        im = im.resize((SIDE, SIDE), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _split_of(rel_parts: tuple[str, ...]) -> str | None:
    """('train', 'happy', 'Training_1.png') -> 'Training'; test files are named by their split."""
    top, name = rel_parts[0].lower(), rel_parts[-1]
    if top == "train":
        return "Training"
    if top == "test":
        for s in ("PublicTest", "PrivateTest"):
            if name.startswith(s):
                return s
    return None


def _label_of(folder: str) -> int | None:
    f = folder.lower()
    return EMOTIONS.index(f) if f in EMOTIONS else None


def _add_file(col: _Collector, rel: tuple[str, ...], where: str, read) -> None:
    if len(rel) != 3 or rel[0].lower() not in ("train", "test"):
        return  # READMEs and other files beside the data
    if not rel[-1].lower().endswith(IMAGE_SUFFIXES):
        return
    label = _label_of(rel[1])
    if label is None:
        col.bad(
            where,
            f"class folder '{rel[1]}' is not one of {', '.join(EMOTIONS)}",
            "rename the folder to an emotion name",
        )
        return
    split = _split_of(rel)
    if split is None:
        col.bad(
            where,
            "file names under test/ must start with PublicTest_ or PrivateTest_",
            "rename it so its split is known",
        )
        return
    raw = read()  # an archive that cannot be read fails as a whole (load_tar), not as this one image
    try:
        face = _decode_face(raw, rel[-1])
    except UserError as e:  # the loader's one line names the file and what is wrong with it
        col.bad(where, f"unreadable image ({e})", "replace or delete the file")
        return
    except Exception as e:  # anything else Pillow raises for a broken file
        col.bad(where, f"unreadable image ({type(e).__name__})", "replace or delete the file")
        return
    col.add(split, face, label, where)


def _check_classes(counts: dict[str, int], root: str) -> None:
    for emotion in EMOTIONS:
        if counts.get(emotion, 0) == 0:
            raise UserError(
                f"{root}: class folder '{emotion}' is missing or empty under train/; "
                f"FER2013 needs all of {', '.join(EMOTIONS)}"
            )


def load_folder(root: str | Path, skip_bad: bool = False, limit: int | None = None) -> FerData:
    """``ROOT/{train,test}/<emotion>/*.png`` (or the folder holding ``fer2013/``).

    ``limit`` caps the faces read per class and split (quick tests and tries).
    """
    root = Path(root)
    if not (root / "train").is_dir() and (root / "fer2013" / "train").is_dir():
        root = root / "fer2013"
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise UserError(
            f"{root}: no train/ or test/ folder; expected ROOT/train/<emotion>/*.png and "
            f"ROOT/test/<emotion>/PublicTest_*.png"
        )
    col = _Collector(skip_bad)
    counts: dict[str, int] = {}
    for top in ("train", "test"):
        d = root / top
        if not d.is_dir():
            continue
        for cls in sorted(p for p in d.iterdir() if p.is_dir()):
            named = sorted(p for p in cls.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            files = [p for p in named if p.is_file()]  # a FIFO named Training_3.png would block the read
            for p in named:
                if not p.is_file():
                    col.skipped.append(f"{p}: not a regular file (a FIFO, socket, device or folder)")
            if top == "train":
                counts[cls.name.lower()] = len(files)
            if not files:
                col.bad(str(cls), "empty class folder", "add its images or remove the folder")
            taken: dict[str | None, int] = {}
            for p in files:
                split = _split_of((top, cls.name, p.name))
                if limit is not None and taken.get(split, 0) >= limit:
                    continue
                taken[split] = taken.get(split, 0) + 1
                _add_file(col, (top, cls.name, p.name), str(p), lambda p=p: p)
    if (root / "train").is_dir() and not skip_bad:
        _check_classes(counts, str(root))
    return col.result()


def load_tar(path: str | Path, skip_bad: bool = False, limit: int | None = None) -> FerData:
    """The archive as distributed (``fer2013.tar.gz``), read without unpacking; ``limit`` faces per class and split."""
    col = _Collector(skip_bad)
    seen: dict[tuple[str, str], int] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = tuple(Path(m.name).parts)
                if parts and parts[0] == "fer2013":
                    parts = parts[1:]
                if len(parts) == 3 and limit is not None:
                    key = (parts[0], parts[1], _split_of(parts))
                    if seen.get(key, 0) >= limit:
                        continue
                    seen[key] = seen.get(key, 0) + 1
                _add_file(col, parts, f"{path}:{m.name}", lambda m=m: tar.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path}: cannot read the archive, it is truncated or corrupt ({why}); download it again"
        ) from None
    return col.result()


def load_csv(path: str | Path, skip_bad: bool = False) -> FerData:
    """The original ``fer2013.csv`` (columns ``emotion,pixels,Usage``)."""
    col = _Collector(skip_bad)
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # -sig: a CSV saved with a BOM reads the same
    except OSError as e:
        raise UserError(f"cannot open {path}: {e.strerror}; check the --data path") from None
    with f:
        try:
            _read_csv_rows(col, csv.DictReader(f), path)
        except UnicodeDecodeError as e:
            raise UserError(
                f"{path}: byte {e.start} is not UTF-8 text; re-save the CSV as UTF-8 (FER2013's own is ASCII)"
            ) from None
        except csv.Error as e:  # e.g. a field over the csv module's size limit
            raise UserError(f"{path}: not a readable CSV ({str(e).splitlines()[0]}); is this fer2013.csv?") from None
    return col.result()


def _read_csv_rows(col: _Collector, reader, path) -> None:
    need = {"emotion", "pixels", "Usage"}
    if not reader.fieldnames:
        raise UserError(
            f"{path} is an empty FER2013 CSV (no header, no rows); pass the complete fer2013.csv "
            "(emotion,pixels,Usage) or a manifest with path,label columns"
        )
    if not need <= set(reader.fieldnames):
        raise UserError(
            f"{path}: expected the columns emotion,pixels,Usage, found "
            f"{','.join(map(repr, reader.fieldnames or [])) or 'nothing'}; is this fer2013.csv?"
        )
    row_no = 1
    for row_no, row in enumerate(reader, start=2):  # row 1 is the header
        where = f"{path} row {row_no}"
        usage = (row["Usage"] or "").strip()
        if usage not in SPLITS:
            col.bad(where, f"unknown Usage '{usage}'", f"use one of {', '.join(SPLITS)}")
            continue
        code = (row["emotion"] or "").strip()
        if not code.isdigit() or int(code) >= len(CSV_CODES):
            col.bad(where, f"unknown emotion label '{code}'", "labels are 0-6")
            continue
        try:
            px = np.array(row["pixels"].split(), dtype=np.float64)
        except (ValueError, AttributeError):
            col.bad(where, "pixels are not all numbers", "fix the row")
            continue
        if px.size != SIDE * SIDE:
            col.bad(where, f"{px.size} pixels instead of {SIDE * SIDE}", "fix the row")
            continue
        if not np.isfinite(px).all():
            col.bad(where, "pixels include nan or inf", "fix the row")
            continue
        if px.min() < 0 or px.max() > 255:
            col.bad(where, "pixel values outside 0-255", "fix the row")
            continue
        col.add(usage, px.reshape(SIDE, SIDE).astype(np.uint8), EMOTIONS.index(CSV_CODES[int(code)]), where)
    if row_no == 1:
        raise UserError(f"{path} is an empty FER2013 CSV (its header and no rows); pass the complete fer2013.csv")


def load(path: str | Path, skip_bad: bool = False, limit: int | None = None) -> FerData:
    """Any of the three forms, by what ``path`` is."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"dataset {p} does not exist; pass --data with the FER2013 folder, CSV or archive")
    if p.is_dir():
        return load_folder(p, skip_bad, limit)
    name = p.name.lower()
    if name.endswith(".csv"):
        return load_csv(p, skip_bad)
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return load_tar(p, skip_bad, limit)
    raise UserError(f"{p}: not a FER2013 folder, .csv or .tar.gz; pass one of those with --data")
