"""How often does `featuremaps train` die? Runs the same command N times per configuration, each in its own
process with a fresh ``--out``, one at a time, and prints runs / crashes / exit codes per configuration.

    python benchmarks/train_crash_rate.py --data fer2013.tar.gz --runs 12
    python benchmarks/train_crash_rate.py --data fer2013.tar.gz --runs 6 --configs default,onednn-off,avx2

The command is issue 29's: ``featuremaps train --data DATA --epochs 1 --width 0.1 --limit-per-class 5
--arch resnet`` (``--arch``, ``--width``, ``--limit-per-class`` and ``--epochs`` can be changed; ``--extra``
appends more arguments). ``--vary-seed`` passes ``--seed i`` to run i (the crash could depend on the data
order). A configuration is a set of environment variables:

* ``default``: the environment as it is (TensorFlow with oneDNN on, what ``--backend auto`` picks for resnet);
* ``onednn-off``: ``TF_ENABLE_ONEDNN_OPTS=0``;
* ``avx2``: ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN without its AVX-512 kernels).

A run that exits with a signal (SIGSEGV, SIGABRT: negative return codes) or an unexpected status counts as a
crash; a run past ``--timeout`` counts apart. With ``--epochs 3`` or more each run's speed is printed too: training
faces / wall time of its second epoch (see :func:`one_run`), e.g. ``--limit-per-class 50 --epochs 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "default": {},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
}
EPOCH = re.compile(rb"Epoch (\d+)/\d+")


def describe(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


def one_run(args, env_extra: dict, seed: int | None) -> tuple[int | None, float, str, float | None]:
    """(return code or None on timeout, wall seconds, the output's last characters, images/s or None).

    images/s: the training faces over the wall time of the second epoch (from the moment its progress line
    "Epoch 2/E" arrives to the moment "Epoch 3/E" does: training, validation and the epoch's checkpoint), so
    start-up and tracing are left out; needs ``--epochs 3`` or more.
    """
    with tempfile.TemporaryDirectory(prefix="fm_crash_") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "featuremaps", "train", "--data", args.data, "--epochs", str(args.epochs),
            "--width", str(args.width), "--limit-per-class", str(args.limit_per_class), "--arch", args.arch,
            "--out", str(out), *args.extra.split(),
        ]  # fmt: skip
        if seed is not None:
            cmd += ["--seed", str(seed)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **env_extra)
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text, seen = b"", {}
        while True:
            left = t + args.timeout - time.perf_counter()
            if left <= 0:
                p.kill()
                p.wait()
                return None, time.perf_counter() - t, text[-3000:].decode(errors="replace"), None
            ready, _, _ = select.select([p.stdout], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            text += chunk
            now = time.perf_counter()
            for m in EPOCH.finditer(text[-len(chunk) - 20 :]):
                seen.setdefault(int(m.group(1)), now)
        rc = p.wait()
        wall = time.perf_counter() - t
        rate = None
        if rc == 0 and 2 in seen and 3 in seen:
            faces = json.loads((out / "state.json").read_text())["train_faces"]
            rate = faces / (seen[3] - seen[2])
        return rc, wall, text[-3000:].decode(errors="replace"), rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the FER2013 archive or folder")
    ap.add_argument("--runs", type=int, default=12, help="runs per configuration")
    ap.add_argument("--configs", default="default", help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--arch", default="resnet")
    ap.add_argument("--width", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-per-class", type=int, default=5)
    ap.add_argument("--vary-seed", action="store_true", help="run i trains with --seed i")
    ap.add_argument("--extra", default="", help="more train arguments, space-separated")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run")
    ap.add_argument("--show-log", action="store_true", help="print the last lines of each crashed run")
    a = ap.parse_args()
    configs = a.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration {', '.join(unknown)}; use {', '.join(CONFIGS)}")
    rows = []
    for name in configs:
        codes, rates, walls = [], [], []
        for i in range(a.runs):
            rc, wall, tail, rate = one_run(a, CONFIGS[name], i if a.vary_seed else None)
            codes.append(rc)
            walls.append(wall)
            rates.append(rate)
            what = "timeout" if rc is None else describe(rc)
            extra = f", {rate:.1f} img/s" if rate else ""
            print(f"{name} run {i + 1}/{a.runs}: {what} in {wall:.0f} s{extra}", flush=True)
            if a.show_log and rc not in (0, None):
                print("   " + tail[-600:].replace("\n", "\n   "))
        crashes = sum(1 for rc in codes if rc not in (0, None))
        timeouts = sum(1 for rc in codes if rc is None)
        got = [r for r in rates if r]
        rows.append((name, len(codes), crashes, timeouts, codes, got))
    print()
    print("| configuration | runs | crashes | timeouts | exit codes | img/s (median) |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, n, crashes, timeouts, codes, got in rows:
        counts: dict[str, int] = {}
        for rc in codes:
            key = "timeout" if rc is None else describe(rc)
            counts[key] = counts.get(key, 0) + 1
        desc = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        med = f"{sorted(got)[len(got) // 2]:.1f}" if got else "-"
        print(f"| {name} | {n} | {crashes} | {timeouts} | {desc} | {med} |")


if __name__ == "__main__":
    main()
