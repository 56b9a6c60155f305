"""Read any image a user has and turn it into what a model takes.

Images are RGB uint8 ``(H, W, 3)`` once read (EXIF rotation applied; RGBA composited on white; 16-bit,
palette, CMYK and grayscale converted). :func:`fit_to` then resizes (centre crop by default, keeping the
aspect ratio) and converts to the model's channel count.
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featuremaps.errors import UserError

#: Images above this many pixels are refused (decompression bombs); ``--max-pixels`` changes it.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RESIZE_MODES = ("crop", "stretch", "pad")


def find_images(paths: list[str]) -> list[Path]:
    """Expand files and folders (images directly inside a folder, sorted) into a list of image paths."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(
                    f"folder {p} has no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...); "
                    "pass image files or a folder of them"
                )
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"image {p} does not exist; check the path")
    return out


def unreadable(path) -> str | None:
    """Why ``path`` cannot be an image, from its header alone (no pixel decoded: cheap for a whole folder), or
    None: a file that is not an image, not a regular file, too large, missing or not readable."""
    try:
        load_image(path, header_only=True)
    except UserError as e:
        return str(e)
    return None


def _mpx(n: float) -> str:
    """Pixel counts for messages: ``64 Mpixels``, ``0.0001 Mpixels`` (never "0 Mpixels")."""
    return f"{n / 1e6:.3g} Mpixels" if n >= 1e5 else f"{int(n)} pixels"


def load_image(
    path, max_pixels: int = MAX_PIXELS, name: str | None = None, *, fileobj=None, header_only: bool = False
) -> np.ndarray | None:
    """Read an image file as RGB uint8 (H, W, 3), or raise a one-line UserError saying what is wrong.

    ``path`` may also be a binary file object (an upload), named ``name`` in messages; or ``fileobj`` (bytes
    fetched from an ``s3://`` URI, say) is read instead of ``path``, which then only names the image. Only
    regular files are read (a FIFO or device would block or never end); images over ``max_pixels`` or
    Pillow's own limit are refused from their header, before any pixel is decoded. ``header_only``: stop
    there (None; the checks that need no pixels: :func:`unreadable`).
    """
    if fileobj is not None:
        source, shown = fileobj, name or str(path)
    elif hasattr(path, "read"):
        source, shown = path, name or getattr(path, "name", "upload")
    else:
        source = Path(path)
        shown = name or source
    path = shown if "://" in str(shown) else Path(shown)  # a URI keeps its double slash in messages
    try:
        mode = source.stat().st_mode if isinstance(source, Path) else None
    except OSError:
        mode = None  # missing or unreadable: the open below says which
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UserError(f"{path} is not a regular file (a FIFO, socket or device); pass an image file")
    try:
        with warnings.catch_warnings():
            # our own limit (max_pixels) decides up to Pillow's hard one (DecompressionBombError, 2x its warning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UserError(
                        f"{path} is {w}x{h} = {_mpx(w * h)}, over the {_mpx(max_pixels)} limit; "
                        "shrink it or raise --max-pixels"
                    )
                if header_only:
                    return None
                im.load()
                return pil_to_rgb(ImageOps.exif_transpose(im))
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; pass image files or the folder alone") from None
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied; check its permissions") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image Pillow can read; pass a PNG, JPEG, BMP, TIFF or WebP file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(
            f"{path} is over Pillow's decompression-bomb limit ({_mpx(2 * (Image.MAX_IMAGE_PIXELS or 0))}), "
            "which --max-pixels cannot raise; shrink it"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise UserError(f"{path} is truncated or corrupt ({e}); re-export or re-download it") from None


def pil_to_rgb(im) -> np.ndarray:
    """Any Pillow mode -> RGB uint8; 16/32-bit grayscale scaled by its range, alpha composited on white; float
    pixels all in [0, 1] (the float convention: a float32 TIFF) are that range, the same picture as 8-bit."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max()) if a.size else 0.0
        # 16-bit by their range; 32-bit integers or floats beyond 16 bits by their own maximum (never clip to white)
        hi = 65535.0 if im.mode.startswith("I;16") or 255 < top <= 65535 else (top if top > 65535 else 255.0)
        if im.mode == "F" and a.size and 0.0 <= float(a.min()) and top <= 1.0:
            hi = 1.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def fit_to(rgb: np.ndarray, size: tuple[int, int], channels: int = 3, mode: str = "crop") -> np.ndarray:
    """Resize RGB uint8 to ``size`` (H, W), convert to ``channels`` (1 = luminance, 3 = RGB): float32 0-255.

    ``crop`` centre-crops to the target aspect ratio first, ``pad`` letterboxes with black, ``stretch``
    ignores the aspect ratio (as ``keras.utils.load_img(target_size=...)`` does).
    """

    if mode not in RESIZE_MODES:
        raise UserError(f"--resize '{mode}' is not one of {', '.join(RESIZE_MODES)}")
    th, tw = size
    im = Image.fromarray(rgb)
    if channels == 1:
        im = im.convert("L")
    w, h = im.size
    if mode == "crop" and (w, h) != (tw, th):
        scale = max(tw / w, th / h)
        cw, ch = round(tw / scale), round(th / scale)
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    if mode == "pad" and (w, h) != (tw, th):
        scale = min(tw / w, th / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new(im.mode, (tw, th))
        canvas.paste(im.resize((nw, nh), Image.BICUBIC), ((tw - nw) // 2, (th - nh) // 2))
        im = canvas
    elif im.size != (tw, th):
        im = im.resize((tw, th), Image.BICUBIC)
    a = np.asarray(im, dtype=np.float32)
    return a[..., None] if a.ndim == 2 else a
