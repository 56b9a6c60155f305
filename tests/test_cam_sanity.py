"""Sanity checks of the CAMs with the shipped emotion model on PrivateTest faces (benchmarks/cam_sanity.py).

Skipped without the shipped weights or ../shared/data (a fresh clone has neither until training is done).
"""

from __future__ import annotations

import sys

import pytest
from conftest import FER_ARCHIVE, ROOT, needs_fer

from featuremaps.emotion.model import shipped_weights_available

pytestmark = [
    needs_fer(),
    pytest.mark.skipif(not shipped_weights_available(), reason="the trained emotion model is not shipped yet"),
]


def test_randomisation_and_deletion_insertion():
    """Each gradient method changes once the top layers are random (Spearman < 0.5 after randomising the head,
    and the head + block5) and beats a random map of the layer's resolution on deletion and insertion.
    Score-CAM is left to the benchmark (512 masked passes per map)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cam_sanity

    s = cam_sanity.run(None, FER_ARCHIVE, limit=32, methods=("gradcam", "gradcam++", "layercam"), log=lambda *a: None)
    rnd = s["random"]
    for m in ("gradcam", "gradcam++", "layercam"):
        assert s[m]["spearman"] < 0.5 and s[m]["spearman_head"] < 0.5, (m, s[m])
        assert s[m]["deletion"] < rnd["deletion"], (m, s[m], rnd)
        assert s[m]["insertion"] > rnd["insertion"], (m, s[m], rnd)
