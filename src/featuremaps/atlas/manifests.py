"""Image manifests: a CSV or Parquet table naming one image (path or URI) and its label per row.

This is what a cluster user has for ImageNet-sized data: ``path,label`` rows, the paths relative to the
manifest's folder, absolute, or URIs (``s3://bucket/train/x.JPEG``, ``gs://...``) read through pyarrow's file
systems. CSV is read with the standard library; Parquet and URIs need pyarrow (``pip install 'featuremaps[ray]'``),
imported only when such a manifest or URI is met.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from featuremaps.errors import UserError
from featuremaps.images import load_image

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
PATH_COLUMN = "path"
LABEL_COLUMN = "label"


def is_uri(p) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: read through pyarrow's file systems."""
    return "://" in str(p)


def _pyarrow(what: str):
    try:
        import pyarrow  # noqa: F401  (optional: only manifests in Parquet and remote URIs need it)
        import pyarrow.fs
        import pyarrow.parquet
    except ImportError:
        raise UserError(f"{what} needs pyarrow; pip install 'featuremaps[ray]' (or pyarrow)") from None
    return pyarrow


def _unreadable_csv(path: Path, e: Exception) -> UserError:
    if isinstance(e, UnicodeDecodeError):
        return UserError(
            f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save the CSV as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8) and pass it again"
        )
    return UserError(f"{path} is not a CSV file Python's csv module can read ({e}); re-export it as CSV")


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file (empty if it has none)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable_csv(path, e) from None


def is_manifest(path: Path, path_column: str = PATH_COLUMN) -> bool:
    """Parquet, or a CSV that is not FER2013's (``emotion,pixels,Usage``): a FER CSV has a ``pixels`` column. An
    empty CSV (no header) is not a manifest: the FER2013 reader names it as an empty FER2013 CSV."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return True
    if not name.endswith(".csv"):
        return False
    head = csv_header(path)
    return bool(head) and (path_column in head or "pixels" not in head)


def read_manifest(
    path: str | Path, path_column: str = PATH_COLUMN, label_column: str = LABEL_COLUMN
) -> tuple[list[str], list[str]]:
    """(image paths, label texts); relative paths are made relative to the manifest's folder.

    Example:
        >>> paths, labels = read_manifest("train.parquet", "uri", "synset")
    """
    path = Path(path)
    if path.name.lower().endswith(".csv"):
        try:
            paths, labels = _read_csv(path, path_column, label_column)
        except (UnicodeDecodeError, csv.Error) as e:
            raise _unreadable_csv(path, e) from None
    else:
        pa = _pyarrow(f"the Parquet manifest {path}")
        try:
            schema = pa.parquet.read_schema(path)
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"{path} is not a Parquet file pyarrow can read ({e}); re-export it") from None
        _check_columns(path, list(schema.names), path_column, label_column)
        table = pa.parquet.read_table(path, columns=[path_column, label_column])
        paths = [str(v) for v in table.column(path_column).to_pylist()]
        labels = [str(v) for v in table.column(label_column).to_pylist()]
    base = path.resolve().parent
    return [p if is_uri(p) or Path(p).is_absolute() else str(base / p) for p in paths], labels


def _read_csv(path: Path, path_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        head = next(rows, [])
        _check_columns(path, head, path_column, label_column)
        pi, li = head.index(path_column), head.index(label_column)
        paths, labels = [], []
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) <= max(pi, li):
                raise UserError(f"{path}, line {n}: {len(row)} fields, expected {len(head)}; fix the row")
            paths.append(row[pi])
            labels.append(row[li])
    return paths, labels


def _check_columns(path: Path, head: list[str], path_column: str, label_column: str) -> None:
    missing = [c for c in (path_column, label_column) if c not in head]
    if missing:
        raise UserError(
            f"manifest {path} has no column {', '.join(repr(c) for c in missing)} (columns: "
            f"{', '.join(head[:8]) or 'none'}); name them with --path-column and --label-column"
        )


def match_labels(labels: list[str], model_classes: list[str] | None, where: str) -> tuple[list[str], np.ndarray]:
    """(class list, label indices): each label is a class name (any case) or a class index 0..n-1; a model
    without class names takes the labels as its classes (numbers in numeric order)."""
    if model_classes is None:
        classes = sorted(set(labels), key=lambda v: (0, int(v), v) if v.strip().isdigit() else (1, 0, v))
        pos = {c: i for i, c in enumerate(classes)}
        return classes, np.asarray([pos[v] for v in labels], np.int64)
    lower = {c.lower(): i for i, c in enumerate(model_classes)}
    n = len(model_classes)

    def index(v: str) -> int | None:  # a class name (any case), else a class index 0..n-1
        if v.lower() in lower:
            return lower[v.lower()]
        s = v.strip()
        return int(s) if s.isdigit() and int(s) < n else None

    idx = [index(v) for v in labels]
    if all(i is not None for i in idx):
        return list(model_classes), np.asarray(idx, np.int64)
    bad = sorted({v for v, i in zip(labels, idx, strict=True) if i is None})
    raise UserError(
        f"{where}: label(s) {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''} are neither the model's classes "
        f"({', '.join(model_classes[:8])}{', ...' if n > 8 else ''}) nor class indices 0-{n - 1}; fix the labels "
        "or pass --classes"
    )


def read_image(p: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a local path or a URI (:func:`featuremaps.images.load_image` semantics;
    ``max_pixels`` None: its default limit)."""
    limit = {"max_pixels": max_pixels} if max_pixels else {}
    if not is_uri(p):
        return load_image(p, **limit)
    pa = _pyarrow(f"reading {p}")
    try:
        fs, inner = pa.fs.FileSystem.from_uri(str(p))
        with fs.open_input_file(inner) as f:
            data = f.read()
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot read {p} ({str(e).splitlines()[0]}); check the URI and credentials") from None
    return load_image(p, fileobj=io.BytesIO(data), **limit)
