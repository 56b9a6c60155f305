"""Regenerate src/featuremaps/data/colormaps.npz: Matplotlib's colormap tables as 256x3 uint8 lookup tables.

Shipping the tables keeps Matplotlib (and its ~0.3 s import) off the rendering path; other Matplotlib
colormap names still work when Matplotlib is installed. Run: python tools/make_colormaps.py
"""

from pathlib import Path

import matplotlib
import numpy as np

NAMES = [
    "viridis",
    "magma",
    "inferno",
    "plasma",
    "cividis",
    "gray",
    "turbo",
    "jet",
    "hot",
    "coolwarm",
    "RdBu_r",
    "bwr",
    "seismic",
    "Greys_r",
    "bone",
]

out = Path(__file__).resolve().parents[1] / "src" / "featuremaps" / "data" / "colormaps.npz"
tables = {n: (matplotlib.colormaps[n](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8) for n in NAMES}
np.savez_compressed(out, **tables)
print(out, len(tables))
