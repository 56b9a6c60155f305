"""The Keras loaders: the emotion models (built, given the shipped or a user's weights), keras.applications models
by name (ImageNet weights from Keras' cache or its download host) and ``.keras``/``.h5`` files, each as a
:class:`~featuremaps.loaded.LoadedModel` with its preprocessing.

:func:`featuremaps.models.load` reads the name (:func:`featuremaps.models.resolve_name`) and imports this module
only for a Keras model. Named keras.applications models use their own ``preprocess_input`` (VGG16: caffe-style BGR
mean subtraction, MobileNetV2: [-1, 1], ...); files default to [0, 1] scaling, changed with ``--preprocess``.
Files are loaded with Keras' safe mode: no code stored in a file runs unless the user passes ``--unsafe``.
"""

from __future__ import annotations

import json
import os
import socket
import zipfile
from pathlib import Path

import keras
import numpy as np

from featuremaps.applications import APPLICATIONS
from featuremaps.emotion.model import build_emotion_model, load_emotion_model, load_weights_npz
from featuremaps.emotion.shipped import ARCHS, EMOTIONS, INPUT_SHAPE
from featuremaps.errors import UserError
from featuremaps.loaded import PREPROCESS_MODES, LoadedModel, preprocess_fn


def load_emotion(weights, preprocess, arch: str = "vgg16") -> LoadedModel:

    title = {"vgg16": "VGG-16", "resnet": "ResNet-18", "mobilenet": "MobileNetV2"}[arch]
    if weights in (None, "default"):
        model, src = load_emotion_model(arch), f"featuremaps bundled FER2013 {title}"
        side = model.inputs[0].shape[1]
        if side != INPUT_SHAPE[0]:  # shipped from a --crop run: it sees the face's centre
            src += f" ({side}x{side} centre crop of the {INPUT_SHAPE[0]}x{INPUT_SHAPE[1]} face)"
    elif weights == "none":
        model, src = build_emotion_model(arch), f"FER2013 {title} architecture, random weights"
    else:
        model = build_emotion_model(arch)
        if str(weights).endswith(".npz") and Path(weights).is_file() and not zipfile.is_zipfile(weights):
            raise UserError(f"{weights} is not an .npz file (not a zip archive); pass weights saved by featuremaps")
        try:
            if str(weights).endswith(".npz"):
                load_weights_npz(model, weights)
            else:
                model.load_weights(weights)
        except Exception as e:
            raise UserError(
                f"cannot load weights {weights} into the emotion model ({e}); pass a file saved from it"
            ) from None
        src = f"FER2013 {title} with weights {weights}"
    mode = preprocess or "unit"
    return LoadedModel(
        model,
        f"emotion_{arch}",
        src,
        PREPROCESS_MODES[mode] if mode in PREPROCESS_MODES else mode,
        preprocess_fn(mode),
        tuple(model.inputs[0].shape[1:]),
        list(EMOTIONS),
        True,
        weights == "none",
    )


def load_application(key, weights, preprocess, random_head: bool = True) -> LoadedModel:

    ctor_name, module, side = APPLICATIONS[key]
    ctor = getattr(keras.applications, ctor_name)
    w = "imagenet" if weights in (None, "imagenet", "default") else weights
    file = None
    if w == "none":
        w = None
    elif w != "imagenet":
        file, w = Path(w), None
        if not file.is_file():
            raise UserError(f"weights file {file} does not exist; pass --weights imagenet, none or a file")
    headless = w is None and file is None and not random_head
    if w == "imagenet" and not imagenet_cached(key) and not reachable(WEIGHTS_HOST):
        # fail before building the model (VGG16's head alone is 124 M parameters) with the URL to fetch
        raise UserError(
            f"ImageNet weights for {key} are not in {keras_models_dir()} and {WEIGHTS_URL} cannot be reached; "
            "pass --weights none (random) or --weights FILE, or connect once to download them"
        )
    try:
        if headless:
            model = ctor(weights=w, include_top=False, input_shape=(side, side, 3))
        else:
            model = ctor(weights=w)
    except Exception as e:  # download failures come as many types
        raise UserError(
            f"could not get ImageNet weights for {key} ({type(e).__name__}: {str(e)[:80]}); "
            "with no internet pass --weights none (random) or --weights FILE"
        ) from None
    if file is not None:
        try:
            model.load_weights(file)
        except Exception as e:
            raise UserError(f"cannot load {file} into {key} ({str(e)[:100]}); pass weights saved from {key}") from None
    if preprocess:
        fn, desc = preprocess_fn(preprocess), PREPROCESS_MODES[preprocess]
    else:
        pre = getattr(keras.applications, module).preprocess_input
        fn = lambda x: pre(np.array(x, dtype=np.float32))  # noqa: E731 (copy: some modify in place)
        desc = f"keras.applications.{module}.preprocess_input"
    classes = None
    if w == "imagenet":
        classes = imagenet_classes()
    source = f"keras.applications.{ctor_name} ({'ImageNet' if w == 'imagenet' else file or 'random'} weights)"
    if headless:
        source += ", without its classifier head (random weights: no meaningful prediction)"
    random = w is None and file is None
    return LoadedModel(model, key, source, desc, fn, tuple(model.inputs[0].shape[1:]), classes, False, random)


#: Where keras.applications downloads ImageNet weights from.
WEIGHTS_HOST = "storage.googleapis.com"
WEIGHTS_URL = f"https://{WEIGHTS_HOST}/tensorflow/keras-applications/"
#: How each model's cached weight file begins in ~/.keras/models (Keras' file names), where it is not the
#: model's name followed by ``_weights`` (ResNet, DenseNet) - see :func:`weight_file_prefix`.
WEIGHT_FILES = {
    "mobilenet": "mobilenet_1_0_224",
    "mobilenetv2": "mobilenet_v2_weights",
    "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0",
    "mobilenetv3large": "weights_mobilenet_v3_large_224_1.0",
    "inceptionv3": "inception_v3_weights",
    "inceptionresnetv2": "inception_resnet_v2_weights",
    "nasnetmobile": "NASNet-mobile",
    "nasnetlarge": "NASNet-large",
}


def weight_file_prefix(key: str) -> str:
    if key in WEIGHT_FILES:
        return WEIGHT_FILES[key]
    if key.startswith("efficientnetv2"):
        return f"efficientnetv2-{key[len('efficientnetv2') :]}"  # efficientnetv2-b0.h5, efficientnetv2-s.h5
    if key.startswith("efficientnet"):
        return key  # efficientnetb0.h5
    if key.startswith("convnext"):
        return f"convnext_{key[len('convnext') :]}"  # convnext_tiny.h5
    return f"{key}_weights"  # vgg16_weights_tf_dim_ordering_tf_kernels.h5, resnet101v2_weights_..., xception_...


def keras_models_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_cached(key: str) -> bool:
    """A weight file for ``key`` already in Keras' cache (then nothing is downloaded)."""
    prefix = weight_file_prefix(key)
    try:
        return any(p.name.startswith(prefix) and p.stat().st_size > 0 for p in keras_models_dir().iterdir())
    except OSError:
        return False


def reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host``:443 accepts a connection (no data is sent)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def imagenet_classes() -> list[str] | None:
    """ImageNet class names from Keras' cached index file, if it was ever downloaded (no download here)."""
    p = keras_models_dir() / "imagenet_class_index.json"
    try:
        idx = json.loads(p.read_text())
        return [idx[str(i)][1] for i in range(len(idx))]
    except (OSError, ValueError, KeyError):
        return None


def load_file(path: Path, unsafe: bool, preprocess: str, classes) -> LoadedModel:

    if not path.exists():
        raise UserError(f"model file {path} does not exist; check the path or use a model name like vgg16")
    if path.is_dir():
        raise UserError(
            f"{path} is a folder, not a model file; "
            "TF SavedModel folders are not Keras 3 models, "
            "re-save it with model.save('model.keras')"
        )
    problem = keras_file_problem(path)
    if problem:
        raise UserError(f"{path} {problem}")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if not unsafe and ("safe_mode" in str(e) or "unsafe" in str(e).lower()):  # never advise what was passed
            raise UserError(
                f"{path} contains code (e.g. a Lambda layer) that safe mode will not run; "
                "pass --unsafe only if you trust the file"
            ) from None
        raise UserError(
            f"{path} is not a Keras model file Keras can load ({msg}); pass a .keras or .h5 file saved with model.save"
        ) from None
    if not isinstance(model, keras.Model):
        raise UserError(f"{path} holds a {type(model).__name__}, not a Keras model")
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, ValueError, IndexError):
        shape = (None, None, None)
    _check_classes(model, classes)
    arch = emotion_arch(model)
    if arch is not None:  # written by `featuremaps train`: faces in, the 7 emotions out
        return LoadedModel(
            model,
            model.name,
            f"{path} (FER2013 emotion {arch}, {shape[0]}x{shape[1]} faces)",
            PREPROCESS_MODES.get(preprocess, preprocess),
            preprocess_fn(preprocess),
            shape,
            classes or list(EMOTIONS),
            True,
        )
    return LoadedModel(
        model,
        model.name,
        str(path),
        PREPROCESS_MODES.get(preprocess, preprocess),
        preprocess_fn(preprocess),
        shape,
        classes,
    )


def emotion_arch(model) -> str | None:
    """The architecture of an emotion model ``featuremaps train`` wrote (``vgg16``, ``resnet``, ``mobilenet``),
    or None for any other model. Recognised as the builders make it: named ``emotion_<arch>``, a square
    grayscale input of 16-48 px (48, or ``--crop SIDE``) and one output per emotion."""
    arch = str(getattr(model, "name", "")).removeprefix("emotion_")
    try:
        h, w, c = tuple(model.inputs[0].shape[1:])
        n_out = int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if arch not in ARCHS or c != 1 or n_out != len(EMOTIONS) or h != w or not (16 <= (h or 0) <= INPUT_SHAPE[0]):
        return None
    return arch


def keras_file_problem(path: Path) -> str | None:
    """What is wrong with a ``.keras`` file that Keras would call "File not found" (it is not a zip archive),
    said with its fix; None where there is nothing to say before Keras reads it."""
    if Path(path).suffix.lower() != ".keras" or zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as fh:
        if fh.read(8) == b"\x89HDF\r\n\x1a\n":
            return "is an HDF5 (legacy .h5) model named .keras; rename it to .h5"
    return "is not a Keras model file (a .keras file is a zip archive); pass a .keras or .h5 file saved with model.save"


def _check_classes(model, classes) -> None:
    """``--classes`` must name every output: a wrong count is an error, not silently ignored."""
    if not classes:
        return
    try:
        n = int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return
    if len(classes) != n:
        raise UserError(f"--classes names {len(classes)} classes but the model has {n} outputs; give {n} names")
