"""What padding the shipped VGG-16's pools would cost it without retraining: accuracy of the same weights with
the 2x2 pools rounding up (``pools="ceil"``) instead of flooring, as the model was trained.

At 40 px block 4's maps are 5x5 and a flooring pool keeps 2x2 of them, so their bottom row and right column never
reach the output (README, "Is it right?"). Pools have no weights, so the shipped weights load into the padded
network as they are; this measures what that changes, on FER2013's PublicTest and PrivateTest (single view,
the centre crop the model takes).

    python benchmarks/pool_padding.py [--data fer2013.tar.gz]
"""

from __future__ import annotations

import argparse

import numpy as np
from fer_data import fer2013_path  # benchmarks/fer_data.py: the script's own folder is on sys.path

import featuremaps  # noqa: F401  (its import keeps TensorFlow's start-up lines off stderr)
from featuremaps.emotion import data as fer  # noqa: E402
from featuremaps.emotion.augment import centre_crop  # noqa: E402
from featuremaps.emotion.model import (  # noqa: E402
    build_emotion_model,
    load_emotion_model,
    model_card,
    pools_of,
    shipped_build,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="FER2013 folder, CSV or .tar.gz (default: $FEATUREMAPS_FER2013)")
    args = ap.parse_args()
    shipped = load_emotion_model("vgg16")
    build = shipped_build("vgg16", model_card("vgg16"))
    other = "ceil" if pools_of(shipped) == "floor" else "floor"
    padded = build_emotion_model("vgg16", **{**build, "pools": other})
    padded.set_weights(shipped.get_weights())
    side = int(shipped.inputs[0].shape[1])
    data = fer.load(fer2013_path(args.data))
    print(f"shipped VGG-16, {side} px; its pools: {pools_of(shipped)}, the other form: {other}")
    for split in ("PublicTest", "PrivateTest"):
        x = centre_crop(data[split].x, side).astype(np.float32)[..., None] / 255.0
        accs = []
        for m in (shipped, padded):
            p = m.predict(x, batch_size=256, verbose=0)
            accs.append(100 * float((p.argmax(1) == data[split].y).mean()))
        print(f"{split}: as shipped {accs[0]:.2f}%, with {other} pools {accs[1]:.2f}%")


if __name__ == "__main__":
    main()
