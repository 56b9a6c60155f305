"""Training throughput: `featuremaps train`'s input pipeline (shuffling + NumPy/OpenCV augmentation in a
keras PyDataset) vs a bare `model.fit` on the same in-memory arrays, same network, same process.

    KERAS_BACKEND=torch python benchmarks/bench_train.py [--steps 40] [--precision float32] [--crop 44]
                                                         [--arch vgg16|resnet|mobilenet] [--batch-size 64]

The backend is Keras' (``KERAS_BACKEND``; ``featuremaps train`` picks torch for the VGG-16 when installed).

Prints images/s for both and their ratio (target >= 0.9x). Runs alternate (bare, pipeline, bare, pipeline)
and the best of each is kept, so load from other processes hurts both alike.
"""

import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--crop", type=int, default=None, help="random crops of this side, as train --crop")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--arch", default="vgg16", choices=["vgg16", "resnet", "mobilenet"])
    a = ap.parse_args()
    import keras

    from featuremaps.emotion.model import build_emotion_model
    from featuremaps.emotion.train import _dataset_class

    if a.precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")  # this script's own process: no need to restore
    n = a.steps * a.batch_size
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    side = a.crop or 48
    x = faces[:, :side, :side, None].astype(np.float32) / 255.0

    FaceBatches = _dataset_class()

    def fresh(warm_input):
        """A new model whose train step is already traced for ``warm_input``'s kind of input.

        Arrays and a PyDataset reach ``fit`` with different shapes (fixed vs unknown batch), so each is
        warmed up with its own kind: the timed steps then measure steady-state training, not tracing.
        """
        m = build_emotion_model(a.arch, input_shape=(side, side, 1), batch_norm=True, width=a.width)
        m.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        if warm_input == "arrays":
            m.fit(x[: 2 * a.batch_size], labels[: 2 * a.batch_size], batch_size=a.batch_size, epochs=1, verbose=0)
        else:
            m.fit(
                FaceBatches(faces[: 2 * a.batch_size], labels[: 2 * a.batch_size], a.batch_size, seed=1, crop=a.crop),
                epochs=1,
                verbose=0,
            )
        return m

    bare, ours = [], []
    for _ in range(2):
        m = fresh("arrays")
        t = time.perf_counter()
        m.fit(x, labels, batch_size=a.batch_size, epochs=1, verbose=0, shuffle=True)
        bare.append(n / (time.perf_counter() - t))
        m = fresh("pipeline")
        ds = FaceBatches(faces, labels, a.batch_size, seed=0, crop=a.crop)
        t = time.perf_counter()
        m.fit(ds, epochs=1, verbose=0)
        ours.append(n / (time.perf_counter() - t))
    b, o = max(bare), max(ours)
    print(f"bare model.fit on in-memory arrays: {b:.1f} img/s (runs: {', '.join(f'{v:.1f}' for v in bare)})")
    print(f"featuremaps train pipeline:         {o:.1f} img/s (runs: {', '.join(f'{v:.1f}' for v in ours)})")
    print(
        f"ratio pipeline / bare: {o / b:.2f}x (target >= 0.9x); {a.arch}, backend {keras.backend.backend()}, "
        f"{a.precision}, {side} px, batch {a.batch_size}"
    )


if __name__ == "__main__":
    main()
