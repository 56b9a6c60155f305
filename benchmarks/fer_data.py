"""What the benchmarks that need FER2013 share: where the data is, read as the CLI reads it."""

from __future__ import annotations

import os
import sys


def fer2013_path(given: str | None) -> str:
    """``--data``, else ``$FEATUREMAPS_FER2013`` (as the CLI takes it); one line and exit 2 when absent."""
    path = given or os.environ.get("FEATUREMAPS_FER2013")
    if not path or not os.path.exists(path):
        where = f"{path} does not exist" if path else "no FER2013 data given"
        print(
            f"{os.path.basename(sys.argv[0])}: error: {where}; pass --data PATH (FER2013 folder, CSV or .tar.gz) "
            "or set FEATUREMAPS_FER2013",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return path
