"""The house's floors (issue 24): the ground floor imports no framework, every model goes through one protocol."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORK_MODULES = ("keras", "tensorflow", "jax", "torch", "onnxruntime")


def _loaded_after(code: str) -> list[str]:
    """The framework modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ground_floor_imports_no_framework():
    assert _loaded_after("import featuremaps.maps, featuremaps.loaded, featuremaps.receptive") == []
