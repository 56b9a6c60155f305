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

    python tools/docs_images.py --siblings

docs/compare_emotion_archs.png is `featuremaps compare examples/astronaut.png --models
emotion,emotion-resnet,emotion-mobilenet` (the siblings that ship): the trained emotion networks side by side
on the cropped face.

    python tools/docs_images.py --learning RUN_DIR [--epochs 4,8,16,36] [--face happy]

docs/learning_<arch>_<face>.png: the header and the rows of those epochs of RUN_DIR/maps/<face>.png, the
sheet `featuremaps train` draws each epoch (a row per epoch, a column per conv layer), and RUN_DIR/curves.png
as docs/curves_<arch>.png.

    python tools/docs_images.py --patterns FER2013

docs/patterns_emotion.png is `featuremaps patterns --layers C3,C8,C13 --channels top4 --data FER2013` (the
four channels of each layer most active on 1000 PrivateTest faces, their visualizations beside their top four
faces cropped to the receptive field); docs/patterns_emotion_classes.png is `featuremaps patterns --class
happy,surprise,angry,sad`: what the network thinks each looks like. FER2013 is the archive, CSV or folder.

    python tools/docs_images.py --atlas FER2013

docs/atlas_tops_emotion_C5.png is `featuremaps atlas --data FER2013 --limit 1000 --layers C5`'s top-image
sheet: the six most class-selective channels of C5, each with its nine top faces cropped to the receptive field
around the channel's maximum.

    python tools/docs_images.py --diversity

docs/patterns_diversity.png is `featuremaps patterns --layers C8 --channels F388,F439 --images 3`: three images
per channel pushed apart by the diversity term (its default weight).
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


def siblings() -> int:
    from featuremaps.cli import main as fm
    from featuremaps.emotion.shipped import shipped_weights_available

    names = ["emotion", *(f"emotion-{a}" for a in ("resnet", "mobilenet") if shipped_weights_available(a))]
    with tempfile.TemporaryDirectory() as tmp:
        if fm(["compare", str(ROOT / "examples" / "astronaut.png"), "--models", ",".join(names), "--out", tmp]) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "compare_astronaut" / "compare.png", ROOT / "docs" / "compare_emotion_archs.png")
    return 0


def learning(run: Path, epochs: list[int], face: str) -> int:
    import json

    import numpy as np
    from PIL import Image

    from featuremaps.callbacks import SHEET_CELL, SHEET_TOP, load_history
    from featuremaps.draw import GAP
    from featuremaps.io import save_png

    arch = json.loads((run / "state.json").read_text())["recipe"]["arch"]
    sheet = np.asarray(Image.open(run / "maps" / f"{face}.png").convert("RGB"))
    drawn = [e for e, _ in load_history(run / "maps" / "maps.npz")]
    if not drawn:  # a sheet drawn before maps.npz existed: its rows are the last len(rows) epochs
        rows = (sheet.shape[0] - SHEET_TOP) // (SHEET_CELL + GAP)
        last = json.loads((run / "state.json").read_text())["epoch"]
        drawn = list(range(last - rows + 1, last + 1))
    missing = [e for e in epochs if e not in drawn]
    if missing:
        print(f"epochs {missing} are not on {run}/maps/{face}.png (it has {drawn[0]}-{drawn[-1]})", file=sys.stderr)
        return 2
    h = SHEET_CELL + GAP
    parts = [sheet[:SHEET_TOP]] + [
        sheet[SHEET_TOP + drawn.index(e) * h : SHEET_TOP + (drawn.index(e) + 1) * h] for e in epochs
    ]
    save_png(ROOT / "docs" / f"learning_{arch}_{face}.png", np.concatenate(parts))
    shutil.copyfile(run / "curves.png", ROOT / "docs" / f"curves_{arch}.png")
    return 0


def patterns(data: str) -> int:
    from featuremaps.cli import main as fm

    with tempfile.TemporaryDirectory() as tmp:
        args = ["patterns", "--layers", "C3,C8,C13", "--channels", "top4", "--data", data, "--out", f"{tmp}/channels"]
        if fm(args) != 0:
            return 1
        if fm(["patterns", "--class", "happy,surprise,angry,sad", "--out", f"{tmp}/classes"]) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "channels" / "patterns.png", ROOT / "docs" / "patterns_emotion.png")
        shutil.copyfile(Path(tmp) / "classes" / "patterns.png", ROOT / "docs" / "patterns_emotion_classes.png")
    return 0


def atlas(data: str) -> int:
    from featuremaps.cli import main as fm

    with tempfile.TemporaryDirectory() as tmp:
        if fm(["atlas", "--data", data, "--limit", "1000", "--layers", "C5", "--out", f"{tmp}/atlas"]) != 0:
            return 1
        shutil.copyfile(
            Path(tmp) / "atlas" / "top" / "C05_block3_conv1.png", ROOT / "docs" / "atlas_tops_emotion_C5.png"
        )
    return 0


def diversity() -> int:
    from featuremaps.cli import main as fm

    with tempfile.TemporaryDirectory() as tmp:
        args = ["patterns", "--layers", "C8", "--channels", "F388,F439", "--images", "3", "--out", f"{tmp}/div"]
        if fm(args) != 0:
            return 1
        shutil.copyfile(Path(tmp) / "div" / "patterns.png", ROOT / "docs" / "patterns_diversity.png")
    return 0


def main() -> int:
    from featuremaps.cli import main as fm

    if "--frameworks" in sys.argv[1:]:
        return frameworks()
    if "--compare" in sys.argv[1:]:
        return compare()
    if "--siblings" in sys.argv[1:]:
        return siblings()
    if "--patterns" in sys.argv[1:]:
        return patterns(sys.argv[sys.argv.index("--patterns") + 1])
    if "--atlas" in sys.argv[1:]:
        return atlas(sys.argv[sys.argv.index("--atlas") + 1])
    if "--diversity" in sys.argv[1:]:
        return diversity()
    if "--learning" in sys.argv[1:]:
        args = sys.argv[1:]
        run = Path(args[args.index("--learning") + 1])
        epochs = [int(e) for e in (args[args.index("--epochs") + 1] if "--epochs" in args else "4,8,16,36").split(",")]
        face = args[args.index("--face") + 1] if "--face" in args else "happy"
        return learning(run, epochs, face)

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
