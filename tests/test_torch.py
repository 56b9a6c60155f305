"""PyTorch models through featuremaps: nn.Modules, TorchScript files, torchvision by name, CLI and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install 'featuremaps[torch]')")
nn = torch.nn

from conftest import EXAMPLES, ROOT, textbook_ablationcam  # noqa: E402

import featuremaps as fm  # noqa: E402
from featuremaps.cli import main  # noqa: E402
from featuremaps.frameworks import adapter  # noqa: E402


class SmallNet(nn.Module):
    """Registration order differs from execution order; ``b`` (depthwise) runs twice; in-place ReLU after
    ``a``; BatchNorm (eval matters); a transposed conv; logits out."""

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.up = nn.ConvTranspose2d(16, 6, 2, stride=2)  # registered first, runs last
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 16, 3, stride=2, groups=2)
        self.fc = nn.Linear(6, n_classes)

    def forward(self, x):
        x = self.relu(self.a(x))
        x = self.b(x)
        x = self.bn(self.b(x))
        x = torch.relu(self.c(x))
        x = self.up(x)
        return self.fc(x.mean((2, 3)))


def small_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    net = SmallNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def image(shape=(32, 32, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def hooked_maps(net, x: np.ndarray) -> list[np.ndarray]:
    """The test's own plain forward: every Conv2d/ConvTranspose2d call's output, cloned, as (h, w, C)."""
    outs = []

    def hook(_m, _i, o):
        outs.append(o.detach().clone()[0].permute(1, 2, 0).numpy())

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            net(torch.from_numpy(x).permute(2, 0, 1)[None])
    finally:
        for h in hs:
            h.remove()
    return outs


def textbook_gradcam(net, x: np.ndarray, module, call: int = 1, cls: int | None = None):
    """Grad-CAM as in the paper, written with plain autograd: retain_grad on the target's output."""
    kept, count = {}, [0]

    def hook(_m, _i, o):
        count[0] += 1
        if count[0] == call:
            o.retain_grad()
            kept["a"] = o
            return o.clone()  # later in-place ops must not touch A
        return None

    h = module.register_forward_hook(hook)
    try:
        inp = torch.from_numpy(x).permute(2, 0, 1)[None].requires_grad_(False)
        out = net(inp)
        c = int(out[0].argmax()) if cls is None else cls
        out[0, c].backward()
    finally:
        h.remove()
    a, g = kept["a"][0].detach(), kept["a"].grad[0]
    weights = g.mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * a).sum(0)).numpy(), c


# ---------------------------------------------------------------- layers and maps
def test_conv_layers_in_execution_order_named_by_path_with_repeated_calls():
    convs = fm.conv_layers(small_net())
    assert [c.name for c in convs] == ["a", "b", "b@2", "c", "up"]
    assert [c.label for c in convs] == ["C1", "C2", "C3", "C4", "C5"]
    assert [c.kind for c in convs] == [
        "Conv2d",
        "Conv2d (depthwise)",
        "Conv2d (depthwise)",
        "Conv2d (groups=2)",
        "ConvTranspose2d",
    ]
    assert [c.channels for c in convs] == [8, 8, 8, 16, 6]
    assert convs[0].params == 3 * 8 * 9 + 8


def test_nested_module_paths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Conv2d(4, 4, 1), nn.Flatten())
    assert [c.name for c in fm.conv_layers(net)] == ["0.0", "1"]


def test_maps_equal_a_plain_forward_with_hooks():
    net, x = small_net(), image()
    maps = fm.extract(net, x)
    expected = hooked_maps(net, x)
    assert list(maps) == ["a", "b", "b@2", "c", "up"]
    for got, want in zip(maps.values(), expected, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (maps["a"] < 0).any(), "the conv output, not what the in-place ReLU made of it"


def test_extract_selects_channels_and_keeps_training_flags():
    net = small_net()
    net.train()
    bn_mean = net.bn.running_mean.clone()
    x = image()
    maps = fm.extract(net, x, layers="C4", maps=3, select="top-max")
    assert list(maps) == ["c"] and maps["c"].shape == (15, 15, 3)
    full = hooked_maps(net.eval(), x)[3]
    top = np.argsort(-full.max(axis=(0, 1)), kind="stable")[:3]
    np.testing.assert_allclose(maps["c"], full[..., top], atol=1e-6)
    net.train()
    fm.extract(net, x, layers="C1")
    assert net.training and net.bn.training, "the user's training flags are restored"
    assert torch.equal(net.bn.running_mean, bn_mean), "eval mode: BatchNorm statistics untouched"


def test_batch_of_images_in_one_forward():
    net = small_net()
    lm = fm.wrap_model(net)
    fx = __import__("featuremaps.extractor", fromlist=["x"]).feature_extractor(lm.model, (32, 32, 3), maps=4)
    batch = np.stack([image(seed=1), image(seed=2)])
    rows, preds = fx(batch)
    assert preds.shape == (2, 5)
    for i in range(2):
        want = hooked_maps(net, batch[i])
        for r, w in zip(rows, want, strict=True):
            np.testing.assert_allclose(r.maps[i], w[..., :4], atol=1e-6)
            assert r.stat("max", i) == pytest.approx(float(w.max()), abs=1e-5)


# ---------------------------------------------------------------- CAMs
@pytest.mark.parametrize("layer,module,call", [("C5", "up", 1), ("C3", "b", 2), ("a", "a", 1)])
def test_gradcam_equals_textbook_autograd_gradcam(layer, module, call):
    net, x = small_net(), image()
    want, c = textbook_gradcam(net, x, getattr(net, module), call)
    res = fm.compute_cam(net, x, "gradcam", layer=layer)
    assert res.class_index == c and res.score == "logit"
    np.testing.assert_allclose(res.heatmap, want, rtol=0, atol=1e-5)
    assert res.heatmap_up.shape == (32, 32)


def test_every_cam_method_runs_on_torch_and_classes_by_index():
    net, x = small_net(), image()
    for m in fm.CAM_METHODS:
        r = fm.compute_cam(net, x, m, layer="C4", class_index=2)
        assert r.class_index == 2 and r.heatmap.shape == (15, 15) and np.isfinite(r.heatmap).all()
    want, _ = textbook_gradcam(net, x, net.c, 1, cls=2)
    np.testing.assert_allclose(fm.compute_cam(net, x, "gradcam", layer="c", class_index=2).heatmap, want, atol=1e-5)


@pytest.mark.parametrize("layer,module,call,cls", [("C5", "up", 1, None), ("C3", "b", 2, 3), ("c", "c", 1, 4)])
def test_ablationcam_equals_a_textbook_per_channel_ablation(layer, module, call, cls):
    """Batched Ablation-CAM (a forward hook hands the network the ablated copies of the layer's output) equals
    one rerun of the image per zeroed channel (the test's own loop), on a layer called twice too."""
    net, x = small_net(), image()
    want, c = textbook_ablationcam(net, x, getattr(net, module), call, cls)
    res = fm.compute_cam(net, x, "ablationcam", layer=layer, class_index=cls)
    assert res.class_index == c and res.method == "ablationcam"
    scale = float(want.max())
    assert scale > 0
    np.testing.assert_allclose(res.heatmap / scale, want / scale, rtol=0, atol=1e-4)


def _traced(net, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it bakes in
        torch.jit.trace(net, torch.zeros(1, 3, 32, 32)).save(str(path))
    return path


@pytest.mark.parametrize("kind", ["scripted", "traced", "pt2"])
def test_ablationcam_on_torchscript_and_exported_files(tmp_path, kind):
    """TorchScript runs no Python hooks: its forward graph with the conv value replaced by an extra input; a
    torch.export program exported for batch 1 runs the ablated copies one by one."""
    net, x = small_net(), image()
    path = tmp_path / ("net.pt2" if kind == "pt2" else "net.pt")
    if kind == "scripted":
        torch.jit.script(net).save(str(path))
    elif kind == "traced":
        _traced(net, path)
    else:
        torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 32, 32),)), str(path))
    model = fm.load_model(str(path)).model
    for layer, module, call in (("C4", "c", 1), ("C3", "b", 2)):
        want, _ = textbook_ablationcam(net, x, getattr(net, module), call, 3)
        res = fm.compute_cam(model, x, "ablationcam", layer=layer, class_index=3)
        scale = float(want.max())
        np.testing.assert_allclose(res.heatmap / scale, want / scale, rtol=0, atol=1e-4)


def test_gradcam_with_frozen_weights():
    net, x = small_net(), image()
    want, _ = textbook_gradcam(net, x, net.c)
    for p in net.parameters():
        p.requires_grad_(False)
    np.testing.assert_allclose(fm.compute_cam(net, x, "gradcam", layer="c").heatmap, want, atol=1e-5)


def test_torchscript_gives_the_same_maps_and_cams(tmp_path):
    net, x = small_net(), image()
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    scripted = torch.jit.load(str(path))
    assert [c.name for c in fm.conv_layers(scripted)] == ["a", "b", "b@2", "c", "up"]
    for got, want in zip(fm.extract(scripted, x).values(), hooked_maps(net, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    want, _ = textbook_gradcam(net, x, net.up)
    np.testing.assert_allclose(fm.compute_cam(scripted, x, "gradcam").heatmap, want, atol=1e-4)


def test_torchscript_file_of_a_deep_model_loads(tmp_path):
    """A TorchScript archive lists its code after every tensor record: with 150 convs (300 tensors) the code
    comes after the 200th entry, where the file was once taken for a torch.save pickle and refused."""
    import zipfile

    net = torch.nn.Sequential(*[torch.nn.Conv2d(2, 2, 1) for _ in range(150)], torch.nn.AdaptiveAvgPool2d(1))
    path = tmp_path / "deep.pt"
    torch.jit.script(net.eval()).save(str(path))
    names = zipfile.ZipFile(path).namelist()
    assert min(i for i, n in enumerate(names) if "/code/" in n) > 200  # the case: code after 200 entries
    model = fm.load_model(str(path)).model
    assert len(fm.conv_layers(model, input_shape=(8, 8, 2))) == 150


def test_traced_torchscript_keeps_kinds_and_gives_the_same_maps(tmp_path):
    """torch.jit.trace keeps a conv submodule's weight but not its hyperparameters: groups come from the conv
    node's argument in the graph, so depthwise and grouped layers are named as for the module itself."""
    net, x = small_net(), image()
    model = fm.load_model(str(_traced(net, tmp_path / "traced.pt"))).model
    convs = fm.conv_layers(model)
    assert [c.name for c in convs] == ["a", "b", "b@2", "c", "up"]
    assert [c.kind for c in convs] == ["Conv2d", "Conv2d (depthwise)", "Conv2d (depthwise)", "Conv2d (groups=2)",
                                       "ConvTranspose2d"]  # fmt: skip
    for got, want in zip(fm.extract(model, x).values(), hooked_maps(net, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_torchscript_internals_that_fail_are_one_line(tmp_path, capsys, monkeypatch):
    """The graph surgery uses torch._C, which may change under us: a failure there says what to do instead."""
    path = tmp_path / "net.pt"
    torch.jit.script(small_net()).save(str(path))

    def broken(*_a, **_k):
        raise RuntimeError("no such function\nin this build")

    monkeypatch.setattr(torch._C, "_create_function_from_graph", broken)
    code, _, err = _run(["layers", path, "--input-shape", "32,32,3"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "TorchScript internals are not supported here (RuntimeError: no such function)" in err
    assert "save the model with torch.export (.pt2) instead" in err


def test_exported_program_gives_the_same_maps_and_cams(tmp_path, capsys):
    """A torch.export archive (.pt2): unflattened, its conv submodules (one aten.conv2d each) are hooked like
    nn.Conv2d: same names, execution order, maps and Grad-CAM as the module it was exported from; the CLI runs
    it at the size it was exported for."""
    net, x = small_net(), image()
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 32, 32),)), str(path))
    lm = fm.load_model(str(path))
    assert lm.input_shape == (32, 32, 3)
    convs = fm.conv_layers(lm.model)
    assert [c.name for c in convs] == ["a", "b", "b@2", "c", "up"]
    assert [c.kind for c in convs] == ["Conv2d", "Conv2d (depthwise)", "Conv2d (depthwise)", "Conv2d (groups=2)",
                                       "ConvTranspose2d"]  # fmt: skip
    for got, want in zip(fm.extract(lm.model, x).values(), hooked_maps(net, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    want, _ = textbook_gradcam(net, x, net.c)
    np.testing.assert_allclose(fm.compute_cam(lm.model, x, "gradcam", layer="c").heatmap, want, atol=1e-4)
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    man = json.loads((tmp_path / "o" / "astronaut" / "manifest.json").read_text())
    assert man["layers"][0]["output_shape"] == [32, 32, 8]
    (tmp_path / "bad.pt2").write_bytes(b"not an archive")
    code, _, err = _run(["layers", tmp_path / "bad.pt2"], capsys)
    assert code == 2 and "not a torch.export archive" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- torchvision
def _tvm():
    from featuremaps.errors import UserError
    from featuremaps.frameworks.torch import torchvision_models

    try:
        return torchvision_models()
    except (UserError, ImportError) as e:
        pytest.skip(f"torchvision model definitions not importable here ({e})")


@pytest.mark.parametrize("name,module_path", [("resnet18", "layer4.1.conv2"), ("mobilenet_v3_small", "features.12.0")])
def test_torchvision_gradcam_equals_textbook(name, module_path):
    tvm = _tvm()
    torch.manual_seed(0)
    net = tvm.get_model(name, weights=None).eval()
    x = image((96, 96, 3))
    convs = fm.conv_layers(net)
    assert convs[-1].name == module_path
    assert len(convs) == {"resnet18": 20, "mobilenet_v3_small": 52}[name]
    want, c = textbook_gradcam(net, x, net.get_submodule(module_path))
    res = fm.compute_cam(net, x, "gradcam")
    assert res.class_index == c
    scale = float(want.max())  # random weights: mobilenet_v3_small's logits are ~1e-10, its maps as small
    assert scale > 0
    np.testing.assert_allclose(res.heatmap / scale, want / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_maps_equal_a_plain_forward_with_hooks(name):
    """Every conv call's maps (mobilenet_v3_small's squeeze-excitation 1x1 convs included) equal the test's own
    hooked forward, in execution order."""
    tvm = _tvm()
    torch.manual_seed(0)
    net = tvm.get_model(name, weights=None).eval()
    x = image((64, 64, 3))
    maps = fm.extract(net, x)
    want = hooked_maps(net, x)
    assert len(maps) == len(want) == {"resnet18": 20, "mobilenet_v3_small": 52}[name]
    for (layer, got), w in zip(maps.items(), want, strict=True):
        assert got.shape == w.shape, layer
        scale = max(float(np.abs(w).max()), 1e-30)  # random weights: mobilenet's late maps are tiny
        np.testing.assert_allclose(got / scale, w / scale, rtol=0, atol=1e-6, err_msg=layer)


def test_torchvision_by_name_cli(tmp_path, capsys):
    _tvm()
    assert main(["layers", "torchvision:resnet18"]) == 0
    out = capsys.readouterr().out
    assert "20 conv layers, input 224x224x3" in out and "layer1.0.conv1" in out
    img = EXAMPLES / "chelsea.png"
    assert main(["show", str(img), "--model", "torchvision:resnet18", "--weights", "none", "--layers", "C1,C20",
                 "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    man = json.loads((tmp_path / "o" / "chelsea" / "manifest.json").read_text())
    assert [r["name"] for r in man["layers"]] == ["conv1", "layer4.1.conv2"]
    assert man["preprocessing"]["scaling"].startswith("x / 255, ImageNet mean/std")
    # random weights are said, and their noise is not printed as a prediction (as for Keras --weights none)
    assert "predicted" not in capsys.readouterr().out and man["prediction"] == []
    # a state dict of another architecture: one line, nothing written
    sd = tmp_path / "sd.pt"
    torch.save(small_net().state_dict(), sd)
    out_dir = tmp_path / "bad"
    assert main(["show", str(img), "--model", "torchvision:resnet18", "--weights", str(sd), "--out", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


# ---------------------------------------------------------------- CLI and bad input
def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_show_layers_cam_with_a_torchscript_file(tmp_path, capsys):
    path = tmp_path / "net.pt"
    torch.jit.script(small_net()).save(str(path))
    img = EXAMPLES / "astronaut.png"
    code, out, _ = _run(["layers", path, "--input-shape", "32,32,3"], capsys)
    assert code == 0 and "C3  b@2" in out and "C5  up" in out
    code, _, err = _run(["show", img, "--model", path, "--input-shape", "64,64,3", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    folder = tmp_path / "o" / "astronaut"
    man = json.loads((folder / "manifest.json").read_text())
    assert [r["label"] for r in man["layers"]] == ["C1", "C2", "C3", "C4", "C5"]
    assert man["layers"][0]["output_shape"] == [64, 64, 8]
    with np.load(folder / "activations.npz") as z:
        assert z["a/maps"].shape == (64, 64, 8)
    code, _, err = _run(
        ["cam", img, "--model", path, "--input-shape", "64,64,3", "--method", "gradcam,scorecam,ablationcam", "--out",
         tmp_path / "o"], capsys,
    )  # fmt: skip
    assert code == 0, err
    cam = json.loads((folder / "cam" / "cam.json").read_text())
    assert cam["target_layer"]["name"] == "up"
    assert {m["method"] for m in cam["maps"]} == {"gradcam", "scorecam", "ablationcam"}


def test_pickled_module_needs_unsafe(tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), path)
    out = tmp_path / "o"
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--out", out], capsys)
    assert code == 2 and "is a pickled module" in err and "--unsafe" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--unsafe", "--out", out,
                         "--input-shape", "32,32,3"], capsys)  # fmt: skip
    assert code == 0, err
    assert (out / "astronaut" / "overview.png").is_file()


@pytest.mark.parametrize("content", [b"\x00 garbage, not a torch file", b"PK\x03\x04 cut short", "zip", "pickle"])
def test_a_file_torch_did_not_save_is_not_called_a_pickled_module(tmp_path, capsys, content):
    """Garbage bytes, a zip archive of something else, a plain (non-torch) pickle: not a torch file, said so,
    with or without --unsafe (which would not help)."""
    import pickle
    import zipfile

    path = tmp_path / "junk.pt"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    elif content == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    else:
        path.write_bytes(content)
    for extra in ([], ["--unsafe"]):
        code, _, err = _run(["layers", path, "--input-shape", "32,32,3", *extra], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "is not a file torch saved" in err and "pickled" not in err and "--unsafe" not in err


def test_state_dict_alone_and_for_the_wrong_architecture(tmp_path, capsys):
    sd = tmp_path / "weights.pt"
    torch.save(small_net().state_dict(), sd)
    out = tmp_path / "o"
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", sd, "--out", out], capsys)
    assert code == 2 and "state dict" in err and "--weights" in err and len(err.strip().splitlines()) == 1
    scripted = tmp_path / "other.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())).save(str(scripted))
    code, _, err = _run(
        ["show", EXAMPLES / "astronaut.png", "--model", scripted, "--weights", sd, "--out", out], capsys
    )
    assert code == 2 and "another architecture" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_output_not_class_scores(tmp_path, capsys):
    path = tmp_path / "seg.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))).save(str(path))
    out = tmp_path / "o"
    code, _, err = _run(["cam", EXAMPLES / "astronaut.png", "--model", path, "--input-shape", "32,32,3", "--out", out],
                        capsys)  # fmt: skip
    assert code == 2 and "not class scores" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_model_that_does_not_run_at_the_size(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "fixed.pt"
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 3))
    torch.jit.script(net).save(str(path))
    out = tmp_path / "o"
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--out", out], capsys)
    assert code == 2 and "--input-shape" in err and not out.exists()
    code, _, err = _run(["show", EXAMPLES / "astronaut.png", "--model", path, "--input-shape", "32,32,3", "--out", out],
                        capsys)  # fmt: skip
    assert code == 0, err


def test_conv_layers_error_for_a_model_without_convs():
    with pytest.raises(fm.UserError, match="no nn.Conv2d"):
        fm.conv_layers(nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 2)))


def test_framework_detection_imports_nothing():
    from featuremaps.frameworks import framework_of

    assert framework_of(object()) == "keras"  # not torch, not ONNX: Keras' path, which says what it got
    with pytest.raises(fm.UserError, match="a object is not a Keras model"):
        adapter(object())


@pytest.mark.slow
def test_keras_model_on_the_torch_backend_stays_on_the_keras_path():
    """With KERAS_BACKEND=torch a Keras model is also an nn.Module; it must keep Keras' graph replay."""
    code = textwrap.dedent(
        """
        import keras, numpy as np, featuremaps as fm
        from featuremaps.frameworks import framework_of
        m = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
        assert framework_of(m) == "keras", framework_of(m)
        print(list(fm.extract(m, np.zeros((16, 16, 3), "float32"))))
        """
    )
    import os

    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "['c1']" in res.stdout


@pytest.mark.slow
def test_keras_user_never_imports_torch(tmp_path):
    """`featuremaps show` on a Keras model, in a fresh interpreter: torch and onnxruntime stay unimported."""
    code = textwrap.dedent(
        f"""
        import sys, keras
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        m.save({str(tmp_path / "k.keras")!r})
        from featuremaps.cli import main
        assert main(["show", {str(EXAMPLES / "astronaut.png")!r}, "--model", {str(tmp_path / "k.keras")!r},
                     "--out", {str(tmp_path / "o")!r}]) == 0
        assert main(["cam", {str(EXAMPLES / "astronaut.png")!r}, "--model", {str(tmp_path / "k.keras")!r},
                     "--out", {str(tmp_path / "o")!r}]) == 0
        bad = [m for m in ("torch", "onnxruntime", "onnx", "torchvision") if m in sys.modules]
        print("IMPORTED", bad)
        """
    )
    env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "src")}
    import os

    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env={**os.environ, **env}
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "IMPORTED []" in res.stdout, res.stdout


def _atlas_data(root, n=3):
    """ROOT/<class>/*.png: 2 classes of 32x32 RGB noise, n images each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
def test_atlas_of_a_torch_file_equals_hooked_class_means(tmp_path, capsys, kind):
    """featuremaps atlas on a TorchScript / torch.export file: every class mean of every conv call equals the
    mean, over the class's images, of the spatial means of a plain hooked forward of the source module."""
    from PIL import Image

    net = small_net()
    path = tmp_path / ("net.pt" if kind == "torchscript" else "net.pt2")
    if kind == "torchscript":
        torch.jit.script(net).save(str(path))
    else:
        torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 32, 32),)), str(path))
    data = _atlas_data(tmp_path / "data")
    out = tmp_path / "atlas"
    argv = ["atlas", "--data", data, "--model", path, "--batch-size", "2", "--out", out]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    for f in ("atlas.json", "atlas.npz", "index.html"):
        assert (out / f).is_file()
    meta = json.loads((out / "atlas.json").read_text())
    assert [ly["name"] for ly in meta["layers"]] == ["a", "b", "b@2", "c", "up"]
    with np.load(out / "atlas.npz") as z:
        for j, ly in enumerate(meta["layers"]):
            want = []
            for cls in ("a", "b"):
                xs = [np.asarray(Image.open(p), np.float32) / 255 for p in sorted((data / cls).glob("*.png"))]
                want.append(np.mean([hooked_maps(net, x)[j].mean(axis=(0, 1)) for x in xs], axis=0))
            np.testing.assert_allclose(z[f"{ly['npz_prefix']}/means"], np.stack(want), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- code inside a model file
class _FromFile(nn.Module):
    """A pass-through layer that creates and fills a file with ``torch.from_file(path, shared=True)``, in
    ``__setstate__`` (run by ``torch.jit.load``) or in ``forward``."""

    def __init__(self, path: str, in_forward: bool):
        super().__init__()
        self.p = path
        self.in_forward = in_forward
        self.t = torch.zeros(1)

    def forward(self, x):
        if self.in_forward:
            self.t = torch.from_file(self.p, shared=True, size=4).fill_(1.0)
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, bool]:
        return (self.p, self.in_forward, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, bool]) -> None:
        self.p = state[0]
        self.in_forward = state[1]
        self.training = state[2]
        self.t = torch.zeros(1)
        if not self.in_forward:
            self.t = torch.from_file(self.p, shared=True, size=4).fill_(1.0)


def _rewrite_zip(src, dst, change):
    import zipfile

    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for n in zi.namelist():
            zo.writestr(n, change(n, zi.read(n)))


def _hostile_file(tmp_path, kind: str):
    """A model file whose loading or running creates ``tmp_path / "marker"``: a .pt2 with a pickled weight, a
    .pt2 whose shape expression torch evaluates, a TorchScript archive calling from_file in __setstate__ or in
    forward."""
    import io
    import pathlib

    marker = tmp_path / "marker"
    head = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    if kind in ("setstate", "forward"):
        net = nn.Sequential(head[0], _FromFile(str(marker), kind == "forward"), *head[1:])
        path = tmp_path / f"{kind}.pt"
        torch.jit.script(net.eval()).save(str(path))
        return path, marker
    dyn = {0: torch.export.Dim("b", max=8)} if kind == "expr" else None
    good = tmp_path / "good.pt2"
    example = (torch.zeros(2, 3, 16, 16),)
    torch.export.save(torch.export.export(head.eval(), example, dynamic_shapes=(dyn,) if dyn else None), good)
    path = tmp_path / f"{kind}.pt2"

    class Touch:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    buf = io.BytesIO()
    torch.save(Touch(), buf)

    def change(name, data):
        if kind == "pickled" and name.endswith("model_weights_config.json"):
            cfg = json.loads(data)
            cfg["config"]["0.weight"]["use_pickle"] = True
            return json.dumps(cfg).encode()
        if kind == "pickled" and name.endswith("data/weights/weight_0"):
            return buf.getvalue()
        if kind == "expr" and name.endswith("models/model.json"):
            text = data.decode()
            i = text.index('"expr_str": "') + len('"expr_str": "')
            code = f"__import__('pathlib').Path('{marker}').touch() or Symbol('s77')"
            return (text[:i] + code + text[text.index('"', i) :]).encode()
        return data

    _rewrite_zip(good, path, change)
    good.unlink()
    return path, marker


@pytest.mark.parametrize("kind", ["pickled", "expr", "setstate", "forward"])
def test_code_in_a_model_file_runs_only_with_unsafe(tmp_path, capfd, kind):
    """layers, show and compare refuse in one line, exit 2, create nothing; with --unsafe the file's code runs
    (the marker appears: the hostile file is real)."""
    path, marker = _hostile_file(tmp_path, kind)
    img = EXAMPLES / "astronaut.png"
    out = tmp_path / "o"
    for argv in (
        ["layers", path],
        ["show", img, "--model", path, "--out", out],
        ["compare", img, "--models", f"{path},{path}", "--out", out],
    ):
        code = main([str(a) for a in argv])
        err = capfd.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "--unsafe" in err and str(path) in err
        assert not marker.exists() and not out.exists()
    main(["layers", str(path), "--unsafe", "--input-shape", "16,16,3"])
    capfd.readouterr()
    assert marker.exists()


def test_scripted_torchvision_models_load_without_unsafe(tmp_path, capsys):
    tvm = _tvm()
    for name in ("mobilenet_v3_small", "resnet18"):
        path = tmp_path / f"{name}.pt"
        torch.jit.script(tvm.get_model(name, weights=None).eval()).save(str(path))
        code, out, err = _run(["layers", path], capsys)
        assert code == 0, err
        assert {"mobilenet_v3_small": "52 conv layers", "resnet18": "20 conv layers"}[name] in out


def test_exported_program_with_a_dynamic_batch_loads_without_unsafe(tmp_path, capsys):
    path = tmp_path / "dyn.pt2"
    example = (torch.zeros(2, 3, 32, 32),)
    ep = torch.export.export(small_net(), example, dynamic_shapes=({0: torch.export.Dim("b", max=8)},))
    torch.export.save(ep, str(path))
    code, out, err = _run(["layers", path], capsys)
    assert code == 0 and "5 conv layers" in out, err


@pytest.mark.parametrize("kind", ["state dict", "truncated", "other zip"])
def test_a_bad_pt2_is_one_line(tmp_path, capfd, kind):
    """torch logs a traceback before raising for these: stderr holds exactly featuremaps' one line."""
    import zipfile

    path = tmp_path / "bad.pt2"
    if kind == "state dict":
        torch.save(small_net().state_dict(), path)
    elif kind == "truncated":
        torch.export.save(torch.export.export(small_net(), (torch.zeros(1, 3, 32, 32),)), str(path))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("bad/readme.txt", "hello")
    assert main(["layers", str(path)]) == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    want = {"state dict": "torch.save", "truncated": "truncated", "other zip": "not a torch.export archive"}[kind]
    assert want in err and "--unsafe" not in err


def test_classes_must_name_every_output_of_a_torch_model(tmp_path, capsys):
    """--classes a,b on torchvision:resnet18 (1000 outputs) or a TorchScript model (5) is refused in one line,
    as for Keras files; the right count names the classes."""
    _tvm()
    path = tmp_path / "net.pt"
    torch.jit.script(small_net()).save(str(path))
    out = tmp_path / "o"
    img = EXAMPLES / "astronaut.png"
    for model, n in (("torchvision:resnet18", 1000), (path, 5)):
        argv = ["show", img, "--model", model, "--weights", "none", "--classes", "a,b", "--out", out]
        code, _, err = _run(argv, capsys)
        assert code == 2 and f"has {n} outputs" in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    lm = fm.load_model(str(path), classes=list("vwxyz"))
    assert lm.classes == list("vwxyz")
