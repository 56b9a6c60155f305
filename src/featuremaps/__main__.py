"""``python -m featuremaps ...``: the same as the ``featuremaps`` command (where its script is not on PATH)."""

import sys

from featuremaps.cli import main

sys.exit(main())
