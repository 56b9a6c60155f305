"""The progress bar every command shows on stderr for work that takes more than a moment."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr (only when there are several items)."""

    def __init__(self, label: str = ""):
        self.label, self.t0 = label, time.monotonic()

    def __call__(self, i: int, n: int, item=None) -> None:
        if n < 2:
            return
        width = 28
        done = int(width * i / n)
        rate = i / max(1e-9, time.monotonic() - self.t0)
        name = f" {item.name}" if item is not None and hasattr(item, "name") else ""
        end = "\n" if i >= n else ""
        sys.stderr.write(f"\r{self.label}[{'#' * done}{'.' * (width - done)}] {i}/{n} {rate:.1f}/s{name[:40]:<41}{end}")
        sys.stderr.flush()
