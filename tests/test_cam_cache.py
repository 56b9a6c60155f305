"""compute_cam's engine cache (cam/engine.py::EngineCache): reused between calls, never keeps a deleted model alive,
leaves pickling and saving alone, never gives a stale map after the weights change."""

from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest

from featuremaps.cam import compute_cam
from featuremaps.cam import engine as cam_engine
from featuremaps.cam.engine import ENGINES, CamEngine, EngineCache

try:
    import torch
    from torch import nn
except ImportError:  # the Keras half still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install 'featuremaps[torch]')")

if torch is not None:

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 6, 3, padding=1)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            return self.fc(x.mean((2, 3)))


def _keras_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="cached",
    )


def _torch_model(seed=0):
    torch.manual_seed(seed)
    return Net()


def _x(seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (12, 12, 3)).astype(np.float32)


def _fresh(model, x, cls=None):
    """The map an engine built now gives: what compute_cam must give too."""
    return CamEngine(model, x.shape).run(x, ["gradcam"], None if cls is None else [cls])[0].heatmap


@pytest.fixture
def built(monkeypatch):
    """Counts the engines compute_cam builds."""
    count = [0]

    class Counting(CamEngine):
        def __init__(self, *a, **kw):
            count[0] += 1
            super().__init__(*a, **kw)

    monkeypatch.setattr(cam_engine, "CamEngine", Counting)
    return count


@pytest.mark.parametrize("make", [_keras_model, pytest.param(_torch_model, marks=needs_torch)], ids=["keras", "torch"])
def test_engine_reused_and_model_freed(make, built):
    model, x = make(), _x()
    first = compute_cam(model, x)
    second = compute_cam(model, x + 0.5)
    third = compute_cam(model, x)
    assert built[0] == 1  # one cut and compiled gradient for three calls
    assert np.allclose(first.heatmap, third.heatmap)
    assert not np.allclose(first.heatmap, second.heatmap)
    compute_cam(model, x, layer="conv_a" if make is _keras_model else "c1")  # another layer: another engine
    assert built[0] == 2
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the cache held it weakly
    assert all(entry[0]() is not None for entry in ENGINES._entries.values())  # and dropped its engines


def test_keras_new_weights_give_the_new_map(tmp_path):
    import keras

    model, x = _keras_model(), _x()
    before = compute_cam(model, x, class_index=1).heatmap
    model.set_weights(_keras_model(seed=7).get_weights())  # same image: the adapter's kept body outputs are stale
    after = compute_cam(model, x, class_index=1).heatmap
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _fresh(model, x, 1), rtol=1e-4, atol=1e-6)
    # the cache put nothing on the model: it saves and loads as before
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(back(x[None]), model(x[None]), rtol=1e-5)


@needs_torch
def test_torch_new_weights_and_new_head_give_the_new_map():
    model, x = _torch_model(), _x()
    before = compute_cam(model, x, class_index=1).heatmap
    model.load_state_dict(_torch_model(seed=7).state_dict())
    after = compute_cam(model, x, class_index=1).heatmap
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _fresh(model, x, 1), rtol=1e-4, atol=1e-6)
    model.c2 = nn.Conv2d(4, 5, 3, padding=1)  # rebuilt in place (fine-tuning): the old hooks would miss it
    model.fc = nn.Linear(5, 4)
    res = compute_cam(model, x, class_index=3)
    assert res.probs.shape == (4,) and res.heatmap.shape == (12, 12)
    np.testing.assert_allclose(res.heatmap, _fresh(model, x, 3), rtol=1e-4, atol=1e-6)
    back = pickle.loads(pickle.dumps(model))  # no hook or attribute of ours on the module
    with torch.no_grad():
        t = torch.from_numpy(x).permute(2, 0, 1)[None]
        assert torch.allclose(back(t), model(t))


@needs_torch
def test_cache_is_bounded_and_skips_what_takes_no_weak_reference():
    cache = EngineCache(size=2)
    models = [_torch_model(seed=s) for s in range(3)]
    x = _x()
    for m in models:
        cache.give(m, x.shape, None, CamEngine(m, x.shape))
    assert len(cache) == 2 and cache.take(models[0], x.shape) is None  # the oldest went
    eng = cache.take(models[2], x.shape)
    assert eng is not None and eng.model is models[2] and eng.adapter.module is models[2]  # its model back
    assert cache.take(models[2], x.shape) is None  # taken out: one caller at a time
    cache.give("model.onnx", x.shape, None, eng)  # a path: not kept
    assert len(cache) == 1
