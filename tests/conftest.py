"""Shared fixtures: tiny models built in code (no downloads) and small images written to tmp_path."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps import keras_backend
from featuremaps.emotion.shipped import INPUT_SHAPE, model_card

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# test modules import Keras (TensorFlow) before featuremaps: triton, where installed, must come first
keras_backend.load_triton_first()

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: FER2013 as users name it (the FEATUREMAPS_FER2013 environment variable), else ../shared beside the checkout
FER_ARCHIVE = Path(os.environ.get("FEATUREMAPS_FER2013") or SHARED / "data" / "fer2013" / "fer2013.tar.gz")
EXAMPLES = ROOT / "examples"
#: the side of the face crop the shipped emotion VGG-16 takes (its card's input_side; a card without one: 48)
EMOTION_SIDE = (model_card() or {}).get("input_side", INPUT_SHAPE[0])


def needs_fer():
    """Skip marker for tests that read real FER2013 faces (never committed to the repo)."""
    return pytest.mark.skipif(
        not FER_ARCHIVE.is_file(),
        reason=f"FER2013 archive not found at {FER_ARCHIVE} (set FEATUREMAPS_FER2013; a fresh clone has no ../shared)",
    )


# ---------------------------------------------------------------- tiny models, built once per test run
# The in-memory models are shared by every test that asks for one (featuremaps never mutates a model);
# the *_file fixtures save them once to a session folder. A test that trains or builds a model makes its own.
def png_bytes(h=40, w=50, seed=0) -> bytes:
    """A random RGB image of ``h`` x ``w`` as PNG bytes (an upload, a command-line file)."""
    rgb = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def chain_model():
    """Two convs (``ca`` 4 maps, ``cb`` 6 after a pool), 32x32x3 -> 3 classes: the explorer's tests' model."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="ca"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="cb"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="chain",
    )


@pytest.fixture(scope="session")
def tiny_sequential():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="tiny_seq",
    )


@pytest.fixture(scope="session")
def tiny_functional():
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), name="img")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu", name="c2")(a)
    c = keras.layers.DepthwiseConv2D(3, padding="same", name="c3")(b)
    d = keras.layers.Add(name="add")([a, c])
    e = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="c4")(d)
    y = keras.layers.Dense(2, activation="softmax", name="out")(keras.layers.GlobalAveragePooling2D()(e))
    return keras.Model(x, y, name="tiny_fn")


@pytest.fixture(scope="session")
def tiny_nested():
    """The transfer-learning shape: Sequential([Input, Rescaling, base CNN, GAP, Dense])."""
    import keras

    keras.utils.set_random_seed(0)
    bi = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(bi)
    h = keras.layers.MaxPooling2D(name="block1_pool")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block2_conv1")(h)
    base = keras.Model(bi, h, name="base")
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255.0),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ],
        name="transfer",
    )


@pytest.fixture
def tiny_unbuilt():
    """Per test: calling it builds it."""
    import keras

    return keras.Sequential(
        [
            keras.layers.Conv2D(3, 3, activation="relu", name="u1"),
            keras.layers.Conv2D(5, 3, activation="relu", name="u2"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ],
        name="unbuilt",
    )


@pytest.fixture(scope="session")
def models_folder(tmp_path_factory) -> Path:
    """The session's folder of saved tiny models (read-only for the tests)."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_file(models_folder) -> Path:
    """``tiny.keras``: 16x16x3 -> c1 (4) -> c2 (6) -> GAP -> 3-way softmax, model name "tiny"."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(a)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(b))
    path = models_folder / "tiny.keras"
    keras.Model(x, y, name="tiny").save(path)
    return path


@pytest.fixture(scope="session")
def tiny_sequential_file(models_folder, tiny_sequential) -> Path:
    path = models_folder / "tiny_seq.keras"
    tiny_sequential.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_functional_file(models_folder, tiny_functional) -> Path:
    path = models_folder / "tiny_fn.keras"
    tiny_functional.save(path)
    return path


@pytest.fixture
def rgb_image(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    p = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(p)
    return p


# ---------------------------------------------------------------- atlas on PyTorch / ONNX files (atlas, atlas_ray)
def torch_and_onnx_files(folder: Path, dynamic_size: bool = False):
    """A tiny torch CNN (conv 3->4, ReLU, conv 4->6 stride 2, ReLU, mean, linear) saved as TorchScript
    (``net.pt``, traced) and as ONNX (``net.onnx``, exported for 32x32 inputs with a dynamic batch; with
    ``dynamic_size`` a dynamic height and width too, so it needs ``--input-shape``); returns (net, pt, onnx).
    Skips the test when torch or onnx/onnxruntime is missing."""
    import warnings

    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Conv2d(3, 4, 3, padding=1)
            self.second = nn.Conv2d(4, 6, 3, stride=2)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = torch.relu(self.second(torch.relu(self.first(x))))
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    net = Tiny().eval()
    folder.mkdir(parents=True, exist_ok=True)
    pt, ox = folder / "net.pt", folder / "net.onnx"
    example = torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(net, example).save(str(pt))
        torch.onnx.export(
            net, example, str(ox), dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "n", 2: "h", 3: "w"} if dynamic_size else {0: "n"}},
        )  # fmt: skip
    return net, pt, ox


def hooked_channel_means(net, images: list[np.ndarray], preprocess) -> list[np.ndarray]:
    """Per Conv2d of ``net`` (forward order), the (N, C) spatial means of its output over ``images``
    (uint8 (H, W, 3)), from a plain forward with hooks: the test's own computation of what atlas averages."""
    import torch

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    outs = {i: [] for i in range(len(convs))}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, i=i: outs[i].append(o.detach().mean((2, 3)).numpy()))
        for i, m in enumerate(convs)
    ]
    try:
        with torch.no_grad():
            for im in images:
                net(torch.from_numpy(preprocess(im[None].astype(np.float32))).permute(0, 3, 1, 2))
    finally:
        for h in hooks:
            h.remove()
    return [np.concatenate(outs[i]).astype(np.float64) for i in range(len(convs))]


def onnx_channel_means(path: Path, images: list[np.ndarray], preprocess) -> list[np.ndarray]:
    """Per Conv node of the ONNX file (graph order), the (N, C) spatial means of its output over ``images``:
    the conv outputs are added as graph outputs and read from a plain ``InferenceSession.run``."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    names = [n.output[0] for n in proto.graph.node if n.op_type == "Conv"]
    for name in names:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = preprocess(np.stack(images).astype(np.float32)).transpose(0, 3, 1, 2)
    outs = sess.run(names, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
    return [o.mean(axis=(2, 3)).astype(np.float64) for o in outs]


def class_means(per_image: np.ndarray, labels: list[int], n_classes: int) -> np.ndarray:
    """(n_classes, C) mean of the per-image rows of each class."""
    labels = np.asarray(labels)
    return np.stack([per_image[labels == k].mean(axis=0) for k in range(n_classes)])


def textbook_ablationcam(net, x: np.ndarray, module, call: int = 1, cls: int | None = None):
    """Ablation-CAM as in the paper (Desai & Ramaswamy 2020), one channel at a time with plain torch: a forward
    hook zeroes channel k of ``module``'s ``call``-th output, the image is run again, ``w_k = (y - y_k) / y``
    (``y`` the class's logit); the map is ``ReLU(sum_k w_k A_k)``. Returns (map (h, w), class)."""
    import torch

    def run(k=None):
        kept, count = {}, [0]

        def hook(_m, _i, o):
            count[0] += 1
            if count[0] != call:
                return None
            kept["a"] = o.detach().clone()
            if k is None:
                return None
            o = o.clone()
            o[:, k] = 0.0
            return o

        h = module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                out = net(torch.from_numpy(x).permute(2, 0, 1)[None])
        finally:
            h.remove()
        return kept["a"][0], out[0].double()

    a, out = run()
    c = int(out.argmax()) if cls is None else cls
    y = float(out[c])
    weights = np.array([(y - float(run(k)[1][c])) / y for k in range(a.shape[0])])
    acts = a.permute(1, 2, 0).double().numpy()
    return np.maximum(acts @ weights, 0.0), c
