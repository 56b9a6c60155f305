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

import importlib.util
import json
import os
import sys
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
