"""Feature maps as a Matplotlib Figure for notebooks: ``featuremaps.plot(model, "cat.png")``.

The picture is :func:`featuremaps.render.render_overview`'s RGB array shown 1:1 (figure size = pixel
size / dpi) on axes without ticks. The Figure is built with ``matplotlib.figure.Figure``, not pyplot, so it
touches no global state: Jupyter displays it when it is the cell's value, and ``fig.savefig`` writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featuremaps.errors import UserError
from featuremaps.extractor import feature_extractor
from featuremaps.images import load_image
from featuremaps.models import wrap
from featuremaps.pipeline import prepare
from featuremaps.render import render_overview


def _display_image(x: np.ndarray) -> np.ndarray:
    """A model input (any range, 1 or 3 channels) as RGB uint8 for display."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    a = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def _results_for_model(model, image, layers, maps, select, preprocess, input_shape, resize):

    if image is None:
        raise UserError("plot(model, image): pass an image (a file path or an (H, W, C) array)")
    if isinstance(image, str | Path):
        lm = wrap(model, preprocess=preprocess)
        prep = prepare(lm, load_image(image), input_shape=input_shape, face_crop=False, resize=resize)
        x, shown = prep.x, prep.shown
    else:  # an array is the model input as is, like featuremaps.extract
        x = np.asarray(image, dtype=np.float32)
        if x.ndim == 2:
            x = x[..., None]
        shown = _display_image(x)
    fx = feature_extractor(model, x.shape, layers=layers, maps=maps, select=select)
    results, _ = fx(x[None])
    return results, shown, fx.mode == "first"


def plot(
    model_or_results,
    image=None,
    *,
    layers="all",
    maps: int | None = 16,
    select="first",
    norm: str = "map",
    cmap: str = "viridis",
    cell: int = 112,
    overlay: bool = False,
    title: str = "",
    preprocess: str = "unit",
    input_shape: tuple[int, int, int] | None = None,
    resize: str = "crop",
    dpi: int = 100,
):
    """Draw the overview (a row per conv layer, ``maps`` columns) and return a ``matplotlib.figure.Figure``.

    ``model_or_results`` is a Keras model, the dict :func:`featuremaps.extract` returns, or the LayerMaps list
    of a :class:`~featuremaps.extract.FeatureExtractor` call. With a model, ``image`` is a file path (read,
    fitted to the model input and scaled by ``preprocess``) or an array fed to the model as is. With results,
    ``image`` (RGB uint8, optional) is drawn beside the title. Rows are labelled with each layer's full
    output shape and, when the maps are not channels 0..k-1 (``select="top-mean"``, a channel list, or the
    dict of ``featuremaps.extract(..., select=...)``), each cell with its channel id.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "featuremaps.plot needs Matplotlib; pip install matplotlib "
            "(or use featuremaps.render_overview for an RGB array)"
        ) from None

    first_n = True
    if isinstance(model_or_results, dict | list | tuple):
        results, shown = model_or_results, image
        if isinstance(results, list | tuple):
            first_n = all(np.array_equal(r.channels[0], np.arange(r.channels.shape[-1])) for r in results)
        if shown is not None:
            shown = np.asarray(shown)
            if shown.dtype != np.uint8 or shown.ndim == 2 or shown.shape[-1] != 3:
                shown = _display_image(shown)
    else:
        results, shown, first_n = _results_for_model(
            model_or_results, image, layers, maps, select, preprocess, input_shape, resize
        )
        title = title or getattr(model_or_results, "name", "")
    rgb = render_overview(
        results, shown, norm=norm, cmap=cmap, cell=cell, overlay=overlay, title=title, first_n=first_n
    )
    h, w = rgb.shape[:2]
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    return fig
