"""Sanity checks of the CAMs with the shipped emotion model on PrivateTest faces (benchmarks/cam_sanity.py).

Skipped without the shipped weights or ../shared/data (a fresh clone has neither until training is done).
"""

from __future__ import annotations

import sys

import pytest
from conftest import FER_ARCHIVE, ROOT, needs_fer

from featuremaps.emotion import shipped_weights_available

pytestmark = [needs_fer(), pytest.mark.skipif(not shipped_weights_available(),
                                              reason="the trained emotion model is not shipped yet")]


def test_randomisation_and_deletion_insertion():
    """What holds for the shipped model (BENCHMARKS.md has the table): Grad-CAM passes every check; Grad-CAM++
    changes once the top layers are random and beats the random map on insertion; LayerCAM beats it on
    deletion and insertion but fails the randomisation check at the 3x3 last layer (it follows the
    activations, as Adebayo et al. found for several methods)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cam_sanity

    s = cam_sanity.run(None, FER_ARCHIVE, limit=32, methods=("gradcam", "gradcam++", "layercam"),
                       log=lambda *a: None)
    rnd = s["random"]
    assert s["gradcam"]["spearman"] < 0.5 and s["gradcam"]["spearman_head"] < 0.5, s["gradcam"]
    assert s["gradcam++"]["spearman"] < 0.5, s["gradcam++"]
    for m in ("gradcam", "layercam"):
        assert s[m]["deletion"] < rnd["deletion"], (m, s[m], rnd)
    for m in ("gradcam", "gradcam++", "layercam"):
        assert s[m]["insertion"] > rnd["insertion"], (m, s[m], rnd)
