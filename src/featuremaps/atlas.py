"""``featuremaps atlas``: which channels respond to which class, over a whole labelled dataset.

For every chosen conv layer and channel it keeps the mean activation per class (the spatial mean of the
channel's map, averaged over the images of the class) and the 9 images that activate the channel most
(dataset examples, as OpenAI Microscope and the deep visualization toolbox show them).

Data are streamed in batches through one compiled intermediate model whose outputs are the spatial means of
the conv layers (never the maps themselves), and folded into running per-class sums and fixed-size top-k
tables: memory does not grow with the dataset. Those statistics (:class:`AtlasStats`) are a mergeable
reduction, so the same atlas can be computed in parts and merged: ``featuremaps.atlas_ray`` does that on Ray
Data, with :class:`BatchReducer` (the per-worker half) in every actor. Data sources include manifests (CSV or
Parquet of image paths/URIs and labels, :mod:`featuremaps.manifest`); unreadable images are counted, named
and skipped.

Class selectivity index of a channel (Morcos et al. 2018): with ``mu_max`` its largest class mean and
``mu_rest`` the mean of its other class means, ``SI = (mu_max - mu_rest) / (mu_max + mu_rest)``: 0 when it
responds to all classes alike, 1 when it responds to one class only (defined for non-negative, post-ReLU
activations; 0 where the denominator is not positive). A PyTorch or ONNX conv layer's maps are its raw output,
before the BatchNorm and ReLU that follow, so class means can be negative: the index is then taken over the
class means clipped at 0, which keeps it in [0, 1] (unclipped, a channel with class means -0.9 and 1.0 would
score 19). Class means themselves are never clipped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuremaps import __version__, display
from featuremaps.draw import (
    INK,
    MUTED,
    Canvas,
    colorbar_height,
    fit_text,
    fit_text_keep_end,
    line_height,
    text_width,
    title_block,
)
from featuremaps.emotion import data as fer
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter
from featuremaps.html import esc, page
from featuremaps.images import IMAGE_SUFFIXES, fit_to
from featuremaps.io import atomic_dir, safe_name, save_json, save_npz, save_png, save_text, unique_names
from featuremaps.manifest import LABEL_COLUMN, PATH_COLUMN, is_manifest, match_labels, read_image, read_manifest
from featuremaps.maps import select_layers
from featuremaps.pipeline import model_title
from featuremaps.render import apply_colormap, colormap, resize_rgb

TOP_K = 9  # images kept per channel
SHOW_CHANNELS = 6  # most selective channels drawn with their top images, per layer
LIST_CHANNELS = 10  # most selective channels listed in atlas.json / index.html, per layer


# ---------------------------------------------------------------- data sources
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
    manifest: CSV or Parquet with an image path/URI column and a label column (see :mod:`featuremaps.manifest`).
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


# ---------------------------------------------------------------- statistics
class AtlasStats:
    """The atlas as a mergeable reduction: what any slice of the data contributes, folded into a fixed size.

    For each layer ``j``: ``sums[j]`` (n_classes, C) float64, the per-class sums of every channel's spatial mean;
    ``counts`` (n_classes,) images per class; ``top_vals[j]`` / ``top_idx[j]`` (C, k), each channel's k largest
    spatial means and the ids (dataset indices) of their images, kept sorted by value, highest first, and by id,
    lowest first, among equal values (post-ReLU channels are often exactly 0 on many images). Also the images
    reduced, how many were resized, and the unreadable ones (counted; the lowest ``MAX_BAD_NAMES`` ids named).

    ``a.merge(b)`` gives what one pass over both slices gives: counts, top-k tables and named bad images exactly
    (the deterministic tie-break makes the top ids independent of how the data were split and in which order
    partials arrive), sums up to float64 rounding. The local atlas is one partial; on Ray every data block
    yields one and the driver merges them with this same method. Size: ``8 n_classes + 12 k`` bytes per channel,
    whatever the number of images, plus 24 bytes per image reduced (the pixel digests that find a photo filed
    under two classes).

    Example:
        >>> a, b = AtlasStats([64], 7), AtlasStats([64], 7)
        >>> a.update([acts[:100]], labels[:100], ids[:100]); b.update([acts[100:]], labels[100:], ids[100:])
        >>> a.merge(b).top(0)  # == one AtlasStats updated with all of them
    """

    def __init__(self, channels: list[int], n_classes: int, k: int = TOP_K):
        self.k = k
        self.channels = [int(c) for c in channels]
        self.counts = np.zeros(n_classes, np.int64)
        self.sums = [np.zeros((n_classes, c), np.float64) for c in self.channels]
        self.top_vals = [np.full((c, k), -np.inf, np.float32) for c in self.channels]
        self.top_idx = [np.full((c, k), -1, np.int64) for c in self.channels]
        self.images = 0
        self.resized = 0
        self.bad_count = 0
        self.bad: list[tuple[int, str]] = []  # (image id, message), lowest ids first
        # one row per image: (pixel digest, label, id), to find a photo filed under two classes (24 bytes an image)
        self.digests = np.zeros((0, 3), np.int64)

    def update(self, acts: list[np.ndarray], labels: np.ndarray, index: np.ndarray) -> None:
        """``acts``: per layer (B, C) channel means; ``labels`` (B,); ``index`` (B,) dataset indices (image ids)."""
        labels, index = np.asarray(labels, np.int64), np.asarray(index, np.int64)
        n_classes = self.counts.size
        onehot = np.zeros((labels.size, n_classes), np.float64)
        onehot[np.arange(labels.size), labels] = 1.0
        self.counts += np.bincount(labels, minlength=n_classes)
        self.images += labels.size
        for j, a in enumerate(acts):
            a = np.asarray(a, np.float32)
            self.sums[j] += onehot.T @ a.astype(np.float64)
            # only channels where some image reaches the current k-th value can change (few, once tables fill up)
            rows = np.flatnonzero((a.T >= self.top_vals[j][:, -1:]).any(axis=1))
            if rows.size:
                idx = np.broadcast_to(index, (rows.size, index.size))
                v, i = _top_k(
                    np.concatenate([self.top_vals[j][rows], a.T[rows]], axis=1),
                    np.concatenate([self.top_idx[j][rows], idx], axis=1),
                    self.k,
                )
                self.top_vals[j][rows], self.top_idx[j][rows] = v, i

    def add_digests(self, digests: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        """Record each image's pixel digest (:func:`pixel_digest`) with its label and id."""
        rows = np.stack([np.asarray(digests, np.int64), np.asarray(labels, np.int64), np.asarray(index, np.int64)], 1)
        self.digests = np.concatenate([self.digests, rows])

    def duplicates(self) -> list[list[tuple[int, int]]]:
        """Photos filed under more than one class: for each, its (id, label) copies, lowest id first."""
        d = self.digests[np.lexsort((self.digests[:, 2], self.digests[:, 0]))]
        if d.shape[0] < 2:
            return []
        starts = np.flatnonzero(np.r_[True, d[1:, 0] != d[:-1, 0]])
        groups = []
        for a, b in zip(starts, [*starts[1:], d.shape[0]], strict=True):
            if b - a > 1 and np.unique(d[a:b, 1]).size > 1:
                groups.append([(int(i), int(lab)) for _, lab, i in d[a:b]])
        return sorted(groups)

    def add_bad(self, image_id: int, message: str) -> None:
        """Count an image that could not be read (named if among the ``MAX_BAD_NAMES`` lowest ids)."""
        self.bad_count += 1
        self.bad = sorted([*self.bad, (int(image_id), str(message))])[:MAX_BAD_NAMES]

    def merge(self, other: AtlasStats) -> AtlasStats:
        """Fold ``other`` (a partial over different images) into this one; returns ``self``."""
        if other.channels != self.channels or other.counts.size != self.counts.size or other.k != self.k:
            raise ValueError(
                f"cannot merge atlas statistics of different shapes ({other.channels[:3]}..., "
                f"{other.counts.size} classes, k={other.k} vs {self.channels[:3]}..., "
                f"{self.counts.size} classes, k={self.k})"
            )
        self.counts += other.counts
        self.images += other.images
        self.resized += other.resized
        self.bad_count += other.bad_count
        self.bad = sorted(self.bad + other.bad)[:MAX_BAD_NAMES]
        self.digests = np.concatenate([self.digests, other.digests])
        for j in range(len(self.sums)):
            self.sums[j] += other.sums[j]
            self.top_vals[j], self.top_idx[j] = _top_k(
                np.concatenate([self.top_vals[j], other.top_vals[j]], axis=1),
                np.concatenate([self.top_idx[j], other.top_idx[j]], axis=1),
                self.k,
            )
        return self

    def class_means(self, j: int) -> np.ndarray:
        """(n_classes, C) mean activation per class; NaN for classes with no images."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[j] / np.where(self.counts > 0, self.counts, np.nan)[:, None]

    def top(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (values, dataset indices) per channel, highest first; index -1 where fewer were seen."""
        return self.top_vals[j].copy(), self.top_idx[j].copy()


MAX_BAD_NAMES = 20  # unreadable images named in the results (all are counted)
#: below this class selectivity index a channel is reported as preferring no class: its class means are equal
#: to the third decimal (the same photos in every class, or a channel blind to what tells them apart)
SI_FLOOR = 0.005


def pixel_digest(image: np.ndarray) -> int:
    """A 63-bit digest of an image's decoded pixels and shape: equal for the same photo saved twice."""
    h = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8)
    h.update(str(image.shape).encode())
    return int.from_bytes(h.digest(), "little") >> 1


def _top_k(vals: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k entries of largest value, ties to the lowest id; sorted that way (a total order)."""
    keep = np.lexsort((idx, -vals), axis=1)[:, :k]
    return np.take_along_axis(vals, keep, axis=1), np.take_along_axis(idx, keep, axis=1)


def selectivity(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class selectivity index and preferred class from (n_classes, C) means (NaN rows skipped); the index is
    taken over the means clipped at 0 (signed conv outputs), so it is in [0, 1]."""
    m = means[~np.isnan(means).any(axis=1)]
    if m.shape[0] < 2:
        return np.zeros(means.shape[1]), np.zeros(means.shape[1], np.int64)
    pref_rows = np.argmax(m, axis=0)
    r = np.maximum(m, 0.0)  # post-ReLU (Keras conv layers with their activation): the same values
    mu_max = r.max(axis=0)
    mu_rest = (r.sum(axis=0) - mu_max) / (r.shape[0] - 1)
    den = mu_max + mu_rest
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(den > 0, (mu_max - mu_rest) / np.where(den > 0, den, 1.0), 0.0)
    present = np.flatnonzero(~np.isnan(means).any(axis=1))
    return si, present[pref_rows]


# ---------------------------------------------------------------- the model
def _to_input(lm, images: list[np.ndarray], shape) -> tuple[np.ndarray, int]:
    """uint8 images -> preprocessed float32 batch of ``shape``; also how many had to be resized."""
    h, w, ch = shape
    if all(im.ndim == 2 and im.shape == (h, w) for im in images) and ch == 1:
        x = np.stack(images).astype(np.float32)[..., None]
        resized = 0
    else:
        resized = sum(im.shape[:2] != (h, w) for im in images)
        rgb = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
        x = np.stack([fit_to(im, (h, w), ch, "stretch") for im in rgb])
    return np.asarray(lm.preprocess_fn(x), dtype=np.float32), resized


@dataclass
class AtlasResult:
    classes: list[str]
    counts: np.ndarray
    layers: list  # ConvLayer
    means: list[np.ndarray]  # per layer (n_classes, C)
    si: list[np.ndarray]
    preferred: list[np.ndarray]
    top_vals: list[np.ndarray]
    top_idx: list[np.ndarray]
    images: int
    resized: int
    input_shape: tuple
    skipped: int = 0  # unreadable images (counted, not in the statistics)
    bad: list = field(default_factory=list)  # their messages, lowest ids first (at most MAX_BAD_NAMES)
    duplicates: list = field(default_factory=list)  # photos in more than one class: [(id, label), ...] each

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        text = (
            f"featuremaps atlas of {self.images} images in {len(self.classes)} classes, {len(self.layers)} conv layers"
        )
        pics = [(f"{c.label} {c.name}", render_heatmap(self, j)) for j, c in enumerate(self.layers)]
        return display.bundle(text, pics)


def atlas_input_shape(lm, source: Source, index: np.ndarray, input_shape: tuple | None = None) -> tuple:
    """The (H, W, C) every image is fitted to: the model's, else ``input_shape`` (``--input-shape``), else the
    first readable image's size."""
    err = None
    for i in index:
        try:
            first = source.image(int(i))
            break
        except UserError as e:
            err = err or e
    else:
        raise UserError(f"none of the {index.size} images of {source.description} could be read (first: {err})")
    shape = lm.resolve_input_shape(first.shape[:2], input_shape)
    if lm.input_shape and lm.input_shape[-1] is None and not input_shape:
        shape = (*shape[:2], 3 if first.ndim == 3 else shape[2])
    return tuple(shape)


class BatchReducer:
    """The worker's half of the atlas: the model's per-channel spatial means, folded batch by batch into
    AtlasStats. A Keras model becomes one compiled model of channel means; a PyTorch or ONNX model
    (:mod:`featuremaps.frameworks`) gives the chosen layers' maps from one forward pass and NumPy averages them.

    The local atlas runs one; on Ray every actor holds one (the model loads once per actor).
    """

    def __init__(self, lm, shape: tuple, layers, n_classes: int):
        self.lm, self.shape, self.n_classes = lm, tuple(shape), n_classes
        self.adapter = adapter(lm.model, self.shape)
        self.convs = select_layers(self.adapter.conv_layers(self.shape), layers)
        shapes = self.adapter.layer_shapes(self.shape)
        for c in self.convs:
            if c.name not in shapes:
                raise UserError(f"layer {c.name} is not on the path from the model's input to its output")
        self.channels = [int(shapes[c.name][-1]) for c in self.convs]

    def channel_means(self, x: np.ndarray) -> list[np.ndarray]:
        """Per chosen layer, the (B, C) spatial mean of every channel of a preprocessed batch."""
        return self.adapter.channel_means(x, self.convs)

    def new_stats(self) -> AtlasStats:
        return AtlasStats(self.channels, self.n_classes)

    def reduce(self, stats: AtlasStats, ids: np.ndarray, labels: np.ndarray, read) -> None:
        """Fold one batch into ``stats``: ``read(p)`` gives the p-th image of the batch or raises UserError
        (the image is then counted and named as unreadable, and the rest of the batch goes on)."""
        imgs, ok = [], []
        for p, i in enumerate(ids):
            try:
                imgs.append(read(p))
                ok.append(p)
            except UserError as e:
                stats.add_bad(int(i), str(e))
        if not imgs:
            return
        stats.add_digests([pixel_digest(im) for im in imgs], np.asarray(labels)[ok], np.asarray(ids)[ok])
        x, r = _to_input(self.lm, imgs, self.shape)
        stats.resized += r
        stats.update(self.channel_means(x), np.asarray(labels)[ok], np.asarray(ids)[ok])


def compute_atlas(
    lm,
    source: Source,
    *,
    layers="all",
    batch_size: int = 64,
    limit: int | None = None,
    input_shape: tuple | None = None,
    progress=None,
) -> AtlasResult:
    """Stream ``source`` through ``lm`` and return the per-class means, selectivity and top images.

    ``input_shape`` (H, W, C) is the size a model whose input size is free is fed (``--input-shape``; an ONNX
    file with a dynamic size needs it); by default the model's, else the first image's.

    Unreadable images are counted and named (``AtlasResult.skipped``, ``.bad``) and the run goes on.

    Example:
        >>> res = compute_atlas(models.load("emotion"), open_source("fer2013.tar.gz", "PrivateTest", None))
        >>> res.means[0].shape  # (7 classes, 64 channels of C1)
    """
    index = source.subset(limit)
    if index.size == 0:
        raise UserError(f"the dataset {source.description} has no images; check --data and --split")
    shape = atlas_input_shape(lm, source, index, input_shape)
    red = BatchReducer(lm, shape, layers, len(source.classes))
    stats = red.new_stats()
    n = index.size
    for b0 in range(0, n, batch_size):
        ids = index[b0 : b0 + batch_size]
        red.reduce(stats, ids, source.labels[ids], lambda p, ids=ids: source.image(int(ids[p])))
        if progress:
            progress(min(n, b0 + batch_size), n)
    return finish(stats, red.convs, source, shape)


def finish(stats: AtlasStats, convs: list, source: Source, shape: tuple) -> AtlasResult:
    """Class means, selectivity and sorted top-k tables from the (merged) statistics."""
    if stats.images == 0:
        first = stats.bad[0][1] if stats.bad else "no images"
        raise UserError(f"none of the {stats.bad_count} images of {source.description} could be read (first: {first})")
    means = [stats.class_means(j) for j in range(len(convs))]
    sel = [selectivity(m) for m in means]
    tops = [stats.top(j) for j in range(len(convs))]
    return AtlasResult(
        list(source.classes),
        stats.counts.copy(),
        convs,
        means,
        [s for s, _ in sel],
        [p for _, p in sel],
        [t[0] for t in tops],
        [t[1] for t in tops],
        stats.images,
        stats.resized,
        tuple(shape),
        stats.bad_count,
        [m for _, m in stats.bad],
        stats.duplicates(),
    )


# ---------------------------------------------------------------- pictures
def render_heatmap(res: AtlasResult, j: int, cmap: str = "viridis") -> np.ndarray:
    """Class x channel heatmap of one layer: channels sorted by preferred class then selectivity.

    Colour is a channel's class mean divided by its largest class mean (the numeric colour bar below reads
    0 to 1); a grey strip under it shows each channel's selectivity index, red lines separate the groups of
    channels that prefer each class.
    """

    means, si, pref = res.means[j], res.si[j], res.preferred[j]
    K, C = means.shape
    order = np.lexsort((-si, pref))
    m = np.nan_to_num(means[:, order])
    top = m.max(axis=0)
    scaled = np.where(top > 0, m / np.where(top > 0, top, 1), 0.0)
    cw = max(1, min(16, 1024 // C))
    rh = 22
    fs = 13
    names = [f"{name} ({n})" for name, n in zip(res.classes, res.counts, strict=True)]
    label_w = min(200, max(90, max(text_width(t, fs - 1) for t in names) + 12))
    strip_note = "strip: white = SI 0, black = SI 1; red lines separate preferred classes"
    finite = means[np.isfinite(means)]
    span = f" (class means span {finite.min():.3g} to {finite.max():.3g})" if finite.size else ""
    bar_label = f"class mean / channel's largest{span}"
    # wide enough for the map and for every line under it (a few channels must not cut the legend)
    width = max(
        label_w + C * cw + 16,
        560,
        label_w + text_width(strip_note, fs - 1) + 12,
        label_w + 200 + 8 + text_width(bar_label, fs - 1) + 12,
    )
    c_ = res.layers[j]
    tb = title_block(
        width - 12,
        f"{c_.label} {c_.name}: mean activation per class of {C} channels",
        f"{res.images} images; channels sorted by preferred class, then selectivity; "
        "each channel scaled to its largest class mean",
        size=fs + 4,
        sub_size=fs,
    )
    head_h = tb.height + 12
    ys = head_h + K * rh + 6  # selectivity strip (darker = more selective)
    foot = line_height(fs - 1) + 10 + colorbar_height(fs - 1) + 8
    height = ys + 14 + 6 + foot
    c = Canvas.blank(height, width)
    lut = colormap(cmap)
    block = apply_colormap(np.repeat(np.repeat(scaled, rh, axis=0), cw, axis=1), lut)
    c.paste(block, (label_w, head_h))
    strip = (255 - np.clip(si[order], 0, 1) * 255).astype(np.uint8)
    c.rgb[ys : ys + 14, label_w : label_w + C * cw] = np.repeat(strip, cw)[None, :, None]
    for k in range(1, K):  # class-group boundaries
        x = label_w + int(np.searchsorted(pref[order], k)) * cw
        c.rgb[head_h - 4 : ys + 14, x : x + 1] = (255, 80, 80)
    tb.draw(c, 6, 4)
    for k, name in enumerate(names):
        c.text((6, head_h + k * rh + 4), fit_text_keep_end(name, fs - 1, label_w - 8), fs - 1)
    c.text((6, ys), "selectivity", fs - 2, MUTED)
    y = ys + 20
    c.text((label_w, y), strip_note, fs - 1, MUTED)
    y += line_height(fs - 1) + 6
    c.colorbar(label_w, y, 200, lut, 0.0, 1.0, size=fs - 1, label=bar_label)
    return c.rgb


def most_selective(res: AtlasResult, j: int, n: int) -> np.ndarray:
    """Channels by selectivity; near-silent channels (largest class mean under 1% of the layer's) go last."""
    peak = np.nan_to_num(res.means[j]).max(axis=0)
    key = np.where(peak >= 0.01 * max(float(peak.max()), 1e-12), res.si[j], -1.0 + res.si[j] * 1e-3)
    return np.argsort(-key, kind="stable")[:n]


def render_top_images(res: AtlasResult, j: int, source: Source, n: int = SHOW_CHANNELS) -> np.ndarray:
    """For the ``n`` most selective channels of layer j: their 9 most activating images with labels."""

    chans = most_selective(res, j, n)
    side, fs = 72, 12
    label_w = 170
    width = label_w + TOP_K * (side + 4) + 8
    cl = res.layers[j]
    tb = title_block(
        width - 12,
        f"{cl.label} {cl.name}: the {TOP_K} images that activate each of the most selective channels most",
        "ranked by the channel's spatial mean activation; caption: true class and activation",
        size=fs + 4,
        sub_size=fs,
    )
    head_h = tb.height + 10
    row_h = side + 2 * line_height(fs - 1) + 6
    height = head_h + len(chans) * row_h + 6
    c = Canvas.blank(height, width)
    tb.draw(c, 6, 4)
    for r, ch in enumerate(chans):
        y0 = head_h + r * row_h
        c.text((6, y0 + 4), f"F{int(ch) + 1}", fs + 2, INK)
        c.text((6, y0 + 24), f"SI {res.si[j][ch]:.2f}", fs, MUTED)
        c.text(
            (6, y0 + 42), fit_text(f"prefers {preferred_class(res, j, ch) or 'no class'}", fs, label_w - 8), fs, MUTED
        )
        for t, idx in enumerate(res.top_idx[j][ch]):
            if idx < 0:
                continue
            im = source.image(int(idx))
            rgb = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im
            x0 = label_w + t * (side + 4)
            c.paste(resize_rgb(rgb, (side, side)), (x0, y0))
            lab = source.classes[int(source.labels[idx])]
            c.text((x0, y0 + side + 1), fit_text(lab, fs - 1, side), fs - 1, (60, 60, 60))
            c.text((x0, y0 + side + 1 + line_height(fs - 1)), f"{float(res.top_vals[j][ch, t]):.2g}", fs - 1, MUTED)
    return c.rgb


def preferred_class(res: AtlasResult, j: int, ch: int) -> str | None:
    """The class channel ``ch`` of layer ``j`` responds to most, or None when its selectivity is under
    :data:`SI_FLOOR` (its class means are all but equal: no class to name)."""
    if not res.si[j][ch] >= SI_FLOOR:
        return None
    return res.classes[int(res.preferred[j][ch])]


def duplicate_note(res: AtlasResult, source: Source, n: int = 3) -> str:
    """One line naming the photos filed under more than one class (empty when there are none)."""
    if not res.duplicates:
        return ""

    def pair(group) -> str:  # two copies from two different classes (the point of the warning), then a count
        first = group[0]
        other = next((g for g in group[1:] if g[1] != first[1]), group[1])
        more = f" (+{len(group) - 2} more copies)" if len(group) > 2 else ""
        return " = ".join(f"{source.sources[i]} ({res.classes[lab]})" for i, lab in (first, other)) + more

    shown = "; ".join(pair(group) for group in res.duplicates[:n])
    more = f"; ... ({len(res.duplicates) - n} more, in atlas.json)" if len(res.duplicates) > n else ""
    return (
        f"{len(res.duplicates)} photo(s) are in more than one class: {shown}{more}. Each copy counts in its class, "
        "which pulls the class means together; remove the copies from all but the right class"
    )


# ---------------------------------------------------------------- files
def summary(res: AtlasResult, source: Source, j: int) -> dict:
    c = res.layers[j]
    chans = most_selective(res, j, LIST_CHANNELS)
    show = set(most_selective(res, j, SHOW_CHANNELS).tolist())
    items = []
    for ch in chans:
        it = {
            "channel": int(ch),
            "selectivity": float(res.si[j][ch]),
            "preferred_class": preferred_class(res, j, ch),
            "class_means": {
                k: (None if math.isnan(v) else float(v)) for k, v in zip(res.classes, res.means[j][:, ch], strict=True)
            },
        }
        if int(ch) in show:
            it["top_images"] = [
                {
                    "index": int(i),
                    "source": source.sources[int(i)],
                    "label": res.classes[int(source.labels[i])],
                    "activation": float(v),
                }
                for i, v in zip(res.top_idx[j][ch], res.top_vals[j][ch], strict=True)
                if i >= 0
            ]
        items.append(it)
    return {
        "label": c.label,
        "name": c.name,
        "channels": int(res.means[j].shape[1]),
        "mean_selectivity": float(np.mean(res.si[j])),
        "most_selective": items,
    }


def write_atlas(res: AtlasResult, source: Source, out: Path, lm, kept: list[str] | None = None) -> Path:
    """Write the atlas folder ``out`` whole; the user's entries of the folder it replaces are kept (their
    paths appended to ``kept``), only the files featuremaps wrote there before are replaced."""

    layers = [summary(res, source, j) for j in range(len(res.layers))]
    keys = unique_names(safe_name(c.name) for c in res.layers)  # "a b" and "a_b" must not share a key
    for item, key in zip(layers, keys, strict=True):
        item["npz_prefix"] = key
    with atomic_dir(out, kept=kept) as tmp:
        arrays = {"classes": np.asarray(res.classes), "counts": res.counts}
        body = [
            f'<p class="note">{esc(model_title(lm))} over {res.images} images of {esc(source.description)}; '
            f"per class: {esc(', '.join(f'{k} {n}' for k, n in zip(res.classes, res.counts, strict=True)))}"
            "</p>"
        ]
        if res.duplicates:
            body.append(f'<p class="note warn">{esc(duplicate_note(res, source))}</p>')
        for j, c in enumerate(res.layers):
            key = f"C{c.index:02d}_{safe_name(c.name)}"
            save_png(tmp / "heatmaps" / f"{key}.png", render_heatmap(res, j))
            save_png(tmp / "top" / f"{key}.png", render_top_images(res, j, source))
            for name, a in (
                ("means", res.means[j]),
                ("selectivity", res.si[j]),
                ("preferred", res.preferred[j]),
                ("top_index", res.top_idx[j]),
                ("top_activation", res.top_vals[j]),
            ):
                arrays[f"{keys[j]}/{name}"] = a
            rows = "".join(
                f'<tr><td class="num">F{it["channel"] + 1}</td><td class="num">{it["selectivity"]:.3f}</td>'
                f"<td>{esc(it['preferred_class'] or 'no class')}</td></tr>"
                for it in layers[j]["most_selective"]
            )
            body.append(
                f'<div class="layer wide" id="{esc(c.label)}"><div class="meta"><h3>{esc(c.label)} '
                f'<code>{esc(c.name)}</code></h3><table><tr><th>channel</th><th class="num">SI</th>'
                f'<th>prefers</th></tr>{rows}</table></div><div class="scroll">'
                f'<img src="heatmaps/{key}.png" alt="{esc(c.name)} heatmap"><br>'
                f'<img src="top/{key}.png" alt="{esc(c.name)} top images"></div></div>'
            )
        save_npz(tmp / "atlas.npz", **arrays)
        save_json(
            tmp / "atlas.json",
            {
                "featuremaps": __version__,
                "model": lm.name,
                "source": lm.source,
                "data": source.description,
                "images": res.images,
                "resized": res.resized,
                "unreadable": res.skipped,
                "unreadable_images": res.bad,
                "duplicates": [
                    [{"index": i, "source": source.sources[i], "label": res.classes[lab]} for i, lab in group]
                    for group in res.duplicates
                ],
                "input_shape": list(res.input_shape),
                "classes": res.classes,
                "counts": res.counts,
                "selectivity_index": "(mu_max - mu_rest) / "
                "(mu_max + mu_rest) over class means of the channel's spatial mean",
                "preferred_class": f"null where the selectivity index is under {SI_FLOOR} (class means all but equal)",
                "layers": layers,
            },
        )
        nav = "".join(f'<a href="#{esc(c.label)}">{esc(c.label)}</a>' for c in res.layers)
        save_text(
            tmp / "index.html",
            page(
                f"featuremaps atlas: {model_title(lm)}",
                f'<section class="image">{"".join(body)}</section>',
                nav=nav,
                local_images=True,
            ),
        )
    return out
