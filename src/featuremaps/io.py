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
import stat
import struct
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    trial = _temp_name(folder / "probe")
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
    a: np.ndarray,
    level: int | None = None,
    strategy: int | None = None,
    row_filter: int | None = None,
    palette: np.ndarray | None = None,
) -> bytes | None:
    """PNG bytes of a uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array; None for anything else.

    ``palette``: a (n <= 256, 3) uint8 table (a colormap's LUT) for a (H, W) array of indices into it: an
    indexed PNG, a third of the RGB one's bytes (the explorer's live grids, colormap indices already)."""
    level = PNG_COMPRESS_LEVEL if level is None else level
    strategy = PNG_COMPRESS_TYPE if strategy is None else strategy
    row_filter = PNG_FILTER if row_filter is None else row_filter
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or 0 in a.shape:
        return None
    c = 1 if a.ndim == 2 else a.shape[2]
    if c not in (1, 3, 4) or row_filter not in (0, 1, 2):
        return None
    if palette is not None:
        palette = np.asarray(palette)
        if c != 1 or palette.dtype != np.uint8 or palette.ndim != 2 or palette.shape[1] != 3:
            return None
        if not 1 <= len(palette) <= 256 or int(a.max()) >= len(palette):
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
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3 if palette is not None else {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    plte = _png_chunk(b"PLTE", np.ascontiguousarray(palette).tobytes()) if palette is not None else b""
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + plte + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )


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
#: ``compare-classes``, ``atlas``): a JSON object with a top-level ``"featuremaps"`` key (its version) and,
#: since the manifests list what they wrote, ``"written"``: ``{relative path: size in bytes}`` of every file
#: the command wrote into the folder (the manifest itself aside).
MANIFESTS = ("manifest.json", "cam.json", "compare.json", "atlas.json")
#: Sub-folders another command writes inside an output folder (``cam`` writes ``OUT/<image>/cam/``): a
#: replaced folder's own ``cam/`` moves into the new one, untouched.
OWN_SUBFOLDERS = ("cam",)
#: What a manifest written before manifests listed their files may name as its own (nothing else is): the
#: files each command is known to write, by manifest name, plus the ``.png`` files the manifest names itself.
_LEGACY_OWN = {
    "manifest.json": re.compile(r"overview\.png|input\.png|face\.png|activations\.npz|index\.html"),
    "cam.json": re.compile(r"panel\.png|input\.png|face\.png|cam\.npz"),
    "compare.json": re.compile(r"compare\.png|compare\.html"),
    "atlas.json": re.compile(r"atlas\.npz|index\.html|(heatmaps|top)/C\d+_[A-Za-z0-9_.+-]+\.png"),
}
_SAFE_REL = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)


def _read_manifest(dirfd: int, name: str) -> dict | None:
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=dirfd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, encoding="utf-8", closefd=False) as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return obj if isinstance(obj, dict) and "featuremaps" in obj else None


def _rel_ok(rel) -> bool:
    """A relative path a manifest may name: plain components, no ``..``, no absolute path."""
    return isinstance(rel, str) and bool(_SAFE_REL.fullmatch(rel)) and ".." not in rel.split("/")


def _lstat(dirfd: int, rel: str) -> os.stat_result | None:
    """``rel``'s lstat under the folder ``dirfd``, reached through real folders only (no link on the way)."""
    parts = rel.split("/")
    fds = [dirfd]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        return os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
    except OSError:
        return None
    finally:
        for fd in fds[1:]:
            os.close(fd)


def _legacy_names(man: dict) -> set[str]:
    named: set[str] = set()

    def collect(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in ("image", "source"):  # inputs are never its own
                    collect(x)
        elif isinstance(v, list):
            for x in v:
                collect(x)
        elif isinstance(v, str) and v.endswith(".png") and _rel_ok(v):
            named.add(v)

    collect({k: man.get(k) for k in ("files", "layers", "maps")})
    return named


@dataclass
class Contents:
    """What a folder featuremaps made holds (paths relative to it): ``manifest`` (its name, or None for an
    empty or cam-only folder), ``own`` (files it wrote there, still as written), ``subresults`` (its own
    sub-folders of another command, e.g. ``cam``) and ``foreign`` (everything else: the user's, kept)."""

    manifest: str | None = None
    own: list[str] = field(default_factory=list)
    subresults: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def result_contents(folder: str | Path, protect: Iterable[str | Path] = ()) -> Contents | None:
    """What ``folder`` holds if it is a folder featuremaps made, else None.

    Its own files are those its manifest lists (``"written"``), each still a regular file of the size written;
    a manifest from before the lists counts only the names its command is known to write. A file in
    ``protect`` (the run's inputs) is never its own. A folder counts as featuremaps' when it holds a manifest
    and at least one of the files it lists (or nothing else), is empty, or holds nothing but featuremaps'
    own sub-folders: a copied manifest beside files it does not list does not make a folder featuremaps'.
    """
    found = _read_folder(folder, protect)
    return found[0] if found else None


def _read_folder(folder: str | Path, protect: Iterable[str | Path] = ()) -> tuple[Contents | None, bool] | None:
    """``(result_contents, writable)`` of the folder at ``folder``; None if nothing is there.

    Read through one descriptor of the folder, and only a folder still at ``folder`` after the reading counts:
    one that another writer renamed away meanwhile (to replace it, then delete its files) is read again at
    the new one, so the answer never depends on timing.
    """
    protected = set()
    for q in protect:
        with contextlib.suppress(OSError):
            st = os.stat(q)
            protected.add((st.st_dev, st.st_ino))
    for _ in range(10_000):
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except FileNotFoundError:
            if os.path.lexists(folder):
                continue  # gone and back (another writer's two renames): read the new one
            return None
        except OSError:
            return None, False  # a file, a link, unreadable: not a folder featuremaps made
        try:
            try:
                c = _contents(fd, protected)
            except OSError:
                c = None
            writable = os.access(".", os.W_OK, dir_fd=fd)
            here = os.fstat(fd)
            try:
                now = os.stat(folder, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (now.st_dev, now.st_ino) == (here.st_dev, here.st_ino):
                return c, writable
        finally:
            os.close(fd)
    return None, False


def _contents(fd: int, protected: set) -> Contents | None:
    entries = sorted(os.listdir(fd))
    c = Contents()
    man = None
    for name in MANIFESTS:
        man = _read_manifest(fd, name)
        if man is not None:
            c.manifest = name
            break
    if c.manifest is None:
        if all(e in OWN_SUBFOLDERS and _sub_is_own(fd, e) for e in entries):
            c.subresults = entries
            return c
        return None
    written = man.get("written")
    if isinstance(written, dict):
        listed = {rel: size for rel, size in written.items() if _rel_ok(rel) and rel != c.manifest}
    else:
        legacy = _LEGACY_OWN[c.manifest]
        listed = {rel: None for rel in _legacy_names(man)}
        listed.update((rel, None) for rel in _walk_files(fd) if legacy.fullmatch(rel))
    for rel, size in sorted(listed.items()):
        st = _lstat(fd, rel)
        if st is None or not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
            continue
        if (st.st_dev, st.st_ino) not in protected:
            c.own.append(rel)
    own_dirs = {"/".join(rel.split("/")[:k]) for rel in c.own for k in range(1, rel.count("/") + 1)}
    own = set(c.own)

    def sort_out(dirfd: int, rel: str, name: str) -> None:
        if rel in own or rel == c.manifest:
            return
        if rel in own_dirs:
            sub = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
            try:
                for e in sorted(os.listdir(sub)):
                    sort_out(sub, f"{rel}/{e}", e)
            finally:
                os.close(sub)
        elif rel in OWN_SUBFOLDERS and rel not in listed and _sub_is_own(dirfd, name):
            c.subresults.append(rel)
        else:
            c.foreign.append(rel)

    for e in entries:
        sort_out(fd, e, e)
    if listed and not c.own and c.foreign:
        return None  # a manifest beside files it does not list: not a folder featuremaps made
    return c


def _sub_is_own(dirfd: int, name: str) -> bool:
    try:
        sub = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
    except OSError:
        return False
    try:
        return _contents(sub, set()) is not None
    except OSError:
        return False
    finally:
        os.close(sub)


def _walk_files(top: int | Path, prefix: str = "", depth: int = 2) -> Iterator[str]:
    """Relative paths of the regular files under ``top`` (a folder or its descriptor), ``depth`` levels deep."""
    fd = top if isinstance(top, int) else os.open(top, _DIR_FLAGS)
    try:
        for e in sorted(os.listdir(fd)):
            try:
                st = os.stat(e, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and depth > 1:
                sub = os.open(e, _DIR_FLAGS, dir_fd=fd)
                try:
                    yield from _walk_files(sub, f"{prefix}{e}/", depth - 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                yield prefix + e
    finally:
        if not isinstance(top, int):
            os.close(fd)


def made_by_featuremaps(folder: str | Path) -> bool:
    """True if ``folder`` is one featuremaps wrote (so it may replace its own files there), or an empty folder.

    See :func:`result_contents`. A symlink, a file, or a folder holding no manifest of featuremaps is the
    user's and is never replaced.
    """
    return result_contents(folder) is not None


def check_replaceable(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fail (UserError) unless ``path`` is absent or a folder featuremaps made and may replace.

    ``inputs`` (the run's input files): one of them that is a file featuremaps wrote in ``path`` would be
    replaced while being read, and is refused.
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return p
    here = Path.cwd().resolve()
    if p.resolve() == here or p.resolve() in here.parents:
        raise UserError(
            f"{p} is the current folder or holds it; featuremaps writes its output into a folder of "
            "its own: pass --out with a new folder name"
        )
    inputs = [Path(q) for q in inputs]
    found = _read_folder(p)
    if found is None:
        return p  # gone meanwhile (another writer between two renames): absent
    contents, writable = found
    if contents is None:
        what = "a file" if p.is_file() else "a link" if p.is_symlink() else "a folder featuremaps did not make"
        raise UserError(
            f"{p} is {what}; featuremaps replaces only its own output folders: move it away or choose another --out"
        )
    if inputs:
        kept = result_contents(p, protect=inputs)
        lost = sorted(set(contents.own) - set(kept.own if kept else ()))
        if lost:
            raise UserError(
                f"{p / lost[0]} is both an input and a file featuremaps wrote in {p}, which this run replaces: "
                "copy it out of that folder and pass the copy"
            )
    if not writable:
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


#: featuremaps' own temporary entries: ``.featuremaps-<pid>-<random>.<name>.tmp`` (a file or folder being
#: written) and ``.featuremaps-<pid>-<random>.<name>.old`` (a replaced folder, while it is retired). Only names
#: of this shape, older than :data:`STALE_AFTER` seconds and left by a process no longer running, are swept.
TEMP_PATTERN = re.compile(r"^\.featuremaps-(\d+)-([0-9a-f]{12})\.(.+)\.(tmp|old)$", re.DOTALL)
STALE_AFTER = 3600.0
_SWEPT: set[str] = set()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: running
    return True


def sweep_stale(folder: str | Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove featuremaps' own temporary entries left in ``folder`` by a killed run.

    Only entries named by :data:`TEMP_PATTERN`, unmodified for ``older_than`` seconds and whose process is
    gone are touched; anything else is left alone. A ``.tmp`` entry holds only what featuremaps wrote and is
    removed; an ``.old`` folder (a replaced result) loses only the files featuremaps wrote there, anything
    else in it moves into the result folder it came from (:func:`retire`). Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = TEMP_PATTERN.match(e.name)
        if not m:
            continue
        try:
            if now - e.stat(follow_symlinks=False).st_mtime < older_than or _alive(int(m.group(1))):
                continue
            if m.group(4) == "old":
                if retire(Path(e.path), folder / m.group(3)) is not None:
                    removed.append(Path(e.path))
            elif e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
                removed.append(Path(e.path))
            else:
                os.unlink(e.path)
                removed.append(Path(e.path))
        except (OSError, ValueError):
            continue
    return removed


def _sweep_once(folder: Path) -> None:
    key = str(folder.resolve()) if folder.exists() else str(folder)
    if key not in _SWEPT:
        _SWEPT.add(key)
        sweep_stale(folder)


def _temp_name(path: Path, kind: str = "tmp") -> Path:
    """A fresh name beside ``path`` in featuremaps' pattern ``.featuremaps-<pid>-<random>.<name>.<kind>``."""
    # file names may be 255 bytes: keep the temporary name well under that whatever the final name
    name = path.name.encode("utf-8", "surrogateescape")[:96].decode("utf-8", "ignore")
    return path.with_name(f".featuremaps-{os.getpid()}-{uuid.uuid4().hex[:12]}.{name}.{kind}")


@contextlib.contextmanager
def atomic_dir(path: str | Path, inputs: Iterable[str | Path] = (), kept: list[str] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, else it is removed.

    ``path`` may only be absent or a folder featuremaps made (:func:`result_contents`): anything else is the
    user's, and a one-line UserError leaves it untouched. The new folder appears whole, then the old one is
    retired (:func:`retire`): only the files featuremaps wrote there are deleted; everything else in it (a
    user's notes, an input, another command's ``cam/``) moves into the new folder, and the paths of the
    user's entries kept so are appended to ``kept`` (relative to ``path``). A kept entry whose name the new
    result also has is refused (one line, nothing changed). ``inputs`` are never deleted. Two processes
    committing the same folder at once both succeed; the last one's folder stays.
    """
    path = Path(path)
    inputs = list(inputs)
    check_replaceable(path, inputs)  # fail before any work
    ensure_dir(path.parent)
    _sweep_once(path.parent)
    tmp = _temp_name(path)
    try:
        os.mkdir(tmp, 0o777)  # the process umask applies, as to any folder
    except OSError as e:
        raise UserError(f"cannot write into {path.parent}: {e.strerror or e}; choose another --out") from None
    try:
        yield tmp
        _record_written(tmp)
        names = _commit_dir(tmp, path, inputs)
        if kept is not None:
            kept.extend(names)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _record_written(folder: Path) -> None:
    """Add the list of files in ``folder`` (``"written"``: relative path -> size) to its manifest."""
    fd = os.open(folder, _DIR_FLAGS)
    try:
        found = next(((n, m) for n in MANIFESTS if (m := _read_manifest(fd, n)) is not None), None)
    finally:
        os.close(fd)
    if found is None:
        return
    name, man = found
    man["written"] = {
        rel: os.lstat(folder / rel).st_size
        for rel in _walk_files(folder, depth=64)
        if rel != name and not TEMP_PATTERN.match(rel.rsplit("/", 1)[-1])
    }
    save_json(folder / name, man)


def _conflicts(old: Path, new: Path, rels: Iterable[str]) -> list[str]:
    """Entries of ``old`` (kept ones, ``rels``) that cannot move into ``new``: a file of the same name is there."""
    out = []
    for rel in rels:
        dst = new / rel
        if not (dst.exists() or dst.is_symlink()):
            continue
        if (old / rel).is_dir() and not (old / rel).is_symlink() and dst.is_dir() and not dst.is_symlink():
            out += _conflicts(old, new, [f"{rel}/{e}" for e in sorted(os.listdir(old / rel))])
        else:
            out.append(rel)
    return out


def _commit_dir(tmp: Path, path: Path, inputs: list) -> list[str]:
    """Swap ``tmp`` in at ``path``; retire the folders it replaces. Returns the user's entries kept."""
    olds = []
    try:
        for _ in range(100):  # another process may commit the same folder between our two renames
            if path.exists() or path.is_symlink():
                old = _temp_name(path, "old")
                try:
                    os.replace(path, old)  # looked at once it is ours alone: no other writer renames it
                except FileNotFoundError:
                    continue  # the other writer moved it away first
                contents = result_contents(old, protect=inputs)
                clash = _conflicts(old, tmp, contents.foreign) if contents is not None else []
                if contents is None or clash:
                    _put_back(old, path)
                    if contents is None:
                        check_replaceable(path)  # a user's folder appeared while we worked: one line, untouched
                        raise UserError(f"{path} changed while featuremaps wrote it; run again")
                    raise UserError(
                        f"{path / clash[0]} is not a file featuremaps wrote (it was added or changed), and this "
                        "run writes one of that name: move it away and run again"
                    )
                with contextlib.suppress(OSError):
                    os.utime(old)  # its age is now: a sweep leaves it to us
                olds.append(old)
            try:
                os.replace(tmp, path)
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        else:
            raise UserError(f"could not replace {path}: other processes keep writing it; try again")
    finally:
        kept: list[str] = []
        for old in olds:
            kept += retire(old, path, inputs) or []
    return kept


def _put_back(old: Path, path: Path) -> None:
    """Rename ``old`` back to ``path``; if another writer's folder is there now, retire ``old`` into it."""
    try:
        os.rename(old, path)
    except OSError:
        retire(old, path)


def retire(old: Path, path: Path, inputs: Iterable[str | Path] = ()) -> list[str] | None:
    """Retire ``old``, a result folder replaced by ``path``: move everything in it that featuremaps did not
    write (the user's entries, its ``cam/``) into ``path``, then delete the files featuremaps wrote and remove
    ``old`` once empty.

    Returns the user's entries moved (relative paths). If something cannot move (``path`` is gone, or holds
    an entry of that name), nothing of ``old`` is deleted: it is renamed back to ``path`` when that is free,
    else to ``<name>-kept-<random>`` beside it, and None is returned; so is a folder that is not featuremaps'.
    Nothing but featuremaps' own files is ever deleted (``os.unlink`` of listed files, ``os.rmdir``).
    """
    contents = result_contents(old, protect=inputs)
    moved: list[str] = []
    if contents is not None:
        for rel in contents.subresults + contents.foreign:
            if not _move_into(old, path, rel):
                break
            if rel not in contents.subresults:
                moved.append(rel)
        else:  # all moved: the rest is featuremaps' own, its manifest last
            for rel in contents.own + ([contents.manifest] if contents.manifest else []):
                with contextlib.suppress(OSError):
                    os.unlink(old / rel)
            _remove_empty(old)
            if not os.path.lexists(old):
                return moved
    for target in (path, path.with_name(f"{path.name}-kept-{uuid.uuid4().hex[:8]}")):
        try:
            os.rename(old, target)  # a folder of the user's, or featuremaps' whole: still readable as before
            return None
        except OSError:
            continue
    return None


def _move_into(old: Path, new: Path, rel: str) -> bool:
    """Move ``old/rel`` to ``new/rel`` (merging folders), never over an existing entry. True if all moved."""
    src, dst = old / rel, new / rel
    for _ in range(50):
        if dst.is_dir() and not dst.is_symlink() and src.is_dir() and not src.is_symlink():
            return all(_move_into(old, new, f"{rel}/{e}") for e in sorted(os.listdir(src)))
        if dst.exists() or dst.is_symlink():
            return False
        try:
            os.rename(src, dst)  # the same file system; never creates ``new`` itself
            return True
        except FileNotFoundError:
            if not (src.exists() or src.is_symlink()):
                return True  # someone else moved it
            if new.is_dir():  # a folder of ``old`` the new result lacks: made one level at a time under ``new``
                parts = rel.split("/")[:-1]
                with contextlib.suppress(FileExistsError, FileNotFoundError):
                    for k in range(1, len(parts) + 1):
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(new.joinpath(*parts[:k]))
            else:
                time.sleep(0.001)  # ``new`` is between two renames of another writer: look again
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                return False
    return False


def _remove_empty(folder: Path) -> None:
    """``os.rmdir`` every empty folder under and including ``folder`` (bottom-up); never deletes a file."""
    for root, dirs, _files in os.walk(folder, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, d))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


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
