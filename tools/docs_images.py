"""Regenerate the README's emotion-model pictures in docs/ from the shipped model (run after ship_emotion.py).

    python tools/docs_images.py

docs/overview_astronaut.png is `featuremaps show examples/astronaut.png`'s overview; docs/cam_astronaut.png is
`featuremaps cam examples/astronaut.png --method gradcam,gradcam++,layercam --all-classes`'s panel.
"""

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from featuremaps.cli import main as fm

    image = str(ROOT / "examples" / "astronaut.png")
    with tempfile.TemporaryDirectory() as tmp:
        if fm(["show", image, "--out", tmp]) != 0:
            return 1
        if fm(["cam", image, "--method", "gradcam,gradcam++,layercam", "--all-classes", "--out", tmp]) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "astronaut" / "overview.png", ROOT / "docs" / "overview_astronaut.png")
        shutil.copyfile(Path(tmp) / "astronaut" / "cam" / "panel.png", ROOT / "docs" / "cam_astronaut.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
