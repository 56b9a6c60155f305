"""Everything that touches the disk: atomic writes of PNG, NPZ and JSON files.

A file is written to a temporary name in its final folder and renamed into place, so a crash or Ctrl-C
never leaves a half-written file where a user would look for a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UserError

#: PNG settings chosen by benchmarks/bench_render.py: zlib level 1 is ~5x faster than Pillow's default (6)
#: for ~10% larger files on feature-map grids.
PNG_COMPRESS_LEVEL = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents) or fail with a one-line UserError."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {p}: {e.strerror or e}; choose another with --out") from None
    if not os.access(p, os.W_OK):
        raise UserError(f"output folder {p} is not writable; choose another with --out")
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as any file
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG, atomically."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return Path(path)


def save_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
    return Path(path)


def save_npz(path: str | Path, **arrays) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


def save_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return Path(path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, else it is removed."""
    import shutil

    path = Path(path)
    ensure_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def safe_name(name: str) -> str:
    """A layer or image name as a file name: path separators and odd characters become '_' or '.'."""
    import re

    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name.replace("/", ".")).strip(".") or "x"
