"""Everything that touches the disk: atomic writes of PNG, NPZ and JSON files.

A file is written to a temporary name in its final folder and renamed into place, so a crash or Ctrl-C
never leaves a half-written file where a user would look for a result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import struct
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from featuremaps.errors import UserError

#: PNG settings chosen by benchmarks/bench_render.py. Rendered pictures are nearest-upsampled blocks on a
#: white page, which zlib's LZ77 matches best *unfiltered*: no PNG row filter + zlib level 1 gave the smallest
#: files (3.7 MB for VGG16's overview + 13 layer PNGs) at ~2.5x the speed of Pillow's encoder (adaptive row
#: filters, 5.1 MB at level 1). Pillow is still used for arrays this encoder does not take.
PNG_COMPRESS_LEVEL = 1
#: zlib strategy: -1 zlib's default; zlib.Z_RLE / Z_FILTERED / Z_HUFFMAN_ONLY were measured too.
PNG_COMPRESS_TYPE = -1
#: PNG row filter for the built-in encoder: 0 none, 1 sub, 2 up.
PNG_FILTER = 0


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
    why = _write_refused(probe)
    if why:
        where = f"{p}" if probe == p else f"{p} ({probe} refuses it)"
        raise UserError(f"cannot write into {where}: {why}; choose another with --out")
    return p


def _write_refused(folder: Path) -> str | None:
    """Why nothing can be written into the existing ``folder``, or None. ``os.access`` says yes to root
    everywhere, and ``/proc`` or a read-only mount refuse anyway: a folder named by featuremaps' temporary
    pattern (swept if a kill left it) is made and removed."""
    trial = folder / f".featuremaps-probe.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.mkdir(trial)
    except OSError as e:
        return str(e.strerror or e)
    with contextlib.suppress(OSError):
        os.rmdir(trial)
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    ensure_dir(path.parent)
    _sweep_once(path.parent)
    tmp = str(_temp_name(path))
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as to any file
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; choose another output location") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(
    a: np.ndarray, level: int | None = None, strategy: int | None = None, row_filter: int | None = None
) -> bytes | None:
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
        raw[:, 1 + c :] -= rows[:, :-c]
    elif row_filter == 2:  # up: minus the row above (the first row's "above" is zeros)
        raw[1:, 1:] -= rows[:-1]
    co = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY if strategy == -1 else strategy)
    data = co.compress(raw) + co.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG, atomically."""
    rgb = np.asarray(rgb)
    data = encode_png(rgb)
    if data is None:  # other dtypes/shapes: as Pillow writes them
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
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, a in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
    return Path(path)


def save_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        # errors=replace: a non-UTF-8 file name (a lone surrogate in Python) shows as ?, never a crash
        with open(tmp, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    return Path(path)


class SpooledText:
    """The parts of a text file whose beginning is known only at the end (see :func:`spooled_text`)."""

    def __init__(self, spool):
        self._spool = spool
        self.head = ""
        self.tail = ""

    def write(self, part: str) -> None:
        """Append ``part`` to the body (it goes to disk now, not to memory)."""
        self._spool.write(part)


@contextlib.contextmanager
def spooled_text(path: str | Path) -> Iterator[SpooledText]:
    """Write a large text file in bounded memory: body parts go to an anonymous temporary file as they come,
    ``head`` and ``tail`` are set last (a page whose table of contents needs every section first); on success
    the file is assembled beside ``path`` and renamed to it, on any error nothing is left.

    Example::

        with spooled_text("report.html") as doc:
            for section in sections:
                doc.write(section)
            doc.head, doc.tail = "<html><body>", "</body></html>"
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=path.parent) as spool:
            doc = SpooledText(spool)
            yield doc
            spool.flush()
            spool.seek(0)
            with open(tmp, "w", encoding="utf-8", errors="replace") as f:
                f.write(doc.head)
                shutil.copyfileobj(spool, f, 4 << 20)
                f.write(doc.tail)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: The manifest files by which featuremaps recognises the folders it wrote (``show``, ``cam``, ``compare``,
#: ``compare-classes``, ``atlas``): a JSON object with a top-level ``"featuremaps"`` key (its version).
MANIFESTS = ("manifest.json", "cam.json", "compare.json", "atlas.json")
#: Sub-folders another command writes inside an output folder (``cam`` writes ``OUT/<image>/cam/``).
OWN_SUBFOLDERS = ("cam",)


def _is_manifest(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and "featuremaps" in obj


def made_by_featuremaps(folder: str | Path) -> bool:
    """True if ``folder`` is one featuremaps wrote (so it may replace it), or an empty folder.

    A folder counts as featuremaps' own when it holds one of :data:`MANIFESTS` with a ``"featuremaps"``
    key, or holds nothing but featuremaps' own sub-folders (``cam/``, written before ``show`` ran). A
    symlink, a file, or a folder holding anything else is the user's and is never replaced.
    """
    p = Path(folder)
    if p.is_symlink() or not p.is_dir():
        return False
    try:
        entries = list(p.iterdir())
    except OSError:
        return False
    if any(_is_manifest(p / name) for name in MANIFESTS if (p / name).is_file()):
        return True
    return all(e.name in OWN_SUBFOLDERS and made_by_featuremaps(e) for e in entries)


def check_replaceable(path: str | Path) -> Path:
    """Fail (UserError) unless ``path`` is absent or a folder featuremaps made and may replace."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return p
    here = Path.cwd().resolve()
    if p.resolve() == here or p.resolve() in here.parents:
        raise UserError(
            f"{p} is the current folder or holds it; featuremaps writes its output into a folder of "
            "its own: pass --out with a new folder name"
        )
    if not made_by_featuremaps(p):
        what = "a file" if p.is_file() else "a link" if p.is_symlink() else "a folder featuremaps did not make"
        raise UserError(
            f"{p} is {what}; featuremaps replaces only its own output folders: move it away or choose another --out"
        )
    if not os.access(p, os.W_OK):
        raise UserError(f"output folder {p} is not writable; choose another with --out")
    return p


#: The mark in the ``<head>`` of every HTML page featuremaps writes (``report``'s page, compare and atlas pages):
#: ``<meta name="generator" content="featuremaps VERSION">``, within the first :data:`PAGE_HEAD_BYTES`.
PAGE_MARK = re.compile(rb'<meta name="generator" content="featuremaps[ "]')
PAGE_HEAD_BYTES = 4096
#: How report pages began before they carried the mark (recognised too, so they can be rewritten).
_LEGACY_PAGE = b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport"'
_LEGACY_TITLE = b"<title>featuremaps report: "


def made_by_featuremaps_page(path: str | Path) -> bool:
    """True if ``path`` is an HTML page featuremaps wrote: its first few KB hold :data:`PAGE_MARK` (or the
    head of a report written before the mark existed). Links, folders and special files never are."""
    p = Path(path)
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(PAGE_HEAD_BYTES)
    except OSError:
        return False
    return bool(PAGE_MARK.search(head)) or (head.startswith(_LEGACY_PAGE) and _LEGACY_TITLE in head)


def check_replaceable_page(path: str | Path) -> Path:
    """Fail (UserError, one line) unless ``path`` is absent or an HTML page featuremaps wrote, which it may
    replace; then check that the file can be written there (before any work)."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not made_by_featuremaps_page(p):
            what = (
                "a link" if p.is_symlink() else "not a file" if not p.is_file() else "a file featuremaps did not write"
            )
            raise UserError(
                f"{p} exists and is {what}; featuremaps replaces only its own pages: move it away or choose "
                "another --out"
            )
    folder = p.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    why = "not a folder" if not folder.is_dir() else _write_refused(folder)
    if why:
        raise UserError(f"cannot write {p} ({folder}: {why}); choose another output location")
    return p


def check_output_folder(path: str | Path, own, what: str) -> Path:
    """Fail (UserError, one line) unless ``path`` is absent, an empty folder, or one that ``own(path)`` says
    featuremaps wrote (``what`` names that output in the message); then :func:`check_writable`. For commands
    that write their files into a folder one by one (``evaluate``, ``train``) instead of replacing it whole."""
    p = Path(path)
    if p.is_symlink() and not p.is_dir():
        raise UserError(f"--out {p} is a broken link; choose another folder")
    if p.exists():
        if not p.is_dir():
            raise UserError(f"--out {p} is a file; pass a folder (new, empty, or {what})")
        try:
            empty = not any(p.iterdir())
        except OSError as e:
            raise UserError(f"cannot read output folder {p}: {e.strerror or e}; choose another with --out") from None
        if not empty and not own(p):
            raise UserError(
                f"--out {p} is a folder featuremaps did not make (it is not empty and not {what}); featuremaps "
                "writes only into a new or empty folder or its own output: choose another --out"
            )
    return check_writable(p)


#: featuremaps' own leftovers: ``.<name>.<random>.tmp`` (atomic writes) and ``.<name>.<pid>-<hex>.old``
#: (a replaced folder). Only names of this shape, older than :data:`STALE_AFTER` seconds, are ever swept.
TEMP_PATTERN = re.compile(r"^\..+\.(?:[A-Za-z0-9_]{6,}\.tmp|\d+-[0-9a-f]{8}\.old)$")
STALE_AFTER = 3600.0
_SWEPT: set[str] = set()


def sweep_stale(folder: str | Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove featuremaps' own temporary files and folders left in ``folder`` by a killed run.

    Only entries named by :data:`TEMP_PATTERN` and unmodified for ``older_than`` seconds go (a running
    process's temporary files are younger); anything else is left alone. Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not TEMP_PATTERN.match(e.name):
            continue
        try:
            if now - e.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def _sweep_once(folder: Path) -> None:
    key = str(folder.resolve()) if folder.exists() else str(folder)
    if key not in _SWEPT:
        _SWEPT.add(key)
        sweep_stale(folder)


def _temp_prefix(name: str) -> str:
    # file names may be 255 bytes: keep the temporary name well under that whatever the final name
    return "." + name.encode("utf-8", "surrogateescape")[:96].decode("utf-8", "ignore") + "."


def _temp_name(path: Path) -> Path:
    """A fresh name beside ``path`` in featuremaps' temp pattern ``.<name>.<random>.tmp``."""
    return path.with_name(f"{_temp_prefix(path.name)}{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_dir(path: str | Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, else it is removed.

    ``path`` may only be absent or a folder featuremaps made (:func:`made_by_featuremaps`): anything else is
    the user's, and a one-line UserError leaves it untouched. Entries of the old folder named in ``keep``
    (another command's results, e.g. ``cam``) move into the new one unless it made its own. Two processes
    committing the same folder at once both succeed; the last one's folder stays.
    """
    path = Path(path)
    check_replaceable(path)  # fail before any work
    ensure_dir(path.parent)
    _sweep_once(path.parent)
    tmp = _temp_name(path)
    try:
        os.mkdir(tmp, 0o777)  # the process umask applies, as to any folder
    except OSError as e:
        raise UserError(f"cannot write into {path.parent}: {e.strerror or e}; choose another --out") from None
    try:
        yield tmp
        _commit_dir(tmp, path, keep)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit_dir(tmp: Path, path: Path, keep: tuple[str, ...]) -> None:
    olds = []
    try:
        for _ in range(100):  # another process may commit the same folder between our two renames
            if path.exists() or path.is_symlink():
                if not made_by_featuremaps(path) and (path.exists() or path.is_symlink()):
                    if made_by_featuremaps(path) or not (path.exists() or path.is_symlink()):
                        continue  # it was being swapped by another writer: look again
                    check_replaceable(path)  # a user's folder appeared while we worked: one line, untouched
                old = path.with_name(f"{_temp_prefix(path.name)}{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
                try:
                    os.replace(path, old)
                except FileNotFoundError:
                    continue  # the other writer moved it away first
                olds.append(old)
                for name in keep:
                    if (old / name).exists() and not (tmp / name).exists():
                        os.replace(old / name, tmp / name)
            try:
                os.replace(tmp, path)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise UserError(f"could not replace {path}: other processes keep writing it; try again")
    finally:
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)


def unique_names(names: Iterable[str], alternatives: Iterable[str] | None = None) -> list[str]:
    """``names`` made unique (case-insensitively, as on macOS/Windows disks), in order.

    A repeated name takes its alternative (e.g. the stem with the file's suffix: ``x.png``, ``x.jpg`` ->
    ``x``, ``x_jpg``) if that is free, else a number: ``a_b``, ``a_b-2``.
    """
    names = list(names)
    alts = list(alternatives) if alternatives is not None else names
    used: set[str] = set()
    out = []
    for name, alt in zip(names, alts, strict=True):
        cand, k = name, 2
        if cand.lower() in used:
            cand = alt
        while cand.lower() in used:
            cand, k = f"{name}-{k}", k + 1
        used.add(cand.lower())
        out.append(cand)
    return out


def output_names(paths: Iterable[str | Path]) -> list[str]:
    """One output folder name per input image, never shared: the stem, made unique (:func:`unique_names`)."""
    paths = [Path(p) for p in paths]
    return unique_names([safe_name(p.stem) for p in paths], [safe_name(f"{p.stem}_{p.suffix[1:]}") for p in paths])


def safe_name(name: str) -> str:
    """A layer or image name as a file name: path separators and odd characters become '_' or '.'.

    At most :data:`MAX_NAME` characters, so prefixes (``compare_``, ``C01_``) and suffixes keep a name under
    the file system's 255 bytes; names that then collide are told apart by :func:`unique_names`.
    """
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name.replace("/", ".")).strip(".")[:MAX_NAME] or "x"


#: Longest name :func:`safe_name` returns.
MAX_NAME = 200
