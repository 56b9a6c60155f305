"""Regenerate the README's emotion-model pictures in docs/ from the shipped model (run after ship_emotion.py).

    python tools/docs_images.py

docs/overview_astronaut.png is `featuremaps show examples/astronaut.png`'s overview; docs/cam_astronaut.png is
`featuremaps cam examples/astronaut.png --method gradcam,gradcam++,layercam --all-classes`'s panel.

    python tools/docs_images.py --frameworks

docs/compare_frameworks_random.png is `featuremaps compare examples/chelsea.png --models
vgg16,torchvision:resnet18,resnet18.onnx --weights none` (the ONNX file a random torchvision resnet18 exported
with torch.onnx); needs torch, torchvision and onnxruntime.

    python tools/docs_images.py --compare

docs/compare_chelsea_random.png is `featuremaps compare examples/chelsea.png --weights none` (the default
--models: vgg16, resnet50, mobilenetv2, inceptionv3, random weights); offline.
"""

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frameworks() -> int:
    import torch

    from featuremaps.cli import main as fm
    from featuremaps.frameworks.torch import torchvision_models

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        net = torchvision_models().resnet18(weights=None).eval()
        onnx = Path(tmp) / "resnet18.onnx"
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), str(onnx), dynamo=False)
        models = f"vgg16,torchvision:resnet18,{onnx}"
        args = ["compare", str(ROOT / "examples" / "chelsea.png"), "--models", models, "--weights", "none"]
        if fm([*args, "--out", tmp]) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "compare_chelsea" / "compare.png", ROOT / "docs" / "compare_frameworks_random.png")
    return 0


def compare() -> int:
    from featuremaps.cli import main as fm

    with tempfile.TemporaryDirectory() as tmp:
        if fm(["compare", str(ROOT / "examples" / "chelsea.png"), "--weights", "none", "--out", tmp]) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "compare_chelsea" / "compare.png", ROOT / "docs" / "compare_chelsea_random.png")
    return 0


def main() -> int:
    from featuremaps.cli import main as fm

    if "--frameworks" in sys.argv[1:]:
        return frameworks()
    if "--compare" in sys.argv[1:]:
        return compare()

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
