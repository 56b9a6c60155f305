"""The atlas' statistics: per-class channel means and top-k images as a mergeable reduction (:class:`AtlasStats`),
the class selectivity index, and the model's half: :class:`BatchReducer` (one batch through the model, folded in)
and :func:`compute_atlas` (the local run; :mod:`featuremaps.atlas.ray` runs the same reducer on Ray Data)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from featuremaps import display
from featuremaps.atlas.crops import TopCrops, fitted, locate
from featuremaps.atlas.sources import Source
from featuremaps.charts import render_class_heatmap
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter
from featuremaps.maps import select_layers
from featuremaps.pipeline import EMOTION_SIDE, fitted_size, sees_centre

TOP_K = 9  # images kept per channel
SHOW_CHANNELS = 6  # most selective channels drawn with their top images (cropped), per layer
MAX_BAD_NAMES = 20  # unreadable images named in the results (all are counted)
#: below this class selectivity index a channel is reported as preferring no class: its class means are equal
#: to the third decimal (the same photos in every class, or a channel blind to what tells them apart)
SI_FLOOR = 0.005


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


def most_selective(res: AtlasResult, j: int, n: int) -> np.ndarray:
    """Channels by selectivity; near-silent channels (largest class mean under 1% of the layer's) go last."""
    peak = np.nan_to_num(res.means[j]).max(axis=0)
    key = np.where(peak >= 0.01 * max(float(peak.max()), 1e-12), res.si[j], -1.0 + res.si[j] * 1e-3)
    return np.argsort(-key, kind="stable")[:n]


# ---------------------------------------------------------------- the model
def to_input(lm, images: list[np.ndarray], shape) -> tuple[np.ndarray, int]:
    """uint8 images -> preprocessed float32 batch of ``shape``; also how many had to be resized (a model that
    sees the centre of a 48 px face, :func:`featuremaps.pipeline.sees_centre`, gets the centre of each image
    fitted to 48 px: a 48 px face is cut, not resized)."""
    size = fitted_size(lm, shape)
    resized = sum(im.shape[:2] != size for im in images)
    return np.asarray(lm.preprocess_fn(fitted(images, shape, sees_centre(lm, shape))), dtype=np.float32), resized


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
    crops: list[TopCrops] | None = None  # per layer, the drawn channels' top images cut to their fields
    centre: bool = False  # the model saw the centre of each image fitted to 48 px (a --crop emotion model)

    @property
    def fed(self) -> str:
        """How each image was fed to the model, in words: ``40x40``, or its centre after a resize to 48 px."""
        h, w = self.input_shape[:2]
        return f"the centre {w}x{h} of it resized to {EMOTION_SIDE}x{EMOTION_SIDE}" if self.centre else f"{w}x{h}"

    @property
    def resized_to(self) -> str:
        """What a resized image was resized to, in words (the note on :attr:`resized`)."""
        h, w = self.input_shape[:2]
        return f"{EMOTION_SIDE}x{EMOTION_SIDE} and cut to their centre {w}x{h}" if self.centre else f"{w}x{h}"

    def heatmap(self, j: int, cmap: str = "viridis") -> np.ndarray:
        """The class x channel heatmap of layer ``j`` (:func:`featuremaps.charts.render_class_heatmap`), RGB uint8."""
        rows = [f"{name} ({n})" for name, n in zip(self.classes, self.counts, strict=True)]
        c = self.layers[j]
        return render_class_heatmap(
            self.means[j], self.si[j], self.preferred[j], rows, f"{c.label} {c.name}", self.images, cmap
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """A notebook shows the class x channel heatmap of every conv layer (IPython's rich display)."""
        text = (
            f"featuremaps atlas of {self.images} images in {len(self.classes)} classes, {len(self.layers)} conv layers"
        )
        pics = [(f"{c.label} {c.name}", self.heatmap(j)) for j, c in enumerate(self.layers)]
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
        self.centre = sees_centre(lm, self.shape)  # a --crop emotion model: the centre of the 48 px fit
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
        x, r = to_input(self.lm, imgs, self.shape)
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
    return add_crops(finish(stats, red.convs, source, shape, red.centre), red, source, batch_size)


def finish(stats: AtlasStats, convs: list, source: Source, shape: tuple, centre: bool = False) -> AtlasResult:
    """Class means, selectivity and sorted top-k tables from the (merged) statistics; ``centre``: the model saw
    the centre of each image fitted to 48 px (:func:`featuremaps.pipeline.sees_centre`)."""
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
        centre=centre,
    )


def add_crops(
    res: AtlasResult, red: BatchReducer, source: Source, batch_size: int = 64, n: int = SHOW_CHANNELS
) -> AtlasResult:
    """Fill ``res.crops``: the top images of each layer's ``n`` most selective channels (the ones drawn), read
    again and forwarded once more to find where each channel peaks (:func:`featuremaps.atlas.crops.locate`):
    at most ``layers x n x TOP_K`` images, whatever the size of the data. Returns ``res``."""
    wanted = []
    for j in range(len(res.layers)):
        wanted.append({int(ch): res.top_idx[j][ch] for ch in most_selective(res, j, n)})
    res.crops = locate(
        red.adapter, red.convs, wanted, source.image, res.input_shape, red.lm.preprocess_fn, batch_size, res.centre
    )
    return res
