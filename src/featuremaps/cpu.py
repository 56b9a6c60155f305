"""What the CPU computes natively, read once from ``/proc/cpuinfo``: used to pick bfloat16 where it is fast
(``featuremaps train``'s probe, ``featuremaps patterns --precision auto``). No Keras, no framework."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    """The CPU's model name, family and model numbers (``/proc/cpuinfo``), or the platform's processor."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
    if info:
        return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
    return platform.processor() or platform.machine()


def has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)
