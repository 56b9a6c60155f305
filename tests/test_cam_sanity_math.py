"""The statistics behind benchmarks/cam_sanity.py, on hand-computed cases (no data or model needed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import cam_sanity  # noqa: E402


def test_rank_average_shares_tied_ranks():
    np.testing.assert_array_equal(
        cam_sanity.rank_average(np.array([3.0, 0.0, 0.0, 5.0, 0.0])), [3.0, 1.0, 1.0, 4.0, 1.0]
    )


def test_spearman_hand_computed_with_ties():
    # ranks a: [0.5, 0.5, 2, 3], b: [0, 1, 2, 3] -> centred a: [-1, -1, .5, 1.5], b: [-1.5, -.5, .5, 1.5]
    # sum ab = 1.5 + .5 + .25 + 2.25 = 4.5; |a|^2 = 4.5, |b|^2 = 5 -> rho = 4.5 / sqrt(22.5)
    rho = cam_sanity.spearman(np.array([0.0, 0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert rho == pytest.approx(4.5 / np.sqrt(22.5))


def test_spearman_ties_do_not_invent_a_layout_correlation():
    """A map that is flat zero on its top half, against one whose top half is its highest: the flat region
    counts as one shared rank, so the correlation is the real (negative) one; a constant map has none."""
    a = np.zeros((4, 4))
    a[2:] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    b = np.arange(16.0).reshape(4, 4)[::-1]  # decreasing downwards: opposite ordering in the bottom half
    assert cam_sanity.spearman(a, b) < 0.0
    assert cam_sanity.spearman(np.zeros((4, 4)), b) == 0.0
