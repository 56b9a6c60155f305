"""Side-by-side comparisons: one image through several architectures, one face per emotion through one model.

``featuremaps compare IMAGE --models vgg16,resnet50,...`` aligns the networks' conv layers by relative depth
(C1 and the last conv at the ends, evenly spaced rows between) or, with ``--align resolution``, by the spatial
size of their output (the deepest conv at each downsampling factor 1, 1/2, 1/4, ...). ``--norm shared`` puts
every map of a row on one colour scale, so activation strengths can be compared across networks.

``featuremaps compare-classes`` shows, per layer, the same channels for one face per class (by default the
first PrivateTest face of each FER2013 emotion), each channel on one colour scale across the faces, with the
true and predicted class of each face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from featuremaps.emotion import data as fer
from featuremaps.errors import UserError
from featuremaps.frameworks import feature_extractor
from featuremaps.html import esc, img_tag, page
from featuremaps.models import APPLICATIONS, EMOTION_NAMES, TORCH_SUFFIXES
from featuremaps.pipeline import describe_prediction, prepare
from featuremaps.render import _fit_text, apply_colormap, colormap, fit_size, font, resize_maps, resize_rgb

NORMS = ("map", "layer", "shared", "global")
NORM_TEXT = {
    "map": "each map scaled to its own range",
    "layer": "one scale per layer and model",
    "shared": "one scale per row, shared by all models",
    "global": "one scale for the whole picture",
}
MINI = 52  # side of one small map in a comparison cell
GAP = 2


# ---------------------------------------------------------------- helpers
def _scaled(maps: np.ndarray, lo, hi) -> np.ndarray:
    lo = np.asarray(lo, np.float32)
    hi = np.asarray(hi, np.float32)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, np.clip((maps - lo) / span, 0, 1), 0.0).astype(np.float32)


def maps_block(maps01: np.ndarray, cols: int, side: int = MINI, cmap: str = "viridis") -> np.ndarray:
    """Scaled (H, W, k) maps in [0, 1] -> an RGB grid of ``cols`` columns, maps fitted into ``side`` px."""
    k = maps01.shape[-1]
    rows = math.ceil(k / cols)
    h, w = fit_size(maps01.shape[0], maps01.shape[1], side)
    rgb = apply_colormap(resize_maps(maps01, (h, w)), colormap(cmap))
    out = np.full((rows * (side + GAP) - GAP, cols * (side + GAP) - GAP, 3), 255, np.uint8)
    oy, ox = (side - h) // 2, (side - w) // 2
    for j in range(k):
        r, c = divmod(j, cols)
        y0, x0 = r * (side + GAP) + oy, c * (side + GAP) + ox
        out[y0 : y0 + h, x0 : x0 + w] = rgb[:, :, j]
    return out


def _text(draw, xy, text, size, width, fill=(20, 20, 20)):

    draw.text(xy, _fit_text(str(text), size, width), fill=fill, font=font(size))


def check_model_names(spec: str) -> list[str]:
    """Split ``--models`` and refuse unknown names before anything is loaded or downloaded."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) < 1:
        raise UserError("--models is empty; give comma-separated names like vgg16,resnet50")
    for n in names:
        key = n.lower().replace("_", "")
        if key in APPLICATIONS or key in EMOTION_NAMES:
            continue
        if Path(n).suffix.lower() in (".keras", ".h5", ".hdf5", *TORCH_SUFFIXES, ".onnx") and Path(n).is_file():
            continue
        if n.lower().startswith("torchvision:"):
            continue
        raise UserError(
            f"unknown model '{n}' in --models: use names from {', '.join(APPLICATIONS)}, emotion, torchvision:NAME, "
            "or .keras/.h5/.pt/.onnx files"
        )
    return names


# ---------------------------------------------------------------- compare architectures
@dataclass
class ModelRun:
    """One network's pass over the image: every conv layer's first k maps, its prediction."""

    lm: object
    shown: np.ndarray
    input_shape: tuple[int, int, int]
    results: list  # LayerMaps per conv layer, forward order
    prediction: list[dict] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.results)


def run_model(lm, rgb: np.ndarray, maps: int, resize: str = "crop") -> ModelRun:

    prep = prepare(lm, rgb, face_crop=False, resize=resize)
    fx = feature_extractor(lm.model, prep.x.shape, layers="all", maps=maps, select="first")
    results, preds = fx(prep.x[None])
    pred = describe_prediction(preds[0] if preds is not None else None, lm.classes, top=3)
    return ModelRun(lm, prep.shown, tuple(prep.x.shape), results, pred)


def align_rows(runs: list[ModelRun], rows: int, align: str = "depth") -> tuple[list[str], list[list[int | None]]]:
    """Row labels and, per row, each model's layer index (into ``run.results``) or None (no such layer).

    ``depth``: row j takes the layer at relative depth j / (rows - 1) of each model (first and last conv at
    ends). ``resolution``: one row per downsampling factor 2**s seen in any model, the deepest conv at it.
    """
    if align == "depth":
        n = max(1, rows)
        ts = [j / (n - 1) if n > 1 else 1.0 for j in range(n)]
        labels = [f"depth {t:.0%}" for t in ts]
        picks = [[round(t * (r.depth - 1)) for r in runs] for t in ts]
        return labels, picks
    if align != "resolution":
        raise UserError(f"--align '{align}' is not depth or resolution")
    levels: list[dict[int, int]] = []
    for r in runs:
        by_level: dict[int, int] = {}
        for i, res in enumerate(r.results):
            s = int(round(math.log2(max(1e-9, r.input_shape[0] / res.shape[0]))))
            by_level[s] = i  # the deepest conv at this resolution wins
        levels.append(by_level)
    all_levels = sorted(set().union(*levels))
    labels = [f"1/{2**s} of input" if s > 0 else ("input size" if s == 0 else f"{2**-s}x input") for s in all_levels]
    picks = [[lv.get(s) for lv in levels] for s in all_levels]
    return labels, picks


def render_models(
    runs: list[ModelRun],
    labels: list[str],
    picks: list[list[int | None]],
    *,
    norm: str = "map",
    cmap: str = "viridis",
    title: str = "",
    subtitle: str = "",
) -> np.ndarray:
    """The comparison picture: a column per model (input and prediction on top), a row per aligned layer."""

    if norm not in NORMS:
        raise UserError(f"--norm '{norm}' is not one of {', '.join(NORMS)}")
    k = max(r.results[0].maps.shape[-1] for r in runs)
    cols = min(4, k)
    block_w = cols * (MINI + GAP) - GAP
    block_h = math.ceil(k / cols) * (MINI + GAP) - GAP
    col_w = max(block_w, 200) + 16
    label_w = 118
    fs = 13
    thumb = 112
    head_h = 2 * (fs + 10) + 10
    top_h = thumb + 3 * (fs + 4) + 18
    row_h = block_h + 2 * (fs + 4) + 12
    width = label_w + len(runs) * col_w + 8
    height = head_h + top_h + len(labels) * row_h + 40
    canvas = np.full((height, width, 3), 255, np.uint8)

    # value ranges
    def maps_of(r, i):
        return r.results[i].maps[0]

    glob = None
    if norm == "global":
        allm = [maps_of(r, i) for row in picks for r, i in zip(runs, row, strict=True) if i is not None]
        glob = (min(float(m.min()) for m in allm), max(float(m.max()) for m in allm))
    cells = []  # (x, y, rgb)
    texts = []
    for j, (label, row) in enumerate(zip(labels, picks, strict=True)):
        y0 = head_h + top_h + j * row_h
        texts.append(((6, y0 + fs + 8), label, fs + 1, label_w - 10, (20, 20, 20)))
        present = [maps_of(r, i) for r, i in zip(runs, row, strict=True) if i is not None]
        shared = (min(float(m.min()) for m in present), max(float(m.max()) for m in present)) if present else None
        for c, (r, i) in enumerate(zip(runs, row, strict=True)):
            x0 = label_w + c * col_w
            if i is None:
                texts.append(
                    (
                        (x0 + 4, y0 + fs + 30),
                        "no layer at this resolution",
                        fs - 1,
                        col_w - 12,
                        (120, 120, 120),
                    )
                )
                continue
            res = r.results[i]
            m = maps_of(r, i)
            if norm == "map":
                s = _scaled(m, m.min(axis=(0, 1)), m.max(axis=(0, 1)))
            elif norm == "layer":
                s = _scaled(m, m.min(), m.max())
            else:
                lo, hi = glob if norm == "global" else shared
                s = _scaled(m, lo, hi)
            cells.append((x0 + 4, y0 + 2 * (fs + 4) + 4, maps_block(s, cols, MINI, cmap)))
            texts.append(((x0 + 4, y0 + 2), f"{res.conv.label} {res.conv.short_name}", fs, col_w - 12, (20, 20, 20)))
            texts.append(
                (
                    (x0 + 4, y0 + fs + 6),
                    "x".join(map(str, res.shape)) + f"  mean {res.stat('mean'):.3g}",
                    fs - 1,
                    col_w - 12,
                    (110, 110, 110),
                )
            )
    for c, r in enumerate(runs):
        x0 = label_w + c * col_w
        h, w = fit_size(*r.shown.shape[:2], thumb)
        canvas[head_h : head_h + h, x0 + 4 : x0 + 4 + w] = resize_rgb(r.shown, (h, w))
        yt = head_h + thumb + 4
        texts.append(((x0 + 4, yt), r.lm.name, fs + 2, col_w - 12, (20, 20, 20)))
        texts.append(
            (
                (x0 + 4, yt + fs + 6),
                f"{r.depth} conv layers, input {'x'.join(map(str, r.input_shape))}",
                fs - 1,
                col_w - 12,
                (110, 110, 110),
            )
        )
        if r.prediction:
            p = r.prediction[0]
            texts.append(
                (
                    (x0 + 4, yt + 2 * fs + 10),
                    f"{p['class']} {p['probability']:.0%}",
                    fs - 1,
                    col_w - 12,
                    (110, 110, 110),
                )
            )
    for x, y, rgb in cells:
        canvas[y : y + rgb.shape[0], x : x + rgb.shape[1]] = rgb
    pil = Image.fromarray(canvas)
    d = ImageDraw.Draw(pil)
    _text(d, (6, 4), title, fs + 5, width - 12)
    _text(d, (6, 10 + fs + 5), subtitle, fs, width - 12, (110, 110, 110))
    yb = height - 30
    lut = colormap(cmap)
    bar = lut[np.linspace(0, 255, 200).astype(int)][None].repeat(10, axis=0)
    pil.paste(Image.fromarray(bar), (label_w, yb + 4))
    _text(
        d,
        (label_w + 210, yb),
        f"low -> high activation; {NORM_TEXT[norm]}" + (f" ({glob[0]:.3g} to {glob[1]:.3g})" if glob else ""),
        fs,
        width - label_w - 220,
        (110, 110, 110),
    )
    for xy, t, size, w, fill in texts:
        _text(d, xy, t, size, w, fill)
    return np.asarray(pil)


def compare_models(
    lms: list,
    rgb: np.ndarray,
    *,
    rows: int = 6,
    maps: int = 8,
    align: str = "depth",
    norm: str = "map",
    cmap: str = "viridis",
    image_name: str = "image",
    resize: str = "crop",
):
    """Python API: returns ``(picture RGB uint8, runs, labels, picks)``."""
    runs = [run_model(lm, rgb, maps, resize) for lm in lms]
    labels, picks = align_rows(runs, rows, align)
    sizes = sorted({"x".join(map(str, r.input_shape[:2])) for r in runs})
    title = f"{image_name} through {len(runs)} networks, layers aligned by {align}"
    subtitle = (
        f"first {maps} maps of each layer; image {rgb.shape[1]}x{rgb.shape[0]} resized ({resize}) "
        f"to each network's input ({', '.join(sizes)})"
    )
    pic = render_models(runs, labels, picks, norm=norm, cmap=cmap, title=title, subtitle=subtitle)
    return pic, runs, labels, picks


def _models_html(pic, runs, labels, picks, title) -> str:

    head = "".join(f"<th>{esc(r.lm.name)}</th>" for r in runs)
    body = []
    for label, row in zip(labels, picks, strict=True):
        cells = []
        for r, i in zip(runs, row, strict=True):
            if i is None:
                cells.append("<td>&mdash;</td>")
                continue
            res = r.results[i]
            cells.append(
                f"<td>{esc(res.conv.label)} <code>{esc(res.conv.name)}</code><br>"
                f"{esc('x'.join(map(str, res.shape)))}; mean {res.stat('mean'):.3g}, max "
                f"{res.stat('max'):.3g}, zeros {res.stat('zero_fraction'):.0%}</td>"
            )
        body.append(f"<tr><th>{esc(label)}</th>{''.join(cells)}</tr>")
    tag = img_tag(pic, title).replace("<img ", '<img style="max-width:100%" ')
    section = (
        f'<section class="image" id="compare"><h2>{esc(title)}</h2><div class="layer">{tag}'
        f"</div><table><tr><th></th>{head}</tr>{''.join(body)}</table></section>"
    )
    return page(f"featuremaps compare: {title}", section)


# ---------------------------------------------------------------- compare classes
def default_fer_path() -> Path | None:
    """``../shared/data/fer2013`` (the folder, else the archive) beside the current folder or the checkout."""
    checkout_parent = Path(__file__).resolve().parents[3]
    for base in (Path.cwd().parent, checkout_parent):
        d = base / "shared" / "data" / "fer2013"
        if (d / "train").is_dir() or (d / "test").is_dir():
            return d
        if (d / "fer2013.tar.gz").is_file():
            return d / "fer2013.tar.gz"
    return None


def faces_from_fer(path, split: str = "PrivateTest") -> tuple[list[np.ndarray], list[str], list[str]]:
    """The first face of each class in ``split``: RGB arrays, their class names and where they come from."""
    data = fer.load(path, limit=1)
    s = data[split]
    faces, labels, sources = [], [], []
    for ci, cls in enumerate(data.classes):
        idx = np.flatnonzero(s.y == ci)
        if idx.size == 0:
            continue
        i = int(idx[0])
        faces.append(np.repeat(s.x[i][..., None], 3, axis=2))
        labels.append(cls)
        sources.append(s.sources[i])
    if len(faces) < 2:
        raise UserError(f"{path}: fewer than 2 classes have a {split} face; check the --data path")
    return faces, labels, sources


def render_classes(
    row_maps: list[np.ndarray],
    faces: list[np.ndarray],
    labels: list[str],
    preds: list[str],
    channels,
    *,
    title: str,
    subtitle: str,
    cmap: str = "viridis",
) -> np.ndarray:
    """One layer: a row per face (face, true and predicted class, then the same k channels)."""

    stack = np.stack(row_maps)  # (n, H, W, k): each channel scaled over all faces
    lo, hi = stack.min(axis=(0, 1, 2)), stack.max(axis=(0, 1, 2))
    k = stack.shape[-1]
    side = 64
    fs = 13
    label_w = 190
    head_h = 2 * (fs + 10) + fs + 12
    row_h = side + GAP + 4
    width = label_w + k * (side + GAP) + 8
    height = head_h + len(faces) * row_h + 36
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, face in enumerate(faces):
        y0 = head_h + i * row_h
        h, w = fit_size(*face.shape[:2], side)
        canvas[y0 : y0 + h, 4 : 4 + w] = resize_rgb(face, (h, w))
        block = maps_block(_scaled(stack[i], lo, hi), k, side, cmap)
        canvas[y0 : y0 + block.shape[0], label_w : label_w + block.shape[1]] = block
    pil = Image.fromarray(canvas)
    d = ImageDraw.Draw(pil)
    _text(d, (6, 4), title, fs + 4, width - 12)
    _text(d, (6, 10 + fs + 4), subtitle, fs, width - 12, (110, 110, 110))
    for j, ch in enumerate(channels):
        _text(d, (label_w + j * (side + GAP) + 2, head_h - fs - 6), f"ch{int(ch)}", fs, side)
    for i, (lab, pr) in enumerate(zip(labels, preds, strict=True)):
        y0 = head_h + i * row_h
        _text(d, (side + 12, y0 + 8), lab, fs + 2, label_w - side - 16)
        _text(d, (side + 12, y0 + 30), f"pred: {pr}", fs - 1, label_w - side - 16, (110, 110, 110))
    lut = colormap(cmap)
    bar = lut[np.linspace(0, 255, 160).astype(int)][None].repeat(10, axis=0)
    pil.paste(Image.fromarray(bar), (label_w, height - 24))
    _text(
        d,
        (label_w + 170, height - 28),
        "low -> high: each channel on one scale across all faces",
        fs,
        width - label_w - 175,
        (110, 110, 110),
    )
    return np.asarray(pil)


def compare_classes(
    lm,
    faces: list[np.ndarray],
    labels: list[str],
    *,
    layers="all",
    maps: int = 8,
    cmap: str = "viridis",
    resize: str = "crop",
):
    """Python API: ``(pictures [(ConvLayer, RGB)], predictions [str], notes [str])`` of the faces."""
    preps = [prepare(lm, f, face_crop=False, resize=resize) for f in faces]
    shape = preps[0].x.shape
    notes = []
    resized = [
        f"{lab} {f.shape[1]}x{f.shape[0]}" for f, lab in zip(faces, labels, strict=True) if f.shape[:2] != shape[:2]
    ]
    if resized:
        notes.append(f"resized to {shape[1]}x{shape[0]}: {', '.join(resized)}")
    fx = feature_extractor(lm.model, shape, layers=layers, maps=maps, select="first")
    results, preds = fx(np.stack([p.x for p in preps]))
    pred_text = []
    for i in range(len(faces)):
        d = describe_prediction(preds[i] if preds is not None else None, lm.classes, top=1)
        pred_text.append(f"{d[0]['class']} {d[0]['probability']:.0%}" if d else "n/a")
    shown = [p.shown for p in preps]
    pics = []
    for r in results:
        title = (
            f"{r.conv.label} {r.conv.name} {'x'.join(map(str, r.shape))}: the same {r.maps.shape[-1]} "
            f"channels for {len(faces)} faces"
        )
        sub = f"{lm.name}; rows: true class, predicted class" + (f"; {notes[0]}" if notes else "")
        pics.append(
            (
                r.conv,
                render_classes(
                    [r.maps[i] for i in range(len(faces))],
                    shown,
                    labels,
                    pred_text,
                    r.channels[0],
                    title=title,
                    subtitle=sub,
                    cmap=cmap,
                ),
            )
        )
    return pics, pred_text, notes
