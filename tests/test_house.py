"""The house's floors (issue 24): the ground floor imports no framework, every model goes through one protocol."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORK_MODULES = ("keras", "tensorflow", "jax", "torch", "onnxruntime")


def _loaded_after(code: str) -> list[str]:
    """The framework modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ground_floor_and_protocol_import_no_framework():
    code = "import featuremaps.maps, featuremaps.loaded, featuremaps.receptive, featuremaps.targets\n"
    code += "import featuremaps.frameworks"
    assert _loaded_after(code) == []


def _onnx_cnn(path) -> None:
    """A tiny ONNX classifier written with onnx.helper (no framework): Conv, Relu, global pool, Gemm."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 2)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_onnx_maps_import_no_keras_tensorflow_or_jax(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'featuremaps[onnx]')")
    path = tmp_path / "tiny.onnx"
    _onnx_cnn(path)
    code = (
        "import numpy as np, featuremaps as fm\n"
        f"maps = fm.extract({str(path)!r}, np.zeros((8, 8, 3), np.float32))\n"
        "assert maps['conv1'].shape == (8, 8, 4), maps['conv1'].shape"
    )
    assert [m for m in _loaded_after(code) if m in ("keras", "tensorflow", "jax")] == []


def test_products_import_no_framework():
    """The products and the CLI import no framework at their tops: a model's framework loads with the model."""
    code = (
        "import featuremaps.models, featuremaps.report, featuremaps.compare, featuremaps.atlas, featuremaps.cam_files\n"
    )
    code += "import featuremaps.pipeline, featuremaps.figure, featuremaps.compare_classes, featuremaps.emotion.data\n"
    code += "import featuremaps.cli, featuremaps.emotion, featuremaps.emotion.shipped"
    assert _loaded_after(code) == []


def test_report_compare_and_atlas_of_an_onnx_file_import_no_keras_tensorflow_or_jax(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'featuremaps[onnx]')")
    import numpy as np
    from PIL import Image

    path = tmp_path / "tiny.onnx"
    _onnx_cnn(path)
    rng = np.random.default_rng(0)
    img = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(img)
    for cls in ("cat", "dog"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "data" / cls / "0.png")
    runs = [
        ["report", str(img), "--model", str(path), "--method", "none", "--out", str(tmp_path / "r.html")],
        ["compare", str(img), "--models", str(path), "--rows", "1", "--maps", "1", "--out", str(tmp_path / "c")],
        ["atlas", "--data", str(tmp_path / "data"), "--model", str(path), "--out", str(tmp_path / "a")],
    ]
    code = f"from featuremaps.cli import main\nfor argv in {runs!r}:\n    assert main(argv) == 0, argv"
    assert [m for m in _loaded_after(code) if m in ("keras", "tensorflow", "jax")] == []


def test_the_only_import_cycle_is_the_registry_naming_its_methods():
    """tools/import_graph.py: no arrow runs back up but the registry's string naming ``cam.methods`` (plain data,
    resolved by ``cam.methods`` itself); a new import cycle fails here."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("import_graph", root / "tools" / "import_graph.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    mods = tool.modules(root / "src" / "featuremaps")
    edges = tool.arrows(mods)
    on_cycles = {e for e in edges if tool._on_cycle(e, edges)}
    assert on_cycles == {
        ("featuremaps.registry", "featuremaps.cam.methods"),
        ("featuremaps.cam.methods", "featuremaps.registry"),
    }
