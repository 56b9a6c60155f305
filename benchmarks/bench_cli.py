"""`featuremaps show` as a whole process vs `python -c "import keras"` (the floor for any Keras tool).

    .venv/bin/python benchmarks/bench_cli.py [--repeats 3]

Runs `featuremaps show examples/chelsea.png --model vgg16 --weights none --out TMP` and the import,
alternated, and reports the median wall times and their ratio. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str]) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="vgg16")
    args = ap.parse_args()
    exe = Path(sys.executable)
    fm = exe.with_name("featuremaps")
    with tempfile.TemporaryDirectory() as out:
        show = [
            str(fm),
            "show",
            "examples/chelsea.png",
            "--model",
            args.model,
            "--weights",
            "none",
            "--out",
            out,
        ]
        base = [str(exe), "-c", "import keras"]
        wall(base)  # warm the file cache
        times = {"import": [], "show": []}
        for _ in range(args.repeats):
            times["import"].append(wall(base))
            times["show"].append(wall(show))
    b, s = statistics.median(times["import"]), statistics.median(times["show"])
    print(
        f"python -c 'import keras'                      median {b:6.2f} s  "
        + " ".join(f"{t:.2f}" for t in times["import"])
    )
    print(
        f"featuremaps show chelsea.png --model {args.model} median {s:6.2f} s  "
        + " ".join(f"{t:.2f}" for t in times["show"])
    )
    print(f"ratio {s / b:.2f} (target <= 1.5) {'PASS' if s / b <= 1.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
