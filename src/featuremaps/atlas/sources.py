"""The atlas' data sources: class folders, FER2013 (folder, CSV or archive) and manifests (CSV or Parquet of
image paths/URIs and labels, :mod:`featuremaps.atlas.manifests`), as one :class:`Source`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuremaps.atlas.manifests import LABEL_COLUMN, PATH_COLUMN, is_manifest, match_labels, read_image, read_manifest
from featuremaps.emotion import data as fer
from featuremaps.errors import UserError
from featuremaps.images import IMAGE_SUFFIXES


@dataclass
class Source:
    """A labelled image collection read lazily: ``items`` are (loader, label index, source text)."""

    classes: list[str]
    paths: list | None = None  # file paths (folders), read on demand
    labels: np.ndarray | None = None
    arrays: np.ndarray | None = None  # (N, H, W) uint8 (FER CSV / archive, already in memory)
    sources: list[str] = field(default_factory=list)
    description: str = ""
    max_pixels: int | None = None  # images over this are unreadable (default images.MAX_PIXELS; --max-pixels)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (H, W) or (H, W, 3); a one-line UserError if it cannot be read."""
        if self.arrays is not None:
            return self.arrays[i]
        return read_image(self.paths[i], self.max_pixels)

    def subset(self, limit: int | None) -> np.ndarray:
        """Indices to use: all, or ``limit`` of them in a fixed shuffled order (every class represented)."""
        n = len(self)
        if limit is None or limit >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(d: Path) -> list[Path]:
    """The files of ``d`` named like images; a FIFO, socket or device so named is kept: reading it fails at
    once (never blocks) and it is named in the skip warning with the other unreadable images."""
    return sorted(p for p in d.iterdir() if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)


def _match_classes(found: list[str], model_classes: list[str] | None, where: str) -> tuple[list[str], list[int]]:
    """The class list of the atlas and each found class's index in it; folders must be model classes."""
    if model_classes is None:
        return list(found), list(range(len(found)))
    lower = [c.lower() for c in model_classes]
    bad = [c for c in found if c.lower() not in lower]
    if bad:
        raise UserError(
            f"{where}: class folder(s) {', '.join(bad[:5])} do not match the model's classes "
            f"({', '.join(model_classes[:10])}{', ...' if len(model_classes) > 10 else ''}); "
            "rename the folders or pass --classes"
        )
    return list(model_classes), [lower.index(c.lower()) for c in found]


def open_source(
    path: str | Path,
    split: str,
    model_classes: list[str] | None,
    path_column: str = PATH_COLUMN,
    label_column: str = LABEL_COLUMN,
) -> Source:
    """FER2013 (folder, CSV, archive), ``ROOT/<class>/*.png`` (``ROOT/<split>/<class>/`` also accepted), or a
    manifest: CSV or Parquet with an image path/URI column and a label column (see :mod:`featuremaps.atlas.manifests`).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"dataset {p} does not exist; pass --data with a FER2013 folder, CSV or archive, "
            "a folder ROOT/<class>/*.png, or a CSV/Parquet manifest"
        )
    if p.is_file() and is_manifest(p, path_column):  # one table = one split; --split does not apply
        paths, texts = read_manifest(p, path_column, label_column)
        classes, labels = match_labels(texts, model_classes, f"manifest {p}")
        return Source(classes, paths, labels, None, list(paths), str(p))
    if p.is_file():  # FER2013 CSV or archive: the loader reads it into memory (48x48 bytes per face)
        data = fer.load(p)
        s = data[split]
        classes, idx = _match_classes(list(data.classes), model_classes, str(p))
        labels = np.asarray(idx, np.int64)[s.y]
        return Source(classes, None, labels, s.x, list(s.sources), f"{p} ({split})")
    root = p / "fer2013" if (p / "fer2013" / "test").is_dir() and not (p / "test").is_dir() else p
    if (root / "test").is_dir() or (root / "train").is_dir():  # FER2013 folder layout: stream the split's files
        if split not in fer.SPLITS:
            raise UserError(f"--split '{split}' is not one of {', '.join(fer.SPLITS)}")
        top = root / ("train" if split == "Training" else "test")
        if not top.is_dir():
            raise UserError(f"{root}: no {top.name}/ folder for the {split} split")
        dirs = _class_dirs(top)
        found = [d.name for d in dirs]
        bad = [c for c in found if c.lower() not in fer.EMOTIONS]
        if bad:
            raise UserError(
                f"{top}: class folder(s) {', '.join(bad[:5])} are not FER2013 emotions "
                f"({', '.join(fer.EMOTIONS)}); rename or remove them"
            )
        classes, idx = _match_classes(found, model_classes, str(top))
        paths, labels = [], []
        for d, ci in zip(dirs, idx, strict=True):
            files = [f for f in _image_files(d) if split == "Training" or f.name.startswith(split)]
            paths += files
            labels += [ci] * len(files)
        desc = f"{root} ({split})"
    else:  # generic ROOT/<class>/*.png
        if (p / split).is_dir():
            p = p / split
        dirs = [d for d in _class_dirs(p) if _image_files(d)]
        if not dirs:
            raise UserError(f"{p}: no class folders with images; expected ROOT/<class>/*.png")
        classes, idx = _match_classes([d.name for d in dirs], model_classes, str(p))
        paths, labels = [], []
        for d, ci in zip(dirs, idx, strict=True):
            files = _image_files(d)
            paths += files
            labels += [ci] * len(files)
        desc = str(p)
    return Source(classes, paths, np.asarray(labels, np.int64), None, [str(q) for q in paths], desc)
