"""Training the ResNet sibling must never kill the process (issue 29: oneDNN heap corruption in TensorFlow).

TensorFlow 2.21's oneDNN kernel for the weight gradient of a 1x1 stride-2 convolution (``jit_1x1``, AVX-512)
overruns its scratchpad when the channel counts are not multiples of 16, as at ``--width 0.1``: the process
dies with SIGSEGV or SIGABRT ("corrupted size vs. prev_size") in its first training steps. The ResNet's
strided shortcuts are therefore a 1x1 subsampling pool and a stride-1 1x1 conv (the same function). The
training steps run in a subprocess, so a crash fails the test instead of killing the test run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from featuremaps.emotion.model import build_emotion_model

pytestmark = pytest.mark.slow  # training steps in a subprocess (~15 s)

TRAIN_STEPS = """
import keras
import numpy as np
from featuremaps.emotion.model import build_emotion_model
rng = np.random.default_rng(0)
for width in (0.1, 0.2):  # channels 6, 13, 26, 51 and 13, 26, 51, 102: not multiples of 16
    keras.utils.set_random_seed(0)
    model = build_emotion_model("resnet", batch_norm=True, width=width)
    opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.uniform(0, 1, (99, 48, 48, 1)).astype("float32")  # batches of 64 and 35, as train's last batch
    model.fit(x, rng.integers(0, 7, 99), batch_size=64, epochs=3, verbose=0)
print("ok")
"""


def test_resnet_training_steps_do_not_crash():
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed (pip install tensorflow): the crash is TensorFlow's")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    for name in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS"):
        env.pop(name, None)  # prove the fix in the model, not in the environment
    p = subprocess.run([sys.executable, "-c", TRAIN_STEPS], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-1500:]}"
    assert "ok" in p.stdout


@pytest.mark.parametrize("side", [48, 44, 11, 3])
def test_strided_shortcut_is_a_strided_1x1_conv(side):
    """Subsample + stride-1 1x1 conv computes what a 1x1 stride-2 "same" conv with that kernel does, for even and
    odd sizes: weights trained either way mean the same, and ``fold_batch_norm`` copies them by name."""
    model = build_emotion_model("resnet", width=0.125)
    conv = model.get_layer("stage2_block1_shortcut")
    block_in = model.get_layer("stage2_block1_shortcut_subsample").input
    x = np.random.default_rng(0).normal(size=(2, side, side, int(block_in.shape[-1]))).astype(np.float32)
    inp = keras.Input(x.shape[1:])
    ours = keras.Model(inp, conv(model.get_layer("stage2_block1_shortcut_subsample")(inp)))
    strided = keras.layers.Conv2D(conv.filters, 1, strides=2, padding="same")
    strided.build(x.shape)
    strided.set_weights(conv.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(strided(x)), atol=1e-5)
