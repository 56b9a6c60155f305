"""Training speed of the emotion networks, configuration by configuration, side by side in one run.

    python benchmarks/bench_train_configs.py [--steps 2] [--backends tensorflow,torch,jax] [--arch vgg16]
                                             [--sides 48,44] [--batches 64,128] [--bf16 auto|force|off]

Images/s of one ``train_on_batch`` step (SGD Nesterov, BN form, as ``featuremaps train`` runs it) for each
Keras backend x precision x input side (48 = whole face, 44 = the ``--crop 44`` random crops) x batch size.
A backend is fixed when Keras is imported, so each backend runs in its own subprocess; within it each
configuration builds a fresh model, takes one untimed warm-up step (tracing/compilation) and then
``--steps`` timed steps, of which the fastest counts (load from other processes only slows steps down).

bfloat16 runs only where the CPU has bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in
/proc/cpuinfo): elsewhere it is emulated and 10-100x slower, so it is skipped with a note (``--bf16 force``
runs it anyway, one timed step). The last column is the speed-up against today's default of
``featuremaps train`` before this benchmark: TensorFlow, float32, 48x48, batch 64.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BASELINE = ("tensorflow", "float32", 48, 64)


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def worker(configs: list[tuple[str, int, int]], steps: int, arch: str, width: float) -> None:
    """Run in a subprocess whose KERAS_BACKEND is set: one JSON line per configuration."""
    import keras
    import numpy as np

    from featuremaps.emotion.model import build_emotion_model

    rng = np.random.default_rng(0)
    for precision, side, batch in configs:
        before = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        try:
            x = rng.random((batch, side, side, 1), dtype=np.float32)
            y = rng.integers(0, 7, batch)
            m = build_emotion_model(arch, input_shape=(side, side, 1), batch_norm=True, width=width)
            m.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                loss="sparse_categorical_crossentropy",
            )
            m.train_on_batch(x, y)  # tracing / compilation
            n = steps if precision == "float32" or cpu_has_bf16() else 1
            times = []
            for _ in range(n):
                t = time.perf_counter()
                m.train_on_batch(x, y)
                times.append(time.perf_counter() - t)
            rate = batch / min(times)
        finally:
            keras.config.set_dtype_policy(before)
        row = {"backend": keras.backend.backend(), "precision": precision, "side": side, "batch": batch}
        print(json.dumps(row | {"img_s": rate, "steps": n}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2, help="timed steps per configuration (the fastest counts)")
    ap.add_argument("--backends", default="tensorflow,torch,jax")
    ap.add_argument("--arch", default="vgg16", choices=["vgg16", "resnet", "mobilenet"])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--sides", default="48,44")
    ap.add_argument("--batches", default="64,128")
    ap.add_argument("--bf16", default="auto", choices=["auto", "force", "off"])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker([tuple(c) for c in json.loads(a.worker)], a.steps, a.arch, a.width)
        return

    precisions = ["float32"]
    notes = []
    if a.bf16 == "force" or (a.bf16 == "auto" and cpu_has_bf16()):
        precisions.append("bfloat16")
    elif a.bf16 == "auto":
        notes.append("bfloat16 skipped: this CPU has no avx512_bf16/amx_bf16, so it would be emulated (10-100x slower)")
    sides = [int(s) for s in a.sides.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    configs = [(p, s, b) for p in precisions for s in sides for b in batches]
    rows = []
    t0 = time.perf_counter()
    for backend in a.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, __file__, "--worker", json.dumps(configs), "--steps", str(a.steps)]
        cmd += ["--arch", a.arch, "--width", str(a.width)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        got = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode != 0:
            notes.append(f"{backend}: failed ({(r.stderr.strip().splitlines() or ['?'])[-1][:120]})")
        rows.extend(got)
    base = next((r["img_s"] for r in rows if (r["backend"], r["precision"], r["side"], r["batch"]) == BASELINE), None)
    print(f"{a.arch} width {a.width}, one train_on_batch step, fastest of {a.steps} timed steps")
    print(f"{'backend':<11} {'precision':<9} {'input':>6} {'batch':>5} {'img/s':>7} {'vs TF f32 48 b64':>17}")
    for r in sorted(rows, key=lambda r: -r["img_s"]):
        ratio = f"{r['img_s'] / base:.2f}x" if base else "-"
        side = f"{r['side']}x{r['side']}"
        print(f"{r['backend']:<11} {r['precision']:<9} {side:>6} {r['batch']:>5} {r['img_s']:>7.1f} {ratio:>17}")
    for n in notes:
        print("note:", n)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
