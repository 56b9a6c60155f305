"""The sanity metrics (featuremaps.cam.metrics) on hand-computed cases (no data or trained model needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from featuremaps.cam.metrics import (
    deletion_insertion,
    randomisation_correlation,
    randomised_copy,
    rank_average,
    spearman,
)
from featuremaps.errors import UserError


def test_rank_average_shares_tied_ranks():
    np.testing.assert_array_equal(rank_average(np.array([3.0, 0.0, 0.0, 5.0, 0.0])), [3.0, 1.0, 1.0, 4.0, 1.0])


def test_spearman_hand_computed_with_ties():
    # ranks a: [0.5, 0.5, 2, 3], b: [0, 1, 2, 3] -> centred a: [-1, -1, .5, 1.5], b: [-1.5, -.5, .5, 1.5]
    # sum ab = 1.5 + .5 + .25 + 2.25 = 4.5; |a|^2 = 4.5, |b|^2 = 5 -> rho = 4.5 / sqrt(22.5)
    rho = spearman(np.array([0.0, 0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert rho == pytest.approx(4.5 / np.sqrt(22.5))


def test_spearman_ties_do_not_invent_a_layout_correlation():
    """A map that is flat zero on its top half, against one whose top half is its highest: the flat region
    counts as one shared rank, so the correlation is the real (negative) one; a constant map has none."""
    a = np.zeros((4, 4))
    a[2:] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    b = np.arange(16.0).reshape(4, 4)[::-1]  # decreasing downwards: opposite ordering in the bottom half
    assert spearman(a, b) < 0.0
    assert spearman(np.zeros((4, 4)), b) == 0.0


def test_deletion_insertion_hand_computed():
    """2x2 image, probability of class 0 = mean of the pixels; 2 steps: 0, 2 and 4 pixels deleted/inserted."""
    x = np.array([[4.0, 0.0], [2.0, 2.0]], np.float32)[..., None]  # mean 2; blurred copy ~ mean everywhere
    sal = np.array([[1.0, 0.0], [0.5, 0.2]])  # order: (0,0)=4, (1,0)=2, (1,1)=2, (0,1)=0

    def predict(b):
        m = b.mean(axis=(1, 2, 3))
        return np.stack([m, -m], axis=-1)

    d, i = deletion_insertion(predict, x, sal, 0, steps=2, blur_sigma=1.0)
    assert d == pytest.approx((2.0 + 0.5 + 0.0) / 3)  # 4 and 2 deleted leave (0 + 2) / 4; then nothing
    b = cv2.GaussianBlur(x[..., 0], (0, 0), 1.0)
    half = np.array([[4.0, b[0, 1]], [2.0, b[1, 1]]])  # the two most salient pixels inserted
    assert i == pytest.approx((b.mean() + half.mean() + 2.0) / 3, rel=1e-6)
    with pytest.raises(UserError, match="upsample the map"):
        deletion_insertion(predict, x, np.zeros((3, 3)), 0)


def test_randomisation_on_a_tiny_model(tiny_functional):
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    copy = randomised_copy(tiny_functional, ["c4", "out"])
    before = [w.copy() for w in tiny_functional.get_weights()]
    assert not np.allclose(copy.get_layer("c4").get_weights()[0], tiny_functional.get_layer("c4").get_weights()[0])
    for a, b in zip(before, tiny_functional.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the user's model is not changed
    rho = randomisation_correlation(tiny_functional, x, ["c4", "out"])
    assert -1.0 <= rho < 0.99
    assert randomisation_correlation(tiny_functional, x, []) == pytest.approx(1.0)  # nothing randomised
    with pytest.raises(UserError, match="no layer 'nope'"):
        randomised_copy(tiny_functional, ["nope"])
