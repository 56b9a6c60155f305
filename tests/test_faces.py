"""Face crop: lands on the astronaut's face; small face crops pass through; no face is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES

from featuremaps.errors import UserError
from featuremaps.faces import FaceBox, crop_face, detect_faces, largest_face
from featuremaps.images import load_image


def test_astronaut_face_is_found_on_her_face():
    rgb = load_image(EXAMPLES / "astronaut.png")
    crop, box = largest_face(rgb)
    # Her face spans about x 175-275, y 60-175 in the 512x512 photo (eyes near y 110, mouth near y 150).
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    assert 190 < cx < 260 and 85 < cy < 150
    assert 70 < box.w < 160
    assert crop.shape[0] == crop.shape[1] and crop.shape[0] > box.w  # square, with a margin


def test_face_sized_input_passes_through():
    face = np.zeros((48, 48, 3), np.uint8)
    out, box = largest_face(face)
    assert box is None and out is face


def test_no_face_found_says_how_to_proceed():
    flat = np.full((200, 300, 3), 128, np.uint8)
    assert detect_faces(flat) == []
    with pytest.raises(UserError, match="--no-face-crop"):
        largest_face(flat)


def test_crop_near_the_border_is_padded_not_shifted():
    rgb = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    crop = crop_face(rgb, FaceBox(0, 0, 40, 40), margin=0.25)
    assert crop.shape == (60, 60, 3)
    np.testing.assert_array_equal(crop[10:50, 10:50], rgb[0:40, 0:40])
