"""Any image a user has -> RGB uint8 -> the model's input size and channels; bad files -> one-line errors."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from featuremaps import UserError, load_image
from featuremaps.images import find_images, fit_to, pil_to_rgb


def _save(tmp_path, im, name, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_rgb_png_roundtrip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    got = load_image(_save(tmp_path, Image.fromarray(a), "a.png"))
    assert got.dtype == np.uint8 and got.shape == (5, 7, 3)
    np.testing.assert_array_equal(got, a)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 255)  # opaque red
    a[0, 1] = (255, 0, 0, 0)  # transparent -> white
    a[1, 0] = (0, 0, 0, 128)  # half black -> mid grey
    got = load_image(_save(tmp_path, Image.fromarray(a, "RGBA"), "a.png"))
    assert got[0, 0].tolist() == [255, 0, 0]
    assert got[0, 1].tolist() == [255, 255, 255]
    assert 120 <= got[1, 0, 0] <= 135


def test_grayscale_and_la(tmp_path):
    g = np.array([[0, 128], [200, 255]], np.uint8)
    got = load_image(_save(tmp_path, Image.fromarray(g, "L"), "g.png"))
    assert got.shape == (2, 2, 3) and (got == g[..., None]).all()
    la = Image.fromarray(np.dstack([g, np.full_like(g, 255)]), "LA")
    assert (load_image(_save(tmp_path, la, "la.png")) == g[..., None]).all()


def test_16_bit_grayscale_scaled(tmp_path):
    a = np.array([[0, 65535], [32768, 256]], np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    got = load_image(_save(tmp_path, im, "d.png"))
    assert got.shape == (2, 2, 3)
    assert got[..., 0].tolist() == [[0, 255], [128, 1]]


def test_32_bit_int_image_scaled_by_range():
    im = Image.fromarray(np.array([[0, 1000], [60000, 65535]], np.int32), "I")
    assert pil_to_rgb(im)[..., 0].tolist() == [[0, 4], [233, 255]]


def test_float32_tiff_in_unit_range_is_the_same_picture_as_8_bit(tmp_path):
    """A float32 TIFF with pixels in [0, 1] reaches the network as its 8-bit version (it was read as 0-1 of 255:
    nearly black)."""
    g = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "u8.png")
    Image.fromarray((g / 255.0).astype(np.float32), mode="F").save(tmp_path / "f32.tif")
    want, got = load_image(tmp_path / "u8.png"), load_image(tmp_path / "f32.tif")
    assert got.shape == want.shape == (20, 30, 3)
    assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1
    a = np.float32([[0.0, 127.5, 255.0]])  # floats beyond 1: still 0-255
    np.testing.assert_array_equal(pil_to_rgb(Image.fromarray(a, mode="F"))[..., 0], [[0, 128, 255]])


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    im.putpixel((2, 0), 1)
    im.info["transparency"] = 1
    got = load_image(_save(tmp_path, im, "p.png", transparency=1))
    assert got[0].tolist() == [[255, 0, 0], [255, 255, 255], [255, 255, 255]]
    gif = load_image(_save(tmp_path, Image.new("P", (4, 4), 0), "p.gif"))
    assert gif.shape == (4, 4, 3)


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # red in CMYK
    got = load_image(_save(tmp_path, im, "c.jpg", quality=95))
    assert got.shape == (6, 8, 3)
    assert got[..., 0].mean() > 200 and got[..., 1].mean() < 60 and got[..., 2].mean() < 60


def test_exif_rotation_applied(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    p = _save(tmp_path, Image.fromarray(a), "r.jpg", exif=exif.tobytes(), quality=95)
    got = load_image(p)
    assert got.shape == (20, 10, 3)  # displayed upright: portrait
    assert got[:8, :, 0].mean() > 200 and got[12:, :, 0].mean() < 60  # the red half is now on top


def test_one_bit_and_bmp_webp_tiff(tmp_path):
    bw = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    assert load_image(_save(tmp_path, bw, "b.png"))[0, :, 0].tolist() == [0, 255]
    rgb = Image.fromarray(np.full((4, 4, 3), 9, np.uint8))
    for ext in ("bmp", "tiff", "webp"):
        assert load_image(_save(tmp_path, rgb, f"x.{ext}", **({"lossless": True} if ext == "webp" else {}))).shape == (
            4,
            4,
            3,
        )


@pytest.mark.parametrize(
    "mode, size, want_shape",
    [
        ("crop", (8, 8), (8, 8, 3)),
        ("stretch", (8, 8), (8, 8, 3)),
        ("pad", (8, 8), (8, 8, 3)),
        ("crop", (4, 12), (4, 12, 3)),
    ],
)
def test_fit_to_sizes(mode, size, want_shape):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 20, 3), dtype=np.uint8)
    got = fit_to(rgb, size, 3, mode)
    assert got.shape == want_shape and got.dtype == np.float32 and 0 <= got.min() and got.max() <= 255


def test_fit_to_crop_centre_and_pad_letterbox():
    rgb = np.zeros((10, 30, 3), np.uint8)
    rgb[:, 10:20] = 255  # a white centre third
    crop = fit_to(rgb, (10, 10), 3, "crop")
    assert crop.min() == 255  # only the centre remains
    pad = fit_to(rgb, (30, 30), 3, "pad")
    assert pad[:8].max() == 0 and pad[-8:].max() == 0  # black bars above and below
    assert pad[15, 15].min() > 250
    same = fit_to(rgb, (10, 30), 3, "crop")
    np.testing.assert_array_equal(same, rgb.astype(np.float32))


def test_fit_to_grayscale_model_gets_one_channel():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: luminance 0.587 * 255
    got = fit_to(rgb, (4, 4), 1)
    assert got.shape == (4, 4, 1)
    assert got[0, 0, 0] == pytest.approx(150, abs=1)


def test_fit_to_bad_mode():
    with pytest.raises(UserError, match="--resize 'zoom'"):
        fit_to(np.zeros((2, 2, 3), np.uint8), (2, 2), 3, "zoom")


# ---------------------------------------------------------------- bad files
def _png_header_only(path, width, height):
    """A valid-looking PNG that claims width x height (a decompression bomb's header) with a tiny body."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def _one_line(err):
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


@pytest.mark.parametrize("what", ["missing", "folder", "text", "empty", "truncated_png", "truncated_jpg"])
def test_unreadable_files(tmp_path, what):
    p = tmp_path / f"{what}.png"
    good = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    if what == "folder":
        p.mkdir()
    elif what == "text":
        p.write_text("hello, not an image\n")
    elif what == "empty":
        p.write_bytes(b"")
    elif what == "truncated_png":
        Image.fromarray(good).save(p)
        p.write_bytes(p.read_bytes()[:200])
    elif what == "truncated_jpg":
        p = tmp_path / "t.jpg"
        Image.fromarray(good).save(p, quality=90)
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    match = {
        "missing": "does not exist",
        "folder": "is a folder",
        "text": "not an image",
        "empty": "not an image",
        "truncated_png": "truncated or corrupt",
        "truncated_jpg": "truncated or corrupt",
    }[what]
    with pytest.raises(UserError, match=match) as e:
        load_image(p)
    _one_line(e)
    assert str(p) in str(e.value)


def test_pixel_limit(tmp_path):
    p = _save(tmp_path, Image.new("RGB", (40, 30)), "a.png")
    with pytest.raises(UserError, match=r"40x30 .* over the .* limit; shrink it or raise --max-pixels") as e:
        load_image(p, max_pixels=1000)
    _one_line(e)
    assert load_image(p, max_pixels=1200).shape == (30, 40, 3)


@pytest.mark.parametrize("side", [9_000, 50_000])
def test_decompression_bomb_header(tmp_path, side):
    """Refused from the header alone: nothing is decoded (9000^2 is over our limit, 50000^2 over Pillow's)."""
    p = _png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(UserError, match="--max-pixels") as e:
        load_image(p)
    _one_line(e)
    if side == 9_000:  # over our limit only: raising --max-pixels lets it through
        assert str(e.value).endswith("over the 64 Mpixels limit; shrink it or raise --max-pixels")
        assert "cannot" not in str(e.value)
    else:  # over Pillow's own limit: no --max-pixels helps, even a huge one, and the message says so
        assert "over Pillow's decompression-bomb limit" in str(e.value) and "--max-pixels cannot raise" in str(e.value)
        with pytest.raises(UserError, match="which --max-pixels cannot raise; shrink it") as e:
            load_image(p, max_pixels=2**31)
        _one_line(e)


def test_find_images(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / "d" / n).write_bytes(b"x")
    (tmp_path / "d" / "sub").mkdir()
    assert [p.name for p in find_images([str(tmp_path / "d")])] == ["a.JPG", "b.png"]
    (tmp_path / "e").mkdir()
    with pytest.raises(UserError, match="has no images"):
        find_images([str(tmp_path / "e")])
    with pytest.raises(UserError, match="does not exist"):
        find_images([str(tmp_path / "nope.png")])
