"""Which Keras backend runs, when the user did not choose one that is installed.

Keras 3 runs on TensorFlow unless ``KERAS_BACKEND`` or ``keras.json`` says otherwise, and fails on import when
that backend is missing. A user who installed ``featuremaps[torch]`` (or JAX) and no TensorFlow would then get
a traceback from every command, although Keras runs on torch and JAX too. :func:`choose` picks an installed
backend for that case only, before Keras is imported. It imports nothing itself and never overrides a choice
that works: an installed backend named by ``KERAS_BACKEND`` or ``keras.json`` stays.

:func:`load_triton_first` orders two imports: TensorFlow loads its library with ``RTLD_GLOBAL``, and an
``import triton`` after it (which torch does on its ``torch._dynamo`` path: ``torchvision``, ``torch.export``)
aborts the process (LLVM options registered twice; TensorFlow issue #124205). Triton first works.
``import featuremaps`` calls it, so every entry point (the CLI, the API, the tests) is covered.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

#: tried in this order when the configured backend is not installed
FALLBACKS = ("torch", "jax")


def configured() -> str | None:
    """The backend the user chose: ``KERAS_BACKEND``, else ``keras.json`` where Keras looks for it."""
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return env
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"])
    else:
        base = Path(os.path.expanduser("~"))
        home = (base if os.access(base, os.W_OK) else Path("/tmp")) / ".keras"
    try:
        backend = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) else None


def installed(backend: str) -> bool:
    """Whether ``backend``'s package can be imported (looked up, not imported)."""
    try:
        return importlib.util.find_spec(backend) is not None
    except (ImportError, ValueError):
        return False


def load_triton_first() -> bool:
    """Import triton where it and TensorFlow are both installed and TensorFlow is not loaded yet; return whether
    triton is loaded now.

    The registry's CUDA torch pulls triton; beside ``tensorflow-cpu`` any torch path that reaches triton after
    TensorFlow crashed. Triton alone costs ~0.2 s to import and loads no framework; nothing happens where it is
    not installed, and nothing can help once TensorFlow is loaded (importing triton then is the crash itself).
    """
    if "triton" in sys.modules:
        return True
    if "tensorflow" in sys.modules or not installed("triton") or not installed("tensorflow"):
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # a broken triton install: torch's own import of it will report it, if it is ever needed
        return False
    return True


def choose() -> str | None:
    """Set ``KERAS_BACKEND`` to an installed backend where the configured one (TensorFlow by default) is not
    installed and the user did not set ``KERAS_BACKEND``; return the backend set, else None.

    Does nothing once Keras is imported (its backend is fixed then), when the configured backend is installed,
    or when no fallback is: Keras' own import error is then what the caller reports.

    Example::

        >>> # a machine with torch and no TensorFlow, KERAS_BACKEND unset
        >>> choose()
        'torch'
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    if installed(configured() or "tensorflow"):
        return None
    for backend in FALLBACKS:
        if installed(backend):
            os.environ["KERAS_BACKEND"] = backend
            return backend
    return None


#: TensorFlow's start-up lines on stderr (TF 2.21: absl INFO lines logged before ``absl::InitializeLog()``,
#: e.g. "oneDNN custom operations are on", which no TF_CPP_MIN_LOG_LEVEL silences; the CPU-feature notice)
TF_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\] "
    r"|To enable the following instructions:"
    r"|This TensorFlow binary is optimized)"
)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on ``import tensorflow`` it wraps TensorFlow's loader so that the import runs with
    the stderr file descriptor in a temporary file, then writes back every line that is not start-up noise."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        load = spec.loader.exec_module

        def exec_module(module):
            if self in sys.meta_path:  # one import only (find_spec alone, as torch._dynamo calls it, imports nothing)
                sys.meta_path.remove(self)
            with tempfile.TemporaryFile() as held:
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(held.fileno(), 2)
                try:
                    load(module)
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                    held.seek(0)
                    kept = [
                        ln
                        for ln in held.read().splitlines(True)
                        if not TF_STARTUP_NOISE.match(ln.decode("utf-8", "replace"))
                    ]
                    if kept:
                        os.write(2, b"".join(kept))

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up lines off stderr, for the CLI and the API alike; call before it is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it, and, unless the level (the user's or this one) is
    0, drops the start-up lines that ignore it ("oneDNN custom operations are on", the CPU-feature notice)
    when TensorFlow is first imported, by whom ever: the Keras backend, or Keras' serialization on the torch
    backend. Every other line TensorFlow writes on import reaches stderr as before. Does nothing once
    TensorFlow is imported or when it is not installed.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if level.strip() in ("", "0") or "tensorflow" in sys.modules:
        return
    if any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path) or not installed("tensorflow"):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())
