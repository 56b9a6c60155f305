"""Training speed of the emotion ResNet's two shortcut formulations, side by side in one process (issue 29).

    python benchmarks/bench_resnet_shortcut.py [--width 1] [--batch 64] [--rounds 8]

``strided``: each strided projection shortcut is one 1x1 stride-2 conv (the form before issue 29, whose
weight gradient oneDNN computes with a kernel that corrupts the heap when channel counts are not multiples of
16: use a width where they are, e.g. 1 or 0.25, or the process may die). ``subsample``: a 1x1 pool of stride
2, then a stride-1 1x1 conv (``build_emotion_resnet`` now). Same weights, same function.

Each model (BN form, SGD Nesterov + weight decay as ``featuremaps train``) takes two untimed warm-up steps,
then the timed ``train_on_batch`` steps alternate between the two (in turn first), round after round, so load
from other processes falls on both alike; the fastest step of each counts (and the median is printed). The backend is
Keras' (``KERAS_BACKEND``, default TensorFlow).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import layers

from featuremaps.emotion.model import RESNET18_STAGES, build_emotion_resnet


def strided_resnet(width: float):
    """``build_emotion_resnet(batch_norm=True)`` with its projection shortcuts as 1x1 stride-2 convs."""

    def unit(x, filters, kernel, stride, name, act):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal", name=name
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.Activation(act, name=f"{name}_{act}")(x) if act else x

    c = lambda f: max(4, int(round(f * width)))  # noqa: E731
    inputs = keras.Input((48, 48, 1), name="face")
    x = unit(inputs, c(64), 3, 1, "stem_conv", "relu")
    for s, (filters, blocks, stride) in enumerate(RESNET18_STAGES, start=1):
        for b in range(1, blocks + 1):
            st, name = (stride if b == 1 else 1), f"stage{s}_block{b}"
            shortcut = x
            if st != 1 or x.shape[-1] != c(filters):
                shortcut = unit(x, c(filters), 1, st, f"{name}_shortcut", None)
            y = unit(x, c(filters), 3, st, f"{name}_conv1", "relu")
            y = unit(y, c(filters), 3, 1, f"{name}_conv2", None)
            x = layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.Dropout(0.2, name="drop")(layers.GlobalAveragePooling2D(name="pool")(x))
    outputs = layers.Dense(7, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="emotion_resnet")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (a.batch, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, a.batch)
    models = {}
    for name, build in (("strided", strided_resnet), ("subsample", build_emotion_resnet)):
        keras.utils.set_random_seed(0)
        m = build(width=a.width) if name == "strided" else build(batch_norm=True, width=a.width)
        opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        if models:  # the same function: the strided model's weights give the same outputs here
            m.set_weights(models["strided"].get_weights())
            same = np.abs(np.asarray(m(x[:8])) - np.asarray(models["strided"](x[:8]))).max()
            print(f"same weights, largest output difference: {same:.1e}")
        for _ in range(2):
            m.train_on_batch(x, y)
        models[name] = m
    times = {name: [] for name in models}
    for r in range(a.rounds):
        for name, m in sorted(models.items(), reverse=r % 2 == 1):  # either goes first in every other round
            t = time.perf_counter()
            m.train_on_batch(x, y)
            times[name].append(time.perf_counter() - t)
    print(f"backend {keras.backend.backend()}, width {a.width}, batch {a.batch}, {a.rounds} rounds")
    best = {name: a.batch / min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        med = a.batch / sorted(ts)[len(ts) // 2]
        print(f"{name:10s} fastest {best[name]:7.1f} img/s, median {med:7.1f} img/s")
    print(f"subsample / strided (fastest): {best['subsample'] / best['strided']:.2f}x")


if __name__ == "__main__":
    main()
