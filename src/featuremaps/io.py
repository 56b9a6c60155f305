"""Everything that touches the disk: atomic writes of PNG, NPZ and JSON files.

A file is written to a temporary name in its final folder and renamed into place, so a crash or Ctrl-C
never leaves a half-written file where a user would look for a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UserError

#: PNG settings chosen by benchmarks/bench_render.py. Rendered pictures are nearest-upsampled blocks on a
#: white page, which zlib's LZ77 matches best *unfiltered*: no PNG row filter + zlib level 1 gave the smallest
#: files (3.7 MB for VGG16's overview + 13 layer PNGs) at ~2.5x the speed of Pillow's encoder (adaptive row
#: filters, 5.1 MB at level 1). Pillow is still used for arrays this encoder does not take.
PNG_COMPRESS_LEVEL = 1
#: zlib strategy: -1 zlib's default; zlib.Z_RLE / Z_FILTERED / Z_HUFFMAN_ONLY were measured too.
PNG_COMPRESS_TYPE = -1
#: PNG row filter for the built-in encoder: 0 none, 1 sub, 2 up.
PNG_FILTER = 0
_UMASK = os.umask(0)
os.umask(_UMASK)


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents) or fail with a one-line UserError."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {p}: {e.strerror or e}; "
                        "choose another with --out") from None
    if not os.access(p, os.W_OK):
        raise UserError(f"output folder {p} is not writable; choose another with --out")
    return p


def check_writable(path: str | Path) -> Path:
    """Fail early (UserError) if ``path`` could not be created or written, without creating anything."""
    p = Path(path)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"cannot create output folder {p}: {probe} is a file; choose another with --out")
    if not os.access(probe, os.W_OK):
        raise UserError(f"output folder {p} is not writable ({probe}); choose another with --out")
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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(a: np.ndarray, level: int | None = None, strategy: int | None = None,
               row_filter: int | None = None) -> bytes | None:
    """PNG bytes of a uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array; None for anything else."""
    level = PNG_COMPRESS_LEVEL if level is None else level
    strategy = PNG_COMPRESS_TYPE if strategy is None else strategy
    row_filter = PNG_FILTER if row_filter is None else row_filter
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or 0 in a.shape:
        return None
    c = 1 if a.ndim == 2 else a.shape[2]
    if c not in (1, 3, 4) or row_filter not in (0, 1, 2):
        return None
    h, w = a.shape[:2]
    rows = np.ascontiguousarray(a).reshape(h, w * c)
    raw = np.empty((h, w * c + 1), np.uint8)
    raw[:, 0] = row_filter
    raw[:, 1:] = rows
    if row_filter == 1:  # sub: minus the pixel to the left
        raw[:, 1 + c:] -= rows[:, :-c]
    elif row_filter == 2:  # up: minus the row above (the first row's "above" is zeros)
        raw[1:, 1:] -= rows[:-1]
    co = zlib.compressobj(level, zlib.DEFLATED, 15, 9,
                          zlib.Z_DEFAULT_STRATEGY if strategy == -1 else strategy)
    data = co.compress(raw) + co.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG, atomically."""
    rgb = np.asarray(rgb)
    data = encode_png(rgb)
    if data is None:  # other dtypes/shapes: as Pillow writes them
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(rgb))
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_COMPRESS_TYPE)
        return Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


@contextlib.contextmanager
def png_writer(workers: int = 1) -> Iterator:
    """``save(path, rgb)`` that encodes and writes on a worker thread, so the caller renders the next picture
    meanwhile (zlib releases the GIL). Leaving the block waits for every file and re-raises the first error.
    Arrays passed in must not be changed afterwards (the renderers return fresh ones)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="featuremaps-png")
    futures = []
    try:
        yield lambda path, rgb: futures.append(pool.submit(save_png, path, rgb))
        for f in futures:
            f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def save_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
    return Path(path)


def save_npz(path: str | Path, **arrays) -> Path:
    """Like ``np.savez_compressed`` (read with ``np.load``), at zlib level 1: ~3x faster for float maps."""
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, a in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
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
def atomic_dir(path: str | Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, else it is removed.

    Entries of the old folder named in ``keep`` (another command's results, e.g. ``cam``) move into the
    new one unless it made its own.
    """
    import shutil

    path = Path(path)
    ensure_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            for name in keep:
                if (path / name).exists() and not (tmp / name).exists():
                    os.replace(path / name, tmp / name)
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
