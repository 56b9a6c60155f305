"""One backend's part of ``train``'s speed probe (:mod:`featuremaps.emotion.probe`), run as a subprocess with
``KERAS_BACKEND`` set::

    KERAS_BACKEND=torch python -m featuremaps.emotion.probe_worker ARCH WIDTH SIDE BATCH STEPS float32,bfloat16

For each precision: the training form of the network (BN, SGD Nesterov, as ``train`` compiles it), one
untimed ``train_on_batch`` (tracing/compilation), then ``STEPS`` timed ones on random faces; prints one
JSON line ``{precision: images per second of the fastest step}`` per precision, as each is done (a probe cut
off by its deadline keeps the ones before). A precision that fails is left out.
"""

from __future__ import annotations

import json
import sys
import time

import keras
import numpy as np

from featuremaps.emotion.model import build_emotion_model


def warmed_step(arch: str, width: float, side: int, batch: int, precision: str, seed: int = 0):
    """The training form of ``arch`` in ``precision`` (BN, SGD Nesterov, as ``train`` compiles it), random faces
    and labels for one batch, and one untimed ``train_on_batch`` taken (tracing/compilation): ``(model, x, y)``.
    The global dtype policy is restored (the layers keep the one they were built with)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, side, side, 1), dtype=np.float32)
    y = rng.integers(0, 7, batch)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        model = build_emotion_model(arch, input_shape=(side, side, 1), batch_norm=True, width=width)
    finally:
        keras.config.set_dtype_policy(before)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), loss="sparse_categorical_crossentropy"
    )
    model.train_on_batch(x, y)
    return model, x, y


def rates(
    arch: str, width: float, side: int, batch: int, steps: int, precisions: list[str], done=lambda p, r: None
) -> dict[str, float]:
    """Images per second of one training step of ``arch`` per precision (the fastest of ``steps``);
    ``done(precision, rate)`` is called as each is measured."""
    out: dict[str, float] = {}
    for precision in precisions:
        try:
            model, x, y = warmed_step(arch, width, side, batch, precision)
            best = float("inf")
            for _ in range(steps):
                t = time.perf_counter()
                model.train_on_batch(x, y)
                best = min(best, time.perf_counter() - t)
            out[precision] = batch / best
            done(precision, out[precision])
        except Exception:  # noqa: BLE001 (a precision this backend cannot run is left out, not fatal)
            continue
    return out


def main(argv: list[str]) -> None:
    arch, width, side, batch, steps, precisions = argv
    # a line per precision as it is done: a probe cut off by its deadline keeps what was measured
    rates(
        arch, float(width), int(side), int(batch), int(steps), precisions.split(","),
        done=lambda p, r: print(json.dumps({p: r}), flush=True),
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
