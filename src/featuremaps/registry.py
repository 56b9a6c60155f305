"""The registries: one record per CAM method and one per framework; everything else is derived from them.

Plain data, no framework and no numpy import, so ``featuremaps --help`` reads it at once. A CAM method's
function is named by ``"module:function"`` and imported only when a map is computed.

* :data:`CAM_METHODS`: method name -> :class:`CamMethod` (its function, what it needs, aliases, paper, a
  one-line description). :mod:`featuremaps.cam.methods` derives ``CAM_METHODS`` (name -> function),
  ``NEEDS_GRADIENTS``, ``NEEDS_HEAD`` and the aliases from it; the CLI derives its help; the package
  ``featuremaps.cam`` its exports; the README's method table is checked against it by a test.
  Adding a method: its function in ``cam/methods.py``, its record here, its test.
* :data:`FRAMEWORKS`: framework name -> :class:`Framework` (its model-file suffixes, the module of its
  adapter, the packages it needs and the pip extra that installs them, the packages its model classes come
  from). Model loading, recognising a model object (``frameworks.adapter``), ``--models`` checks, the help text
  and the "pip install 'featuremaps[extra]'" lines are derived from it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

#: what a CAM method needs beyond the target layer's activations: the class score's gradients with respect to
#: them, re-runs of the network from the target layer on (the head), forward passes of (masked) inputs, or nothing
Needs = Literal["gradients", "head", "forward", "nothing"]


@dataclass(frozen=True)
class CamMethod:
    """One CAM method. ``function`` is ``"module:name"``: a function ``(acts, grads, **context) -> (h, w)``,
    the context being ``x`` (the input), ``class_index``, ``predict`` (inputs -> probabilities),
    ``head_scores`` (target-layer activations -> class scores) and ``passes`` (progress), see
    :mod:`featuremaps.cam.methods`."""

    name: str
    function: str
    needs: Needs
    paper: str
    summary: str
    aliases: tuple[str, ...] = ()
    #: what the method runs the model on many times, as progress lines name it (Score-CAM: "masked inputs")
    passes: str | None = None

    def load(self):
        """The method's function (imports its module)."""
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def function_name(self) -> str:
        return self.function.partition(":")[2]


_M = "featuremaps.cam.methods"

#: method name -> record, in the order the help and the figures list them
CAM_METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod(
            "gradcam",
            f"{_M}:gradcam",
            "gradients",
            "Selvaraju et al., Grad-CAM, ICCV 2017",
            "channel weights are the spatially averaged gradients",
            aliases=("grad-cam",),
        ),
        CamMethod(
            "gradcam++",
            f"{_M}:gradcam_pp",
            "gradients",
            "Chattopadhay et al., Grad-CAM++, WACV 2018",
            "pixel-wise weights from second and third powers of the gradients, normalised as in the authors' code",
            aliases=("gradcampp", "grad-cam++"),
        ),
        CamMethod(
            "scorecam",
            f"{_M}:scorecam",
            "forward",
            "Wang et al., Score-CAM, CVPR Workshops 2020",
            "channel weights are the class probabilities of the input masked by each channel",
            aliases=("score-cam",),
            passes="masked inputs",
        ),
        CamMethod(
            "layercam",
            f"{_M}:layercam",
            "gradients",
            "Jiang et al., LayerCAM, IEEE TIP 2021",
            "positive gradients times activations, element-wise",
            aliases=("layer-cam",),
        ),
        CamMethod(
            "hirescam",
            f"{_M}:hirescam",
            "gradients",
            "Draelos & Carin, HiResCAM, arXiv:2011.08891, 2020",
            "gradients times activations, element-wise",
            aliases=("hires-cam",),
        ),
        CamMethod(
            "xgradcam",
            f"{_M}:xgradcam",
            "gradients",
            "Fu et al., Axiom-based Grad-CAM (XGrad-CAM), BMVC 2020",
            "channel weights sum(G A) / sum(A)",
            aliases=("xgrad-cam",),
        ),
        CamMethod(
            "eigencam",
            f"{_M}:eigencam",
            "nothing",
            "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020",
            "the activations' first principal component, class-agnostic",
            aliases=("eigen-cam",),
        ),
        CamMethod(
            "ablationcam",
            f"{_M}:ablationcam",
            "head",
            "Desai & Ramaswamy, Ablation-CAM, WACV 2020",
            "channel weights are the score drops with each channel set to zero",
            aliases=("ablation-cam",),
            passes="ablated copies",
        ),
    )
}


def cam_method_names() -> list[str]:
    """The CAM methods' names, in order (read when called, so a method registered later is listed)."""
    return list(CAM_METHODS)


def cam_aliases() -> dict[str, str]:
    """Every other spelling a method answers to (``grad-cam``) -> its name."""
    return {a: m.name for m in CAM_METHODS.values() for a in m.aliases}


# ---------------------------------------------------------------- frameworks
@dataclass(frozen=True)
class Framework:
    """One framework: the model files it loads, where its adapter lives, what to install for it."""

    name: str
    #: model-file suffixes, lower case
    suffixes: tuple[str, ...]
    #: the module with its adapter (``adapt``, ``wrap``; torch and ONNX also ``load_file``)
    module: str | None
    #: the top-level packages it imports, and the pip extra that installs them
    packages: tuple[str, ...]
    extra: str
    #: how the help names its files
    files: str
    #: the top-level packages whose classes are its models (``keras.Model`` -> ``keras``): how an object is recognised
    classes: tuple[str, ...]


FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        Framework(
            "keras",
            (".keras", ".h5", ".hdf5"),
            "featuremaps.frameworks.keras",
            ("tensorflow",),
            "tensorflow",
            ".keras/.h5",
            ("keras",),
        ),
        Framework(
            "torch",
            (".pt", ".pth", ".pts", ".ptl", ".pt2"),
            "featuremaps.frameworks.torch",
            ("torch", "torchvision"),
            "torch",
            ".pt (TorchScript, torch.export .pt2)",
            ("torch",),
        ),
        Framework(
            "onnx",
            (".onnx",),
            "featuremaps.frameworks.onnx",
            ("onnx", "onnxruntime"),
            "onnx",
            ".onnx",
            ("onnxruntime", "onnx"),
        ),
    )
}

#: optional packages other than the frameworks' -> the pyproject extra that installs them
OTHER_EXTRAS = {
    "fastapi": "explore", "uvicorn": "explore", "starlette": "explore",
    "ray": "ray", "pyarrow": "ray", "matplotlib": "plot",
}  # fmt: skip


def extras() -> dict[str, str]:
    """Every optional package -> the extra that installs it (``pip install 'featuremaps[extra]'``)."""
    return {**{p: f.extra for f in FRAMEWORKS.values() for p in f.packages}, **OTHER_EXTRAS}


def model_suffixes() -> tuple[str, ...]:
    """Every model-file suffix featuremaps loads, lower case."""
    return tuple(s for f in FRAMEWORKS.values() for s in f.suffixes)


def framework_of_file(path) -> str | None:
    """The framework whose files end like ``path`` (``net.onnx`` -> ``onnx``), else None."""
    name = str(path).lower()
    for f in FRAMEWORKS.values():
        if name.endswith(f.suffixes):
            return f.name
    return None


def model_files_text() -> str:
    """``.keras/.h5, .pt (TorchScript, ...) or .onnx``: the model files, as help and errors name them."""
    files = [f.files for f in FRAMEWORKS.values()]
    return ", ".join(files[:-1]) + " or " + files[-1]
