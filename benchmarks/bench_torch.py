"""PyTorch and ONNX Runtime: every conv map of ResNet-18 (224x224, random weights) vs one plain forward.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_torch.py [--repeats 9]

Each pair is timed in turns of 5 calls (5 plain, 5 featuremaps, ...; N turns) after a warm-up, median, in one
process:

* torch maps: ``adapter.forward`` (all 20 conv outputs as (h, w, C) arrays, one forward with hooks) and the
  full ``show`` extractor (plus 16 maps a layer and statistics) vs ``module(x)`` under ``inference_mode``;
  target <= 1.05x;
* ONNX Runtime: all 20 conv outputs from one session run vs a plain run of the unmodified model; <= 1.05x;
* Grad-CAM (last conv, predicted class, autograd) vs the same plain torch forward; target <= 2x.

torchvision's resnet18 definition is used (imported the way featuremaps does where its C++ ops do not load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)


def pair(a, b, repeats: int, block: int = 5) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``: ``repeats`` rounds of ``block`` calls of each in turn, after a warm-up.

    Blocks, not single calls in turn: two ONNX Runtime sessions (or torch and a session) each keep a thread pool
    that spins for a while after a run, so a call timed right after the other side's call competes with its
    spinning threads (on 2 cores a plain session run measured 41 ms that way, 21 ms in blocks)."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    import numpy as np
    import torch

    from featuremaps.cam.engine import CamEngine
    from featuremaps.extractor import FeatureExtractor
    from featuremaps.frameworks import adapter
    from featuremaps.frameworks.torch import torchvision_models

    tvm = torchvision_models()
    torch.manual_seed(0)
    net = tvm.get_model("resnet18", weights=None).eval()
    x = np.random.default_rng(0).uniform(-2, 2, (1, 224, 224, 3)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, resnet18 224x224, batch 1")

    def plain():
        with torch.inference_mode():
            net(xt).numpy()

    ad = adapter(net, (224, 224, 3))
    names = [c.name for c in ad.conv_layers((224, 224, 3))]
    assert len(names) == 20

    def maps():
        ad.forward(x, names)

    t0, t1 = pair(plain, maps, args.repeats)
    print(f"torch all 20 conv maps: {t1 * 1e3:.1f} ms vs plain forward {t0 * 1e3:.1f} ms: {t1 / t0:.3f}x")
    fx = FeatureExtractor(ad, (224, 224, 3), maps=16)
    t0, t1 = pair(plain, lambda: fx(x), args.repeats)
    print(f"torch show extractor (16 maps + stats a layer): {t1 * 1e3:.1f} ms vs {t0 * 1e3:.1f} ms: {t1 / t0:.3f}x")
    eng = CamEngine(ad, (224, 224, 3))
    t0, t1 = pair(plain, lambda: eng.run(x[0], ["gradcam"]), args.repeats)
    print(f"torch Grad-CAM ({eng.layer.name}): {t1 * 1e3:.1f} ms vs plain forward {t0 * 1e3:.1f} ms: {t1 / t0:.3f}x")

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet18.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, xt, path, dynamo=False, input_names=["input"])
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        oad = adapter(path)
        onames = [c.name for c in oad.conv_layers()]
        assert len(onames) == 20, onames
        xo = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        t0, t1 = pair(lambda: sess.run(None, {"input": xo}), lambda: oad.forward(x, onames), args.repeats)
        print(f"ONNX Runtime {ort.__version__} all 20 conv maps: {t1 * 1e3:.1f} ms vs plain run {t0 * 1e3:.1f} ms: "
              f"{t1 / t0:.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
