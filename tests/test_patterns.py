"""``featuremaps patterns``: the parameterisation's and transforms' adjoints, the optimisation on planted
detectors (Keras and TorchScript), determinism, exemplars, the output folder and bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, torch_and_onnx_files
from fake_adapter import FakeAdapter

from featuremaps.cli import main
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter
from featuremaps.images import load_image
from featuremaps.loaded import PREPROCESS_MODES, preprocess_fn
from featuremaps.patterns import find_patterns
from featuremaps.patterns.diversity import DEFAULT_WEIGHT, gram_diversity, pre_activation_gradient
from featuremaps.patterns.image import FourierImage
from featuremaps.patterns.optimise import optimise
from featuremaps.patterns.transforms import Preprocessing, Warp
from featuremaps.targets import ChannelMean, ClassScore, Neuron, Weighted, target_weights


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


SIZE = 24  # the planted models' input side


# ---------------------------------------------------------------- adjoints (NumPy only)
@pytest.mark.parametrize("shape", [(8, 8, 3), (7, 9, 1), (6, 5, 3)])
def test_fourier_and_warp_adjoints(shape):
    """<L p, g> == <p, L* g> for the spectrum-to-image map and the resampling (odd and even sizes)."""
    h, w, c = shape
    rng = np.random.default_rng(1)
    im = FourierImage(2, h, w, c, seed=0)
    p = rng.normal(size=im.params.shape)
    g = rng.normal(size=(2, h, w, c))
    assert np.isclose((im.spatial(p) * g).sum(), (p * im.spatial_adjoint(g)).sum(), rtol=1e-4)
    warp = Warp(rng, 2, h, w, shift=2)
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    lhs = ((warp.forward(x) - warp.forward(np.zeros_like(x))) * g).sum()
    assert np.isclose(lhs, (x * warp.adjoint(g)).sum(), rtol=1e-4)


def test_whole_chain_matches_finite_differences():
    """The gradient of f(preprocess(warp(image(params)))) by the adjoints equals central differences."""
    rng = np.random.default_rng(2)
    im = FourierImage(1, 6, 7, 3, seed=3)
    im.params *= 50  # away from the flat start, where the sigmoid is nearly linear
    warp = Warp(rng, 1, 6, 7, shift=1)
    pre = Preprocessing(preprocess_fn("caffe"), 3)
    target = rng.normal(size=(1, 6, 7, 3))

    def f(params):
        y = pre.forward(warp.forward(im.forward(params)))
        return float((np.sin(y / 50.0) * target).sum())

    y = pre.forward(warp.forward(im.forward()))
    g = im.backward(warp.adjoint(pre.adjoint((np.cos(y / 50.0) / 50.0 * target).astype(np.float32))))
    p0 = im.params.astype(np.float64)
    for idx in [tuple(rng.integers(0, s) for s in p0.shape) for _ in range(12)]:
        e = np.zeros_like(p0)
        e[idx] = 1e-3
        numeric = (f(p0 + e) - f(p0 - e)) / 2e-3
        assert np.isclose(g[idx], numeric, rtol=2e-2, atol=1e-5), (idx, g[idx], numeric)


@pytest.mark.parametrize("mode", list(PREPROCESS_MODES))
def test_preprocessing_is_measured_exactly(mode):
    fn = preprocess_fn(mode)
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    pre = Preprocessing(fn, 3)
    assert np.allclose(pre.forward(x), fn(x * 255.0), atol=1e-4)


def test_a_preprocessing_that_is_not_affine_is_refused():
    from featuremaps.errors import UserError

    with pytest.raises(UserError, match="not an affine map"):
        Preprocessing(lambda x: np.sqrt(x), 1)


def test_warp_keeps_grey_grey_and_shows_the_padding():
    warp = Warp(np.random.default_rng(0), 4, 16, 16)
    assert np.allclose(warp.forward(np.full((4, 16, 16, 1), 0.5, np.float32)), 0.5, atol=1e-6)
    white = warp.forward(np.ones((4, 16, 16, 1), np.float32))
    assert white.max() <= 1 + 1e-6 and white.min() >= 0.5 - 1e-6  # grey comes in from outside, nothing else


# ---------------------------------------------------------------- the batched gradient primitive
def test_fake_batch_gradients_match_finite_differences():
    """The fake's batch = its targets' gradients, each its own image's; pre-activation where asked."""
    ad = FakeAdapter(input_shape=(8, 8, 3))
    rng = np.random.default_rng(0)
    x = rng.random((3, 8, 8, 3))
    for pre in (True, False):
        targets = [ChannelMean("conv2", 1, pre), Neuron("conv2", 4, 2, 1, pre), ChannelMean("conv2", 0, pre)]
        check_batch(ad, x, targets, rng)
    cls = ad.gradients(x, [ClassScore(0), ClassScore(2), ClassScore(None)])
    for b, c in enumerate([0, 2, None]):
        single = ad.gradients(x[b], ClassScore(c))
        assert np.isclose(cls.value[b], single.value) and np.allclose(cls.gradient[b], single.gradient)


def check_batch(ad, x, targets, rng):
    r = ad.gradients(x, targets)
    assert r.gradient.shape == x.shape and r.value.shape == (len(x),)
    for b, t in enumerate(targets):
        for idx in [tuple(rng.integers(0, s) for s in x.shape[1:]) for _ in range(4)]:
            e = np.zeros_like(x)
            e[(b, *idx)] = 1e-3  # the fake is piecewise linear: exact but at a ReLU kink (and float32 values)
            num = (ad.gradients(x + e, targets).value[b] - ad.gradients(x - e, targets).value[b]) / 2e-3
            assert np.isclose(r.gradient[(b, *idx)], num, rtol=5e-3, atol=1e-5), (t, idx)


def test_keras_batch_is_each_images_own_gradient(tiny_sequential):
    ad = adapter(tiny_sequential)
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    targets = [ChannelMean("conv_b", 0), Neuron("conv_b", 5, 3, 4), ChannelMean("conv_b", 2)]
    r = ad.gradients(x, targets)
    for b, t in enumerate(targets):
        one = ad.gradients(x[b], t)
        assert np.isclose(r.value[b], one.value, rtol=1e-5, atol=1e-6)
        assert np.allclose(r.gradient[b], one.gradient, rtol=1e-4, atol=1e-6)


def test_torch_batch_is_each_images_own_gradient(tmp_path):
    torch = pytest.importorskip("torch")
    net, pt, _ = torch_and_onnx_files(tmp_path)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    targets = [ChannelMean("second", 1), ChannelMean("second", 5)]
    for ad in (adapter(net), adapter(torch.jit.load(str(pt)))):
        r = ad.gradients(x, targets)
        for b, t in enumerate(targets):
            one = ad.gradients(x[b], t)
            assert np.isclose(r.value[b], one.value, rtol=1e-5, atol=1e-6)
            assert np.allclose(r.gradient[b], one.gradient, rtol=1e-4, atol=1e-6)
        w = target_weights(targets, ad.layer_shapes((32, 32, 3))["second"])  # the same as Weighted targets
        weighted = ad.gradients(x, [Weighted("second", w[0]), Weighted("second", w[1])])
        assert np.allclose(weighted.value, r.value, rtol=1e-5) and np.allclose(weighted.gradient, r.gradient, atol=1e-7)


def test_a_mixed_batch_is_one_line():
    from featuremaps.errors import UserError

    ad = FakeAdapter()
    with pytest.raises(ValueError, match="one conv layer"):
        ad.gradients(np.zeros((2, 16, 16, 3)), [ChannelMean("conv1", 0), ChannelMean("conv2", 0)])
    with pytest.raises(UserError, match="F9 is not one"):
        ad.gradients(np.zeros((1, 16, 16, 3)), [ChannelMean("conv1", 8)])


# ---------------------------------------------------------------- planted detectors
#: channel 0: red and not green or blue; channel 1: light rows over dark rows (4x4 kernels, zero bias)
def planted_kernels() -> np.ndarray:
    w = np.zeros((4, 4, 3, 2), np.float32)
    w[..., 0, 0], w[..., 1, 0], w[..., 2, 0] = 1.0, -1.0, -1.0
    w[:2, :, :, 1], w[2:, :, :, 1] = 1.0 / 3, -1.0 / 3
    return w


def planted_keras():
    import keras

    x = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(2, 4, activation="relu", name="planted")
    h = keras.layers.Conv2D(3, 3, activation="relu", name="after")(conv(x))
    m = keras.Model(x, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)), name="planted")
    conv.set_weights([planted_kernels(), np.zeros(2, np.float32)])
    rng = np.random.default_rng(0)  # the rest seeded: every process builds the same model
    for layer in m.layers[2:]:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    return m


def planted_script():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 2, 4), nn.ReLU(inplace=True), nn.Conv2d(2, 3, 3), nn.ReLU(inplace=True))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(planted_kernels().transpose(3, 2, 0, 1).copy()))
        net[0].bias.zero_()
    return torch.jit.script(net.eval())


def looks_planted(images: np.ndarray) -> None:
    red, stripes = images[0], images[1]
    r, g, b = (float(red[..., k].mean()) for k in range(3))
    assert r > 0.55 and r > 2.5 * max(g, b), (r, g, b)  # the grey border the transforms bring in stays grey
    lum = stripes.mean(axis=-1)
    rows, cols = lum.mean(axis=1).std(), lum.mean(axis=0).std()
    assert rows > 0.15 and rows > 3 * cols, (rows, cols)


def test_planted_detectors_keras():
    """A channel silent on the grey start (its pre-activation is -8 there) still comes out red: the objective
    is the conv's pre-activation, not the ReLU's zero."""
    ad = adapter(planted_keras())
    res = optimise(ad, [ChannelMean("planted", 0), ChannelMean("planted", 1)], (SIZE, SIZE, 3), preprocess_fn("unit"),
                   steps=256, seed=0)  # fmt: skip
    looks_planted(res.images)


def test_planted_detectors_keras_in_bfloat16():
    """The bfloat16 passes (``precision="bfloat16"``, Keras on TensorFlow) find the same detectors, and their
    gradients point where float32's do; the final values are float32's own."""
    if keras_backend() != "tensorflow":
        pytest.skip("bfloat16 gradients are TensorFlow's (this process runs Keras on another backend)")
    from featuremaps.cpu import has_bf16

    if not has_bf16():
        pytest.skip("this CPU has no bfloat16 arithmetic (AVX512-BF16, AMX): featuremaps never runs bfloat16 here")
    ad = adapter(planted_keras())
    assert ad.bfloat16
    targets = [ChannelMean("planted", 0), ChannelMean("planted", 1)]
    res = optimise(ad, targets, (SIZE, SIZE, 3), preprocess_fn("unit"), steps=256, seed=0, precision="bfloat16")
    looks_planted(res.images)
    assert np.allclose(res.values, ad.gradients(res.images, targets).value, rtol=1e-6)  # float32 at the end
    x = natural_crops(4)
    t = [ChannelMean("after", k % 3) for k in range(4)]
    full, half = ad.gradients(x, t), ad.gradients(x, t, precision="bfloat16")
    assert half.gradient.dtype == np.float32 and half.gradient.shape == full.gradient.shape
    g, h = full.gradient.reshape(4, -1), half.gradient.reshape(4, -1)
    cos = (g * h).sum(axis=1) / np.linalg.norm(g, axis=1) / np.linalg.norm(h, axis=1)
    assert cos.min() > 0.98, cos  # bfloat16 keeps ~3 significant digits: the direction survives
    assert np.allclose(half.value, full.value, rtol=0.05, atol=0.02)
    assert not np.array_equal(half.gradient, full.gradient)  # it did run another pass


def test_precision_auto_is_bfloat16_only_where_the_adapter_and_the_cpu_compute_it(monkeypatch, tiny_sequential):
    from featuremaps.patterns import compute

    keras_ad = adapter(tiny_sequential)
    fake = SimpleNamespace(bfloat16=False, has_gradients=True, framework="torch")
    monkeypatch.setattr(compute, "has_bf16", lambda: True)
    assert compute.resolve_precision("auto", keras_ad) == ("bfloat16" if keras_backend() == "tensorflow" else "float32")
    assert compute.resolve_precision("auto", fake) == "float32"
    notes = []
    assert compute.resolve_precision("bfloat16", fake, notes) == "float32"
    assert notes == ["bfloat16 needs Keras on TensorFlow; torch models ran in float32"]
    assert compute.resolve_precision("float32", keras_ad) == "float32"
    monkeypatch.setattr(compute, "has_bf16", lambda: False)
    assert compute.resolve_precision("auto", keras_ad) == "float32"  # emulated bfloat16 would be slower
    notes = []
    assert compute.resolve_precision("bfloat16", keras_ad, notes) == "float32"  # asked for, still not emulated
    assert notes == ["this CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX); the passes ran in float32"]
    with pytest.raises(UserError, match="--precision half: use one of auto, float32, bfloat16"):
        compute.find_patterns(tiny_sequential, precision="half")


def test_planted_detectors_torchscript():
    ad = adapter(planted_script())
    name = ad.conv_layers((SIZE, SIZE, 3))[0].name
    res = optimise(ad, [ChannelMean(name, 0), ChannelMean(name, 1)], (SIZE, SIZE, 3), preprocess_fn("unit"),
                   steps=256, seed=0)  # fmt: skip
    looks_planted(res.images)


def natural_crops(n: int = 100, side: int = SIZE) -> np.ndarray:
    """``n`` random crops of the example photos at random scales, ``side`` px, in [0, 1]."""
    from featuremaps.images import fit_to

    rng = np.random.default_rng(0)
    photos = [load_image(EXAMPLES / "astronaut.png"), load_image(EXAMPLES / "chelsea.png")]
    out = []
    for i in range(n):
        p = photos[i % 2]
        s = int(rng.integers(side, min(p.shape[:2]) // 2))
        y, x = rng.integers(0, p.shape[0] - s), rng.integers(0, p.shape[1] - s)
        out.append(fit_to(p[y : y + s, x : x + s], (side, side)) / 255.0)
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("which", ["planted", "random"])
def test_the_result_beats_100_natural_images_and_rises(which, tiny_sequential):
    """The planted channels and the random ``conv_b`` of the tiny fixture: each channel's image activates it
    more than every one of 100 crops of natural photos, and its objective rose over the steps."""
    model, layer, n = (planted_keras(), "planted", 2) if which == "planted" else (tiny_sequential, "conv_b", 6)
    ad = adapter(model)
    side = int(model.inputs[0].shape[1])
    targets = [ChannelMean(layer, k) for k in range(n)]
    res = optimise(ad, targets, (side, side, 3), preprocess_fn("unit"), steps=256, seed=1)
    crops = natural_crops(side=side)
    for k, t in enumerate(targets):
        natural = ad.gradients(crops, [t] * len(crops)).value
        assert res.values[k] > natural.max(), (k, res.values[k], natural.max())
    h = res.history
    assert (h[-8:].mean(axis=0) > h[:8].mean(axis=0)).all()


def test_same_seed_same_image_other_seed_other_image():
    ad = adapter(planted_keras())
    targets = [ChannelMean("after", 0), ChannelMean("after", 1)]
    run = lambda seed: optimise(ad, targets, (SIZE, SIZE, 3), preprocess_fn("unit"), steps=6, seed=seed).images  # noqa: E731
    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


BACKEND_RUN = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_patterns import planted_keras, SIZE
from featuremaps.frameworks import adapter
from featuremaps.loaded import preprocess_fn
from featuremaps.patterns.optimise import optimise
from featuremaps.targets import ChannelMean
import keras
m = planted_keras()
res = optimise(adapter(m), [ChannelMean("after", k) for k in range(3)], (SIZE, SIZE, 3), preprocess_fn("unit"),
               steps=32, seed=0)
print(json.dumps({{"backend": keras.backend.backend(), "values": res.values.tolist()}}))
"""


@pytest.mark.slow
def test_three_keras_backends_agree():
    """TensorFlow, JAX and torch give the same final objective within 1% (relative), in float32. The three run the
    same float32 convolutions with different kernels, summation orders and XLA fusions: their gradients differ
    by ~1e-6 relative per step; Adam divides each step by a running RMS, so the images move by the same
    lr-sized steps and those differences stay small over 32 steps (measured: under 0.1%); 1% leaves room
    for other CPUs and library versions while still catching a backend that differentiates something else
    (the post-ReLU instead of the pre-activation, another channel), which moves the objective by far more."""
    missing = [m for m in ("tensorflow", "jax", "torch") if importlib.util.find_spec(m) is None]
    if missing:  # the README's test command installs TensorFlow alone; CI reruns this file with the others
        pytest.skip(f"needs the three Keras backends; {', '.join(missing)} not installed")
    out = {}
    for backend in ("tensorflow", "jax", "torch"):
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT / "src")}
        code = BACKEND_RUN.format(tests=str(ROOT / "tests"))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        line = json.loads(r.stdout.strip().splitlines()[-1])
        assert line["backend"] == backend
        out[backend] = np.asarray(line["values"])
    ref = out["tensorflow"]
    for backend in ("jax", "torch"):
        assert np.allclose(out[backend], ref, rtol=0.01, atol=1e-3), (backend, out[backend], ref)


# ---------------------------------------------------------------- the command
def test_cli_writes_png_npz_manifest(tiny_file, tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (data / name).write_bytes((EXAMPLES / name).read_bytes())
    out = tmp_path / "pat"
    rc = main([
        "patterns", str(tiny_file), "--layers", "C2", "--channels", "F1-F3", "--steps", "4", "--data", str(data),
        "--exemplars", "2", "--kernels", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    arrays = np.load(out / "patterns.npz")
    assert sorted(arrays.files) == ["c2/F1", "c2/F2", "c2/F3"]
    for k in arrays.files:
        a = arrays[k]
        assert a.dtype == np.float32 and a.shape == (16, 16, 3) and 0 <= a.min() and a.max() <= 1
    man = json.loads((out / "manifest.json").read_text())
    assert man["steps"] == 4 and man["seed"] == 0 and "pre-activation" in man["objective"]
    assert man["precision"] in ("float32", "bfloat16")
    row = man["patterns"][0]
    assert row["channel"] == "F1" and isinstance(row["value"], float) and len(row["exemplars"]) == 2
    assert row["exemplars"][0]["max"] >= row["exemplars"][1]["max"] == row["exemplars"][1]["max"]
    assert man["kernels"]["count"] == 4
    from PIL import Image

    assert Image.open(out / "patterns.png").size[0] >= 560


def test_onnx_gets_exemplars_only(tmp_path):
    _, _, onnx_file = torch_and_onnx_files(tmp_path / "m")
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    out = tmp_path / "pat"
    assert main(["patterns", str(onnx_file), "--layers", "C1", "--channels", "F1-F2", "--data", str(data), "--out",
                 str(out)]) == 0  # fmt: skip
    man = json.loads((out / "manifest.json").read_text())
    assert man["steps"] == 0 and all("value" not in r and r["exemplars"] for r in man["patterns"])
    assert not (out / "patterns.npz").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--channels", "F99"], "F99 is not one"),
        (["--layers", "nope"], "nope"),
        (["--steps", "0"], "--steps"),
        (["--class", "zebra"], "zebra"),
        (["--channels", "top"], "--data"),
        (["--channels", "blue"], "F-numbers"),
        (["--size", "32"], "drop --size"),
        (["--kernels", "--channels", "F9"], "F9"),
    ],
)
def test_bad_input_is_one_line(tiny_file, tmp_path, capsys, args, words):
    rc = main(["patterns", str(tiny_file), "--classes", "a,b,c", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o").exists()


def test_onnx_without_data_is_one_line(tmp_path, capsys):
    _, _, onnx_file = torch_and_onnx_files(tmp_path / "m")
    assert main(["patterns", str(onnx_file), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no gradients" in err and "--data" in err


def test_result_displays_itself_and_names_random_weights(tiny_sequential):
    import featuremaps as fm
    from featuremaps.models import wrap

    lm = wrap(tiny_sequential)
    lm.random_weights = True
    res = fm.find_patterns(lm, layers="C1", channels="F1-F2", steps=2, kernels=True)  # the public, lazy name
    assert "(random weights)" in res.model
    b = res._repr_mimebundle_()
    assert "random weights" in b["text/plain"] and b["image/png"][:4] == b"\x89PNG"


@pytest.mark.slow
def test_exported_program_batches_in_its_own_batch_size(tmp_path):
    """A ``.pt2`` exported at batch 1 runs a batch of targets one image at a time, with the same gradients."""
    torch = pytest.importorskip("torch")
    from featuremaps import models

    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(5, 2)).eval()  # fmt: skip
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 20, 20),)), str(tmp_path / "net.pt2"))
    ad = adapter(models.load(str(tmp_path / "net.pt2")).model)
    assert ad.fixed_batch == 1
    name = ad.conv_layers((20, 20, 3))[1].name
    x = np.random.default_rng(0).random((3, 20, 20, 3)).astype(np.float32)
    targets = [ChannelMean(name, k) for k in (0, 2, 4)]
    r = ad.gradients(x, targets)
    for b, t in enumerate(targets):
        one = ad.gradients(x[b], t)
        assert np.isclose(r.value[b], one.value) and np.allclose(r.gradient[b], one.gradient, atol=1e-6)


def test_top_channels_and_classes_through_the_cli(tiny_file, tmp_path):
    """``--channels top2`` takes the two channels most active on the data (by their mean, as a forward pass
    says); ``--class`` writes one image per class under ``class/<name>``; exemplar crops are receptive fields."""
    from featuremaps import models

    data = tmp_path / "photos"
    data.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (data / name).write_bytes((EXAMPLES / name).read_bytes())
    out = tmp_path / "top"
    assert main(["patterns", str(tiny_file), "--layers", "c2", "--channels", "top2", "--steps", "2", "--data",
                 str(data), "--out", str(out)]) == 0  # fmt: skip
    man = json.loads((out / "manifest.json").read_text())
    lm = models.load(str(tiny_file))
    from featuremaps.images import fit_to

    x = np.stack([fit_to(load_image(data / n), (16, 16)) for n in ("astronaut.png", "chelsea.png")])
    maps, _ = adapter(lm.model).forward(lm.preprocess_fn(x), ["c2"])
    want = np.argsort(-maps["c2"].mean(axis=(0, 1, 2)), kind="stable")[:2]
    assert [r["channel"] for r in man["patterns"]] == [f"F{k + 1}" for k in want]
    for r in man["patterns"]:
        for e in r["exemplars"]:  # two 3x3 convs: a 5x5 field, clipped at the border
            assert e["box"]["bottom"] - e["box"]["top"] < 5 and e["box"]["right"] - e["box"]["left"] < 5
    out = tmp_path / "cls"
    assert main(["patterns", str(tiny_file), "--classes", "cat,dog,owl", "--class", "dog,owl", "--steps", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    assert sorted(np.load(out / "patterns.npz").files) == ["class/dog", "class/owl"]


def test_an_unreadable_image_of_the_data_is_named_and_skipped(tiny_file, tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    (data / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "pat"
    rc = main(["patterns", str(tiny_file), "--layers", "c1", "--channels", "F1", "--steps", "2", "--data", str(data),
               "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "skipped 1" in err
    man = json.loads((out / "manifest.json").read_text())
    assert man["data"]["images"] == 1 and "broken.png" in man["data"]["skipped"][0]
    (data / "a.png").unlink()
    assert main(["patterns", str(tiny_file), "--channels", "F1", "--data", str(data), "--out", str(out)]) == 2


# ---------------------------------------------------------------- the diversity term
def test_gram_diversity_matches_finite_differences():
    """D and dD/dA of two groups of three images: the exact gradient against central differences (float64), D
    against the cosines computed one pair at a time; and carried through the ReLU to the pre-activation."""
    rng = np.random.default_rng(0)
    for shape in ((3, 4, 5), (2, 2, 7)):  # more positions than channels (the Grams), fewer (the cross products)
        check_gram_diversity(rng.random((6, *shape)))
    z = rng.normal(0, 1, (4, 3, 3, 4))  # pre-activations, some negative: dD(relu(z))/dz
    z[np.abs(z) < 0.05] = 0.1  # away from the kink
    _, dz, _ = pre_activation_gradient(z, 2)
    for idx in [tuple(rng.integers(0, s) for s in z.shape) for _ in range(12)]:
        e = np.zeros_like(z)
        e[idx] = 1e-4
        f = lambda v: pre_activation_gradient(v, 2)[0].sum()  # noqa: E731
        assert np.isclose(dz[idx], (f(z + e) - f(z - e)) / 2e-4, atol=1e-4), idx


def check_gram_diversity(a: np.ndarray) -> None:
    """D of two groups of three images against the cosines one pair at a time; dD/dA against differences."""
    values, grad = gram_diversity(a, groups=2)
    for g in range(2):
        grams = [a[i].reshape(-1, a.shape[-1]).T @ a[i].reshape(-1, a.shape[-1]) for i in range(3 * g, 3 * g + 3)]
        unit = [m / np.linalg.norm(m) for m in grams]
        cos = [float((unit[i] * unit[j]).sum()) for i in range(3) for j in range(i + 1, 3)]
        assert np.isclose(values[g], -np.mean(cos))
    num = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        e = np.zeros_like(a)
        e[idx] = 1e-6
        num[idx] = (gram_diversity(a + e, 2)[0].sum() - gram_diversity(a - e, 2)[0].sum()) / 2e-6
    assert np.abs(grad).max() > 1e-3 and np.allclose(grad, num, atol=1e-8)
    with pytest.raises(ValueError):
        gram_diversity(a, groups=6)  # groups of one image have no pairs


def test_weighted_target_is_any_linear_functional(tiny_sequential):
    """``Weighted`` with a channel's mean weights is that channel's mean, on Keras and on the fake (every adapter
    reads a batch's weights from ``target_weights``)."""
    rng = np.random.default_rng(0)
    for ad, layer, side in ((adapter(tiny_sequential), "conv_b", 16), (FakeAdapter(input_shape=(8, 8, 3)), "conv2", 8)):
        x = rng.random((2, side, side, 3)).astype(np.float32)
        plain = [ChannelMean(layer, 1), ChannelMean(layer, 3)]
        w = target_weights(plain, ad.layer_shapes((side, side, 3))[layer])
        a, b = ad.gradients(x, plain), ad.gradients(x, [Weighted(layer, w[0]), Weighted(layer, w[1])])
        assert np.allclose(a.value, b.value, rtol=1e-5) and np.allclose(a.gradient, b.gradient, rtol=1e-4, atol=1e-7)


def gram_cosines(maps: np.ndarray, n: int) -> np.ndarray:
    """The mean pairwise Gram cosine of each group of ``n`` consecutive images' (post-ReLU) maps."""
    return -gram_diversity(np.maximum(maps, 0), len(maps) // n)[0]


def test_diversity_makes_a_channels_images_differ():
    """Same seed, three images of the planted red detector: with the term their Gram matrices (of the planted
    layer: red and stripes) are measurably less alike than without it (the term finds the stripes channel to
    vary), and each image still drives its channel far above a grey image (it is still a maximisation)."""
    ad = adapter(planted_keras())
    targets = [ChannelMean("planted", 0)] * 3
    run = lambda w: optimise(ad, targets, (SIZE, SIZE, 3), preprocess_fn("unit"), steps=64, seed=0, diversity=w,  # noqa: E731
                             groups=1)  # fmt: skip
    off, on = run(0.0), run(DEFAULT_WEIGHT)
    assert off.diversity is None and on.diversity.shape == (1,)
    cos_off = gram_cosines(ad.forward(off.images, ["planted"])[0]["planted"], 3)
    cos_on = gram_cosines(ad.forward(on.images, ["planted"])[0]["planted"], 3)
    assert np.allclose(-cos_on, on.diversity, atol=1e-4)
    assert cos_on[0] < cos_off[0] - 0.2, (cos_on, cos_off)
    grey = ad.gradients(np.full((3, SIZE, SIZE, 3), 0.5, np.float32), targets).value  # -8: silent on grey
    assert (on.values > grey + 4).all(), (on.values, grey)
    assert (on.history[-8:].mean(axis=0) > on.history[:8].mean(axis=0)).all()


def test_one_image_per_channel_is_the_path_it_always_was(tiny_sequential, monkeypatch):
    """``images=1`` (the default) never enters the diversity step and gives the plain optimisation's images."""
    from featuremaps.patterns import optimise as opt_module

    def refuse(*a, **k):
        raise AssertionError("the diversity step ran")

    monkeypatch.setattr(opt_module, "_optimise_diverse", refuse)
    res = find_patterns(tiny_sequential, layers="conv_b", channels="F1,F4", steps=6, seed=2)
    plain = optimise(adapter(tiny_sequential), [ChannelMean("conv_b", 0), ChannelMean("conv_b", 3)], (16, 16, 3),
                     res_preprocess(tiny_sequential), steps=6, seed=2, precision=res.precision)  # fmt: skip
    assert [r.key for r in res.rows] == ["conv_b/F1", "conv_b/F4"] and all(not r.more for r in res.rows)
    assert np.array_equal(np.stack([r.image for r in res.rows]), plain.images)
    assert sorted(res.arrays()) == ["conv_b/F1", "conv_b/F4"] and res.diversity == 0 and res.images == 1


def res_preprocess(model):
    from featuremaps import models

    return models.as_loaded(model).preprocess_fn


def test_cli_writes_several_images_per_channel(tiny_file, tmp_path):
    """Three images per channel beside one exemplar: keys ``<key>/2``, ``<key>/3``, the manifest, a wide figure."""
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    out = tmp_path / "pat"
    rc = main(["patterns", str(tiny_file), "--layers", "C2", "--channels", "F1,F2", "--images", "3", "--steps", "4",
               "--data", str(data), "--exemplars", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    arrays = np.load(out / "patterns.npz")
    assert sorted(arrays.files) == sorted(f"c2/F{k}{s}" for k in (1, 2) for s in ("", "/2", "/3"))
    assert all(arrays[k].shape == (16, 16, 3) for k in arrays.files)
    assert not np.allclose(arrays["c2/F1"], arrays["c2/F1/2"])
    man = json.loads((out / "manifest.json").read_text())
    assert man["images_per_channel"] == 3 and man["diversity"]["weight"] == DEFAULT_WEIGHT
    row = man["patterns"][0]
    assert row["images"] == ["c2/F1", "c2/F1/2", "c2/F1/3"] and len(row["values"]) == 3
    assert -1 <= row["diversity"] <= 0
    from PIL import Image

    assert Image.open(out / "patterns.png").size[0] >= 4 * 128  # three images and an exemplar side by side
    assert len(row["exemplars"]) == 1


def test_classes_with_several_images_read_the_last_conv(tiny_file, tmp_path):
    out = tmp_path / "cls"
    rc = main(["patterns", str(tiny_file), "--classes", "a,b,c", "--class", "a", "--images", "2", "--steps", "3",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["diversity"]["label"] == "C2" and -1 <= man["patterns"][0]["diversity"] <= 0
    assert sorted(np.load(out / "patterns.npz").files) == ["class/a", "class/a/2"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--images", "0"], "--images 0"),
        (["--images", "17"], "--images 17"),
        (["--images", "2", "--diversity", "-1"], "--diversity -1"),
        (["--diversity", "5"], "--images 2"),
    ],
)
def test_bad_diversity_is_one_line(tiny_file, tmp_path, capsys, args, words):
    rc = main(["patterns", str(tiny_file), "--steps", "2", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o").exists()


def test_diversity_on_onnx_is_one_line(tmp_path, capsys):
    _, _, onnx_file = torch_and_onnx_files(tmp_path / "m")
    data = tmp_path / "photos"
    data.mkdir()
    (data / "a.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    args = ["patterns", str(onnx_file), "--data", str(data), "--images", "3", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no gradients" in err and "--images 3" in err, err


@pytest.mark.slow
def test_the_emotion_models_exemplars_are_faces_as_show_feeds_it(tmp_path):
    """With the emotion model, each photo of --data is scanned as its largest face (what ``show`` feeds the
    model); a photo without a face is scanned whole, with a note; ``--no-face-crop`` scans every photo whole."""
    from featuremaps import models
    from featuremaps.faces import largest_face
    from featuremaps.images import fit_to

    data = tmp_path / "mixed"
    data.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (data / name).write_bytes((EXAMPLES / name).read_bytes())
    lm = models.load("emotion")
    common = dict(layers="C13", channels="F1-F2", data=str(data), steps=1, exemplars=2)
    res = find_patterns(lm, **common)
    assert res.face_crop and res.scanned_whole == [str(data / "chelsea.png")]
    assert any("1 of 2 images of --data had no face and were scanned whole" in n for n in res.notes), res.notes
    side = lm.input_shape[0]  # 48, or the centre 40 of the 48 px face for a model trained with --crop 40
    cut = slice((48 - side) // 2, (48 - side) // 2 + side)
    face = fit_to(largest_face(load_image(data / "astronaut.png"))[0], (48, 48), 1)[cut, cut, 0]
    seen = {e.source: e.crop for r in res.rows for e in r.exemplars}
    astronaut = seen[str(data / "astronaut.png")]  # C13's field spans the face: the whole fitted input
    assert astronaut.shape[:2] == (side, side)
    assert np.abs(astronaut[..., 0].astype(int) - face.astype(int)).max() <= 1
    whole = find_patterns(lm, face_crop=False, **common)
    assert not whole.face_crop and not whole.scanned_whole
    photo = fit_to(load_image(data / "astronaut.png"), (48, 48), 1)[cut, cut, 0]
    crop = {e.source: e.crop for r in whole.rows for e in r.exemplars}[str(data / "astronaut.png")]
    assert np.abs(crop[..., 0].astype(int) - photo.astype(int)).max() <= 1
    out = tmp_path / "out"
    assert main(["patterns", "--layers", "C13", "--channels", "F1", "--steps", "1", "--data", str(data),
                 "--no-face-crop", "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "manifest.json").read_text())["data"]["face_crop"] is False
