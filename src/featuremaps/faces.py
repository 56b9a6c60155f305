"""Find the largest face in a photo and crop it the way FER2013 faces are framed.

Uses OpenCV's frontal-face Haar cascade (Viola & Jones 2001), which ships inside the opencv-python
wheel: nothing is downloaded at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from featuremaps.errors import UserError


@dataclass
class FaceBox:
    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


class NoFaceError(UserError):
    """No face was found where the emotion model needs one (a batch may skip the image or feed it whole)."""


_CASCADE = None


def _cascade():
    global _CASCADE
    if _CASCADE is None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        _CASCADE = cv2.CascadeClassifier(path)
        if _CASCADE.empty():
            raise UserError(f"OpenCV's face cascade is missing ({path}); reinstall opencv-python-headless")
    return _CASCADE


def detect_faces(
    rgb: np.ndarray,
    *,
    max_side: int = 1024,
    min_fraction: float = 0.08,
    max_fraction: float | None = None,
    scale_factor: float = 1.1,
) -> list[FaceBox]:
    """All faces found, largest first, in ``rgb``'s pixels.

    The photo is scaled to at most ``max_side`` px on its long side to detect; faces smaller than
    ``min_fraction`` (or larger than ``max_fraction``) of its short side are not looked for, and the cascade's
    window grows by ``scale_factor`` a step. The defaults suit photos; the explorer's live camera (a face large
    in a small frame, 30 times a second) detects in ~160 px frames with fewer, larger steps.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        max_side: the long side the photo is reduced to (never enlarged) before detection.
        min_fraction: the smallest face looked for, as a fraction of the short side (at least 24 px).
        max_fraction: the largest face looked for, as a fraction of the short side (None: any).
        scale_factor: the cascade's step between window sizes (> 1; larger is faster and coarser).
    """
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    s = min(1.0, max_side / max(gray.shape))
    h, w = gray.shape
    if min(h, w) * s < 24:  # a sliver (30000x3): no face fits, and OpenCV cannot resize it to 0 px
        return []
    small = (
        cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else gray
    )
    small = cv2.equalizeHist(small)
    min_side = max(24, int(min(small.shape) * min_fraction))
    kw = {}
    if max_fraction is not None:
        big = max(min_side, int(min(small.shape) * max_fraction))
        kw["maxSize"] = (big, big)
    boxes = _cascade().detectMultiScale(
        small, scaleFactor=scale_factor, minNeighbors=6, minSize=(min_side, min_side), **kw
    )
    faces = [FaceBox(*(int(round(v / s)) for v in b)) for b in boxes]
    return sorted(faces, key=lambda f: f.w * f.h, reverse=True)


def crop_face(rgb: np.ndarray, box: FaceBox, margin: float = 0.15) -> np.ndarray:
    """Square crop around ``box`` with ``margin`` of its size on each side, padded by edge pixels."""
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    side = max(box.w, box.h) * (1 + 2 * margin)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    h, w = rgb.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return rgb[y0:y1, x0:x1]


def largest_face(rgb: np.ndarray, margin: float = 0.15) -> tuple[np.ndarray, FaceBox | None]:
    """The crop of the largest face and its box; an image that is already a small face crop passes as is."""
    h, w = rgb.shape[:2]
    if max(h, w) <= 64:  # FER-sized input: already a face
        return rgb, None
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError(
            "no face found in the image; crop it to the face yourself or pass --no-face-crop to feed the whole image"
        )
    return crop_face(rgb, faces[0], margin), faces[0]
