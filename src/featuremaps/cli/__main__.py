"""``python -m featuremaps.cli``."""

import sys

from featuremaps.cli import main

sys.exit(main())
