"""Are the CAMs right? Two checks on FER2013 PrivateTest faces with the emotion model.

1. Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018), cascading
   from the top as in the paper: first the dense head (predictions, fc2, fc1), then also the last conv block
   (block5_conv3/2/1, "the top layers"). A faithful map must change: Spearman rank correlation between the
   maps of the trained and the randomised model, averaged over faces, below 0.5 once the top layers are
   random. Both stages are reported (a map that only changes at the second stage leans on the activations).
2. Deletion / insertion (Petsiuk et al., "RISE", BMVC 2018): pixels are removed (set to 0) or inserted
   (into a blurred copy) in the order of the map, most salient first; the predicted class probability is
   recorded after each step. The area under the curve (mean probability) should be lower for deletion and
   higher for insertion than with a random map. Two random baselines: a random map at the target layer's
   resolution upsampled like the CAMs ("random", the fair one: same granularity), and random pixels
   ("random px": scattered black pixels are far from any face, so the probability falls fast).

    python benchmarks/cam_sanity.py --weights runs/emotion/best.keras --limit 64
    python benchmarks/cam_sanity.py --methods gradcam,layercam          # shipped weights
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fer_data import fer2013_path  # benchmarks/fer_data.py: the script's own folder is on sys.path

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)
from featuremaps.cam.metrics import deletion_insertion, randomised_copy, spearman  # noqa: E402

HEAD_LAYERS = ("predictions", "fc2", "fc1")
TOP_LAYERS = (*HEAD_LAYERS, "block5_conv3", "block5_conv2", "block5_conv1")


def load_model(weights: str | None):
    import keras

    from featuremaps import models
    from featuremaps.emotion import norm  # noqa: F401  (registers the BN layer of train's .keras files)

    if weights is None or weights.endswith(".npz"):  # shipped weights, or an .npz of the emotion model
        return models.load("emotion", weights=weights).model
    return keras.models.load_model(weights, compile=False)


def curves(predict, x: np.ndarray, saliency: np.ndarray, c: int, steps: int = 48) -> tuple[float, float]:
    """Deletion and insertion AUCs for one face (:func:`featuremaps.cam.metrics.deletion_insertion`)."""
    return deletion_insertion(predict, x, saliency, c, steps)


def run(
    weights=None, data=None, limit=64, methods=("gradcam", "gradcam++", "scorecam", "layercam"), log=print, layer=None
):
    from featuremaps.cam import CamEngine, upsample
    from featuremaps.emotion import data as fer
    from featuremaps.emotion.augment import centre_crop

    model = load_model(weights)
    faces = fer.load(fer2013_path(data), limit=-(-limit // 7))["PrivateTest"]  # the same number of faces per emotion
    side = int(model.inputs[0].shape[1])  # 48, or the centre of the face a --crop model was trained on
    xs = centre_crop(faces.x, side).astype(np.float32)[..., None] / 255.0
    eng = CamEngine(model, (side, side, 1), layer)
    rand_eng = CamEngine(randomised_copy(model, TOP_LAYERS), (side, side, 1), layer)
    head_eng = CamEngine(randomised_copy(model, HEAD_LAYERS), (side, side, 1), layer)
    rng = np.random.default_rng(0)
    out = {
        m: {
            "spearman": [],
            "spearman_head": [],
            "spearman_acts": [],
            "deletion": [],
            "insertion": [],
            "seconds": 0.0,
            "flat": 0,
        }
        for m in (*methods, "random", "random px")
    }
    for x in xs:
        # the class-agnostic map: the target layer's activations summed over channels
        acts = eng.adapter.forward(x[None], [eng.layer.name])[0][eng.layer.name][0]
        act_sum = upsample(acts.sum(-1), x.shape[:2])
        for m in methods:
            t = time.perf_counter()
            r = eng.run(x, [m])[0]
            out[m]["seconds"] += time.perf_counter() - t
            rr = rand_eng.run(x, [m], [r.class_index])[0]
            out[m]["spearman"].append(spearman(r.heatmap_up, rr.heatmap_up))
            rh = head_eng.run(x, [m], [r.class_index])[0]
            out[m]["spearman_head"].append(spearman(r.heatmap_up, rh.heatmap_up))
            out[m]["spearman_acts"].append(spearman(r.heatmap_up, act_sum))
            out[m]["flat"] += sum(float(np.ptp(h.heatmap)) == 0.0 for h in (r, rr, rh))
            d, i = curves(eng.forward, x, r.heatmap_up, r.class_index)
            out[m]["deletion"].append(d)
            out[m]["insertion"].append(i)
        c = int(np.argmax(eng.forward(x[None])[0]))
        h, w = eng.adapter.layer_shapes(eng.input_shape)[eng.layer.name][:2]
        for name, sal in (
            ("random", upsample(rng.uniform(size=(h, w)).astype(np.float32), (side, side))),
            ("random px", rng.uniform(size=(side, side))),
        ):
            d, i = curves(eng.forward, x, sal, c)
            out[name]["deletion"].append(d)
            out[name]["insertion"].append(i)
    summary = {}
    log(f"target layer {eng.layer.label} {eng.layer.name}; {len(xs)} PrivateTest faces")
    log(f"Spearman after randomising the head ({', '.join(HEAD_LAYERS)}) and the top layers (head + block5)")
    log("rho acts: Spearman with the channel sum of the layer's activations (a map that ignores the class)")
    log(
        f"{'method':<10} {'rho head':>9} {'rho top':>8} {'rho acts':>9} {'deletion AUC':>13} {'insertion AUC':>14} "
        f"{'s/face':>7} {'flat':>5}"
    )
    for m, v in out.items():
        s = {
            "spearman": float(np.mean(v["spearman"])) if v["spearman"] else float("nan"),
            "spearman_head": float(np.mean(v["spearman_head"])) if v["spearman_head"] else float("nan"),
            "spearman_acts": float(np.mean(v["spearman_acts"])) if v["spearman_acts"] else float("nan"),
            "deletion": float(np.mean(v["deletion"])),
            "insertion": float(np.mean(v["insertion"])),
            "seconds_per_face": v["seconds"] / len(xs),
            "flat_maps": v["flat"],
        }
        summary[m] = s
        log(
            f"{m:<10} {s['spearman_head']:9.3f} {s['spearman']:8.3f} {s['spearman_acts']:9.3f} "
            f"{s['deletion']:13.4f} {s['insertion']:14.4f} {s['seconds_per_face']:7.2f} {s['flat_maps']:5d}"
        )
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help=".keras model or .npz weights (default: shipped weights)")
    ap.add_argument("--data", default=None, help="FER2013 folder, CSV or .tar.gz (default: $FEATUREMAPS_FER2013)")
    ap.add_argument("--limit", type=int, default=64, help="PrivateTest faces used (default 64)")
    ap.add_argument("--methods", default="gradcam,gradcam++,scorecam,layercam")
    ap.add_argument("--layer", default=None, help="target conv layer (default: the last, C13 block5_conv3)")
    args = ap.parse_args()
    run(args.weights, fer2013_path(args.data), args.limit, tuple(args.methods.split(",")), layer=args.layer)


if __name__ == "__main__":
    main()
