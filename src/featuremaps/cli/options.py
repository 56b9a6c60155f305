"""The command line's options: one parser per command, with help text, defaults and examples.

Building the parser imports no deep-learning framework, so ``featuremaps --help`` answers at once. Each
command's parser names the module of :mod:`featuremaps.cli` that runs it (``run="show"`` ->
``featuremaps.cli.show.run``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from pathlib import Path

from featuremaps import __version__, keras_backend, registry
from featuremaps.applications import summary
from featuremaps.cpu import has_bf16
from featuremaps.errors import UserError

_EXAMPLES = """examples:
  featuremaps show examples/astronaut.png                 # a face through the bundled emotion model
  featuremaps show cat.png --model vgg16 --weights none --layers C1-C5 --select top-mean
  featuremaps show photos/ --model resnet50 --weights none --norm layer --cmap magma
  featuremaps layers vgg16                                # list conv layers as C1..Cn
  featuremaps show cat.png --model torchvision:resnet18 --weights none   # PyTorch (also my_net.pt, net.onnx)
  featuremaps cam examples/astronaut.png --all-classes    # Grad-CAM for each emotion
  featuremaps report photos/ --out report.html            # one self-contained HTML page
  featuremaps explore examples/                           # browse every layer and channel in the browser
  featuremaps patterns --layers C3 --channels F1-F8       # what 8 channels look for (feature visualization)
  featuremaps train --data fer2013.tar.gz --epochs 30     # train the emotion model

exit status: 0 everything done; 1 some images were skipped (each named in a warning), the rest done;
2 nothing could be done (bad option, model or input; one 'featuremaps: error:' line); 130 interrupted.
Options shared by all commands: --model, --weights (named ImageNet models only), --method (CAM methods:
{methods}),
--split, --limit (images in total), --out (a folder; report: an .html file). Channels are F1..Fk (1-based),
conv layers C1..Cn. Without internet pass --weights none (random) to the ImageNet models.
Models by name: emotion, every keras.applications model in lower case (vgg16, resnet152v2, mobilenetv3small,
nasnetmobile, efficientnetv2s, convnexttiny, ...: all 40 in 'featuremaps layers --help'), torchvision:NAME.
"""


def cam_names() -> str:
    """``gradcam, gradcam++, ...``: the CAM methods ``--method`` takes, from the registry
    (:data:`featuremaps.registry.CAM_METHODS`: plain data, so ``--help`` imports no numpy or Keras)."""
    return ", ".join(registry.cam_method_names())


def cam_methods_list() -> str:
    """The end of ``featuremaps cam --help``: each method, what it computes, what it needs, its paper."""
    needs = {"gradients": "gradients", "head": "re-runs from the layer", "forward": "forward passes", "nothing": None}
    lines = ["methods (needs; paper):"]
    for m in registry.CAM_METHODS.values():
        what = f"{m.summary} ({needs[m.needs] or 'no gradients'}; {m.paper})"
        lines += textwrap.wrap(
            what, 100, initial_indent=f"  {m.name:<13}", subsequent_indent=" " * 15, break_on_hyphens=False
        )
    return "\n".join(lines)


def cam_methods_help() -> str:
    """``--method``'s help: the methods, and those that need no gradients (the ones ONNX models can do)."""
    free = [m.name for m in registry.CAM_METHODS.values() if m.needs != "gradients"]
    return f"comma list of {cam_names()}; without gradients (ONNX models): {', '.join(free)}"


#: A few examples per command, shown at the end of ``featuremaps COMMAND --help``.
COMMAND_EXAMPLES = {
    "patterns": """examples:
  featuremaps patterns --layers C3 --channels F1-F8       # what 8 channels of the emotion model look for
  featuremaps patterns --layers C8 --data fer2013 --kernels   # with FER2013 exemplars; C1's filters
  featuremaps patterns --class happy,surprise             # what the network thinks happy looks like
  featuremaps patterns --layers C8 --channels F388,F439 --images 3   # 3 different images per channel
  featuremaps patterns vgg16 --weights none --layers block5_conv3 --channels F1-F4 --steps 64""",
    "explore": """examples:
  featuremaps explore examples/                          # the bundled emotion model, the example photos
  featuremaps explore --model vgg16 --weights none cat.png --no-browser
  featuremaps explore --model my_net.keras --port 8765
  featuremaps explore --model emotion                    # then "camera" in the page: your face, live
  featuremaps explore examples/ --models emotion,vgg16 --weights none   # two models side by side
  featuremaps explore cat.png --model torchvision:resnet18 --weights none
  featuremaps explore cat.png --model net.onnx --input-shape 224,224,3   # an ONNX file with a free size
""",
    "show": """examples:
  featuremaps show examples/astronaut.png                 # a face through the bundled emotion model
  featuremaps show cat.png --model vgg16 --weights none --layers C1-C5 --select top-mean
  featuremaps show photos/ --model resnet50 --weights none --norm layer --cmap magma""",
    "layers": """examples:
  featuremaps layers                                      # the bundled emotion model
  featuremaps layers vgg16
  featuremaps layers my_model.keras --input-shape 64,64,3""",
    "cam": """examples:
  featuremaps cam examples/astronaut.png                  # Grad-CAM for the predicted emotion
  featuremaps cam examples/astronaut.png --all-classes --method gradcam,scorecam
  featuremaps cam cat.png --model vgg16 --weights none --all-classes --top-classes 5""",
    "report": """examples:
  featuremaps report examples/ --out report.html         # one self-contained HTML page
  featuremaps report photos/ --model mobilenetv2 --weights none --method none --out r.html""",
    "compare": """examples:
  featuremaps compare cat.png --models vgg16,resnet50 --weights none
  featuremaps compare examples/astronaut.png --models emotion,vgg16 --weights none --align resolution""",
    "compare-classes": """examples:
  featuremaps compare-classes --data fer2013.tar.gz       # one PrivateTest face per emotion
  FEATUREMAPS_FER2013=fer2013.tar.gz featuremaps compare-classes --layers C1-C3
  featuremaps compare-classes angry.png happy.png sad.png""",
    "atlas": """examples:
  featuremaps atlas --data fer2013.tar.gz --limit 700
  featuremaps atlas --data photos_by_class/ --model mobilenetv2 --weights none --out atlas
  featuremaps atlas --data photos_by_class/ --model torchvision:resnet18 --weights none
  featuremaps atlas --data train.parquet --engine ray --address auto --gpus-per-actor 1""",
    "train": """examples:
  featuremaps train --data fer2013.tar.gz --epochs 30
  featuremaps train --data fer2013.tar.gz --out runs/emotion --resume
  featuremaps train --data fer2013.tar.gz --width 0.25 --limit-per-class 200 --epochs 2   # a quick try
  featuremaps train --data fer2013.tar.gz --arch resnet --crop 40 --batch-size 128 --lr 0.1 --warmup 2 \\
      --ema 0.998 --label-smoothing 0.1 --epochs 36 --out runs/resnet   # the shipped emotion-resnet's recipe
  featuremaps train --data fer2013.tar.gz --init bundled --crop 44 --label-smoothing 0.1""",
    "evaluate": """examples:
  featuremaps evaluate --data fer2013.tar.gz
  featuremaps evaluate runs/emotion/best.keras --data fer2013.tar.gz --split PrivateTest --tta""",
}

#: Every keras.applications model by name, a family at a time (``resnet50|101|152``: resnet50, resnet101, ...)
MODEL_NAMES = summary()

#: Environment variable naming the FER2013 data (folder, CSV or archive) when --data is not given.
FER_ENV = "FEATUREMAPS_FER2013"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UserError(f"{message} (see '{self.prog} --help')")

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if getattr(ns, "run", None) == "train" and getattr(ns, "backend", None):  # before Keras is imported
            resumed = _run_backend(ns.out) if getattr(ns, "resume", False) else None
            if not (ns.backend == "auto" and not resumed and probe_may_choose()):  # else: train's speed probe
                ns.backend = train_backend(ns.backend, ns.arch or "vgg16", resumed)
        return ns, extras


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written; every option's help ends with its default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "%(default)" in h or "default" in h.lower() or action.default in (None, False, argparse.SUPPRESS):
            return h
        if action.nargs == 0:  # a flag (--no-layer-pngs): its default is not giving it, never "(default: True)"
            return h
        return h + " (default: %(default)s)"


def _int_list(s: str) -> tuple[int, ...]:
    try:
        v = tuple(int(v) for v in s.replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not H,W,C like 224,224,3") from None
    if any(d < 1 or d > 8192 for d in v):
        raise argparse.ArgumentTypeError(f"'{s}': each size must be 1-8192 (like 224,224,3)")
    return v


def _gpus(s: str) -> float:
    """``--gpus-per-actor``: a finite number of GPUs, 0 or more (Ray takes fractions: 0.5 shares a GPU)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a number of GPUs (e.g. 1 or 0.5)") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{s} GPUs per actor: give 0 or more, e.g. 1 or 0.5")
    return v


def _bounded(lo: int, hi: int):
    """A whole number in [lo, hi] (every size option is capped: a figure never needs 100 GiB)."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{s}' is not a whole number") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{v} must be at least {lo}")
        if v > hi:
            raise argparse.ArgumentTypeError(f"{v} is over the limit of {hi}")
        return v

    parse.__name__ = "number"
    return parse


def _positive(s: str) -> int:
    return _bounded(1, 2**31)(s)


def _real(lo: float, hi: float, zero_ok: bool = False):
    """A finite number in (lo, hi], or [0, hi] with ``zero_ok`` (0 turns the option off); nan, inf and
    negative learning rates are refused."""

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
        if not ((0 <= v if zero_ok else lo < v) and v <= hi):
            want = f"from 0 to {hi:g}" if zero_ok else f"above {lo:g} and at most {hi:g}"
            raise argparse.ArgumentTypeError(f"{s} must be a number {want}")
        return v

    parse.__name__ = "number"
    return parse


def _sub(sub, name: str, help: str):
    return sub.add_parser(name, help=help, description=help, epilog=COMMAND_EXAMPLES[name], formatter_class=_Formatter)


TRAIN_BACKENDS = ("auto", "tensorflow", "torch", "jax")


def fastest_backend(arch: str) -> str:
    """``train --backend auto`` where nothing was probed (a short run): the fastest measured for ``arch`` on this
    kind of CPU (BENCHMARKS.md). The VGG-16 in float32: torch on an AVX2-only EPYC (18.0 against 11.7 img/s),
    TensorFlow where the CPU computes in bfloat16 (Zen 4: 45.1 against 39.4; Xeon with AMX, fused BN: 45.3
    against 31.4). Everything else: TensorFlow."""
    return "torch" if arch == "vgg16" and not has_bf16() else "tensorflow"


def _run_backend(out) -> str | None:
    """The backend a training run in ``out`` was started on (its ``state.json`` recipe), if it says."""
    try:
        backend = json.loads((Path(out) / "state.json").read_text())["recipe"]["backend"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return backend if isinstance(backend, str) else None


def probe_may_choose() -> bool:
    """Whether ``train --backend auto`` is left to the speed probe (:mod:`featuremaps.emotion.probe`): not when
    KERAS_BACKEND names the backend or Keras is imported already (its backend stays)."""
    return not os.environ.get("KERAS_BACKEND") and "keras" not in sys.modules


def train_backend(value: str, arch: str = "vgg16", resumed: str | None = None) -> str:
    """``train --backend``: the Keras backend to train on, set in the environment before Keras is imported.

    ``auto`` (default): KERAS_BACKEND if the user set it, else the backend of the run being resumed
    (``resumed``: its optimizer state belongs to that backend), else the fastest measured for ``arch`` on this
    kind of CPU when it is installed (:func:`fastest_backend`), else TensorFlow. Runs when the arguments are
    parsed, which is before the CLI imports Keras; once Keras is imported (in-process callers) its backend
    stays, and asking for another is a one-line error.
    """
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if value not in ("auto", current):
            raise UserError(
                f"--backend {value}: Keras already runs on {current} in this process; "
                f"start a new one with KERAS_BACKEND={value}"
            )
        return current
    if value == "auto":
        if os.environ.get("KERAS_BACKEND"):
            return os.environ["KERAS_BACKEND"]
        if resumed and keras_backend.installed(resumed):
            os.environ["KERAS_BACKEND"] = resumed
            return resumed
        value = fastest_backend(arch)
        if not keras_backend.installed(value):
            value = "tensorflow"
    elif not keras_backend.installed(value):
        raise UserError(f"--backend {value}: {value} is not installed; pip install {value} or pick another backend")
    os.environ["KERAS_BACKEND"] = value
    return value


def _model_args(p, default_help="the bundled emotion model (vgg16 if absent)"):
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help=f"model name: emotion, a keras.applications model ({MODEL_NAMES}), torchvision:NAME, or a "
        f"{registry.model_files_text()} file; default {default_help}",
    )
    _weights_arg(p)
    p.add_argument("--unsafe", action="store_true", help="allow code stored in a model file (Lambda layers) to run")
    p.add_argument(
        "--preprocess",
        default=None,
        choices=["unit", "raw", "symmetric", "caffe", "torch"],
        help="scaling for model files (default unit: [0, 1]); named models use their own",
    )
    p.add_argument(
        "--classes", default=None, help="comma-separated class names for a model file's outputs (default: none)"
    )


#: ``--weights`` for one model (show, cam, report, atlas, explore --model, compare-classes)
WEIGHTS_ONE = (
    "imagenet (default for the keras.applications and torchvision models; downloaded once), none (random "
    "weights, offline) or a weights file; the bundled emotion model keeps its trained weights unless given none "
    "or an emotion weights file"
)
#: ``--weights`` for several models side by side (compare, explore --models)
WEIGHTS_COMPARED = (
    "for the keras.applications and torchvision models: imagenet (default; downloaded once), none (random, "
    "offline) or a weights file; the bundled emotion model always keeps its trained weights and a model file "
    "its own"
)


def _weights_arg(p, help: str = WEIGHTS_ONE):
    p.add_argument("--weights", default=None, help=help)


def _image_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE|FOLDER", help="image files and/or folders of images")
    _input_shape_arg(p)
    p.add_argument(
        "--resize",
        default="crop",
        choices=["crop", "stretch", "pad"],
        help="how to fit an image to the model input (default crop: centre crop, aspect kept)",
    )
    p.add_argument(
        "--no-face-crop",
        dest="face_crop",
        action="store_false",
        default=None,
        help="feed the whole image to the emotion model instead of the largest face (default: crop the face)",
    )
    _max_pixels_arg(p)


def _input_shape_arg(p, what: str = "models that do not fix it"):
    p.add_argument(
        "--input-shape",
        type=_int_list,
        default=None,
        metavar="H,W,C",
        help=f"input shape for {what}, e.g. an ONNX file with a dynamic size (default: the model's, else the "
        "image's, at most 512)",
    )


def _max_pixels_arg(p):
    p.add_argument(
        "--max-pixels",
        type=_bounded(1, 2**31),
        default=None,
        help="refuse larger images (default 64000000, i.e. 64 Mpixels; Pillow's own limit, about 179 Mpixels, "
        "cannot be raised)",
    )


def _precision_arg(p, help: str) -> None:
    """``--precision auto|float32|bfloat16`` (patterns, train), with the command's own ``help``."""
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"], help=help)


def _out_arg(p, default: str, what: str):
    p.add_argument("--out", "-o", default=default, metavar="FOLDER", help=what)


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="featuremaps",
        description="See what a convolutional network sees: feature maps of "
        "every conv layer, class activation maps and comparisons, for Keras, PyTorch and ONNX CNNs.",
        epilog=_EXAMPLES.format(methods=cam_names()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"featuremaps {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _sub(sub, "show", "draw the feature maps of each conv layer")
    _image_args(p)
    _model_args(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--maps", type=_bounded(1, 1024), default=16, help="maps per layer")
    p.add_argument(
        "--select",
        default="first",
        help="first | top-mean | top-max | channels as F-numbers (F1,F6: 1-based, as figures label them) "
        "or 0-based indices (0,5)",
    )
    p.add_argument("--norm", default="map", choices=["map", "layer", "global"], help="normalisation")
    p.add_argument("--cmap", default="viridis", help="colormap: viridis, magma, gray, inferno, turbo, ...")
    p.add_argument("--overlay", action="store_true", help="blend each map over the input image")
    p.add_argument("--cell", type=_bounded(8, 1024), default=112, help="overview cell size in pixels")
    p.add_argument(
        "--no-layer-pngs",
        dest="layer_pngs",
        action="store_false",
        help="write only the overview (default: the overview and one PNG per layer)",
    )
    _out_arg(p, "featuremaps-out", "parent folder: each image gets its own folder FOLDER/<image name>/")
    p.set_defaults(run="show")

    p = _sub(sub, "layers", "list a model's conv layers as C1..Cn")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help=f"model name (emotion, {MODEL_NAMES}, torchvision:NAME) or file (default: the emotion model)",
    )
    p.add_argument("--weights", default="none", help="weights to load (none: the table needs no weights)")
    p.add_argument("--unsafe", action="store_true", help="allow code stored in a model file to run")
    p.add_argument(
        "--input-shape", type=_int_list, default=None, metavar="H,W,C", help="input shape (default: the model's)"
    )
    p.set_defaults(run="layers")

    p = _sub(sub, "cam", f"class activation maps: {cam_names()}")
    p.epilog = f"{cam_methods_list()}\n\n{p.epilog}"
    _image_args(p)
    _model_args(p)
    p.add_argument(
        "--method",
        default="gradcam",
        help=cam_methods_help(),
    )
    p.add_argument("--layer", default=None, help="target conv layer (name or C-number; default the last conv)")
    p.add_argument("--class", dest="target_class", default=None, help="class name or index (default: predicted)")
    p.add_argument(
        "--all-classes", action="store_true", help="one map per class, side by side (the --top-classes most probable)"
    )
    p.add_argument(
        "--top-classes",
        type=_bounded(1, 20),
        default=10,
        metavar="K",
        help="with --all-classes on a model of more than K classes: the K most probable",
    )
    p.add_argument("--cmap", default="jet", help="heatmap colormap")
    _out_arg(p, "featuremaps-out", "parent folder: each image's maps go to FOLDER/<image name>/cam/")
    p.set_defaults(run="cam")

    p = _sub(sub, "report", "one self-contained HTML report of maps, statistics and CAMs")
    _image_args(p)
    _model_args(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--maps", type=_bounded(1, 1024), default=16, help="maps per layer")
    p.add_argument("--cmap", default="viridis", help="feature-map colormap")
    p.add_argument(
        "--method",
        default="gradcam",
        help=f"CAM methods, comma-separated ({cam_names()}), or none",
    )
    p.add_argument("--cam", default=None, help=argparse.SUPPRESS)  # deprecated alias of --method
    p.add_argument(
        "--max-mb",
        type=_real(0, 10_000),
        default=200,
        help="stop adding images once the page holds this many MB (the rest are named as skipped)",
    )
    p.add_argument("--out", "-o", default="report.html", metavar="FILE", help="the .html file to write")
    p.set_defaults(run="report")

    p = _sub(sub, "compare", "one image through several architectures, layers aligned")
    p.add_argument("image", metavar="IMAGE", help="one image file (compare takes a single image)")
    p.add_argument(
        "--models",
        default="vgg16,resnet50,mobilenetv2,inceptionv3",
        help="comma-separated models: names as --model takes them (emotion, keras.applications names, "
        f"torchvision:NAME) and {registry.model_files_text()} files, frameworks mixed",
    )
    _weights_arg(p, WEIGHTS_COMPARED)
    _input_shape_arg(p, "the models that do not fix it (the others keep theirs)")
    p.add_argument("--align", default="depth", choices=["depth", "resolution"], help="align layers by")
    p.add_argument("--rows", type=_bounded(1, 64), default=6, help="layers shown per model")
    p.add_argument("--maps", type=_bounded(1, 64), default=8, help="maps per layer and model")
    p.add_argument(
        "--norm",
        default="map",
        choices=["map", "layer", "shared", "global"],
        help="map: each map its own scale; layer: per layer; shared: one scale per row "
        "across models; global: one scale for all",
    )
    p.add_argument("--cmap", default="viridis", help="colormap")
    p.add_argument(
        "--no-face-crop",
        dest="face_crop",
        action="store_false",
        default=None,
        help="feed the whole image to the emotion model instead of the largest face (default: crop the face)",
    )
    p.add_argument("--unsafe", action="store_true", help="allow code stored in a model file (Lambda layers) to run")
    _max_pixels_arg(p)
    _out_arg(p, "featuremaps-out", "parent folder: writes FOLDER/compare_<image name>/")
    p.set_defaults(run="compare")

    p = _sub(sub, "compare-classes", "the same channels for one face per emotion, side by side")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="one image per class (default: PrivateTest faces)")
    p.add_argument(
        "--data",
        default=None,
        help=f"FER2013 folder, CSV or archive (default: the {FER_ENV} environment variable)",
    )
    _model_args(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--maps", type=_bounded(1, 64), default=8, help="maps per layer")
    p.add_argument(
        "--select",
        default="first",
        help="channels shown for every face: first | top-mean | top-max (ranked over all faces) | F-numbers like F1,F6",
    )
    p.add_argument("--cmap", default="viridis", help="colormap")
    _max_pixels_arg(p)
    _out_arg(p, "featuremaps-out", "parent folder: writes FOLDER/compare-classes/")
    p.set_defaults(run="compare_classes")

    p = _sub(sub, "atlas", "channel x class statistics and top images over a labelled dataset")
    p.add_argument(
        "--data",
        default=None,
        help=f"FER2013 folder, CSV or archive, ROOT/<class>/*.png, or a CSV/Parquet manifest (default: ${FER_ENV})",
    )
    _model_args(p)
    p.add_argument("--split", default="PrivateTest", help="dataset split")
    _input_shape_arg(p)
    p.add_argument("--layers", default="all", help="names, C-numbers (C3), ranges (C1-C5), globs or all")
    p.add_argument("--batch-size", type=_bounded(1, 4096), default=64, help="images per forward pass")
    p.add_argument("--limit", type=_positive, default=None, help="use at most this many images in total (default: all)")
    _out_arg(p, "featuremaps-out/atlas", "the atlas folder itself (index.html, atlas.npz, ...)")
    p.add_argument("--path-column", default="path", help="a manifest's image path/URI column")
    p.add_argument("--label-column", default="label", help="a manifest's label column")
    _max_pixels_arg(p)
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process; ray: a pool of Ray Data actors (pip install 'featuremaps[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="auto|ray://HOST:PORT",
        help="--engine ray: join this Ray cluster (default: start a local Ray with all cores for the command)",
    )
    p.add_argument("--actors", type=_positive, default=None, help="--engine ray: actors (default: one per CPU)")
    p.add_argument("--gpus-per-actor", type=_gpus, default=0.0, help="--engine ray: GPUs per actor, e.g. 1 or 0.5")
    p.set_defaults(run="atlas")

    p = _sub(sub, "patterns", "what a channel looks for: feature visualization, dataset exemplars, first-layer filters")
    p.add_argument(
        "model_arg", nargs="?", default=None, metavar="MODEL", help="the model (as --model; default the emotion model)"
    )
    _model_args(p)
    p.add_argument(
        "--layers", default=None, help="conv layers: names, C-numbers (C3), ranges (C1-C5) (default the last)"
    )
    p.add_argument(
        "--channels",
        default="F1-F16",
        help="F-numbers (F1-F16, F3,F7), or top / topN: the layer's 16 / N most active channels on --data",
    )
    p.add_argument(
        "--class",
        dest="target_class",
        default=None,
        metavar="NAME[,NAME]",
        help="class names or indices, comma-separated: the input the network scores highest for each (instead "
        "of channels)",
    )
    p.add_argument(
        "--objective",
        default="mean",
        choices=["mean", "neuron"],
        help="what a channel's image maximises: its spatial mean or its centre position (both before a fused ReLU)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR|fer2013",
        help=f"images for exemplars and --channels top: a folder, FER2013 (folder, CSV or archive), or fer2013 "
        f"(${FER_ENV}); required for ONNX models (exemplars only)",
    )
    p.add_argument("--split", default="PrivateTest", help="the FER2013 split of --data")
    p.add_argument("--limit", type=_positive, default=1000, help="images of --data scanned at most")
    p.add_argument("--exemplars", type=_bounded(0, 16), default=4, help="exemplars per channel")
    p.add_argument("--kernels", action="store_true", help="also draw the first conv layer's filters as images")
    p.add_argument("--steps", type=_bounded(1, 100_000), default=256, help="Adam steps (learning rate 0.05)")
    p.add_argument(
        "--images",
        type=int,
        default=1,
        metavar="N",
        help="images per channel (or class), 1-16, side by side; with 2 or more a diversity term pushes them apart",
    )
    p.add_argument(
        "--diversity",
        type=float,
        default=None,
        metavar="W",
        help="weight of the diversity term (minus the mean Gram cosine of a channel's images; default 10 with "
        "--images 2 or more, 0 = off)",
    )
    p.add_argument(
        "--seed", type=_bounded(0, 2**32 - 1), default=0, help="random seed (the same seed, the same images)"
    )
    p.add_argument(
        "--size", type=_bounded(16, 1024), default=None, help="image side for models of free input size (default 224)"
    )
    p.add_argument(
        "--no-face-crop",
        dest="face_crop",
        action="store_false",
        default=None,
        help="scan the whole images of --data with the emotion model (default: each photo's largest face, as show "
        "feeds it; a photo without a face is scanned whole)",
    )
    _precision_arg(
        p,
        "the optimisation's passes; auto: bfloat16 for Keras on TensorFlow on a CPU with bfloat16 arithmetic "
        "(AVX512-BF16, AMX; about 2x faster), else float32; final values are float32",
    )
    _out_arg(p, "featuremaps-out/patterns", "the folder itself (patterns.png, patterns.npz, manifest.json)")
    p.set_defaults(run="patterns")

    p = _sub(sub, "explore", "browse a CNN in the browser: every layer and channel, values, CAMs")
    p.add_argument("images", nargs="*", metavar="IMAGE|FOLDER", help="images to offer in the page (uploads work too)")
    _model_args(p)
    p.add_argument(
        "--models",
        default=None,
        help="several models in one page, compared side by side at layers aligned by depth (comma-separated, "
        "as in compare; the first is the main one; as in compare, the emotion model keeps its trained weights and "
        "--weights applies to the keras.applications and torchvision models); instead of --model",
    )
    _input_shape_arg(p)
    p.add_argument(
        "--no-face-crop",
        dest="face_crop",
        action="store_false",
        default=None,
        help="feed the whole image to the emotion model (default: the largest face; a photo without one is fed "
        "whole, with a note in the page)",
    )
    p.add_argument(
        "--port", type=_bounded(0, 65535), default=0, help="port to listen on, 0-65535 (default 0: a free one)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    p.add_argument("--cache-mb", type=_positive, default=512, help="activations kept in memory, MiB (default 512)")
    p.add_argument("--max-upload-mb", type=_positive, default=20, help="largest upload, MiB (default 20)")
    p.set_defaults(run="explore")

    p = _sub(sub, "train", "train a FER2013 emotion model: VGG-16, ResNet-18 or MobileNetV2 (checkpoints every epoch)")
    p.add_argument("--data", default=None, help=f"FER2013 folder, fer2013.csv or fer2013.tar.gz (default: ${FER_ENV})")
    p.add_argument(
        "--arch",
        default=None,
        choices=["vgg16", "resnet", "mobilenet"],
        help="network: vgg16 (the bundled model's), resnet (ResNet-18 style) or mobilenet (MobileNetV2 style) "
        "(default: vgg16; with --resume, the run's own)",
    )
    p.add_argument("--epochs", type=_bounded(1, 10_000), default=30, help="epochs to train")
    p.add_argument("--batch-size", type=_bounded(1, 4096), default=64, help="faces per step")
    p.add_argument("--lr", type=_real(0, 10), default=0.01, help="learning rate")
    p.add_argument(
        "--weight-decay",
        type=_real(0, 1, zero_ok=True),
        default=5e-4,
        help="SGD weight decay as torch applies it (L2 on conv/dense kernels, not BN or biases; 0: none)",
    )
    p.add_argument(
        "--warmup", type=_bounded(0, 1000), default=1, help="epochs of linear warm-up before the cosine decay to 0"
    )
    p.add_argument(
        "--ema",
        type=_real(0, 0.99999, zero_ok=True),
        default=0.0,
        help="momentum of an exponential moving average of the weights, validated and saved instead (e.g. 0.998; "
        "default 0: none)",
    )
    p.add_argument(
        "--label-smoothing",
        type=_real(0, 0.99, zero_ok=True),
        default=0.0,
        help="cross-entropy label smoothing, e.g. 0.1",
    )
    p.add_argument(
        "--crop",
        type=_positive,
        default=None,
        metavar="SIDE",
        help="train on random SIDExSIDE crops + flips (e.g. 44; the model takes SIDE px input, evaluated on the "
        "centre crop or ten-crop) instead of the affine + erasing augmentation (default: whole 48 px faces)",
    )
    _out_arg(p, "runs/emotion", "the run folder itself (checkpoints, log.csv, state.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument(
        "--init",
        default=None,
        metavar="bundled|FILE",
        help="start from trained weights (the bundled model or an emotion .npz/.keras) instead of random",
    )
    p.add_argument("--seed", type=_bounded(0, 2**32 - 1), default=0, help="random seed")
    p.add_argument(
        "--backend",
        default="auto",
        choices=TRAIN_BACKENDS,
        help="Keras backend: auto (default: $KERAS_BACKEND if set, else the run's own with --resume, else the "
        "fastest installed one by a speed probe, see --precision), tensorflow, torch or jax",
    )
    _precision_arg(
        p,
        "auto (default: with --backend auto, a probe of <= 60 s times a few training steps of each backend "
        "and precision the CPU runs natively and picks the fastest, cached per CPU and versions; float32 for "
        "short runs), float32, or bfloat16 mixed precision (only fast with AVX512-BF16/AMX)",
    )
    p.add_argument(
        "--maps-every",
        type=_bounded(0, 10_000),
        default=1,
        help="feature-map sheets every N epochs (0: off; default 1)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows/files (counted) instead of stopping")
    p.add_argument(
        "--limit-per-class",
        "--limit",
        dest="limit",
        type=_positive,
        default=None,
        help="at most this many faces per class and split (default: all; --limit is its old name)",
    )
    p.add_argument(
        "--width", type=_real(0, 4), default=1.0, help="filter-count multiplier (1 = VGG-16; <1 for quick tries)"
    )
    p.set_defaults(run="train")

    p = _sub(sub, "evaluate", "accuracy, per-class metrics and a confusion matrix on FER2013")
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="emotion (default), emotion-resnet, emotion-mobilenet, a .keras file or an .npz weights file",
    )
    p.add_argument("--data", default=None, help=f"FER2013 folder, fer2013.csv or fer2013.tar.gz (default: ${FER_ENV})")
    p.add_argument(
        "--split",
        "--splits",
        dest="splits",
        default="PublicTest,PrivateTest",
        help="split or comma-separated splits to evaluate (--splits is its old name)",
    )
    p.add_argument("--tta", action="store_true", help="test-time augmentation: flips and shifted crops")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows/files (counted) instead of stopping")
    _out_arg(p, "featuremaps-out/evaluate", "the folder itself (confusion_<split>.png, metrics.json)")
    p.set_defaults(run="evaluate")
    return top


def fer_data(args_data: str | None, option: str = "--data") -> str:
    """``--data``, else ``$FEATUREMAPS_FER2013``, else a one-line error saying how to name the data."""
    v = args_data or os.environ.get(FER_ENV)
    if not v:
        raise UserError(f"no FER2013 data given; pass {option} PATH (folder, CSV or .tar.gz) or set {FER_ENV}")
    return v
