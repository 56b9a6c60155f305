"""Training speed of the emotion networks, configuration by configuration, side by side in one run.

    python benchmarks/bench_train_configs.py [--rounds 2] [--backends tensorflow,torch,jax] [--arch vgg16]
                                             [--configs 48x64,44x64] [--extra torch:48x128,torch:44x128]
                                             [--bf16 auto|force|off]

Images/s of one ``train_on_batch`` step (SGD Nesterov, BN form, as ``featuremaps train`` runs it) for each
Keras backend x precision x input side (48 = whole face, 44 = the ``--crop 44`` random crops) x batch size.
A backend is fixed when Keras is imported, so each backend runs in its own worker process, which builds a
model per configuration and takes one untimed warm-up step each (tracing/compilation). Then the timed steps
are interleaved: round after round, every configuration of every backend takes one step in turn, while the
other workers wait; the fastest step of each configuration counts. Load from other processes on a shared
machine thus hits every configuration alike instead of whichever ran during a busy minute.

bfloat16 runs only where the CPU has bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in
/proc/cpuinfo): elsewhere it is emulated and 10-100x slower, so it is skipped with a note (``--bf16 force``
runs it anyway). The last column is the speed-up against the default of ``featuremaps train`` before this
benchmark: TensorFlow, float32, 48x48, batch 64.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from featuremaps.cpu import has_bf16  # no Keras: the backend is chosen per worker

BASELINE = ("tensorflow", "float32", 48, 64)


def worker(configs: list[tuple[str, int, int]], arch: str, width: float) -> None:
    """In a subprocess whose KERAS_BACKEND is set: build + warm every configuration, print ``ready``, then
    for each index read on stdin time one step of that configuration and print its seconds."""
    import keras

    from featuremaps.emotion.probe_worker import warmed_step  # train's probe builds its steps the same way

    runs = [warmed_step(arch, width, side, batch, precision) for precision, side, batch in configs]
    print("ready", keras.backend.backend(), flush=True)
    for line in sys.stdin:
        m, x, y = runs[int(line)]
        t = time.perf_counter()
        m.train_on_batch(x, y)
        print(time.perf_counter() - t, flush=True)


def _parse(spec: str) -> tuple[int, int]:
    side, batch = spec.split("x")
    return int(side), int(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="timed steps per configuration (the fastest counts)")
    ap.add_argument("--backends", default="tensorflow,torch,jax")
    ap.add_argument("--arch", default="vgg16", choices=["vgg16", "resnet", "mobilenet"])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--configs", default="48x64,44x64", help="SIDExBATCH for every backend")
    ap.add_argument("--extra", default="torch:48x128,torch:44x128", help="BACKEND:SIDExBATCH for one backend")
    ap.add_argument("--bf16", default="auto", choices=["auto", "force", "off"])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker([tuple(c) for c in json.loads(a.worker)], a.arch, a.width)
        return

    precisions, notes = ["float32"], []
    if a.bf16 == "force" or (a.bf16 == "auto" and has_bf16()):
        precisions.append("bfloat16")
    elif a.bf16 == "auto":
        notes.append("bfloat16 skipped: this CPU has no avx512_bf16/amx_bf16, so it would be emulated (10-100x slower)")
    t0 = time.perf_counter()
    per_backend: dict[str, list[tuple[str, int, int]]] = {}
    for backend in a.backends.split(","):
        per_backend[backend] = [(p, *_parse(c)) for p in precisions for c in a.configs.split(",") if c]
    for item in (e for e in a.extra.split(",") if e):
        backend, spec = item.split(":")
        if backend in per_backend:
            per_backend[backend] += [(p, *_parse(spec)) for p in precisions]
    workers = {}
    for backend, configs in per_backend.items():  # all warm up at once; only the timed steps take turns
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, __file__, "--worker", json.dumps(configs), "--arch", a.arch, "--width", str(a.width)]
        workers[backend] = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    for backend, w in list(workers.items()):
        line = w.stdout.readline()
        if not line.startswith("ready"):
            notes.append(f"{backend}: the worker failed to start")
            del workers[backend]
    print(f"warm-up (build + trace every configuration): {time.perf_counter() - t0:.0f} s", flush=True)
    best: dict[tuple, float] = {}
    try:
        for r in range(a.rounds):
            for backend, w in workers.items():
                for i, (precision, side, batch) in enumerate(per_backend[backend]):
                    w.stdin.write(f"{i}\n")
                    w.stdin.flush()
                    dt = float(w.stdout.readline())
                    key = (backend, precision, side, batch)
                    best[key] = min(best.get(key, dt), dt)
                    print(
                        f"round {r + 1}: {backend} {precision} {side}x{side} b{batch}: {batch / dt:.1f} img/s",
                        flush=True,
                    )
    except KeyboardInterrupt:  # a partial table is still a table
        notes.append("interrupted: not every round ran")
    for w in workers.values():
        w.stdin.close()
        w.wait()
    base = best.get(BASELINE)
    print(f"{a.arch} width {a.width}: one train_on_batch step, fastest of {a.rounds} interleaved rounds")
    print(f"{'backend':<11} {'precision':<9} {'input':>6} {'batch':>5} {'img/s':>7} {'vs TF f32 48 b64':>17}")
    for (backend, precision, side, batch), dt in sorted(best.items(), key=lambda kv: kv[0][3] / kv[1], reverse=True):
        rate = batch / dt
        ratio = f"{rate / (BASELINE[3] / base):.2f}x" if base else "-"
        print(f"{backend:<11} {precision:<9} {f'{side}x{side}':>6} {batch:>5} {rate:>7.1f} {ratio:>17}")
    for n in notes:
        print("note:", n)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
