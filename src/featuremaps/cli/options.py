"""The command line's options: one parser per command, with help text, defaults and examples.

Building the parser imports no deep-learning framework, so ``featuremaps --help`` answers at once. Each
command's parser names the module of :mod:`featuremaps.cli` that runs it (``run="show"`` ->
``featuremaps.cli.show.run``).
"""

from __future__ import annotations

import argparse

from featuremaps import __version__
from featuremaps.errors import UserError

EXAMPLES = """examples:
  featuremaps show examples/astronaut.png                 # a face through the bundled emotion model
  featuremaps show cat.png --model vgg16 --layers C1-C5 --select top-mean
  featuremaps show photos/ --model resnet50 --weights none --norm layer --cmap magma
  featuremaps layers vgg16                                # list conv layers as C1..Cn
  featuremaps cam face.png --all-classes                  # Grad-CAM for each emotion
  featuremaps report photos/ --out report.html            # one self-contained HTML page
  featuremaps train --data fer2013.tar.gz --epochs 30     # train the emotion model
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UserError(f"{message} (see '{self.prog} --help')")


def _int_list(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not H,W,C like 224,224,3") from None


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _model_args(p, default_help="the bundled emotion model (vgg16 if absent)"):
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help=f"model name (emotion, vgg16, resnet50, mobilenetv2, inceptionv3, xception, densenet121, "
        f"efficientnetb0, convnexttiny, ...) or a .keras/.h5 file; default {default_help}",
    )
    p.add_argument("--weights", default=None, help="imagenet (default for named models), none (random) or a file")
    p.add_argument("--unsafe", action="store_true", help="allow code stored in a model file (Lambda layers) to run")
    p.add_argument(
        "--preprocess",
        default=None,
        choices=["unit", "raw", "symmetric", "caffe", "torch"],
        help="scaling for model files (default unit: [0, 1]); named models use their own",
    )
    p.add_argument("--classes", default=None, help="comma-separated class names for a model file's outputs")


def _image_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE|FOLDER", help="image files and/or folders of images")
    p.add_argument(
        "--input-shape",
        type=_int_list,
        default=None,
        metavar="H,W,C",
        help="input shape for models that do not fix it (never-built Sequential, free-size nets)",
    )
    p.add_argument(
        "--resize",
        default="crop",
        choices=["crop", "stretch", "pad"],
        help="how to fit an image to the model input (default: centre crop, aspect kept)",
    )
    p.add_argument(
        "--no-face-crop",
        dest="face_crop",
        action="store_false",
        default=None,
        help="feed the whole image to the emotion model instead of the largest face",
    )
    p.add_argument("--max-pixels", type=_positive, default=None, help="refuse larger images (default 64 M)")


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="featuremaps",
        description="See what a convolutional network sees: feature maps of "
        "every conv layer, Grad-CAM explanations and comparisons, for any Keras CNN.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"featuremaps {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "show",
        help="draw the feature maps of each conv layer",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _image_args(p)
    _model_args(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--maps", type=_positive, default=16, help="maps per layer (default 16)")
    p.add_argument("--select", default="first", help="first | top-mean | top-max | a channel list like 0,5,9")
    p.add_argument("--norm", default="map", choices=["map", "layer", "global"], help="normalisation (default map)")
    p.add_argument("--cmap", default="viridis", help="colormap: viridis, magma, gray, inferno, turbo, ...")
    p.add_argument("--overlay", action="store_true", help="blend each map over the input image")
    p.add_argument("--cell", type=_positive, default=112, help="overview cell size in pixels (default 112)")
    p.add_argument("--no-layer-pngs", dest="layer_pngs", action="store_false", help="write only the overview")
    p.add_argument("--out", "-o", default="featuremaps-out", help="output folder (default featuremaps-out)")
    p.set_defaults(run="show")

    p = sub.add_parser("layers", help="list a model's conv layers as C1..Cn")
    p.add_argument("model", nargs="?", default=None, help="model name or file (default: the emotion model)")
    p.add_argument("--weights", default="none", help="weights to load (default none: the table needs no weights)")
    p.add_argument("--unsafe", action="store_true", help="allow code stored in a model file to run")
    p.add_argument("--input-shape", type=_int_list, default=None, metavar="H,W,C")
    p.set_defaults(run="layers")

    p = sub.add_parser("cam", help="class activation maps: Grad-CAM, Grad-CAM++, Score-CAM, LayerCAM")
    _image_args(p)
    _model_args(p)
    p.add_argument(
        "--method",
        default="gradcam",
        help="comma list of gradcam, gradcam++, scorecam, layercam, hirescam, xgradcam, eigencam, ablationcam",
    )
    p.add_argument("--layer", default=None, help="target conv layer (name or C-number; default the last conv)")
    p.add_argument("--class", dest="target_class", default=None, help="class name or index (default predicted)")
    p.add_argument("--all-classes", action="store_true", help="one map per class, side by side")
    p.add_argument("--cmap", default="jet", help="heatmap colormap (default jet)")
    p.add_argument("--out", "-o", default="featuremaps-out", help="output folder")
    p.set_defaults(run="cam")

    p = sub.add_parser("report", help="one self-contained HTML report of maps, statistics and CAMs")
    _image_args(p)
    _model_args(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--maps", type=_positive, default=16, help="maps per layer (default 16)")
    p.add_argument("--cmap", default="viridis", help="feature-map colormap (default viridis)")
    p.add_argument(
        "--cam",
        default="gradcam",
        help="CAM methods, comma-separated (gradcam, gradcam++, scorecam, layercam, hirescam, xgradcam, "
        "eigencam, ablationcam), or none (default gradcam)",
    )
    p.add_argument("--out", "-o", default="report.html", help="HTML file to write (default report.html)")
    p.set_defaults(run="report")

    p = sub.add_parser("compare", help="one image through several architectures, layers aligned")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--models", default="vgg16,resnet50,mobilenetv2,inceptionv3", help="comma-separated models")
    p.add_argument("--weights", default=None, help="imagenet (default) or none (random)")
    p.add_argument("--align", default="depth", choices=["depth", "resolution"], help="align layers by")
    p.add_argument("--rows", type=_positive, default=6, help="layers shown per model (default 6)")
    p.add_argument("--maps", type=_positive, default=8)
    p.add_argument(
        "--norm",
        default="map",
        choices=["map", "layer", "shared", "global"],
        help="map: each map its own scale; layer: per layer; shared: one scale per row "
        "across models; global: one scale for all",
    )
    p.add_argument("--cmap", default="viridis")
    p.add_argument("--out", "-o", default="featuremaps-out", help="output folder (writes compare_<image>/)")
    p.set_defaults(run="compare:run_models")

    p = sub.add_parser("compare-classes", help="the same channels for one face per emotion, side by side")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="one image per class (default: PrivateTest faces)")
    p.add_argument("--data", default=None, help="FER2013 folder, CSV or archive (default ../shared/data/fer2013)")
    _model_args(p)
    p.add_argument("--layers", default="all")
    p.add_argument("--maps", type=_positive, default=8)
    p.add_argument("--cmap", default="viridis")
    p.add_argument("--out", "-o", default="featuremaps-out")
    p.set_defaults(run="compare:run_classes")

    p = sub.add_parser("atlas", help="channel x class statistics and top images over a labelled dataset")
    p.add_argument("--data", required=True, help="FER2013 folder, CSV or archive, or ROOT/<class>/*.png")
    _model_args(p)
    p.add_argument("--split", default="PrivateTest", help="dataset split (default PrivateTest)")
    p.add_argument("--layers", default="all")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--limit", type=_positive, default=None, help="use at most this many images")
    p.add_argument("--out", "-o", default="featuremaps-out/atlas")
    p.set_defaults(run="atlas")

    p = sub.add_parser("train", help="train the FER2013 emotion VGG-16 (checkpoints every epoch)")
    p.add_argument("--data", required=True, help="FER2013 folder, fer2013.csv or fer2013.tar.gz")
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", "-o", default="runs/emotion")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument(
        "--init",
        default=None,
        metavar="bundled|FILE",
        help="start from trained weights (the bundled model or an emotion .npz/.keras) instead of random",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="bfloat16 mixed precision: ~1.5x faster on CPUs with AVX512-BF16",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows/files (counted) instead of stopping")
    p.add_argument("--limit", type=_positive, default=None, help="at most this many faces per class and split")
    p.add_argument("--width", type=float, default=1.0, help="filter-count multiplier (1 = VGG-16; <1 for quick tries)")
    p.set_defaults(run="train")

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and a confusion matrix on FER2013")
    p.add_argument("model", nargs="?", default=None, help="emotion (default), a .keras file or an .npz weights file")
    p.add_argument("--data", required=True, help="FER2013 folder, fer2013.csv or fer2013.tar.gz")
    p.add_argument("--splits", default="PublicTest,PrivateTest")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: flips and shifted crops")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--out", "-o", default="featuremaps-out/evaluate")
    p.set_defaults(run="evaluate")
    return top
