"""``find_patterns``: what the chosen channels (or classes) of a model look for, as one :class:`Patterns`
result: a visualization per channel (:mod:`~featuremaps.patterns.optimise`), its dataset exemplars
(:mod:`~featuremaps.patterns.exemplars`) and the first layer's filters (:mod:`~featuremaps.patterns.kernels`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from featuremaps import models
from featuremaps.atlas.sources import open_source
from featuremaps.cpu import has_bf16
from featuremaps.display import bundle
from featuremaps.errors import UserError
from featuremaps.faces import NoFaceError, crop_face, largest_face
from featuremaps.frameworks import adapter
from featuremaps.images import IMAGE_SUFFIXES, find_images, load_image
from featuremaps.loaded import LoadedModel
from featuremaps.maps import ConvLayer, select_layers
from featuremaps.patterns.diversity import DEFAULT_WEIGHT
from featuremaps.patterns.exemplars import Exemplar, scan
from featuremaps.patterns.figure import patterns_figure
from featuremaps.patterns.kernels import first_kernels, kernel_images
from featuremaps.patterns.optimise import STEPS, optimise
from featuremaps.pipeline import fit_input
from featuremaps.receptive import adapter_fields
from featuremaps.targets import ChannelMean, ClassScore, Neuron

#: what ``objective`` may name: the channel's spatial mean (Lucid's ``channel``) or its centre position
#: (Lucid's ``neuron``); both on the pre-activation where the activation is fused into the conv
OBJECTIVES = {"mean": "channel mean", "neuron": "centre neuron"}
#: the channels optimised when none are named
DEFAULT_CHANNELS = "F1-F16"
#: channels ``channels="top"`` picks: the layer's most active on ``data``
TOP = 16
#: images of ``data`` scanned for exemplars (and for ``channels="top"``) when no limit is given
DATA_LIMIT = 1000
#: images per channel at most (``images``)
MAX_IMAGES = 16
#: what ``precision`` may name: ``auto`` is bfloat16 where the adapter and the CPU compute it natively
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class Row:
    """One channel (or class): ``key`` in ``patterns.npz`` (``<layer>/F<k>``, ``class/<name>``), ``title``
    (``F5``, ``happy``), ``image`` (H, W, C) float32 in [0, 1] before the model's preprocessing (None for a
    model without gradients), ``value`` the objective on it, ``history`` the objective during the ascent,
    ``max`` the channel's largest activation on it (the exemplars' measure), ``exemplars`` best first. With
    several images per channel, ``image`` is the first, ``more`` the others (keys ``<key>/2``, ``<key>/3``, ...),
    ``more_values`` their objective values and ``diversity`` the group's final diversity term ``D`` (minus the
    mean pairwise Gram cosine, in [-1, 0]; None without the term)."""

    key: str
    title: str
    layer: ConvLayer | None = None
    channel: int | None = None
    class_index: int | None = None
    image: np.ndarray | None = None
    value: float | None = None
    history: np.ndarray | None = None
    max: float | None = None
    exemplars: list[Exemplar] = field(default_factory=list)
    more: list[np.ndarray] = field(default_factory=list)
    more_values: list[float] = field(default_factory=list)
    diversity: float | None = None

    def images(self) -> list[np.ndarray]:
        """Every image of the row, the first first (none without gradients)."""
        return ([] if self.image is None else [self.image]) + list(self.more)


@dataclass
class Patterns:
    """What :func:`find_patterns` found; displays itself in a notebook (its figure) and writes itself with
    :func:`featuremaps.patterns.writing.write_patterns`."""

    model: str  # the model's name as every title gives it ("vgg16 (random weights)")
    source: str
    random_weights: bool
    objective: str
    steps: int
    seed: int
    shape: tuple[int, int, int]
    rows: list[Row]
    data: str | None = None
    images_scanned: int = 0
    kernels: np.ndarray | None = None  # (C_out, kh, kw, 3) uint8 of the first conv
    kernels_layer: ConvLayer | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # images of the data that could not be read, why
    images: int = 1  # images per channel (or class)
    diversity: float = 0.0  # the diversity term's weight (0: none)
    diversity_layer: ConvLayer | None = None  # the conv it reads (the last conv for classes)
    precision: str = "float32"  # the optimisation's passes (the final values are float32 either way)
    face_crop: bool = False  # the data's image files were scanned as their largest face (a faceless one whole)
    scanned_whole: list[str] = field(default_factory=list)  # image files without a face, scanned whole

    def figure(self) -> np.ndarray:
        """``patterns.png``'s picture: RGB uint8."""
        return patterns_figure(self)

    def arrays(self) -> dict[str, np.ndarray]:
        """``patterns.npz``: one float32 (H, W, C) image in [0, 1] per image, under its row's key (the first
        image) and ``<key>/2``, ``<key>/3``, ... (the others, with several images per channel)."""
        out = {}
        for r in self.rows:
            for i, im in enumerate(r.images()):
                out[r.key if i == 0 else f"{r.key}/{i + 1}"] = im.astype(np.float32)
        return out

    def _repr_mimebundle_(self, include=None, exclude=None):
        what = ", ".join(r.key for r in self.rows[:6]) + (" ..." if len(self.rows) > 6 else "")
        return bundle(f"featuremaps patterns: {self.model}: {what}", [("", self.figure())])


def parse_channels(spec, n: int, label: str) -> list[int] | int:
    """``F1-F16``, ``F3,F7``, ``1-4`` (F-numbers, 1-based) -> 0-based channels, each checked against the
    layer's ``n`` channels (a range past the end is cut to the layer); ``top`` or ``top4`` -> how many of the
    most active channels to take (16 for ``top``)."""
    if isinstance(spec, list | tuple):
        chans = [int(c) for c in spec]
    else:
        s = str(spec).strip().lower()
        top = re.fullmatch(r"top(\d*)", s)
        if top:
            k = int(top.group(1) or TOP)
            if not 1 <= k <= 256:
                raise UserError(f"--channels {spec}: take 1 to 256 top channels (top, top4, ...)")
            return min(k, n)
        chans = []
        for part in filter(None, (p.strip() for p in s.split(","))):
            m = re.fullmatch(r"f?(\d+)(?:-f?(\d+))?", part)
            if not m:
                raise UserError(f"--channels '{spec}' is not F-numbers like F1-F16 or F3,F7, or top (top4, ...)")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if lo < 1 or hi < lo:
                raise UserError(f"--channels '{spec}': F-numbers start at F1 and ranges go up (F1-F16)")
            if m.group(2) and lo <= n:
                hi = min(hi, n)
            chans.extend(range(lo - 1, hi))
    if not chans:
        raise UserError(f"--channels '{spec}' names no channel; give F-numbers like F1-F16")
    bad = [c for c in chans if not 0 <= c < n]
    if bad:
        raise UserError(f"{label} has {n} channels (F1-F{n}); F{bad[0] + 1} is not one of them")
    return list(dict.fromkeys(chans))


def data_images(
    data,
    split: str = "PrivateTest",
    limit: int | None = DATA_LIMIT,
    skipped: list | None = None,
    face_crop: bool = False,
    whole: set | None = None,
) -> tuple[str, int, Callable]:
    """``(description, count, images)`` of ``data``: an image, a folder of images, FER2013 (folder, CSV or
    archive: the ``split``) or class folders ``ROOT/<class>/*.png``, at most ``limit``; ``images()`` iterates
    over ``(uint8 image, source)`` pairs (again for every layer; an archive is read into memory once). An image
    that cannot be read is left out and its one-line reason appended to ``skipped`` (once). ``face_crop``: each
    image file (not FER2013's faces, already crops) is replaced by its largest face, as the emotion model sees a
    photo in ``show`` and ``explore``; a photo without a face is fed whole and its source added to ``whole``."""
    skipped = [] if skipped is None else skipped
    whole = set() if whole is None else whole
    boxes: dict = {}  # image file -> its face box (None: fed as is), found once though images() runs per layer

    def face_of(q):
        img = load_image(q)
        if q in boxes:
            return img if boxes[q] is None else crop_face(img, boxes[q])
        try:
            face, boxes[q] = largest_face(img)
        except NoFaceError:
            whole.add(str(q))
            face, boxes[q] = img, None
        return face

    def readable(items):
        for load, src in items:
            try:
                img = load()
            except UserError as e:
                if str(e) not in skipped:
                    skipped.append(str(e))
                continue
            yield (np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img), src

    p = Path(data)
    if not p.exists():
        raise UserError(
            f"--data {p} does not exist; pass a folder of images, FER2013 (folder, CSV or archive) or fer2013"
        )
    if (
        p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        or p.is_dir()
        and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir() if q.is_file())
    ):
        paths = find_images([str(p)])[:limit]
        load = face_of if face_crop else load_image
        return str(p), len(paths), lambda: readable(((lambda q=q: load(q)), str(q)) for q in paths)
    source = open_source(p, split, None)
    ids = source.subset(limit)

    def read():
        return readable(((lambda i=int(i): source.image(i)), source.sources[int(i)]) for i in ids)

    return source.description, len(ids), read


def find_patterns(
    model=None,
    layers=None,
    channels=DEFAULT_CHANNELS,
    target_classes=None,
    objective: str = "mean",
    data=None,
    split: str = "PrivateTest",
    limit: int | None = DATA_LIMIT,
    exemplars: int = 4,
    kernels: bool = False,
    steps: int = STEPS,
    seed: int = 0,
    size: int | None = None,
    progress: Callable | None = None,
    images: int = 1,
    diversity: float | None = None,
    precision: str = "auto",
    face_crop: bool | None = None,
    **load_options,
) -> Patterns:
    """What each chosen channel of a model looks for: the image that maximises it (feature visualization) and,
    with ``data``, the dataset images it responds to most, cropped to its receptive field.

    Formula: ``x* = argmax_x mean_yx A_c(preprocess(T(x)))_yx`` over a Fourier-parameterised, colour-decorrelated
    image ``x`` under random transforms ``T`` (:mod:`featuremaps.patterns.optimise`), ``A_c`` channel ``c``'s
    pre-activation; all channels of a layer in one batch. With ``classes``, the class's logit instead
    (Simonyan et al. 2014). With ``images`` N > 1, N images per channel, pushed apart by the diversity term
    ``W D``, ``D = -mean_{i<j} cos(Gram_i, Gram_j)`` of the layer's maps (the last conv's for classes;
    :mod:`featuremaps.patterns.diversity`, Lucid's ``objectives.diversity``). Olah, Mordvintsev & Schubert,
    "Feature Visualization", Distill 2017; exemplars: Borowski et al., ICLR 2021.

    Example::

        >>> import featuremaps as fm
        >>> res = fm.find_patterns("emotion", layers="C3", channels="F1-F8", steps=128)
        >>> res            # in a notebook: the figure
        >>> res.rows[0].image.shape
        (48, 48, 1)

    Args:
        model: a name, path, model object or :class:`~featuremaps.loaded.LoadedModel` (None: the emotion model)
        layers: conv layers (names, C-numbers, ranges; None: the last conv layer)
        channels: ``F1-F16``, ``F3,F7``, 0-based indices as a list, or ``top`` / ``top4`` (the 16 / 4 channels
            most active on ``data``, by their mean)
        target_classes: class names or indices to visualise instead of channels (the class's logit)
        objective: ``mean`` (the channel's spatial mean) or ``neuron`` (its centre position)
        data: images for exemplars and ``channels="top"`` (a folder, an image, FER2013); required for a model
            without gradients (ONNX), which gets exemplars only
        split: the FER2013 split of ``data``
        limit: images of ``data`` scanned at most
        exemplars: exemplars per channel
        kernels: also the first conv layer's filters as images
        steps: Adam steps
        seed: random seed (the same seed, the same images)
        size: the image side for a model whose input size is free (default 224; a fixed-size model keeps its own)
        progress: called as ``progress(done, total, what)``
        images: images per channel (or class), 1 to 16
        diversity: the diversity term's weight ``W`` (None: 10 with ``images`` > 1, else 0; 0: off, the N images
            differ by their random start only); it needs ``images`` > 1 and a model with gradients
        precision: the optimisation's forward and backward passes: ``float32``, ``bfloat16`` (where the adapter
            can: Keras on TensorFlow; about twice as fast on a CPU with bfloat16 arithmetic, AVX512-BF16 or AMX)
            or ``auto`` (bfloat16 where both can, else float32); the final values are taken in float32
        face_crop: scan the largest face of each image file of ``data`` instead of the whole image (None: for
            the emotion model, as ``show`` and ``explore`` feed it photos; a photo without a face is scanned
            whole, with a note); FER2013's faces are crops already
        load_options: passed to :func:`featuremaps.models.load` when ``model`` is a name or path
    """
    if objective not in OBJECTIVES:
        raise UserError(f"objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if int(steps) < 1:
        raise UserError(f"--steps {steps}: give at least 1 step (256 by default)")
    images, weight = _diversity(images, diversity)
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    lm: LoadedModel = models.as_loaded(model, **load_options)
    ad = adapter(lm.model)
    shape = _shape(lm, size)
    if not ad.has_gradients and data is None:
        raise UserError(
            f"model '{lm.name}' ({ad.framework}) has no gradients, so patterns can show its exemplars only; "
            "pass --data DIR or --data fer2013"
        )
    if target_classes and not ad.has_gradients:
        raise UserError(f"--class needs gradients, which {ad.framework} models do not have in featuremaps")
    if images > 1 and not ad.has_gradients:
        what = f"--images {images}" + (f" (--diversity {weight:g})" if weight else "")
        raise UserError(f"{what} needs gradients; {ad.framework} models have no gradients in featuremaps; drop it")
    convs = ad.conv_layers(shape)
    if not convs:
        raise UserError(f"model '{lm.name}' has no conv layers; patterns need a CNN")
    notes = [] if ad.has_gradients else [f"{ad.framework} models have no gradients: exemplars only"]
    faces = data is not None and (lm.is_emotion if face_crop is None else bool(face_crop))
    precision = resolve_precision(precision, ad, notes)
    kern, kern_layer = None, None
    if kernels:  # before any long work: a model whose weights cannot be read fails at once
        kern_layer = convs[0]
        kern = kernel_images(first_kernels(kern_layer, bgr="BGR" in lm.preprocess))
    rows: list[Row] = []
    skipped: list[str] = []
    whole: set[str] = set()  # photos of data without a face, scanned whole (face_crop)
    scanned = 0
    described = None
    if target_classes:
        rows = _class_rows(
            lm, ad, target_classes, shape, steps, seed, progress, images, weight, convs[-1].name, precision
        )
    else:
        chosen = select_layers(convs, layers if layers is not None else convs[-1].name)
        sizes = ad.layer_shapes(shape)
        plans = []
        for c in chosen:
            n = sizes.get(c.name, (0, 0, c.channels or 0))[-1]
            plans.append((c, parse_channels(channels, n, f"{c.label} {c.name}")))
        if any(isinstance(p, int) for _, p in plans) and data is None:
            raise UserError("--channels top ranks a layer's channels on images; pass --data DIR or --data fer2013")
        fields = adapter_fields(ad, convs)
        if data is not None:
            described, count, read_images = data_images(data, split, limit, skipped, faces, whole)
        if fields.note and data is not None:
            notes.append(f"receptive fields: {fields.note}")
        total = sum(steps * images * (p if isinstance(p, int) else len(p)) for _, p in plans)
        total = total if ad.has_gradients else 0
        done = 0
        for c, chans in plans:
            found = None
            if data is not None:
                found = _scan(ad, lm, c, chans, read_images, count, shape, fields, exemplars, progress)
                scanned = found.images
                if not scanned:
                    raise UserError(
                        f"no image of --data {described} could be read ({'; '.join(skipped[:1])}); check it"
                    )
                if isinstance(chans, int):  # the layer's most active channels on the data, by their mean
                    chans = [int(i) for i in np.argsort(-found.means, kind="stable")[:chans]]
            layer_rows = [Row(f"{c.name}/F{ch + 1}", f"F{ch + 1}", c, ch) for ch in chans]
            if ad.has_gradients:
                if progress is not None and data is not None:
                    progress(done, total, c.label)  # back to the steps' bar
                tick = _ticker(progress, done, len(chans) * images, total, c.label)
                _visualise(
                    ad, lm, c, layer_rows, objective, sizes[c.name], shape, steps, seed, tick, images, weight, precision
                )  # fmt: skip
                done += steps * len(chans) * images
            for r in layer_rows:
                r.exemplars = [] if found is None else found.exemplars.get(r.channel, [])[:exemplars]
            rows += layer_rows
    if whole:
        notes.append(
            f"{len(whole)} of {scanned} images of --data had no face and were scanned whole"
            f" (e.g. {sorted(whole)[0]}); the others as their largest face"
        )
    return Patterns(
        model=_title(lm),
        source=lm.source,
        random_weights=bool(getattr(lm, "random_weights", False)),
        objective=_objective_text(objective, target_classes, ad),
        steps=int(steps) if ad.has_gradients else 0,
        seed=int(seed),
        shape=shape,
        rows=rows,
        data=described,
        images_scanned=scanned,
        kernels=kern,
        kernels_layer=kern_layer,
        notes=notes,
        skipped=skipped,
        images=images,
        diversity=weight,
        diversity_layer=convs[-1] if target_classes and weight else None,
        precision=precision,  # float32 where ad has no gradients (resolve_precision)
        face_crop=faces,
        scanned_whole=sorted(whole),
    )


def resolve_precision(precision: str, ad, notes: list[str] | None = None) -> str:
    """``float32`` or ``bfloat16`` for ``precision`` (:data:`PRECISIONS`) on adapter ``ad``: bfloat16 where ``ad``
    can differentiate in it (``ad.bfloat16``) and the CPU computes it natively (elsewhere it would be emulated,
    many times slower, or have no kernel at all), else float32; an asked-for bfloat16 that falls back says why
    in ``notes``."""
    can = bool(getattr(ad, "bfloat16", False)) and ad.has_gradients
    if precision == "auto":
        return "bfloat16" if can and has_bf16() else "float32"
    if precision == "bfloat16" and not can:
        if notes is not None and ad.has_gradients:
            notes.append(f"bfloat16 needs Keras on TensorFlow; {ad.framework} models ran in float32")
        return "float32"
    if precision == "bfloat16" and not has_bf16():
        if notes is not None:
            notes.append("this CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX); the passes ran in float32")
        return "float32"
    return precision


def _diversity(images, diversity) -> tuple[int, float]:
    """``(images per channel, the diversity weight)`` checked, the weight's default filled in."""
    n = int(images)
    if not 1 <= n <= MAX_IMAGES:
        raise UserError(f"--images {images}: give 1 to {MAX_IMAGES} images per channel (1 by default)")
    if diversity is None:
        return n, DEFAULT_WEIGHT if n > 1 else 0.0
    w = float(diversity)
    if not np.isfinite(w) or w < 0:
        raise UserError(f"--diversity {diversity}: give a weight of 0 (off) or more ({DEFAULT_WEIGHT:g} by default)")
    if w > 0 and n < 2:
        raise UserError(f"--diversity {diversity} pushes several images of a channel apart; add --images 2 or more")
    return n, w


def _scan(ad, lm, c, chans, images, count, shape, fields, exemplars, progress):
    """:func:`~featuremaps.patterns.exemplars.scan` of conv ``c`` over the data, with a bar of its own."""
    seen = None
    if progress is not None:
        progress(0, count, f"{c.label} exemplars")
        seen = lambda i: progress(i, count, f"{c.label} exemplars")  # noqa: E731
    wanted = None if isinstance(chans, int) else chans
    fit = partial(fit_input, lm, shape=shape)  # a --crop emotion model: the face's centre, as show feeds it
    return scan(
        ad, c.name, wanted, images(), shape, lm.preprocess_fn, fields.fields.get(c.label), max(exemplars, 1), seen, fit
    )


def _visualise(
    ad, lm, c, rows, objective, layer_shape, shape, steps, seed, tick, images=1, weight=0.0, precision="float32"
) -> None:
    """Optimise ``rows``' channels of conv ``c`` together (``images`` each, consecutive in the batch); fill in
    each row's images, values and maximum (of its first image)."""
    h, w = layer_shape[:2]
    targets = [
        ChannelMean(c.name, r.channel) if objective == "mean" else Neuron(c.name, r.channel, h // 2, w // 2)
        for r in rows
        for _ in range(images)
    ]
    if images == 1:  # the default path, as it always was
        res = optimise(ad, targets, shape, lm.preprocess_fn, steps, seed, progress=tick, precision=precision)
    else:
        res = optimise(
            ad, targets, shape, lm.preprocess_fn, steps, seed, progress=tick, diversity=weight, groups=len(rows),
            precision=precision,
        )  # fmt: skip
    maps, _ = ad.forward(lm.preprocess_fn(res.images * 255.0), [c.name])
    for i, r in enumerate(rows):
        b = i * images
        r.image, r.value, r.history = res.images[b], float(res.values[b]), res.history[:, b]
        r.max = float(maps[c.name][b, ..., r.channel].max())
        _fill_more(r, res, b, images, i)


def _fill_more(r: Row, res, b: int, images: int, group: int) -> None:
    """Row ``r``'s images 2..N (batch ``b + 1`` on) and its group's diversity."""
    r.more = [res.images[b + j] for j in range(1, images)]
    r.more_values = [float(res.values[b + j]) for j in range(1, images)]
    r.diversity = None if res.diversity is None else float(res.diversity[group])


def _ticker(progress, base: int, k: int, total: int, what: str):
    """``optimise``'s ``(step, steps)`` as ``progress(done, total, what)`` in steps x channels over all layers."""
    if progress is None:
        return None
    return lambda i, n: progress(base + i * k, total, what)


def _title(lm) -> str:
    return f"{lm.name} (random weights)" if getattr(lm, "random_weights", False) else lm.name


def _objective_text(objective: str, classes, ad) -> str:
    if not ad.has_gradients:
        return "none (exemplars only)"
    if classes:
        return "class score (the logit before the softmax where the model has one)"
    return f"{OBJECTIVES[objective]} (pre-activation where the activation is fused)"


def _shape(lm: LoadedModel, size: int | None) -> tuple[int, int, int]:
    """The image size optimised: the model's input (H, W, C); ``size`` only where the model leaves it free."""
    s = list(lm.input_shape or (None, None, None))
    s = [*s, None, None, None][:3]
    if size is not None and s[0] is not None and s[1] is not None and (s[0], s[1]) != (size, size):
        raise UserError(f"model '{lm.name}' takes {s[0]}x{s[1]} input; drop --size (it is for models of free size)")
    side = int(size or 224)
    return (int(s[0] or side), int(s[1] or side), int(s[2] or 3))


def _class_rows(
    lm, ad, classes, shape, steps, seed, progress, images=1, weight=0.0, layer=None, precision="float32"
) -> list[Row]:
    """One row per class: the image that maximises the class's logit (``images`` of them, the diversity term
    on conv ``layer``, the last)."""
    names = list(lm.classes or [])
    wanted = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)
    idx = []
    for c in wanted:
        if str(c).isdigit():
            i = int(c)
        elif str(c).lower() in [n.lower() for n in names]:
            i = [n.lower() for n in names].index(str(c).lower())
        else:
            known = ", ".join(names[:10]) if names else "none: pass an index"
            raise UserError(f"--class '{c}' is not a class of model '{lm.name}' (classes: {known})")
        idx.append(i)
    n = ad.output_shape(shape)[-1] if ad.output_shape(shape) else 0
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise UserError(f"--class {bad[0]}: model '{lm.name}' has {n} classes (0-{n - 1})")
    tick = _ticker(progress, 0, len(idx) * images, steps * len(idx) * images, "classes")
    targets = [ClassScore(i) for i in idx for _ in range(images)]
    if images == 1:
        res = optimise(ad, targets, shape, lm.preprocess_fn, steps, seed, progress=tick, precision=precision)
    else:
        res = optimise(
            ad,
            targets,
            shape,
            lm.preprocess_fn,
            steps,
            seed,
            progress=tick,
            diversity=weight,
            groups=len(idx),
            diversity_layer=layer,
            precision=precision,
        )
    rows = []
    for g, i in enumerate(idx):
        name = names[i] if i < len(names) else f"class {i}"
        b = g * images
        row = Row(f"class/{name}", name, None, None, i, res.images[b], float(res.values[b]), res.history[:, b])
        _fill_more(row, res, b, images, g)
        rows.append(row)
    return rows
