"""``featuremaps compare``: one image through several architectures, layers aligned, and its files.

``featuremaps compare IMAGE --models vgg16,resnet50,...`` aligns the networks' conv layers by relative depth
(C1 and the last conv at the ends, evenly spaced rows between) or, with ``--align resolution``, by the spatial
size of their output (the deepest conv at each downsampling factor 1, 1/2, 1/4, ...). ``--norm shared`` puts
every map of a row on one colour scale, so activation strengths can be compared across networks.

The compare-classes figure (one face per class through one model) is :mod:`featuremaps.compare_classes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from featuremaps import __version__, display, models
from featuremaps.draw import (
    INK,
    MUTED,
    Canvas,
    colorbar_height,
    fit_text,
    fit_text_keep_end,
    fit_text_start,
    line_height,
    text_width,
    title_block,
    wrap_text,
    zero_maps,
)
from featuremaps.emotion.shipped import shipped_weights_available
from featuremaps.errors import UserError
from featuremaps.extractor import feature_extractor
from featuremaps.html import esc, img_tag, page
from featuremaps.io import atomic_dir, save_json, save_png, save_text
from featuremaps.pipeline import model_title, percent, prediction_of, prepare
from featuremaps.render import apply_colormap, colormap, fit_size, fit_square, resize_maps

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
def scaled(maps: np.ndarray, lo, hi) -> np.ndarray:
    lo = np.asarray(lo, np.float32)
    hi = np.asarray(hi, np.float32)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, np.clip((maps - lo) / span, 0, 1), 0.0).astype(np.float32)


def maps_block(
    maps01: np.ndarray, cols: int, side: int = MINI, cmap: str = "viridis", zero: np.ndarray | None = None
) -> np.ndarray:
    """Scaled (H, W, k) maps in [0, 1] -> an RGB grid of ``cols`` columns, maps fitted into ``side`` px.

    ``zero`` ((k,) bool, from :func:`featuremaps.draw.zero_maps` of the raw maps) marks the maps that are
    zero everywhere: hatched and labelled, unlike a weak map.
    """
    k = maps01.shape[-1]
    rows = math.ceil(k / cols)
    h, w = fit_size(maps01.shape[0], maps01.shape[1], side)
    rgb = apply_colormap(resize_maps(maps01, (h, w)), colormap(cmap))
    c = Canvas.blank(rows * (side + GAP) - GAP, cols * (side + GAP) - GAP)
    oy, ox = (side - h) // 2, (side - w) // 2
    for j in range(k):
        r, col = divmod(j, cols)
        y0, x0 = r * (side + GAP) + oy, col * (side + GAP) + ox
        if zero is not None and zero[j]:
            c.mark_blank((x0, y0), (w, h), text_size=10)
        else:
            c.rgb[y0 : y0 + h, x0 : x0 + w] = rgb[:, :, j]
    return c.rgb


def check_model_names(spec: str) -> list[str]:
    """Split ``--models`` and refuse unknown names (and model files that do not exist) before anything is
    loaded or downloaded; names are read by :func:`featuremaps.models.resolve_name`, as ``--model``."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) < 1:
        raise UserError("--models is empty; give comma-separated names like vgg16,resnet50")
    for n in names:
        try:
            name = models.resolve_name(n)
        except UserError as e:
            raise UserError(f"{e} (in --models)") from None
        if name.kind == "file" and not Path(n).is_file():
            raise UserError(f"model file {n} in --models does not exist; check the path")
        if name.kind == "emotion" and name.key != "vgg16" and not shipped_weights_available(name.key):
            models.load(n)  # not shipped yet: the one line show gives, before any model loads
    return names


def load_compared(name: str, weights: str | None = None, unsafe: bool = False):
    """One of ``--models``: ``weights`` (``--weights none``) applies to keras.applications and torchvision
    models; the bundled emotion model keeps its training and a model file its own weights."""
    kind = models.resolve_name(name).kind
    if kind == "emotion":
        return models.load(name)
    if kind in ("application", "torchvision"):
        return models.load(name, weights=weights)
    return models.load(name, unsafe=unsafe)


def distinct_names(lms: list) -> list:
    """Models side by side get names a reader can tell apart: two that share one (``net.pt`` and ``net.onnx``
    are both ``net``) are named by their file (``net.pt``, ``net.onnx``), then numbered if still equal
    (``net``, ``net #2``). Renames the ``LoadedModel`` entries in place (never the user's model) and returns them."""
    counts: dict[str, int] = {}
    for lm in lms:
        counts[lm.name] = counts.get(lm.name, 0) + 1
    for lm in lms:
        if counts[lm.name] > 1 and Path(str(lm.source)).suffix:
            lm.name = Path(str(lm.source)).name
    seen: dict[str, int] = {}
    for lm in lms:
        seen[lm.name] = seen.get(lm.name, 0) + 1
        if seen[lm.name] > 1:
            lm.name = f"{lm.name} #{seen[lm.name]}"
    return lms


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


def free_size_shape(lm, input_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``--input-shape`` for one of several models: given to a model whose input height or width is free (an
    ONNX file with a dynamic size, a Keras model with ``Input((None, None, 3))``); one that fixes both keeps
    its own size."""
    shape = tuple(lm.input_shape) if lm.input_shape else ()
    fixed = len(shape) == 3 and shape[0] is not None and shape[1] is not None
    return None if fixed else input_shape


def run_model(
    lm,
    rgb: np.ndarray,
    maps: int,
    resize: str = "crop",
    face_crop: bool | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> ModelRun:
    """One model's pass; the emotion model sees the largest face, as in ``show`` (``face_crop=False``: the image).
    ``input_shape`` (H, W, C) feeds a model whose input size is free (see :func:`free_size_shape`)."""
    prep = prepare(lm, rgb, face_crop=face_crop, resize=resize, input_shape=free_size_shape(lm, input_shape))
    fx = feature_extractor(lm.model, prep.x.shape, layers="all", maps=maps, select="first")
    results, preds = fx(prep.x[None])
    pred = prediction_of(lm, preds[0] if preds is not None else None, top=3)
    return ModelRun(lm, prep.shown, tuple(prep.x.shape), results, pred)


def align_by_depth(rows: int, depth: int) -> list[int]:
    """For rows at relative depths j / (rows - 1), the index of the layer at that depth in a model of ``depth``
    conv layers (first and last conv at the ends; one row: the last). The rule ``compare`` and ``explore``
    align different networks by.

    Example::

        >>> align_by_depth(13, 5)   # VGG16's C1..C13 against a 5-conv network
        [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    """
    n = max(1, rows)
    return [round((j / (n - 1) if n > 1 else 1.0) * (depth - 1)) for j in range(n)]


def align_rows(runs: list[ModelRun], rows: int, align: str = "depth") -> tuple[list[str], list[list[int | None]]]:
    """Row labels and, per row, each model's layer index (into ``run.results``) or None (no such layer).

    ``depth``: row j takes the layer at relative depth j / (rows - 1) of each model (first and last conv at
    ends). ``resolution``: one row per downsampling factor 2**s seen in any model, the deepest conv at it.
    """
    if align == "depth":
        n = max(1, rows)
        ts = [j / (n - 1) if n > 1 else 1.0 for j in range(n)]
        labels = [f"depth {t:.0%}" for t in ts]
        per_model = [align_by_depth(n, r.depth) for r in runs]
        picks = [[p[j] for p in per_model] for j in range(n)]
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
    """The comparison picture: a column per model (input and prediction on top), a row per aligned layer.

    Model names, the title and the subtitle wrap (a long name never hides a prediction); a map that is zero
    everywhere is hatched and labelled; the colour bar under the grid is numeric.
    """

    if norm not in NORMS:
        raise UserError(f"--norm '{norm}' is not one of {', '.join(NORMS)}")
    k = max(r.results[i].maps.shape[-1] for row in picks for r, i in zip(runs, row, strict=True) if i is not None)
    cols = min(4, k)
    block_w = cols * (MINI + GAP) - GAP
    block_h = math.ceil(k / cols) * (MINI + GAP) - GAP
    col_w = max(block_w, 200) + 16
    label_w = 118
    fs = 13
    thumb = 112
    width = label_w + len(runs) * col_w + 8
    tb = title_block(width - 12, title, subtitle, size=fs + 5, sub_size=fs)
    head_h = tb.height + 10

    # the model heads: name (wrapped), layers and input size (wrapped), top prediction (its number kept); each
    # section starts at the same height in every column, however many lines a long name wraps to
    heads = []
    for r in runs:
        names = [(t, fs + 2, INK) for t in wrap_text(model_title(r.lm), fs + 2, col_w - 12)]
        info = f"{r.depth} conv layers, input {'x'.join(map(str, r.input_shape))}"
        infos = [(t, fs - 1, MUTED) for t in wrap_text(info, fs - 1, col_w - 12)]
        preds = []
        if r.prediction:
            p = r.prediction[0]
            preds = [
                (fit_text_keep_end(f"{p['class']} {percent(p['probability'])}", fs - 1, col_w - 12), fs - 1, MUTED)
            ]
        heads.append([names, infos, preds])
    section_h = [max(sum(line_height(sz) for _, sz, _ in h[s]) for h in heads) for s in range(3)]
    top_h = thumb + 8 + sum(section_h) + 10
    text_h = line_height(fs) + line_height(fs - 1) + 4
    row_h = block_h + text_h + 12

    # value ranges
    def maps_of(r, i):
        return r.results[i].maps[0]

    glob = None
    if norm == "global":
        allm = [maps_of(r, i) for row in picks for r, i in zip(runs, row, strict=True) if i is not None]
        glob = (min(float(m.min()) for m in allm), max(float(m.max()) for m in allm))
    legend = f"activation; {NORM_TEXT[norm]}" if glob else f"colour: 0 = low, 1 = high; {NORM_TEXT[norm]}"
    legend_lines = wrap_text(legend, fs - 1, width - label_w - 8)
    foot_h = len(legend_lines) * line_height(fs - 1) + 4 + colorbar_height(fs - 1) + 14
    height = head_h + top_h + len(labels) * row_h + foot_h
    c = Canvas.blank(height, width)
    tb.draw(c, 6, 4)
    for col, (r, lines) in enumerate(zip(runs, heads, strict=True)):
        x0 = label_w + col * col_w
        # every input fills the same box: a 48 px and a 40 px crop of one face are shown at one size (fit_size's
        # whole-factor rule drew the 48 px one at 96 px beside 112 px ones)
        c.paste(fit_square(r.shown, thumb), (x0 + 4, head_h))
        y0 = head_h + thumb + 4
        for s, section in enumerate(lines):
            y = y0 + sum(section_h[:s])
            for t, sz, colour in section:
                c.text((x0 + 4, y), t, sz, colour)
                y += line_height(sz)
    for j, (label, row) in enumerate(zip(labels, picks, strict=True)):
        y0 = head_h + top_h + j * row_h
        c.lines((6, y0 + line_height(fs) + 4), wrap_text(label, fs + 1, label_w - 10), fs + 1, INK)
        present = [maps_of(r, i) for r, i in zip(runs, row, strict=True) if i is not None]
        shared = (min(float(m.min()) for m in present), max(float(m.max()) for m in present)) if present else None
        for col, (r, i) in enumerate(zip(runs, row, strict=True)):
            x0 = label_w + col * col_w
            if i is None:
                t = fit_text("no layer at this resolution", fs - 1, col_w - 12)
                c.text((x0 + 4, y0 + text_h + 8), t, fs - 1, MUTED)
                continue
            res = r.results[i]
            m = maps_of(r, i)
            if norm == "map":
                s = scaled(m, m.min(axis=(0, 1)), m.max(axis=(0, 1)))
            elif norm == "layer":
                s = scaled(m, m.min(), m.max())
            else:
                lo, hi = glob if norm == "global" else shared
                s = scaled(m, lo, hi)
            c.paste(maps_block(s, cols, MINI, cmap, zero=zero_maps(m)), (x0 + 4, y0 + text_h + 4))
            name = fit_text_start(res.conv.name, fs, col_w - 12 - text_width(f"{res.conv.label} ", fs))
            c.text((x0 + 4, y0 + 2), f"{res.conv.label} {name}", fs, INK)  # the full path, its end kept
            stats = "x".join(map(str, res.shape)) + f"  mean {res.stat('mean'):.3g}"
            c.text((x0 + 4, y0 + line_height(fs) + 2), fit_text_keep_end(stats, fs - 1, col_w - 12), fs - 1, MUTED)
    yb = c.lines((label_w, height - foot_h + 4), legend_lines, fs - 1, MUTED) + 4
    lo, hi = glob if glob else (0.0, 1.0)
    c.colorbar(label_w, yb, min(240, width - label_w - 16), colormap(cmap), lo, hi, size=fs - 1)
    return c.rgb


class Comparison(NamedTuple):
    """What :func:`compare_models` returns (unpacks as ``pic, runs, labels, picks``); a notebook shows ``pic``."""

    pic: np.ndarray
    runs: list[ModelRun]
    labels: list[str]
    picks: list[list[int | None]]

    def summary(self) -> str:
        return f"featuremaps comparison of {len(self.runs)} networks: {', '.join(model_title(r.lm) for r in self.runs)}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return display.bundle(self.summary(), [("", self.pic)])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's text for a tuple subclass: the line, not the arrays
        p.text(self.summary())

    def save(self, folder: str | Path, image: str | Path, **how) -> Path:
        """Write ``compare.png``, ``.html`` and ``.json`` into ``folder`` (:func:`write_compare`; ``image``
        the compared file, named in them; ``how``: align, norm, maps as passed to :func:`compare_models`)."""
        how = {"align": "depth", "norm": "map", "maps": 8} | how
        write_compare(Path(folder), Path(image), *self, **how)
        return Path(folder)


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
    face_crop: bool | None = None,
    input_shape: tuple[int, ...] | None = None,
    progress=None,
):
    """Python API: returns a :class:`Comparison` ``(picture RGB uint8, runs, labels, picks)`` (a notebook shows
    the picture); ``progress(i, n, model name)`` per model.
    ``input_shape`` (H, W, C): the size the models whose input size is free are fed (``--input-shape``; an ONNX
    file with a dynamic size needs it); models that fix theirs keep it."""
    runs = []
    for i, lm in enumerate(lms):
        if progress:
            progress(i, len(lms), lm.name)
        runs.append(run_model(lm, rgb, maps, resize, face_crop, input_shape))
    if progress:
        progress(len(lms), len(lms), None)
    labels, picks = align_rows(runs, rows, align)
    sizes = sorted({"x".join(map(str, r.input_shape[:2])) for r in runs})
    title = f"{image_name} through {len(runs)} networks, layers aligned by {align}"
    random = [r.lm.name for r in runs if getattr(r.lm, "random_weights", False)]
    if random:
        title += f" ({'all' if len(random) == len(runs) else ', '.join(random)} with random weights)"
    subtitle = (
        f"first {maps} maps of each layer; image {rgb.shape[1]}x{rgb.shape[0]} resized ({resize}) "
        f"to each network's input ({', '.join(sizes)})"
    )
    pic = render_models(runs, labels, picks, norm=norm, cmap=cmap, title=title, subtitle=subtitle)
    return Comparison(pic, runs, labels, picks)


def models_html(pic, runs, labels, picks, title) -> str:

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


def compare_manifest(image: Path, runs: list[ModelRun], labels, picks, *, align: str, norm: str, maps: int) -> dict:
    """``compare.json``: the image, the options, each model (source, input, depth, prediction) and each row's
    layer per model (``None`` where a model has no layer in that row)."""
    return {
        "featuremaps": __version__,
        "image": str(image),
        "align": align,
        "norm": norm,
        "maps": maps,
        "models": [
            {
                "name": r.lm.name,
                "source": r.lm.source,
                "random_weights": bool(getattr(r.lm, "random_weights", False)),
                "input_shape": list(r.input_shape),
                "conv_layers": r.depth,
                "prediction": r.prediction,
            }
            for r in runs
        ],
        "rows": [
            {
                "label": lab,
                "layers": [
                    None
                    if i is None
                    else {
                        "label": r.results[i].conv.label,
                        "name": r.results[i].conv.name,
                        "shape": list(r.results[i].shape),
                    }
                    for r, i in zip(runs, row, strict=True)
                ],
            }
            for lab, row in zip(labels, picks, strict=True)
        ],
    }


def write_compare(
    folder: Path, image: Path, pic, runs, labels, picks, *, align: str, norm: str, maps: int, kept=None
) -> None:
    """Write ``folder`` (whole or not at all): ``compare.png``, ``compare.html`` and ``compare.json``. The image
    is never replaced; ``kept`` collects the user's files left in the folder."""
    title = f"{image.name}: {', '.join(model_title(r.lm) for r in runs)} aligned by {align}"
    manifest = compare_manifest(image, runs, labels, picks, align=align, norm=norm, maps=maps)
    with atomic_dir(folder, inputs=[image], kept=kept) as tmp:
        save_png(tmp / "compare.png", pic)
        save_text(tmp / "compare.html", models_html(pic, runs, labels, picks, title))
        save_json(tmp / "compare.json", manifest)
