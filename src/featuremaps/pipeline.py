"""``featuremaps show`` as a function: image -> model input -> one forward pass -> pictures and data on disk.

Everything a user sees for one image lands in ``OUT/<image-stem>/`` (written as a temporary folder and
renamed, so a folder is either complete or absent): ``overview.png``, ``layers/C01_<name>.png``...,
``input.png`` (what the network saw), ``face.png`` (the face crop, emotion model), ``activations.npz`` and
``manifest.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featuremaps import __version__, display, models
from featuremaps.display import percent
from featuremaps.emotion.shipped import INPUT_SHAPE
from featuremaps.extractor import feature_extractor
from featuremaps.faces import largest_face
from featuremaps.frameworks import conv_layers
from featuremaps.images import find_images, fit_to, load_image
from featuremaps.io import (
    atomic_dir,
    check_replaceable,
    output_names,
    png_writer,
    safe_name,
    save_json,
    save_npz,
    unique_names,
)
from featuremaps.loaded import LoadedModel
from featuremaps.maps import select_layers
from featuremaps.render import Look, render_layer, render_overview, rows_from

log = logging.getLogger(__name__)

#: The side of the faces emotion models are trained on (a ``--crop`` model sees their centre).
EMOTION_SIDE = INPUT_SHAPE[0]


@dataclass
class Prepared:
    """An image ready for a model: ``x`` preprocessed (H, W, C) float32, ``shown`` what the net saw (RGB)."""

    x: np.ndarray
    shown: np.ndarray
    face_box: list[int] | None = None
    face: np.ndarray | None = None
    resize: str = "crop"


def seen_part(image: np.ndarray, fraction: float, resize: str = "crop") -> np.ndarray:
    """The centre part of ``image`` that a model taking the centre ``fraction`` of its :func:`fit_to` input
    sees (a ``--crop 40`` emotion model: 40/48 of the face), at the image's own resolution, so maps drawn
    over it are not stretched over what the model never saw. ``crop`` first takes the centred square (as
    :func:`fit_to` does), ``stretch`` the whole image; ``pad`` letterboxes, so the image is returned whole."""
    h, w = image.shape[:2]
    y0 = x0 = 0
    if resize == "crop":
        side = min(h, w)
        y0, x0, h, w = (h - side) // 2, (w - side) // 2, side, side
    elif resize != "stretch":
        return image
    kh, kw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0, x0 = y0 + (h - kh) // 2, x0 + (w - kw) // 2
    return image[y0 : y0 + kh, x0 : x0 + kw]


def sees_centre(lm: LoadedModel, shape: tuple[int, ...]) -> bool:
    """Whether ``lm`` is an emotion model trained with ``--crop`` (it sees the centre of a 48 px face)."""
    return lm.is_emotion and shape[0] == shape[1] and shape[0] < EMOTION_SIDE


def fit_centred(rgb: np.ndarray, shape: tuple[int, ...], resize: str = "crop", centre: bool = False) -> np.ndarray:
    """:func:`fit_to` ``shape`` (H, W, C); with ``centre`` (an emotion model trained with ``--crop``,
    :func:`sees_centre`), fitted to the 48 px face instead and its centre ``shape`` cut, as in its validation."""
    if not centre:
        return fit_to(rgb, shape[:2], shape[2], resize)
    off = (EMOTION_SIDE - shape[0]) // 2
    return fit_to(rgb, (EMOTION_SIDE, EMOTION_SIDE), shape[2], resize)[off : off + shape[0], off : off + shape[1]]


def fitted_size(lm: LoadedModel, shape: tuple[int, ...]) -> tuple[int, int]:
    """The (H, W) an image is resized to before ``lm`` sees it: ``shape``'s, or 48 px for a model that sees the
    centre of the face (:func:`sees_centre`): a 48 px face is then cut, not resized."""
    return (EMOTION_SIDE, EMOTION_SIDE) if sees_centre(lm, shape) else tuple(shape[:2])


def fit_input(lm: LoadedModel, rgb: np.ndarray, shape: tuple[int, ...], resize: str = "crop") -> np.ndarray:
    """``rgb`` as ``lm`` takes it, before its preprocessing: :func:`fit_to` ``shape``, except that an emotion
    model trained with ``--crop`` gets the centre of the image fitted to 48 px, as in its validation."""
    return fit_centred(rgb, shape, resize, sees_centre(lm, shape))


def prepare(
    lm: LoadedModel,
    rgb: np.ndarray,
    *,
    input_shape: tuple[int, ...] | None = None,
    face_crop: bool | None = None,
    resize: str = "crop",
) -> Prepared:
    """Crop the face (emotion model, unless ``face_crop=False``), resize, convert channels, preprocess."""
    face_box, face = None, None
    if face_crop if face_crop is not None else lm.is_emotion:
        face, box = largest_face(rgb)
        face_box = box.as_list() if box else None
        rgb = face
    shape = lm.resolve_input_shape(rgb.shape[:2], input_shape)
    pixels = fit_input(lm, rgb, shape, resize)
    if face is not None and sees_centre(lm, shape):  # what CAMs and pictures lay maps over: what it saw
        face = seen_part(face, shape[0] / EMOTION_SIDE, resize)
    shown = np.clip(pixels, 0, 255).astype(np.uint8)
    if shown.shape[2] == 1:
        shown = np.repeat(shown, 3, axis=2)
    x = np.asarray(lm.preprocess_fn(pixels[None]), dtype=np.float32)[0]
    return Prepared(x, shown, face_box, face, resize)


def describe_prediction(probs: np.ndarray | None, classes: list[str] | None, top: int = 7) -> list[dict]:
    """Top classes of a (n,) output as ``[{class, index, probability}]`` (empty if not a classifier)."""
    if probs is None or probs.ndim != 1 or probs.size < 2:
        return []
    p = probs.astype(np.float64)
    if p.min() < 0 or abs(p.sum() - 1) > 1e-3:  # logits: softmax them for display
        e = np.exp(p - p.max())
        p = e / e.sum()
    order = np.argsort(-p)[:top]
    names = classes if classes and len(classes) == p.size else None
    return [{"class": names[i] if names else f"class {i}", "index": int(i), "probability": float(p[i])} for i in order]


def model_title(lm: LoadedModel) -> str:
    """The model's name as every figure and page titles it: ``"vgg16 (random weights)"`` when untrained."""
    return f"{lm.name} (random weights)" if getattr(lm, "random_weights", False) else lm.name


def prediction_of(lm: LoadedModel, probs: np.ndarray | None, top: int = 7) -> list[dict]:
    """:func:`describe_prediction` for ``lm``; empty for a model with random weights (its prediction is noise)."""
    if getattr(lm, "random_weights", False):
        return []
    return describe_prediction(probs, lm.classes, top)


@dataclass
class ShowOptions:
    """What ``show`` draws (layers, maps, channels), how (``look``: norm, colormap, cell, overlay) and how an
    image is fed (resize, face crop, input shape, size limit). :meth:`of` takes the flat keywords of
    :func:`show`."""

    layers: str | list[str] = "all"
    maps: int = 16
    select: str = "first"
    look: Look = field(default_factory=Look)
    resize: str = "crop"
    face_crop: bool | None = None
    input_shape: tuple[int, ...] | None = None
    max_pixels: int | None = None
    layer_pngs: bool = True

    @classmethod
    def of(cls, **options) -> ShowOptions:
        """From flat keywords (``norm="layer", cmap="magma", maps=8``): the look's go to :class:`Look`."""
        look = {k: options.pop(k) for k in ("norm", "cmap", "cell", "overlay") if k in options}
        return cls(**options, look=Look(**look))

    def mode_is_top(self) -> bool:
        return self.select in ("top-mean", "top-max")


@dataclass
class ShowResult:
    """One image shown: its files are in ``folder`` (``overview.png``...); displays its overview in a notebook."""

    image: Path
    folder: Path
    prediction: list[dict] = field(default_factory=list)
    #: the user's entries found in the replaced folder and kept in the new one (paths relative to ``folder``)
    kept: list[str] = field(default_factory=list)

    def picture(self) -> tuple[str, np.ndarray]:
        """(caption, the overview as drawn into ``folder``): what a notebook shows; read back, not recomputed."""
        return self.image.name, load_image(self.folder / "overview.png")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        top = f"; predicted {self.prediction[0]['class']} ({percent(self.prediction[0]['probability'])})"
        text = f"featuremaps overview of {self.image.name}{top if self.prediction else ''} (files in {self.folder})"
        return display.bundle(text, [self.picture()])


class ShowResults(list):
    """What :func:`show` returns: a list of :class:`ShowResult`, shown in a notebook as a gallery of overviews."""

    def summary(self) -> str:
        names = ", ".join(r.image.name for r in self[:5]) + (", ..." if len(self) > 5 else "")
        return f"featuremaps overviews of {len(self)} image{'s' * (len(self) != 1)}: {names}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return display.bundle(self.summary(), [r.picture() for r in self[: display.MAX_PICTURES]])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's text for a list subclass: the line, not the list
        p.text(self.summary())


class Shower:
    """Renders many images through one model, reusing the intermediate model across images of one shape."""

    def __init__(self, lm: LoadedModel, opts: ShowOptions):
        self.lm, self.opts = lm, opts
        self._extractors: dict[tuple, object] = {}

    def extractor(self, shape):

        if shape not in self._extractors:
            if len(self._extractors) >= 2:  # bounded: models with free input size see many shapes
                self._extractors.pop(next(iter(self._extractors)))
            self._extractors[shape] = feature_extractor(
                self.lm.model, shape, layers=self.opts.layers, maps=self.opts.maps, select=self.opts.select
            )
        return self._extractors[shape]

    def run(self, path: Path, out_root: Path, name: str | None = None) -> ShowResult:
        """Draw one image into ``out_root/name`` (default: the image's stem; a batch passes unique names)."""

        o = self.opts
        folder = check_replaceable(out_root / (name or safe_name(path.stem)), inputs=[path])  # before any work
        kw = {"max_pixels": o.max_pixels} if o.max_pixels else {}
        rgb = load_image(path, **kw)
        prep = prepare(self.lm, rgb, input_shape=o.input_shape, face_crop=o.face_crop, resize=o.resize)
        fx = self.extractor(prep.x.shape)
        results, preds = fx(prep.x[None])
        pred = prediction_of(self.lm, preds[0] if preds is not None else None)
        rows = rows_from(results)
        first_n = fx.mode == "first"
        title = f"{model_title(self.lm)} - {path.name}"
        if pred:
            title += f" - predicted: {pred[0]['class']} ({percent(pred[0]['probability'])})"
        what = (
            f"first {o.maps} maps"
            if first_n
            else f"{o.maps} maps with the highest {o.select[4:]} activation"
            if o.mode_is_top()
            else f"channels {o.select}"
        )
        subtitle = f"{what} of {len(rows)} conv layers; input {'x'.join(map(str, prep.x.shape))}"
        if len(pred) > 1:
            subtitle += "; " + ", ".join(f"{p['class']} {percent(p['probability'])}" for p in pred[:7])
        overview = render_overview(
            results,
            prep.shown,
            look=o.look,
            title=title,
            subtitle=subtitle,
            first_n=first_n,
        )
        glob_range = None
        if o.look.norm == "global":
            glob_range = (min(float(r.maps.min()) for r in rows), max(float(r.maps.max()) for r in rows))
        # only the files show wrote there before are replaced: `featuremaps cam`'s OUT/<stem>/cam/ and a user's
        # files are kept. PNGs encode on a thread while the next one renders.
        kept: list[str] = []
        with atomic_dir(folder, inputs=[path], kept=kept) as tmp, png_writer() as save_png:
            save_png(tmp / "overview.png", overview)
            save_png(tmp / "input.png", prep.shown)
            if prep.face is not None and prep.face_box is not None:
                save_png(tmp / "face.png", prep.face)
            layer_files = []
            if o.layer_pngs:
                for row in rows:
                    name = f"C{int(row.label[1:]):02d}_{safe_name(row.name)}.png"
                    img = render_layer(
                        row,
                        look=o.look,
                        image=prep.shown,
                        norm_range=glob_range,
                        first_n=first_n,
                    )
                    save_png(tmp / "layers" / name, img)
                    layer_files.append(f"layers/{name}")
            arrays = {}
            keys = unique_names(safe_name(row.name) for row in rows)  # "a b" and "a_b" must not share a key
            for row, key in zip(rows, keys, strict=True):
                arrays[f"{key}/maps"] = row.maps
                arrays[f"{key}/channels"] = row.channels.astype(np.int32)
            save_npz(tmp / "activations.npz", **arrays)
            save_json(tmp / "manifest.json", self.manifest(path, prep, rows, pred, layer_files, fx, keys))
        return ShowResult(path, folder, pred, kept)

    def manifest(self, path, prep, rows, pred, layer_files, fx, keys) -> dict:
        o, lm = self.opts, self.lm
        return {
            "featuremaps": __version__,
            "image": str(path),
            "model": {"name": lm.name, "source": lm.source, "input_shape": list(prep.x.shape)},
            "preprocessing": {
                "resize": prep.resize,
                "scaling": lm.preprocess,
                "face_crop": prep.face_box is not None,
                "face_box_xywh": prep.face_box,
            },
            "selection": {"maps": o.maps, "select": o.select, "norm": o.look.norm, "colormap": o.look.cmap},
            "prediction": pred,
            "layers": [
                {
                    "label": r.label,
                    "name": r.name,
                    "type": c.kind,
                    "output_shape": list(r.shape),
                    "channels": [int(v) for v in r.channels],
                    "note": r.note,
                    "stats": {k: r.stats[k] for k in ("mean", "max", "zero_fraction")},
                    "npz_key": f"{keys[i]}/maps",
                    "png": layer_files[i] if i < len(layer_files) else None,
                }
                for i, (r, c) in enumerate(zip(rows, fx.layers, strict=True))
            ],
            "files": {"overview": "overview.png", "input": "input.png", "activations": "activations.npz"},
        }


def show(
    images: Iterable[str | Path],
    model=None,
    out: str | Path = "featuremaps-out",
    progress: Callable[[int, int, Path], None] | None = None,
    **options,
) -> ShowResults:
    """Python API for ``featuremaps show``: render every image, return where each one's files are (a list of
    :class:`ShowResult`; the value of a notebook cell, it shows the overviews).

    ``model``: a name (``"vgg16"``), a path, a :class:`LoadedModel`, or a model object (a Keras model, a
    ``torch.nn.Module``, an ONNX Runtime ``InferenceSession``); default the bundled emotion model.

    Example::

        >>> import featuremaps as fm, keras
        >>> fm.show(["cat.png"], model=keras.applications.VGG16(weights=None), layers="C1-C3")
    """
    lm = models.as_loaded(model)
    opts = ShowOptions.of(**options)
    opts.look.check()
    paths = find_images([str(p) for p in images])
    # a model without conv layers or a bad --layers: fail before the first image
    select_layers(conv_layers(lm.model, opts.input_shape), opts.layers)
    shower = Shower(lm, opts)
    out = Path(out)
    results = ShowResults()
    for i, (p, name) in enumerate(zip(paths, output_names(paths), strict=True)):
        if progress:
            progress(i, len(paths), p)
        results.append(shower.run(p, out, name))
    if progress:
        progress(len(paths), len(paths), None)
    return results
