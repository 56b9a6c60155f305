"""Rendering: colormap LUTs, hand-checked normalisation, grid geometry, nearest upsampling, aspect ratios."""

from __future__ import annotations

import numpy as np
import pytest

from featuremaps import UserError, colormap, normalise, render_layer, render_overview
from featuremaps.render import Row, apply_colormap, fit_size, resize_maps, rows_from


def _boxes(rgb: np.ndarray, colour) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, x0, y1, x1) of the pixels of exactly ``colour``."""
    ys, xs = np.nonzero(np.all(rgb == np.asarray(colour, np.uint8), axis=-1))
    return (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if ys.size else None


def test_colormap_is_a_lut():
    v = colormap("viridis")
    assert v.shape == (256, 3) and v.dtype == np.uint8
    assert v[0].tolist() == [68, 1, 84] and v[255].tolist() == [253, 231, 37]  # Matplotlib's viridis ends
    g = colormap("gray")
    assert g[0].tolist() == [0, 0, 0] and g[255].tolist() == [255, 255, 255] and g[128].tolist() == [128] * 3
    assert colormap("magma") is colormap("magma")  # cached


def test_unknown_colormap_lists_choices():
    with pytest.raises(UserError, match="unknown colormap 'nosuch'; use one of viridis, magma"):
        colormap("nosuch")


def test_apply_colormap():
    g = colormap("gray")
    out = apply_colormap(np.array([[0.0, 0.5, 1.0, np.nan, 2.0, -1.0]], np.float32), g)
    assert out.shape == (1, 6, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255, 0, 255, 0]


A = np.array([[[0.0, 10.0], [1.0, 10.0]], [[2.0, 10.0], [4.0, 10.0]]], np.float32)  # (2, 2, 2): ramp, constant
B = np.array([[[-2.0]], [[6.0]]], np.float32)  # (2, 1, 1)


def test_normalise_map():
    (a, b), (ra, rb) = normalise([A, B], "map")
    np.testing.assert_allclose(a[..., 0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(a[..., 1], np.zeros((2, 2)))  # a constant map becomes zeros
    np.testing.assert_allclose(b[..., 0], [[0.0], [1.0]])
    np.testing.assert_array_equal(ra, [[0, 4], [10, 10]])
    np.testing.assert_array_equal(rb, [[-2, 6]])


def test_normalise_layer():
    (a, b), (ra, rb) = normalise([A, B], "layer")
    np.testing.assert_allclose(a[..., 0], [[0.0, 0.1], [0.2, 0.4]])
    np.testing.assert_allclose(a[..., 1], np.ones((2, 2)))
    np.testing.assert_array_equal(ra, [[0, 10], [0, 10]])
    np.testing.assert_allclose(b[..., 0], [[0.0], [1.0]])


def test_normalise_global():
    (a, b), (ra, rb) = normalise([A, B], "global")
    np.testing.assert_allclose(a[..., 0], (A[..., 0] + 2) / 12, rtol=1e-6)
    np.testing.assert_allclose(a[..., 1], np.ones((2, 2)))
    np.testing.assert_allclose(b[..., 0], [[0.0], [8 / 12]], rtol=1e-6)
    np.testing.assert_array_equal(ra, [[-2, 10], [-2, 10]])
    np.testing.assert_array_equal(rb, [[-2, 10]])


def test_normalise_bad_mode():
    with pytest.raises(UserError, match="--norm 'loud' is not one of map, layer, global"):
        normalise([A], "loud")


@pytest.mark.parametrize(
    "hw, cell, want",
    [
        ((14, 14), 112, (112, 112)),
        ((3, 3), 112, (111, 111)),
        ((224, 224), 112, (112, 112)),
        ((7, 14), 112, (56, 112)),
        ((224, 112), 112, (112, 56)),
        ((300, 451), 112, (75, 112)),
    ],
)
def test_fit_size_keeps_aspect(hw, cell, want):
    assert fit_size(*hw, cell) == want


def test_resize_maps_nearest_up_and_area_down():
    m = np.arange(4, dtype=np.float32).reshape(2, 2, 1)
    up = resize_maps(m, (4, 4))
    np.testing.assert_array_equal(up[..., 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    odd = resize_maps(m, (3, 3))  # non-integer factor: still nearest, only existing values
    assert set(np.unique(odd)) <= {0.0, 1.0, 2.0, 3.0}
    down = resize_maps(np.arange(16, dtype=np.float32).reshape(4, 4, 1), (2, 2))
    np.testing.assert_allclose(down[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    many = resize_maps(np.random.default_rng(0).random((7, 9, 6), dtype=np.float32), (3, 4))
    assert many.shape == (3, 4, 6)


def _row(maps, label="C1", name="conv", channels=None, shape=None):
    k = maps.shape[-1]
    return Row(
        label,
        name,
        shape or (*maps.shape[:2], k),
        maps,
        np.arange(k) if channels is None else np.asarray(channels),
    )


def _constant_maps(h, w, k):
    return np.broadcast_to(np.arange(k, dtype=np.float32), (h, w, k)).copy()


def test_layer_grid_16_maps_is_4x4():
    lut = colormap("viridis")
    maps = _constant_maps(4, 4, 16) + 1  # map j is the constant j + 1: with one scale per layer, its own colour
    img = render_layer(_row(maps), norm="layer", cell=64)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    img = img[:-40]  # without the colour bar under the grid
    boxes = [_boxes(img, lut[int(j / 15 * 255 + 0.5)]) for j in range(16)]
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    assert len(ys) == 4 and len(xs) == 4
    for j, b in enumerate(boxes):
        assert b[2] - b[0] == 64 and b[3] - b[1] == 64
        assert (ys.index(b[0]), xs.index(b[1])) == divmod(j, 4)  # row-major F1..F16


@pytest.mark.parametrize("k, grid", [(1, (1, 1)), (5, (2, 3)), (9, (3, 3)), (10, (3, 4))])
def test_layer_grid_is_near_square(k, grid):
    lut = colormap("viridis")
    img = render_layer(_row(_constant_maps(2, 2, k) + 1), norm="global", cell=32, norm_range=(0.0, float(k)))
    img = img[:-40]
    boxes = [_boxes(img, lut[int((j + 1) / k * 255 + 0.5)]) for j in range(k)]
    assert (len({b[0] for b in boxes}), len({b[1] for b in boxes})) == (grid[0], min(k, grid[1]))


def test_small_maps_upsampled_nearest_blocks():
    maps = np.random.default_rng(0).random((3, 3, 1), dtype=np.float32)
    img = render_overview({"conv": maps}, cell=90, cmap="viridis")
    lut = colormap("viridis")
    norm = (maps[..., 0] - maps.min()) / (maps.max() - maps.min())
    colours = [lut[int(v * 255 + 0.5)] for v in norm.ravel()]
    for c, (i, j) in zip(colours, np.ndindex(3, 3), strict=True):
        b = _boxes(img, c)
        assert b is not None and (b[2] - b[0], b[3] - b[1]) == (30, 30), (i, j, b)  # a 30x30 block per value


def test_non_square_map_keeps_aspect_ratio():
    maps = _constant_maps(4, 8, 2)
    lut = colormap("viridis")
    img = render_overview({"wide": maps}, norm="layer", cell=96)[:, :-90]  # without the colour bars
    b = _boxes(img, lut[255])  # map F2 (value 1 -> top of the colormap)
    assert (b[2] - b[0], b[3] - b[1]) == (48, 96)
    tall = render_layer(_row(np.transpose(maps, (1, 0, 2))), norm="layer", cell=96)[:-40]
    b = _boxes(tall, lut[255])
    assert (b[2] - b[0], b[3] - b[1]) == (96, 48)


def test_overview_rows_and_columns():
    lut = colormap("viridis")
    d = {"a": _constant_maps(8, 8, 16) + 1, "b": _constant_maps(4, 4, 16) + 1, "c": _constant_maps(2, 2, 4) + 1}
    img = render_overview(d, norm="layer", cell=40)[:, :-90]
    f8 = lut[int(7 / 15 * 255 + 0.5)]  # F8 of the 16-map rows; the 4-map row has no such value
    rows = {y for y, x in zip(*np.nonzero(np.all(img == f8, axis=-1)), strict=True)}
    assert max(rows) - min(rows) + 1 == 40 + 2 + 40  # two rows of 40 px cells, 2 px apart
    first = [_boxes(img, lut[0])]  # F1 of every row is the minimum colour
    assert first[0] is not None
    one_row = render_overview({"a": d["a"]}, norm="layer", cell=40)[:, :-90]
    assert img.shape[1] == one_row.shape[1]  # 16 columns wide either way
    assert img.shape[0] - one_row.shape[0] == 2 * (40 + 2)  # two more rows of cell + gap


def test_channel_captions_add_room_when_not_first_n():
    one, two = {"a": _constant_maps(4, 4, 3)}, {"a": _constant_maps(4, 4, 3), "b": _constant_maps(4, 4, 3)}
    plain = render_overview(two, cell=40).shape[0] - render_overview(one, cell=40).shape[0]
    captioned = (
        render_overview(two, cell=40, first_n=False).shape[0] - render_overview(one, cell=40, first_n=False).shape[0]
    )
    assert captioned > plain  # each row gets a caption line above its cells


def test_overview_with_image_and_overlay():
    maps = np.random.default_rng(1).random((4, 6, 3), dtype=np.float32)
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 255
    a = render_overview({"m": maps}, image, cell=60)
    b = render_overview({"m": maps}, image, cell=60, overlay=True)
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert _boxes(a, (255, 0, 0)) == (4, 4, 44, 64)  # the input, aspect kept, at the top left
    layer = render_layer(_row(maps), image=image, overlay=True, cell=60)
    assert layer.shape[2] == 3


@pytest.mark.parametrize("norm", ["map", "layer", "global"])
def test_overview_all_norms_render(norm):
    d = {
        "a": np.random.default_rng(0).normal(size=(5, 5, 4)).astype(np.float32),
        "b": np.zeros((3, 3, 2), np.float32),
    }
    img = render_overview(d, norm=norm, cell=30, title="t", subtitle="s")
    assert img.dtype == np.uint8 and img.shape[2] == 3
    # the image is not blank: maps are drawn in colours other than the background
    assert (img != 255).any(axis=-1).mean() > 0.1


def test_nothing_to_draw():
    with pytest.raises(UserError, match="nothing to draw"):
        render_overview({})


def test_rows_from_dict():
    rows = rows_from({"x": np.zeros((2, 3, 4), np.float32), "y": np.zeros((1, 1, 2), np.float32)})
    assert [(r.label, r.name, r.shape, r.channels.tolist()) for r in rows] == [
        ("C1", "x", (2, 3, 4), [0, 1, 2, 3]),
        ("C2", "y", (1, 1, 2), [0, 1]),
    ]
    assert rows[0].shape_text == "2x3x4"
