"""featuremaps.plot: a matplotlib.figure.Figure for notebooks, no pyplot state."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import featuremaps

pytest.importorskip("matplotlib")


def _no_new_pyplot(before: bool):
    if not before:
        assert "matplotlib.pyplot" not in sys.modules


def test_plot_results_dict_pixel_size():
    from matplotlib.figure import Figure

    before = "matplotlib.pyplot" in sys.modules
    maps = {"a": np.random.default_rng(0).random((6, 6, 4), dtype=np.float32)}
    rgb = featuremaps.render_overview(maps, cell=50)
    fig = featuremaps.plot(maps, cell=50, dpi=50)
    assert isinstance(fig, Figure)
    w, h = fig.get_size_inches() * fig.dpi
    assert (round(h), round(w)) == rgb.shape[:2]
    (ax,) = fig.axes
    assert not ax.axison
    np.testing.assert_array_equal(ax.images[0].get_array(), rgb)
    _no_new_pyplot(before)


def test_plot_model_and_image_path(tiny_functional, tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(p)
    fig = featuremaps.plot(tiny_functional, p, layers="C1-C2", maps=2, select="top-mean", cell=40)
    arr = fig.axes[0].images[0].get_array()
    assert arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
    fig.savefig(tmp_path / "fig.png")
    with Image.open(tmp_path / "fig.png") as im:
        assert (im.height, im.width) == arr.shape[:2]


def test_plot_model_and_array_and_extractor_results(tiny_sequential):
    x = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    fig = featuremaps.plot(tiny_sequential, x, maps=4)
    assert fig.axes[0].images[0].get_array().shape[2] == 3
    results, _ = featuremaps.FeatureExtractor(tiny_sequential, x.shape, maps=2, select="top-max")(x[None])
    fig = featuremaps.plot(results, (x * 255).astype(np.uint8))
    assert fig.axes[0].images[0].get_array().shape[2] == 3


def test_plot_model_needs_image(tiny_sequential):
    with pytest.raises(featuremaps.UserError, match="pass an image"):
        featuremaps.plot(tiny_sequential)


def test_api_names_and_modules_do_not_clash():
    import featuremaps.cam
    import featuremaps.extractor
    import featuremaps.figure

    assert callable(featuremaps.extract) and callable(featuremaps.plot) and callable(featuremaps.compute_cam)
    # one extract and one compute_cam for every framework (Keras, torch, ONNX), above the model protocol
    assert featuremaps.extract.__module__ == "featuremaps.extractor"
    assert featuremaps.plot.__name__ == "plot"
    assert featuremaps.compute_cam.__module__ == "featuremaps.cam.engine"
    assert featuremaps.cam.compute_cam is featuremaps.compute_cam  # the cam package's function is the one
    assert {"extract", "plot", "compute_cam", "show", "conv_layers", "load_model"} <= set(dir(featuremaps))


def test_plot_extract_results_keep_layer_shape_and_channel_ids(tiny_sequential):
    from featuremaps.render import rows_from

    x = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    maps = featuremaps.extract(tiny_sequential, x, maps=2, select="top-mean")
    full = featuremaps.extract(tiny_sequential, x)
    rows = rows_from(maps)
    assert [r.shape for r in rows] == [m.shape for m in full.values()]  # the layer's shape, not (H, W, 2)
    assert all(r.maps.shape[-1] == 2 for r in rows)
    for r, m in zip(rows, full.values(), strict=True):  # the channel ids are the chosen ones
        np.testing.assert_array_equal(r.maps, m[..., r.channels])
    captioned = featuremaps.plot(maps, cell=40).axes[0].images[0].get_array()
    assert captioned.shape == featuremaps.render_overview(maps, cell=40, first_n=False).shape
