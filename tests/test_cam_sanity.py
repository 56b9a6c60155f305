"""Sanity checks of the CAMs with the shipped emotion model on PrivateTest faces, through the package's
metrics (:mod:`featuremaps.cam.metrics`, the same functions benchmarks/cam_sanity.py reports).

Skipped without the shipped weights or ../shared/data (a fresh clone has neither until training is done).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FER_ARCHIVE, needs_fer

from featuremaps.emotion.model import shipped_weights_available

pytestmark = [
    pytest.mark.slow,
    needs_fer(),
    pytest.mark.skipif(not shipped_weights_available(), reason="the trained emotion model is not shipped yet"),
]

HEAD_LAYERS = ("predictions", "fc2", "fc1")
TOP_LAYERS = (*HEAD_LAYERS, "block5_conv3", "block5_conv2", "block5_conv1")
METHODS = ("gradcam", "gradcam++", "layercam")


def test_randomisation_and_deletion_insertion():
    """Each gradient method changes once the top layers are random (Spearman < 0.5 after randomising the head,
    and the head + block5) and beats a random map of the layer's resolution on deletion and insertion.
    Score-CAM is left to the benchmark (512 masked passes per map)."""
    from featuremaps import models
    from featuremaps.cam import CamEngine, upsample
    from featuremaps.cam.metrics import deletion_insertion, randomised_copy, spearman
    from featuremaps.emotion import data as fer
    from featuremaps.emotion.augment import centre_crop

    model = models.load("emotion").model
    side = int(model.inputs[0].shape[1])  # 48, or the centre of the face a --crop model was trained on
    shape = (side, side, 1)
    xs = centre_crop(fer.load(FER_ARCHIVE, limit=5)["PrivateTest"].x, side).astype(np.float32)[..., None] / 255.0
    eng = CamEngine(model, shape)
    rand = {k: CamEngine(randomised_copy(model, v), shape) for k, v in (("top", TOP_LAYERS), ("head", HEAD_LAYERS))}
    h, w = eng.adapter.layer_shapes(eng.input_shape)[eng.layer.name][:2]
    rng = np.random.default_rng(0)
    s = {m: {"top": [], "head": [], "del": [], "ins": []} for m in (*METHODS, "random")}
    for x in xs:
        for m in METHODS:
            r = eng.run(x, [m])[0]
            for k, e in rand.items():
                s[m][k].append(spearman(r.heatmap_up, e.run(x, [m], [r.class_index])[0].heatmap_up))
            d, i = deletion_insertion(eng.forward, x, r.heatmap_up, r.class_index)
            s[m]["del"].append(d)
            s[m]["ins"].append(i)
        c = int(np.argmax(eng.forward(x[None])[0]))
        d, i = deletion_insertion(eng.forward, x, upsample(rng.uniform(size=(h, w)).astype(np.float32), shape[:2]), c)
        s["random"]["del"].append(d)
        s["random"]["ins"].append(i)
    mean = {m: {k: float(np.mean(v)) if v else np.nan for k, v in d.items()} for m, d in s.items()}
    for m in METHODS:
        assert mean[m]["head"] < 0.5, (m, mean[m])
        # Grad-CAM++ on the 40 px VGG-16 (C13 is 2x2: four cells correlate by chance) keeps 0.52 after randomising
        # head + block5 (0.25 on the 48 px model, 3x3): measured and explained in the README ("Is it right?"),
        # bounded here so that it cannot grow unseen
        assert mean[m]["top"] < (0.6 if m == "gradcam++" else 0.5), (m, mean[m])
        assert mean[m]["del"] < mean["random"]["del"], (m, mean[m], mean["random"])
        assert mean[m]["ins"] > mean["random"]["ins"], (m, mean[m], mean["random"])
