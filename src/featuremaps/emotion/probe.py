"""``train --backend auto --precision auto``: measure which Keras backend and precision train fastest here.

No fixed rule fits every CPU: on an Intel Xeon with AMX TensorFlow in bfloat16 trained the VGG-16 2.5x
faster than torch in float32, on an AVX2-only EPYC torch float32 was fastest, and on a Zen 5 EPYC
(AVX512-BF16) TensorFlow won, in bfloat16 for the ResNet and in float32 for the MobileNet (BENCHMARKS.md).
So the probe times a few training steps of the run's own network (architecture, width, input side, batch)
for each candidate the CPU runs natively: every installed backend, in float32, and in bfloat16 where the CPU
has bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16``; elsewhere it is emulated, 10-100x slower). A
backend is fixed when Keras is imported, so each backend is measured in a subprocess
(:mod:`featuremaps.emotion.probe_worker`), one after the other (side by side they would share the cores).

The answer is cached per CPU model, library versions and network, so the probe runs once per machine kind
and network; the choice and what was measured go into the run's ``state.json`` (``recipe["chosen_by"]``).
This module imports no Keras: it runs before the backend is chosen.

Example::

    choice = choose(candidates("resnet"), measure_in_subprocesses("resnet", 1.0, 40, 128), cache_file(), key)
    choice.backend, choice.precision, choice.rates   # 'tensorflow', 'bfloat16', {('tensorflow', 'float32'): ...}
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from featuremaps import keras_backend
from featuremaps.cpu import cpu_model, has_bf16

#: the backends tried, in order (the first of equal speed wins)
BACKENDS = ("tensorflow", "torch", "jax")
PRECISIONS = ("float32", "bfloat16")
#: a whole probe's budget, seconds: backends not reached by then are left out (noted)
BUDGET_S = 60.0
#: runs shorter than this many face-steps (faces x epochs) skip the probe: it would cost more than it saves
MIN_WORK = 100_000

Candidate = tuple[str, str]  # (backend, precision)


@dataclass
class Choice:
    """What the probe picked and why: ``rates`` img/s per (backend, precision), ``notes`` what was left out."""

    backend: str
    precision: str
    rates: dict[Candidate, float] = field(default_factory=dict)
    cached: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """The JSON form kept in the run's recipe and in the cache."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            "img_per_s": {f"{b} {p}": round(r, 1) for (b, p), r in self.rates.items()},
            "cached": self.cached,
            "probe_seconds": round(self.seconds, 1),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line: the choice, and the speeds it beat."""
        rates = ", ".join(f"{b} {p} {r:.0f}" for (b, p), r in sorted(self.rates.items(), key=lambda kv: -kv[1]))
        how = "cached probe" if self.cached else f"probe of {self.seconds:.0f} s"
        return f"{self.backend} {self.precision} is fastest here ({how}; img/s: {rates})"


def candidates(
    backend: str = "auto", precision: str = "auto", bf16: bool | None = None, installed=keras_backend.installed
) -> list[Candidate]:
    """The (backend, precision) pairs worth timing: ``auto`` stands for every installed backend and every
    precision the CPU runs natively; a named one is kept as given."""
    backends = [b for b in BACKENDS if installed(b)] if backend == "auto" else [backend]
    if precision != "auto":
        precisions = [precision]
    else:
        precisions = list(PRECISIONS) if (has_bf16() if bf16 is None else bf16) else ["float32"]
    return [(b, p) for b in backends for p in precisions]


#: the training step's form, in the cache key: raised when featuremaps changes what a step computes, so that
#: rates measured with the old step are measured again (2: BN as one fused kernel on TensorFlow, 1.5x there)
STEP_FORM = 2


def cache_key(arch: str, width: float, side: int, batch: int) -> str:
    """What a measurement depends on: the CPU, the library versions, featuremaps' step, the network and the batch."""
    versions = []
    for name in ("keras", "tensorflow-cpu", "tensorflow", "torch", "jax", "jaxlib"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name}=={importlib.metadata.version(name)}")
    return f"{cpu_model()} | {' '.join(versions)} step{STEP_FORM} | {arch} w{width:g} {side}px b{batch}"


def cache_file() -> Path:
    """Where choices are kept: ``$FEATUREMAPS_CACHE`` or ``$XDG_CACHE_HOME/featuremaps`` (``~/.cache``)."""
    base = os.environ.get("FEATUREMAPS_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "featuremaps"
    )
    return Path(base) / "train-probe.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    """Best effort (a read-only home must not stop a run), atomic (a cut write must not poison it)."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)


def _known_rates(cands: list[Candidate], cache: Path | None, key: str) -> dict[Candidate, float]:
    """The img/s an earlier probe stored under ``key`` for each of ``cands`` it measured (0: it failed)."""
    stored = _read_cache(cache).get(key, {}) if cache else {}
    known = stored.get("img_per_s", {}) if isinstance(stored.get("img_per_s"), dict) else {}
    rates: dict[Candidate, float] = {}
    for c in cands:
        with contextlib.suppress(TypeError, ValueError):
            if f"{c[0]} {c[1]}" in known:
                rates[c] = float(known[f"{c[0]} {c[1]}"])
    return rates


def cached_choice(cands: list[Candidate], cache: Path | None, key: str) -> Choice | None:
    """The fastest of ``cands`` where an earlier probe under ``key`` measured every one of them, else None.
    Free (nothing is run): runs too short for a probe (:func:`short_run`) still take what one measured."""
    rates = _known_rates(cands, cache, key)
    fast = {c: r for c, r in rates.items() if r > 0}
    if len(rates) < len(cands) or not fast:
        return None
    return Choice(*max(fast, key=lambda c: fast[c]), rates=fast, cached=True)


#: measure(backend, precisions, deadline) -> {precision: img/s}; a backend that fails returns {}
Measure = Callable[[str, list[str], float], dict[str, float]]


def choose(
    cands: list[Candidate],
    measure: Measure,
    cache: Path | None,
    key: str,
    clock: Callable[[], float] = time.monotonic,
    budget_s: float = BUDGET_S,
) -> Choice:
    """The fastest of ``cands``: from the cache under ``key`` when it holds every candidate, else measured.

    ``measure`` times one backend's precisions (one subprocess each in real use,
    :func:`measure_in_subprocesses`; tests pass stubbed timings). Candidates an earlier probe under the same
    ``key`` measured are not measured again, so a probe the budget cut short is finished by the next runs
    rather than repeated. Backends not begun within ``budget_s``, or cut off by it, are left out for this run
    with a note (and measured next time); a candidate that fails is left out with a note and remembered as
    failed (rate 0), so it costs no time again until a library version changes (``key``). Nothing measured:
    the first candidate, with a note. What is known is cached (when ``cache`` is a path).
    """
    rates = _known_rates(cands, cache, key)
    missing = [c for c in cands if c not in rates]
    cached = not missing and any(r > 0 for r in rates.values())  # the cache answers: nothing to measure
    t0 = clock()
    notes: list[str] = []
    if cached:
        failed = [f"{b} {p}" for (b, p), r in rates.items() if r <= 0]
        if failed:
            notes.append(f"failed in an earlier probe, not tried again: {', '.join(failed)}")
    elif rates:
        notes.append(f"from an earlier probe: {', '.join(f'{b} {p}' for b, p in rates)}")
    backends = list(dict.fromkeys(b for b, _ in missing))
    for i, backend in enumerate(backends):
        left = budget_s - (clock() - t0)
        if left <= 0:
            notes.append(f"not measured (the {budget_s:.0f} s probe budget was spent): {', '.join(backends[i:])}")
            break
        precisions = [p for b, p in missing if b == backend]
        got = {p: r for p, r in measure(backend, precisions, left).items() if r > 0}
        rates.update({(backend, p): r for p, r in got.items()})
        lacking = [p for p in precisions if p not in got]
        if lacking and clock() - t0 >= budget_s:
            notes.append(f"{backend} {', '.join(lacking)}: not done within the {budget_s:.0f} s probe budget; left out")
        elif lacking:
            notes.append(f"{backend} {', '.join(lacking)}: the probe step failed; left out")
            rates.update({(backend, p): 0.0 for p in lacking})  # remembered: not tried again with these versions
    seconds = 0.0 if cached else clock() - t0
    fast = {c: r for c, r in rates.items() if r > 0}
    if fast:
        choice = Choice(*max(fast, key=lambda c: fast[c]), rates=fast, cached=cached, seconds=seconds, notes=notes)
    else:
        notes.append("nothing could be measured; the first candidate is used")
        choice = Choice(*cands[0], seconds=seconds, notes=notes)
    if cache and not cached:  # what is known so far, a partial probe included: the next run measures only the rest
        data = _read_cache(cache)
        data[key] = {
            **choice.record(),
            "img_per_s": {f"{b} {p}": round(r, 1) for (b, p), r in rates.items()},  # failures as 0
            "complete": all(c in rates for c in cands),
        }
        _write_cache(cache, data)
    return choice


def measure_in_subprocesses(arch: str, width: float, side: int, batch: int, steps: int = 2) -> Measure:
    """A :data:`Measure` that runs :mod:`featuremaps.emotion.probe_worker` under each backend: it builds the
    network per precision, takes one untimed step (tracing), then ``steps`` timed ones (the fastest counts)."""

    def measure(backend: str, precisions: list[str], deadline_s: float) -> dict[str, float]:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, "-m", "featuremaps.emotion.probe_worker", arch, str(width), str(side), str(batch)]
        cmd += [str(steps), ",".join(precisions)]
        try:
            stdout = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=max(5.0, deadline_s), check=False
            ).stdout
        except subprocess.TimeoutExpired as e:  # the precisions done before the deadline still count
            stdout = e.stdout or ""
        except OSError:
            return {}
        if isinstance(stdout, bytes):
            stdout = stdout.decode(errors="replace")
        rates: dict[str, float] = {}
        for line in stdout.splitlines():  # one JSON object per precision, printed as each is done
            with contextlib.suppress(ValueError, AttributeError):
                for p, r in json.loads(line).items():
                    if p in precisions and isinstance(r, int | float):
                        rates[p] = float(r)
        return rates

    return measure


#: bytes per face of FER2013 files, to guess a run's size before reading it: a CSV row (2,304 pixels as
#: text, ~8.5 KB) and a PNG in an archive (the shared fer2013.tar.gz: 59.8 MB for 35,887 faces, 1.67 KB)
BYTES_PER_FACE = {".csv": 8000, "archive": 1600}


def faces_at_most(data: str | Path) -> int:
    """A cheap upper estimate of the faces in ``data`` (a folder: its files; a CSV or archive: its size
    over :data:`BYTES_PER_FACE`, a little under the real bytes per face); 0 where nothing is there."""
    path = Path(data)
    if path.is_dir():
        return sum(len(files) for _, _, files in os.walk(path))
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    return size // BYTES_PER_FACE[".csv" if path.suffix.lower() == ".csv" else "archive"]


def short_run(data: str | Path, limit_per_class: int | None, epochs: int, classes: int = 7) -> bool:
    """Whether a run is too short for a probe (up to a minute) to pay: fewer than :data:`MIN_WORK` face-steps
    (faces, at most ``classes * limit_per_class``, x ``epochs``). FER2013 (35,887 faces) is from 3 epochs on."""
    faces = faces_at_most(data)
    if limit_per_class is not None:
        faces = min(faces, classes * limit_per_class * 3)  # three splits
    return faces * epochs < MIN_WORK
