"""Models: keras.applications by name (weights none only: no downloads), .keras/.h5 files in safe mode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tomllib

from featuremaps import UserError
from featuremaps import load_model as load
from featuremaps.applications import APPLICATIONS, summary
from featuremaps.cli import build_parser
from featuremaps.frameworks.keras.loaders import weight_file_prefix
from featuremaps.models import LoadedModel, wrap


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny CNN as .keras and legacy .h5, a Lambda model, a grayscale model and a never-built one."""
    import keras

    d = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential(
        [
            keras.Input((12, 10, 3)),
            keras.layers.Conv2D(2, 3, name="c"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ],
        name="small",
    )
    cnn.save(d / "small.keras")
    cnn.save(d / "small.h5")
    lam = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Conv2D(2, 3)], name="lam"
    )
    lam.save(d / "lambda.keras")
    lam.save(d / "lambda.h5")
    gray = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)], name="gray")
    gray.save(d / "gray.keras")
    unbuilt = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.Conv2D(3, 3)], name="unbuilt")
    unbuilt.save(d / "unbuilt.keras")
    (d / "text.keras").write_text("not a model")
    (d / "text.h5").write_text("not a model")
    (d / "folder.keras").mkdir()
    return d, cnn


def test_keras_and_h5_files(saved):
    d, cnn = saved
    x = np.random.default_rng(0).random((1, 12, 10, 3)).astype(np.float32)
    for name in ("small.keras", "small.h5"):
        lm = load(str(d / name))
        assert isinstance(lm, LoadedModel) and lm.input_shape == (12, 10, 3) and lm.source == str(d / name)
        np.testing.assert_allclose(np.asarray(lm.model(x)), np.asarray(cnn(x)), rtol=1e-5, atol=1e-6)
        assert lm.preprocess.startswith("x / 255")
        np.testing.assert_allclose(lm.preprocess_fn(np.float32([255.0])), [1.0])


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_lambda_refused_without_unsafe(saved, name):
    d, _ = saved
    with pytest.raises(UserError, match="safe mode.*--unsafe") as e:
        load(str(d / name))
    assert "\n" not in str(e.value)
    assert load(str(d / name), unsafe=True).model is not None


def test_unsafe_is_not_advised_when_it_was_passed(saved, monkeypatch):
    """A file whose stored code fails to load under --unsafe (Keras' message mentions safe_mode): the line says
    what failed, not "pass --unsafe" again."""
    import keras

    d, _ = saved

    def fail(*_a, **_k):
        raise ValueError("Requested the deserialization of a Lambda layer whose bytecode is unreadable (safe_mode)")

    monkeypatch.setattr(keras.models, "load_model", fail)
    with pytest.raises(UserError) as e:
        load(str(d / "lambda.keras"), unsafe=True)
    assert "--unsafe" not in str(e.value) and "bytecode is unreadable" in str(e.value)


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing.keras", "does not exist"),
        ("text.keras", "not a Keras model"),
        ("text.h5", "not a Keras model"),
        ("folder.keras", "is a folder"),
        ("nosuch", "unknown model 'nosuch': use one of emotion, emotion-resnet, emotion-mobilenet, vgg16"),
    ],
)
def test_bad_model_specs(saved, name, match):
    d, _ = saved
    spec = name if name == "nosuch" else str(d / name)
    with pytest.raises(UserError, match=match) as e:
        load(spec)
    assert "\n" not in str(e.value)


def test_preprocess_modes(saved):
    d, _ = saved
    x = np.float32([[0.0, 127.5, 255.0]])
    assert load(str(d / "small.keras"), preprocess="raw").preprocess_fn(x).tolist() == x.tolist()
    np.testing.assert_allclose(load(str(d / "small.keras"), preprocess="symmetric").preprocess_fn(x), [[-1, 0, 1]])
    with pytest.raises(UserError, match="--preprocess 'odd'"):
        load(str(d / "small.keras"), preprocess="odd")


def test_resolve_input_shape(saved):
    d, _ = saved
    lm = load(str(d / "small.keras"))
    assert lm.resolve_input_shape((500, 300)) == (12, 10, 3)  # the model's own
    assert lm.resolve_input_shape((500, 300), (12, 10, 3)) == (12, 10, 3)
    with pytest.raises(UserError, match="conflicts with the model's input"):
        lm.resolve_input_shape((5, 5), (20, 20, 3))
    with pytest.raises(UserError, match="H,W,C"):
        lm.resolve_input_shape((5, 5), (20, 20))
    assert load(str(d / "gray.keras")).resolve_input_shape((40, 40)) == (8, 8, 1)
    free = load(str(d / "unbuilt.keras"))
    assert free.input_shape in ((None, None, None), ())
    assert free.resolve_input_shape((40, 30)) == (40, 32, 3)  # the image's size (at least 32)
    assert free.resolve_input_shape((2000, 1000)) == (512, 256, 3)  # capped at 512 on the long side
    assert free.resolve_input_shape((40, 30), (20, 24, 1)) == (20, 24, 1)
    with pytest.raises(UserError, match="4 channels"):
        free.resolve_input_shape((40, 30), (20, 24, 4))


@pytest.mark.slow
def test_named_application_random_weights():
    lm = load("mobilenet_v2", weights="none")  # no download
    assert lm.name == "mobilenetv2" and lm.input_shape == (224, 224, 3) and lm.classes is None
    assert "random" in lm.source and lm.preprocess == "keras.applications.mobilenet_v2.preprocess_input"
    x = np.float32([[0.0, 255.0]])
    np.testing.assert_allclose(lm.preprocess_fn(x), [[-1.0, 1.0]])
    assert x.tolist() == [[0.0, 255.0]]  # not modified in place


def test_every_keras_application_has_a_name_and_its_familys_preprocessing(capsys):
    """The registry against keras.applications itself (public API, no model built): every constructor, by its
    lower-case name, with the preprocess_input of the module that defines it; the names of before kept."""
    import keras

    ctors = {n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n))}
    assert sorted(c for c, _, _ in APPLICATIONS.values()) == sorted(ctors) and len(ctors) == 40
    for key, (ctor, module, side) in APPLICATIONS.items():
        assert key == ctor.lower()
        fn = getattr(keras.applications, ctor)
        assert fn.__module__.rsplit(".", 1)[-1] == module, (key, fn.__module__)  # its own family's preprocessing
        assert callable(getattr(keras.applications, module).preprocess_input)
        assert 32 <= side <= 600 and weight_file_prefix(key)
    old = "vgg16 vgg19 resnet50 resnet50v2 mobilenet mobilenetv2 inceptionv3 xception densenet121 efficientnetb0"
    assert set(old.split()) | {"convnexttiny"} <= set(APPLICATIONS)
    # --help and the unknown-model line name every one, shared beginnings once ("resnet50|101|152")
    assert summary() == (
        "vgg16, vgg19, resnet50|101|152, resnet50v2|101v2|152v2, inceptionv3, inceptionresnetv2, xception, "
        "mobilenet, mobilenetv2, mobilenetv3small|large, densenet121|169|201, nasnetmobile|large, "
        "efficientnetb0|1|2|3|4|5|6|7, efficientnetv2b0|b1|b2|b3|s|m|l, convnexttiny|small|base|large|xlarge"
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["layers", "--help"])
    assert summary() in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_named_application_by_new_name_and_unknown_name():
    lm = load("MobileNet_V3_Small", weights="none", random_head=False)
    assert lm.name == "mobilenetv3small" and lm.preprocess == "keras.applications.mobilenet_v3.preprocess_input"
    with pytest.raises(UserError, match=r"unknown model 'nasnet': .*nasnetmobile\|large"):
        load("nasnet")


def test_named_application_weights_file_missing(tmp_path):
    with pytest.raises(UserError, match="weights file .* does not exist"):
        load("mobilenetv2", weights=str(tmp_path / "w.weights.h5"))


def test_wrap_in_memory(tiny_sequential, tiny_unbuilt):
    lm = wrap(tiny_sequential, preprocess="raw")
    assert lm.input_shape == (16, 16, 3) and lm.source == "in-memory model"
    assert wrap(tiny_unbuilt).resolve_input_shape((64, 64)) == (64, 64, 3)


# ---------------------------------------------------------------- one name resolver, one framework registry
@pytest.mark.parametrize(
    "name, kind, key, framework",
    [
        ("VGG16", "application", "vgg16", "keras"),
        ("mobilenet_v3_small", "application", "mobilenetv3small", "keras"),
        ("fer2013", "emotion", "vgg16", "keras"),
        ("emotion-resnet", "emotion", "resnet", "keras"),
        ("torchvision:ResNet18", "torchvision", "ResNet18", "torch"),
        ("net.PT2", "file", "net.PT2", "torch"),
        ("net.onnx", "file", "net.onnx", "onnx"),
        ("net.h5", "file", "net.h5", "keras"),
    ],
)
def test_one_reading_of_a_model_name(name, kind, key, framework):
    """models.load, compare --models and explore --models read a name the same way (models.resolve_name)."""
    from featuremaps.models import ModelName, resolve_name

    assert resolve_name(name) == ModelName(kind, key, framework)


def test_compare_models_reads_names_as_model_does(tmp_path):
    from featuremaps.compare import check_model_names

    f = tmp_path / "net.pt2"
    f.write_bytes(b"")
    assert check_model_names(f"fer2013, MobileNet_V2,torchvision:resnet18,{f}") == [
        "fer2013",
        "MobileNet_V2",
        "torchvision:resnet18",
        str(f),
    ]
    with pytest.raises(UserError, match=r"unknown model 'vgg17': use one of emotion.*\(in --models\)"):
        check_model_names("vgg16,vgg17")
    with pytest.raises(UserError, match="model file .*gone.onnx in --models does not exist"):
        check_model_names(str(tmp_path / "gone.onnx"))


def test_framework_registry_is_the_one_list_of_suffixes_and_extras(capsys):
    from featuremaps import registry

    assert registry.framework_of_file("a/B.Keras") == "keras" and registry.framework_of_file("x.pth") == "torch"
    assert registry.framework_of_file("x.onnx") == "onnx" and registry.framework_of_file("x.png") is None
    assert set(registry.model_suffixes()) >= {".keras", ".h5", ".pt", ".pt2", ".onnx"}
    extras = registry.extras()
    assert extras["onnxruntime"] == "onnx" and extras["torchvision"] == "torch" and extras["uvicorn"] == "explore"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["optional-dependencies"]
    for package, extra in extras.items():  # each "pip install 'featuremaps[extra]'" line installs the package
        if package != "starlette":  # (starlette comes with fastapi)
            assert any(re.match(rf"{package}\b", r) for r in declared[extra]), (package, extra)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["show", "--help"])
    show_help = " ".join(capsys.readouterr().out.split())
    for f in registry.FRAMEWORKS.values():  # every framework's files are named in --model's help
        assert f.files in show_help, f.name
