"""ONNX models through ONNX Runtime: maps equal torch's, gradient-free CAMs, CLI and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'featuremaps[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'featuremaps[onnx]')")

from conftest import EXAMPLES, textbook_ablationcam  # noqa: E402

import featuremaps as fm  # noqa: E402
from featuremaps.cli import main  # noqa: E402


def _torch():
    return pytest.importorskip("torch", reason="the ONNX files of these tests are exported from PyTorch")


def _small_net():
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.bn = nn.BatchNorm2d(8)
            self.c = nn.Conv2d(8, 16, 3, stride=2)
            self.up = nn.ConvTranspose2d(16, 6, 2, stride=2)
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            x = torch.relu(self.a(x))
            x = self.bn(self.b(x))
            x = torch.relu(self.c(x))
            return self.fc(self.up(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def export(net, path, side=32, dynamic=False):
    torch = _torch()
    kw = {"input_names": ["input"], "output_names": ["logits"]}
    if dynamic:
        kw["dynamic_axes"] = {"input": {0: "n", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, side, side), str(path), dynamo=False, do_constant_folding=False, **kw)
    return path


def image(shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_torch_export_gives_the_same_maps_through_onnx_runtime(tmp_path):
    net = _small_net()
    path = export(net, tmp_path / "net.onnx")
    x = image()
    via_torch = fm.extract(net, x)
    for model in (path, str(path), ort.InferenceSession(str(path)), onnx.load(str(path))):
        via_onnx = fm.extract(model, x)
        assert [c.name for c in fm.conv_layers(model)] == ["a", "b", "c", "up"]
        for (name, a), (name2, b) in zip(via_torch.items(), via_onnx.items(), strict=True):
            assert name == name2 and a.shape == b.shape
            scale = float(np.abs(a).max())
            assert np.abs(a - b).max() / scale <= 1e-4, name


def test_nested_modules_keep_their_torch_names_through_onnx(tmp_path):
    """torch's exporter names a conv node by its scopes (``/features/features.1/block/block.0/block.0.0/Conv``);
    featuremaps reads them back as the module path PyTorch uses (``features.1.block.0.0``), so a torch model
    and its ONNX export list the same names (the pattern of torchvision's MobileNet/EfficientNet blocks)."""
    torch = _torch()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), nn.Conv2d(4, 4, 1))

        def forward(self, x):
            return x + self.block(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), Block(), Block())
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Net().eval()
    want = ["features.0.0", "features.1.block.0.0", "features.1.block.1", "features.2.block.0.0", "features.2.block.1"]
    assert [c.name for c in fm.conv_layers(net)] == want
    path = export(net, tmp_path / "nested.onnx")
    assert [c.name for c in fm.conv_layers(path)] == want
    x = image()
    for (name, a), (name2, b) in zip(fm.extract(net, x).items(), fm.extract(path, x).items(), strict=True):
        assert name == name2 and np.abs(a - b).max() / float(np.abs(a).max()) <= 1e-4, name


def test_batch_fixed_to_one_still_takes_batches(tmp_path):
    net = _small_net()
    path = export(net, tmp_path / "net.onnx")  # no dynamic axes: batch 1
    from featuremaps.extractor import feature_extractor

    fx = feature_extractor(str(path), (32, 32, 3), maps=None)
    batch = np.stack([image(seed=1), image(seed=2), image(seed=3)])
    rows, preds = fx(batch)
    assert preds.shape == (3, 5) and rows[0].maps.shape == (3, 32, 32, 8)
    for i in range(3):
        np.testing.assert_allclose(rows[2].maps[i], fm.extract(net, batch[i], layers="C3")["c"], atol=1e-4)


def test_scorecam_matches_torch_and_gradient_methods_say_which_apply(tmp_path):
    net = _small_net()
    path = export(net, tmp_path / "net.onnx", dynamic=True)
    x = image()
    a = fm.compute_cam(net, x, "scorecam", layer="C3")
    b = fm.compute_cam(str(path), x, "scorecam", layer="C3")
    assert a.class_index == b.class_index and b.score == "output"
    np.testing.assert_allclose(b.heatmap / a.heatmap.max(), a.heatmap / a.heatmap.max(), atol=1e-4)
    with pytest.raises(fm.UserError, match="gradcam needs gradients.*--method scorecam"):
        fm.compute_cam(str(path), x, "gradcam")


@pytest.mark.parametrize("dynamic", [False, True])
def test_ablationcam_equals_a_textbook_ablation_and_torchs(tmp_path, dynamic):
    """Ablation-CAM through a graph whose conv output comes from a new input (the ablated maps, with copies of
    the image): equal to the test's own per-channel loop on the torch module and to torch's Ablation-CAM, with
    a dynamic batch (one run per chunk) and with the batch fixed at 1 (one run per channel)."""
    net = _small_net()
    path = export(net, tmp_path / "net.onnx", dynamic=dynamic)
    x = image()
    for layer, module in (("C3", net.c), ("C2", net.b), ("up", net.up)):
        want, c = textbook_ablationcam(net, x, module)
        got = fm.compute_cam(str(path), x, "ablationcam", layer=layer)
        via_torch = fm.compute_cam(net, x, "ablationcam", layer=layer)
        assert got.class_index == via_torch.class_index == c and got.method == "ablationcam"
        scale = float(want.max())
        assert scale > 0
        np.testing.assert_allclose(got.heatmap / scale, want / scale, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.heatmap / scale, via_torch.heatmap / scale, rtol=0, atol=1e-4)


def test_eigencam_equals_torchs_and_the_maps_first_component(tmp_path):
    """EigenCAM needs only the maps: on the ONNX file it equals torch's and eigencam() of the torch module's
    own hooked maps."""
    from featuremaps.cam import eigencam

    net = _small_net()
    path = export(net, tmp_path / "net.onnx")
    x = image()
    store = {}

    def keep(_m, _i, o):
        store["c"] = o.detach()[0].permute(1, 2, 0).numpy()

    h = net.c.register_forward_hook(keep)
    with _torch().no_grad():
        net(_torch().from_numpy(x).permute(2, 0, 1)[None])
    h.remove()
    want = eigencam(store["c"])
    got = fm.compute_cam(str(path), x, "eigencam", layer="C3")
    via_torch = fm.compute_cam(net, x, "eigencam", layer="C3")
    scale = float(want.max())
    assert scale > 0 and got.heatmap.shape == (15, 15)
    np.testing.assert_allclose(got.heatmap / scale, want / scale, rtol=0, atol=1e-4)
    np.testing.assert_allclose(via_torch.heatmap / scale, want / scale, rtol=0, atol=1e-5)


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_show_layers_cam(tmp_path, capsys):
    path = export(_small_net(), tmp_path / "net.onnx", side=48)
    img = EXAMPLES / "astronaut.png"
    code, out, _ = _run(["layers", path], capsys)
    assert code == 0 and "4 conv layers, input 48x48x3" in out and "ConvTranspose" in out
    code, _, err = _run(["show", img, "--model", path, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    man = json.loads((tmp_path / "o" / "astronaut" / "manifest.json").read_text())
    assert [r["name"] for r in man["layers"]] == ["a", "b", "c", "up"]
    assert man["layers"][2]["output_shape"] == [23, 23, 16] and len(man["prediction"]) == 5
    code, _, err = _run(
        ["cam", img, "--model", path, "--method", "scorecam,eigencam,ablationcam", "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err
    for m in ("scorecam", "eigencam", "ablationcam"):
        assert (tmp_path / "o" / "astronaut" / "cam" / f"{m}_class{_pred(man)}_overlay.png").is_file(), m
    # a gradient method: one line naming the methods that apply, nothing written
    code, _, err = _run(["cam", img, "--model", path, "--out", tmp_path / "g"], capsys)
    assert code == 2 and "--method scorecam" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def _pred(man) -> int:
    return man["prediction"][0]["index"]


def test_dynamic_input_size_needs_input_shape(tmp_path, capsys):
    path = export(_small_net(), tmp_path / "dyn.onnx", dynamic=True)
    img = EXAMPLES / "astronaut.png"
    code, _, err = _run(["show", img, "--model", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--input-shape" in err and "dynamic" in err and not (tmp_path / "o").exists()
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run(["show", img, "--model", path, "--input-shape", "40,40,3", "--out", tmp_path / "o"], capsys)
    assert code == 0, err


def test_onnx_without_conv_nodes(tmp_path, capsys):
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [12, 3], np.ones(36, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph), str(path))
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no Conv or ConvTranspose nodes" in err and not (tmp_path / "o").exists()
    assert len(err.strip().splitlines()) == 1


def test_cam_of_a_model_whose_output_is_not_class_scores(tmp_path, capsys):
    """A segmentation-like ONNX model (output (1, 2, 32, 32)): cam says so in one line, exit 2, nothing written."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    path = export(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval(),
                  tmp_path / "seg.onnx")  # fmt: skip
    assert fm.load_model(str(path)).model.output_shape((32, 32, 3)) == (1, 2, 32, 32)
    out = tmp_path / "o"
    for method in ("scorecam", "ablationcam"):
        code, _, err = _run(["cam", EXAMPLES / "astronaut.png", "--model", path, "--method", method, "--out", out],
                            capsys)  # fmt: skip
        assert code == 2 and "not class scores" in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_not_an_onnx_file(tmp_path, capsys):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a model")
    code, _, err = _run(["layers", path], capsys)
    assert code == 2 and "not an ONNX model" in err


@pytest.mark.slow
def test_keras_model_exported_to_onnx_gives_the_same_maps(tmp_path):
    """Keras' own ONNX export (``model.export(format="onnx")``, torch backend: tf2onnx is not installed here).

    A Keras Conv2D's output includes its activation, an ONNX Conv node's does not: the ReLU layer is compared
    after a ReLU, the linear ones as they are.
    """
    _torch()
    import os
    import subprocess
    import sys
    import textwrap

    from conftest import ROOT

    code = textwrap.dedent(
        f"""
        import keras, numpy as np, featuremaps as fm
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                              keras.layers.DepthwiseConv2D(3, name="c2"), keras.layers.Conv2D(6, 3, name="c3"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        m(np.zeros((1, 32, 32, 3), "float32"))
        m.export({str(tmp_path / "k.onnx")!r}, format="onnx", verbose=False)
        x = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype("float32")
        a, b = fm.extract(m, x), fm.extract({str(tmp_path / "k.onnx")!r}, x)
        assert len(a) == len(b) == 3
        for i, (u, v) in enumerate(zip(a.values(), b.values())):
            v = np.maximum(v, 0) if i == 0 else v
            err = float(np.abs(u - v).max() / np.abs(u).max())
            print("ERR", i, err)
            assert err <= 1e-4, (i, err)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]


def test_atlas_of_an_onnx_file_equals_the_torch_modules(tmp_path, capsys):
    """featuremaps atlas on an ONNX file (batch fixed to 1 at export, the atlas batches 2): the class means
    equal those of the same atlas on the torch module it was exported from, within 1e-5."""
    from PIL import Image

    from featuremaps import models
    from featuremaps.atlas import compute_atlas, open_source

    net = _small_net()
    path = export(net, tmp_path / "net.onnx")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "data" / cls / f"{i}.png"
            )
    out = tmp_path / "atlas"
    code, _, err = _run(
        ["atlas", "--data", tmp_path / "data", "--model", path, "--batch-size", "2", "--out", out], capsys
    )
    assert code == 0, err
    meta = json.loads((out / "atlas.json").read_text())
    assert [ly["name"] for ly in meta["layers"]] == ["a", "b", "c", "up"]
    want = compute_atlas(models.wrap(net), open_source(tmp_path / "data", "PrivateTest", None), batch_size=2)
    with np.load(out / "atlas.npz") as z:
        for j, ly in enumerate(meta["layers"]):
            np.testing.assert_allclose(z[f"{ly['npz_prefix']}/means"], want.means[j], rtol=1e-5, atol=1e-6)


def _reshape_net(path):
    """A conv then a Reshape to the size of a 32x32 input: any other size fails inside ONNX Runtime's run."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 3, 3], np.ones(54, np.float32).tolist())
    s = helper.make_tensor("s", TensorProto.INT64, [2], [1, 2048])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Reshape", ["c", "s"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2048])],
        [w, s],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_failed_run_is_one_line_without_onnx_runtimes_log(tmp_path, capfd):
    """ONNX Runtime logs its own (coloured) error line to stderr before raising: only featuremaps' line shows."""
    path = _reshape_net(tmp_path / "reshape.onnx")
    out = tmp_path / "o"
    assert main(["show", str(EXAMPLES / "astronaut.png"), "--model", str(path), "--input-shape", "40,40,3",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot run on a 40x40x3 input" in err, err
    assert not out.exists()


def test_out_of_memory_is_said_not_blamed_on_the_input_shape(tmp_path, capfd, monkeypatch):
    """ONNX Runtime's arena failing to allocate: the line says out of memory, not "pass --input-shape"."""
    from featuremaps.frameworks import onnx as fw

    real = fw.ort.InferenceSession

    class Exhausted:
        def __init__(self, *a, **k):
            self._sess = real(*a, **k)

        def __getattr__(self, name):
            return getattr(self._sess, name)

        def run(self, *a, **k):
            raise RuntimeError(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
                "Failed to allocate memory for requested buffer of size 8589934592"
            )

    monkeypatch.setattr(fw.ort, "InferenceSession", Exhausted)
    path = export(_small_net(), tmp_path / "net.onnx")
    out = tmp_path / "o"
    assert main(["show", str(EXAMPLES / "astronaut.png"), "--model", str(path), "--out", str(out)]) == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "ran out of memory" in err and "--input-shape H,W,C" not in err
    assert not out.exists()
