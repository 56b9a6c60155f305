"""The drawing layer: text measuring and wrapping, colour-bar ticks, the all-zero mark, title blocks that keep
their numbers, figures bounded in width."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from featuremaps import colormap, render_layer, render_overview
from featuremaps.cam_files import render_panel
from featuremaps.charts import render_confusion
from featuremaps.draw import (
    INK,
    Canvas,
    fit_text,
    fit_text_keep_end,
    fit_text_start,
    line_height,
    nice_ticks,
    text_width,
    title_block,
    wrap_text,
    zero_maps,
)
from featuremaps.render import Row

LONG = (
    "emotion_vgg16_finetuned_on_my_own_faces_v2 - holiday_photo_of_the_whole_family_2019_IMG_4242.png - "
    "C13 block5_conv3 - predicted: happy (93%)"
)
HATCH = (150, 150, 150)


def test_text_width_grows_with_text():
    assert 0 < text_width("F1", 13) < text_width("F16", 13) < text_width("F16 ch511", 13)
    assert text_width("F16", 20) > text_width("F16", 13)
    assert line_height(20) > line_height(13) >= 13


@pytest.mark.parametrize("width", [60, 150, 400])
def test_wrap_keeps_every_character_and_fits(width):
    lines = wrap_text(LONG, 13, width)
    assert all(text_width(t, 13) <= max(width, 4 * 13) for t in lines)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")  # nothing dropped, no ellipsis
    assert "…" not in "".join(lines)
    assert wrap_text("short", 13, 400) == ["short"]


def test_fit_text_and_keep_end():
    assert fit_text("block5_conv3", 13, 1000) == "block5_conv3"
    cut = fit_text("a_very_long_layer_name_indeed", 13, 80)
    assert cut.endswith("…") and text_width(cut, 13) <= 80
    kept = fit_text_keep_end("a very long class name 93%", 13, 90)
    assert kept.endswith(" 93%") and "…" in kept and text_width(kept, 13) <= 90
    assert fit_text_start("layer1.0.conv1", 13, 1000) == "layer1.0.conv1"
    start = fit_text_start("features.11.block.2.0", 13, 90)
    assert start.startswith("…") and "features.11.block.2.0".endswith(start[1:]) and text_width(start, 13) <= 90
    assert len(start) > 5  # more than the last component survives


def test_nice_ticks():
    assert nice_ticks(0, 1) == [0.25, 0.5, 0.75]
    assert nice_ticks(-1.5, 2.0) == [-1.0, 0.0, 1.0]
    assert nice_ticks(1, 1) == [] and nice_ticks(0, float("nan")) == []


def test_colorbar_ramp_ticks_and_numbers():
    lut = colormap("viridis")
    c = Canvas.blank(60, 400)
    bottom = c.colorbar(10, 5, 300, lut, -1.5, 2.0, size=12, bar=12)
    assert bottom <= 60
    assert c.rgb[5, 10].tolist() == lut[0].tolist() and c.rgb[5, 309].tolist() == lut[255].tolist()
    ticks = np.flatnonzero(np.all(c.rgb[5 + 12] == INK, axis=-1))  # 1 px tick lines under the bar
    # both ends plus -1, 0 and 1 (at 0.5 / 3.5, 1.5 / 3.5, 2.5 / 3.5 of the bar)
    assert {10, 309} <= set(ticks.tolist())
    assert {10 + round(f * 299) for f in (0.5 / 3.5, 1.5 / 3.5, 2.5 / 3.5)} <= set(ticks.tolist())
    numbers = c.rgb[5 + 15 : bottom]
    assert (numbers < 200).any()  # the numbers are drawn under the bar


def test_zero_maps_and_mark():
    m = np.zeros((20, 20, 3), np.float32)
    m[7, 13, 1] = 1e-7  # weak, not zero
    m[..., 2] = -2.0
    assert zero_maps(m).tolist() == [True, False, False]
    c = Canvas.blank(40, 60)
    c.mark_blank((5, 5), (50, 30))
    tile = c.rgb[5:35, 5:55]
    assert np.all(tile == HATCH, axis=-1).any() and (tile < 100).any()  # hatching and the label's ink
    assert np.all(c.rgb[:5] == 255)  # nothing outside the tile


def test_zero_map_is_marked_weak_map_is_not():
    maps = np.zeros((6, 6, 2), np.float32)
    maps[..., 1] = np.random.default_rng(0).random((6, 6)) * 1e-6  # weak
    for img in (render_overview({"c": maps}, cell=60), render_layer(Row("C1", "c", (6, 6, 2), maps, np.arange(2)))):
        lut = colormap("viridis")
        wy, wx = np.nonzero(np.all(img == lut[255], axis=-1))
        assert wy.size  # the weak map is drawn in full colour
        band = img[wy.min() : wy.max() + 1]  # the rows of the map tiles
        hy, hx = np.nonzero(np.all(band == HATCH, axis=-1))
        assert hy.size > 50 and hx.max() < wx.min()  # the hatched tile is F1, left of the coloured F2


def test_title_block_wraps_and_keeps_the_prediction():
    tb = title_block(300, LONG, ["first 16 maps"])
    text = " ".join(t for t, _, _ in tb.lines)
    assert "predicted: happy (93%)" in text and "first 16 maps" in text
    assert tb.width <= 300 and len(tb.lines) >= 4


def _panel(title):
    r = SimpleNamespace(
        heatmap=np.ones((3, 3), np.float32),
        heatmap_up=np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64),
        class_name="happy",
        class_index=3,
        probability=0.93,
        probs=np.array([0.01, 0.02, 0.04, 0.93], np.float32),
    )
    zero = SimpleNamespace(**{**r.__dict__, "heatmap": np.zeros((3, 3), np.float32), "class_index": 1})
    image = np.zeros((64, 64, 3), np.uint8)
    return render_panel(image, [("gradcam", [r, zero])], cell=64, title=title, subtitle="score: logit")


def test_long_title_adds_lines_not_width():
    short, long = _panel("m - a.png"), _panel(LONG)
    assert long.shape[1] == short.shape[1] == 620  # bounded: the panel does not grow sideways
    assert long.shape[0] > short.shape[0]  # the title wrapped onto more lines
    hatch = np.all(long == HATCH, axis=-1)
    assert hatch.any()  # the all-zero CAM map is marked

    ov_short = render_overview({"c": np.ones((4, 4, 2), np.float32)}, cell=40, title="m")
    ov_long = render_overview({"c": np.ones((4, 4, 2), np.float32)}, cell=40, title=LONG, subtitle=LONG)
    assert ov_long.shape[1] == ov_short.shape[1] and ov_long.shape[0] > ov_short.shape[0]


def test_overview_title_never_over_column_headers():
    maps = np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)
    img = render_overview({"c": maps}, cell=50, title=LONG, subtitle="a subtitle")
    grey = np.all(img == (200, 200, 200), axis=-1).sum(axis=1)
    sep = np.flatnonzero(grey >= 3 * 50)[0]  # the line under F1 .. F3
    fs = max(11, 50 // 7)
    header_top = sep - line_height(fs) - 1
    above = img[: header_top - 1, 150:]
    assert (above < 200).any()  # the title is above the headers
    assert np.all(img[header_top - 3 : header_top, :] == 255)  # with white rows between them


def test_confusion_chart():
    m = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    img = render_confusion(m, ["angry", "happy", "a_class_with_a_long_name"], title=LONG)
    assert img.dtype == np.uint8 and img.shape[2] == 3
    lut = colormap("viridis")
    assert np.all(img == lut[255], axis=-1).sum() >= 60 * 60  # the 100% cell in the top colour
    assert img.shape[1] < 800
