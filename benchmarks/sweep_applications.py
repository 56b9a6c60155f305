"""Every keras.applications model through the command line, random weights: layers, show and cam.

For each model name of featuremaps' registry (all 40 constructors of keras.applications), three commands
run in this process through ``featuremaps.cli.main``, each at the model's default input size:

    featuremaps layers NAME --weights none
    featuremaps show IMAGE --model NAME --weights none --maps 4 --layers C1,Cn   (Cn: the last conv layer)
    featuremaps cam IMAGE --model NAME --weights none

Each must exit 0 and write its files (``overview.png``, ``manifest.json``, the two layer grids; ``cam/panel.png``,
``cam/cam.json``). One line per model: ok/FAIL, conv layers, seconds per command, the Grad-CAM target layer; a
failure names the command and its error line (or the exception of a traceback) and the sweep goes on. The last
line counts the models that passed; the exit status is 1 if any failed.

    PYTHONPATH=src python benchmarks/sweep_applications.py                           # all 40 (heavy: ~1 h on 2 cores)
    PYTHONPATH=src python benchmarks/sweep_applications.py --only mobilenetv3small,efficientnetb0,nasnetmobile
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402 (after the TF log level)

from featuremaps.applications import APPLICATIONS, application_key  # noqa: E402
from featuremaps.cli import main as cli  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "chelsea.png"


class Failed(Exception):
    """One command of the sweep did not do its job; the message says which and why."""


def run(argv: list[str]) -> tuple[str, float]:
    """``featuremaps ARGV`` in this process: its stdout and seconds; Failed unless it exits 0."""
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli(argv)
    except Exception as e:  # a traceback is a failure of the sweep, reported in one line
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise Failed(f"{argv[0]}: traceback {type(e).__name__}: {first}") from None
    if code != 0:
        last = (err.getvalue().strip().splitlines() or ["(no message)"])[-1][:160]
        raise Failed(f"{argv[0]}: exit {code}: {last}")
    return out.getvalue(), time.perf_counter() - t


def need(*paths: Path) -> None:
    for p in paths:
        if not p.is_file() or p.stat().st_size == 0:
            raise Failed(f"not written: {p.name}")


def check(name: str, image: Path, out: Path, seen: dict) -> tuple[int, list[float], str]:
    """The three commands for one model: (conv layers, seconds per command, Grad-CAM target); ``seen`` gets
    what is known before a failure (the conv layers, the seconds of the commands that passed)."""
    table, t_layers = run(["layers", name, "--weights", "none"])
    m = re.search(r": (\d+) conv layers, input (\S+)", table)
    if not m:
        raise Failed(f"layers: no 'N conv layers' line in {table[:80]!r}")
    n = seen["convs"] = int(m.group(1))
    seen["secs"] = [t_layers]
    if len(re.findall(r"^C\d+ ", table, re.M)) != n:
        raise Failed(f"layers: the table has not {n} rows")
    _, t_show = run(
        ["show", str(image), "--model", name, "--weights", "none", "--maps", "4", "--layers", f"C1,C{n}"]
        + ["--out", str(out / "show")]
    )
    folder = out / "show" / image.stem
    need(folder / "overview.png", folder / "manifest.json")
    seen["secs"].append(t_show)
    grids = sorted(p.name for p in (folder / "layers").glob("C*.png"))
    if len(grids) != 2 or not grids[0].startswith("C01_") or not grids[1].startswith(f"C{n:02d}_"):
        raise Failed(f"show: layer grids {grids}, not C01 and C{n:02d}")
    said, t_cam = run(["cam", str(image), "--model", name, "--weights", "none", "--out", str(out / "cam")])
    cam = out / "cam" / image.stem / "cam"
    need(cam / "panel.png", cam / "cam.json")
    target = re.search(r"\((C\d+ \S+)\)", said)
    return n, [t_layers, t_show, t_cam], f"Grad-CAM on {target.group(1) if target else '?'}, input {m.group(2)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        default="",
        help="comma list of model names (vgg16, NASNetMobile, mobilenet_v3_small: any case; default: all 40)",
    )
    ap.add_argument("--image", type=Path, default=IMAGE, help="the image for show and cam (default: %(default)s)")
    ap.add_argument("--keep", type=Path, default=None, help="write the outputs under this folder (default: temporary)")
    args = ap.parse_args()

    names = [application_key(n) for n in args.only.split(",") if n.strip()] or list(APPLICATIONS)
    unknown = [n for n in names if n not in APPLICATIONS]
    if unknown:
        ap.error(f"not keras.applications names: {', '.join(unknown)} (known: {', '.join(APPLICATIONS)})")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {len(names)} models, image {args.image.name}")
    print(f"{'model':<20} {'':<4} {'convs':>5}  {'layers':>7} {'show':>7} {'cam':>7}  note")
    failed, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fm-sweep-") as tmp:
        root = args.keep or Path(tmp)
        for name in names:
            out, seen = root / name, {}
            try:
                n, secs, note = check(name, args.image, out, seen)
                ok = True
            except Failed as e:
                n, secs, note, ok = seen.get("convs", 0), seen.get("secs", []), str(e), False
                failed.append(name)
            times = " ".join([f"{s:6.1f}s" for s in secs] + [f"{'-':>7}"] * (3 - len(secs)))
            print(f"{name:<20} {'ok' if ok else 'FAIL':<4} {n:5d}  {times}  {note}", flush=True)
            keras.backend.clear_session()
            gc.collect()
    total = time.perf_counter() - t0
    print(
        f"{len(names) - len(failed)}/{len(names)} ok in {total:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
