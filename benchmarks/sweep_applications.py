"""Every keras.applications model, random weights: list its conv layers, extract maps, compute a Grad-CAM.

One line per model: ok/fail, number of conv layers, seconds (build + listing + maps + Grad-CAM). Each model
is built with ``weights=None``, ``classes=10`` and a 96x96 input (every constructor accepts it: the
Inception family needs >= 75, Xception >= 71), so the sweep checks the graphs, not ImageNet.
A failure prints the exception's type and first line instead of a traceback and the sweep goes on.

    PYTHONPATH=src python benchmarks/sweep_applications.py                       # all of them (heavy)
    PYTHONPATH=src python benchmarks/sweep_applications.py --only ConvNeXtTiny,NASNetMobile
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIDE = 96


def all_applications() -> list[str]:
    """Every model constructor in keras.applications (CamelCase callables), in alphabetical order."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def check(name: str, side: int) -> tuple[bool, int, str]:
    """Build ``name``, list conv layers, extract 4 maps of every conv layer and a Grad-CAM of the last."""
    import keras
    import numpy as np

    from featuremaps.cam import compute_cam
    from featuremaps.extractor import FeatureExtractor
    from featuremaps.layers import conv_layers

    model = getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3), classes=10)
    convs = conv_layers(model)
    x = np.random.default_rng(0).uniform(0, 255, (side, side, 3)).astype(np.float32)
    fx = FeatureExtractor(model, x.shape, maps=4)
    results, preds = fx(x[None])
    assert len(results) == len(convs) and preds is not None and preds.shape == (1, 10)
    for r in results:
        if not np.all(np.isfinite(r.maps)):
            return False, len(convs), f"non-finite maps in {r.conv.name}"
    cam = compute_cam(model, x, "gradcam")
    if not np.all(np.isfinite(cam.heatmap)):
        return False, len(convs), "non-finite Grad-CAM"
    return True, len(convs), f"Grad-CAM on {cam.layer.name} {cam.heatmap.shape[0]}x{cam.heatmap.shape[1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of constructor names (default: every model)")
    args = ap.parse_args()

    import keras

    names = [n.strip() for n in args.only.split(",") if n.strip()] or all_applications()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {len(names)} models")
    failed = 0
    for name in names:
        side = SIDE
        t = time.perf_counter()
        try:
            ok, n, note = check(name, side)
        except Exception as e:  # the sweep reports every failure and goes on
            first = (str(e).strip().splitlines() or [""])[0][:120]
            ok, n, note = False, 0, f"{type(e).__name__}: {first}"
        failed += not ok
        print(
            f"{name:<20} {'ok' if ok else 'FAIL':<4} {n:4d} convs  {time.perf_counter() - t:6.1f} s  {side}px  {note}"
        )
        keras.backend.clear_session()
    print(f"{len(names) - failed}/{len(names)} ok")


if __name__ == "__main__":
    main()
