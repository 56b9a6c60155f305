"""Peak RSS of `featuremaps show` (or `report`) on a folder of 100 small images vs 10 (memory must not grow
with the count).

    .venv/bin/python benchmarks/bench_memory.py [--model vgg16] [--small 10] [--large 100] [--command report]

``report`` writes one page of every image (``--max-mb 5000``: no cap), so its memory shows whether the page
is held whole or streamed to disk section by section.

Each run is a subprocess; its peak RSS is resource.getrusage(RUSAGE_CHILDREN).ru_maxrss read in a fresh
helper process per run. Target: the 100-image peak within 10% of the 10-image peak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_kib(cmd: list[str]) -> int:
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], check=True, capture_output=True, text=True, cwd=ROOT)
    return int(r.stdout.strip())


def make_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = rng.integers(48, 160, 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--large", type=int, default=100)
    ap.add_argument("--command", choices=("show", "report"), default="show")
    ap.add_argument("--extra", default="", help="extra show options, e.g. '--layers C1-C4 --no-layer-pngs'")
    args = ap.parse_args()
    fm = str(Path(sys.executable).with_name("featuremaps"))
    res = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for n in (args.small, args.large):
            make_images(d / f"in{n}", n)
            out = d / (f"out{n}" if args.command == "show" else f"out{n}.html")
            cmd = [fm, args.command, str(d / f"in{n}"), "--model", args.model, "--weights", "none", "--out", str(out)]
            cmd += ["--max-mb", "5000"] if args.command == "report" else []
            t = time.perf_counter()
            res[n] = (peak_kib([*cmd, *args.extra.split()]), time.perf_counter() - t)
            if args.command == "show":
                assert len(list(out.iterdir())) == n
            else:
                print(f"{n:4d} images: page {out.stat().st_size / 1e6:.0f} MB")
    (a, ta), (b, tb) = res[args.small], res[args.large]
    print(f"featuremaps {args.command} FOLDER --model {args.model} --weights none {args.extra}".rstrip())
    print(f"{args.small:4d} images: peak RSS {a / 1024:7.0f} MiB  ({ta:5.1f} s)")
    print(f"{args.large:4d} images: peak RSS {b / 1024:7.0f} MiB  ({tb:5.1f} s)")
    print(f"ratio {b / a:.3f} (target <= 1.10) {'PASS' if b / a <= 1.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
