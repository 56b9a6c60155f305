"""featuremaps atlas --engine ray: the Ray Data run gives the local run's statistics, CLI files, bad input.

One local Ray (2 CPUs) is started for the whole module: Ray start-ups are slow on a small machine.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import FER_ARCHIVE, class_means, hooked_channel_means, onnx_channel_means, torch_and_onnx_files
from PIL import Image

ray = pytest.importorskip("ray")

from featuremaps import models  # noqa: E402
from featuremaps.atlas import compute_atlas, most_selective, open_source  # noqa: E402
from featuremaps.atlas.ray import block_rows, compute_atlas_ray  # noqa: E402
from featuremaps.cli import main  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray cluster and subprocesses of the CLI

CLASSES = ["cat", "dog", "owl"]
FER = Path(os.environ.get("FEATUREMAPS_FER2013", FER_ARCHIVE))


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        # one logical GPU (no hardware needed): lets a test schedule actors with --gpus-per-actor
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """ROOT/<class>/*.png (3 classes x 30 random 16x16 RGB images, one unreadable file) and a tiny CNN file."""
    import keras

    tmp = tmp_path_factory.mktemp("ray_atlas")
    root = tmp / "data"
    rng = np.random.default_rng(0)
    for k, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True)
        for i in range(30):
            # class-dependent brightness, so channels are class selective; quantised so some activations tie
            im = np.clip(rng.integers(0, 256, (16, 16, 3)) // 32 * 32 * (0.6 + 0.2 * k), 0, 255).astype(np.uint8)
            Image.fromarray(im).save(root / c / f"{i:02d}.png")
    (root / "dog" / "zz_broken.png").write_bytes(b"\x89PNG truncated")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(6, 3, activation="relu", name="conv_a"),
            keras.layers.Conv2D(10, 3, activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="tiny",
    )
    model.save(tmp / "tiny.keras")
    return root, tmp / "tiny.keras"


def _assert_same(a, b):
    assert a.images == b.images and a.counts.tolist() == b.counts.tolist()
    assert a.skipped == b.skipped and a.bad == b.bad
    for j in range(len(a.layers)):
        np.testing.assert_allclose(b.means[j], a.means[j], rtol=1e-5, atol=1e-7)
        assert (a.top_idx[j] == b.top_idx[j]).all(), f"layer {j}: top ids differ"
        np.testing.assert_allclose(b.top_vals[j], a.top_vals[j], rtol=1e-5)
        assert most_selective(a, j, 10).tolist() == most_selective(b, j, 10).tolist()
        np.testing.assert_allclose(b.si[j], a.si[j], rtol=1e-5, atol=1e-7)
        # the drawn top images' crops: located on the driver after the merge, the same boxes as the local run's
        assert b.crops is not None and b.crops[j].boxes == a.crops[j].boxes, f"layer {j}: crop boxes differ"
        assert b.crops[j].note == a.crops[j].note


def _assert_same_npz(a, b):
    """The atlas.npz of two runs: the same arrays, floats within 1e-5 relative, the rest identical."""
    with np.load(a / "atlas.npz") as za, np.load(b / "atlas.npz") as zb:
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            if za[k].dtype.kind == "f":
                np.testing.assert_allclose(zb[k], za[k], rtol=1e-5, atol=1e-7)
            else:
                assert (za[k] == zb[k]).all(), k


def test_ray_equals_local_on_synthetic_folder(local_ray, synthetic):
    root, model_file = synthetic
    load = partial(models.load, str(model_file), classes=CLASSES)
    lm = load()
    src = open_source(root, "PrivateTest", lm.classes)
    assert block_rows(len(src), 8, 2, 3) == 8  # 91 images, batches of 8: 12 blocks for 2 actors
    assert block_rows(1_281_167, 64, 8, 1000) == 125 * 64  # ImageNet, 1000 classes: 8,000 images a block
    local = compute_atlas(lm, src, batch_size=8)
    seen = []
    remote = compute_atlas_ray(load, src, lm=lm, batch_size=8, actors=2, progress=lambda i, n: seen.append((i, n)))
    _assert_same(local, remote)
    assert local.skipped == 1 and "zz_broken.png" in remote.bad[0]
    assert seen[-1] == (91, 91) and len(seen) == 12  # one partial per block, progress on the driver


def test_ray_torch_model_gets_the_drivers_weights_on_gpu_actors(local_ray, synthetic):
    """A torchvision model with random weights (each process would draw its own) through a pool of 2 actors
    asking half a GPU each (the cluster's one logical GPU holds both): the actors compute the driver's model,
    so the statistics equal the local run's; without a GPU in the cluster the option is one line."""
    pytest.importorskip("torch")
    from featuremaps.errors import UserError

    root, _ = synthetic
    load = partial(models.load, "torchvision:resnet18", weights="none")
    try:
        lm = load()
    except UserError as e:  # torchvision missing or not importable here: said, not failed
        pytest.skip(str(e))
    src = open_source(root, "PrivateTest", None)
    local = compute_atlas(lm, src, layers="C1,C20", batch_size=8)
    remote = compute_atlas_ray(load, src, lm=lm, layers="C1,C20", batch_size=8, gpus_per_actor=0.5)
    _assert_same(local, remote)
    with pytest.raises(UserError, match="GPUs"):
        compute_atlas_ray(load, src, lm=lm, layers="C1", batch_size=8, gpus_per_actor=2)


def test_ray_cli_on_torchscript_and_onnx_files_equals_the_local_cli(local_ray, tmp_path, capsys):
    """featuremaps atlas --engine ray on a TorchScript file (2 actors) and an ONNX file (2 actors at half a
    logical GPU each, --gpus-per-actor 0.5): the same files as the local command, class means within 1e-5
    and the same top-9 ids, and the class means equal a hooked torch forward / a plain ONNX Runtime session."""
    net, pt, ox = torch_and_onnx_files(tmp_path / "models")
    rng = np.random.default_rng(1)
    images, labels = [], []
    for k, c in enumerate(CLASSES):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(7):
            im = (rng.integers(0, 256, (32, 32, 3)) // 32 * 32 * (0.6 + 0.2 * k)).clip(0, 255).astype(np.uint8)
            Image.fromarray(im).save(tmp_path / "data" / c / f"{i}.png")
            images.append(im)
            labels.append(k)

    def unit(x):
        return x / 255.0

    for model, extra, hand in (
        (pt, ["--actors", "2"], hooked_channel_means(net, images, unit)),
        (ox, ["--gpus-per-actor", "0.5"], onnx_channel_means(ox, images, unit)),
    ):
        base = ["atlas", "--data", str(tmp_path / "data"), "--model", str(model), "--batch-size", "4"]
        local, remote = tmp_path / f"local_{model.suffix[1:]}", tmp_path / f"ray_{model.suffix[1:]}"
        assert main([*base, "--out", str(local)]) == 0, capsys.readouterr().err
        assert main([*base, "--engine", "ray", *extra, "--out", str(remote)]) == 0, capsys.readouterr().err
        files = {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()}
        assert {"atlas.json", "atlas.npz", "index.html", "heatmaps/C01_first.png", "top/C02_second.png"} <= files
        a, b = (json.loads((d / "atlas.json").read_text()) for d in (local, remote))
        assert b["images"] == 21 and [ly["name"] for ly in b["layers"]] == ["first", "second"]
        _assert_same_npz(local, remote)
        with np.load(remote / "atlas.npz") as zb:
            for j, ly in enumerate(b["layers"]):
                want = class_means(hand[j], labels, len(CLASSES))
                np.testing.assert_allclose(zb[f"{ly['npz_prefix']}/means"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not FER.is_file(), reason=f"FER2013 archive not found at {FER} (set FEATUREMAPS_FER2013)")
def test_ray_equals_local_on_fer_private_test_slice(local_ray):
    load = partial(models.load, "emotion", weights="none")  # random weights: no trained file needed
    lm = load()
    src = open_source(FER, "PrivateTest", lm.classes)
    local = compute_atlas(lm, src, layers="C1,C4,C13", batch_size=32, limit=256)
    remote = compute_atlas_ray(load, src, lm=lm, layers="C1,C4,C13", batch_size=32, limit=256, actors=2)
    assert remote.images == 256 and (remote.counts > 0).sum() >= 6
    _assert_same(local, remote)


def test_ray_cli_with_manifest_writes_the_local_files(local_ray, synthetic, tmp_path, capsys):
    root, model_file = synthetic
    man = tmp_path / "train.csv"
    rows = sorted(root.rglob("*.png"))
    man.write_text("uri,y\n" + "".join(f"{p},{p.parent.name}\n" for p in rows))  # absolute paths
    base = ["atlas", "--data", str(man), "--path-column", "uri", "--label-column", "y", "--model", str(model_file)]
    base += ["--classes", ",".join(CLASSES), "--batch-size", "16"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 1  # 1: an image was skipped (the batch rule)
    assert main([*base, "--engine", "ray", "--actors", "2", "--out", str(tmp_path / "ray")]) == 1
    printed = capsys.readouterr().err
    assert printed.count("warning: skipped 1 unreadable image(s):") == 2 and "zz_broken.png" in printed
    files = {p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    assert {"atlas.json", "atlas.npz", "index.html", "heatmaps/C01_conv_a.png", "top/C02_conv_b.png"} <= files
    a, b = (json.loads((tmp_path / d / "atlas.json").read_text()) for d in ("local", "ray"))
    assert a["layers"] == b["layers"] and b["images"] == 90 and b["unreadable"] == 1
    _assert_same_npz(tmp_path / "local", tmp_path / "ray")


@pytest.mark.parametrize("address", ["ray://127.0.0.1:1", "127.0.0.1:1", "not an address:x"])
def test_unreachable_address_exit_2_at_once(synthetic, tmp_path, capsys, address):
    root, model_file = synthetic
    out = tmp_path / "out"
    args = ["atlas", "--data", str(root), "--model", str(model_file), "--classes", ",".join(CLASSES)]
    assert main([*args, "--engine", "ray", "--address", address, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error:") and "\n" not in err and "--address" in err
    assert not out.exists()


def test_user_error_on_an_actor_is_one_line(local_ray, synthetic):
    from featuremaps.errors import UserError

    root, model_file = synthetic
    lm = models.load(str(model_file), classes=CLASSES)
    src = open_source(root, "PrivateTest", lm.classes)
    missing = partial(models.load, str(model_file.parent / "not_on_this_node.keras"), classes=CLASSES)
    with pytest.raises(UserError) as e:  # the driver has the model; the actors' copy of the file is missing
        compute_atlas_ray(missing, src, lm=lm, batch_size=32, actors=1)
    assert str(e.value).startswith("on a Ray actor:") and "not_on_this_node.keras" in str(e.value)
    assert "\n" not in str(e.value)


def test_address_auto_joins_the_running_cluster(local_ray, synthetic, tmp_path):
    """--address auto from another process finds the cluster already running on this machine (here the
    module's local Ray, as a `ray start --head` would be) and gives the local command's statistics."""
    import subprocess
    import sys

    root, model_file = synthetic
    base = [sys.executable, "-m", "featuremaps", "atlas", "--data", str(root), "--model", str(model_file)]
    base += ["--classes", ",".join(CLASSES), "--batch-size", "16", "--layers", "C2"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    local = subprocess.run([*base, "--out", str(tmp_path / "local")], capture_output=True, text=True, env=env)
    remote = subprocess.run(
        [*base, "--engine", "ray", "--address", "auto", "--actors", "1", "--out", str(tmp_path / "auto")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert local.returncode == 1 and remote.returncode == 1, remote.stderr[-2000:]  # 1: zz_broken.png skipped
    assert "Traceback" not in remote.stderr and (tmp_path / "auto" / "atlas.npz").is_file(), remote.stderr[-3000:]
    _assert_same_npz(tmp_path / "local", tmp_path / "auto")


def test_address_auto_without_a_cluster_is_one_line(synthetic, tmp_path, capsys, monkeypatch):
    """No cluster to join: Ray's own ConnectionError (its text, as Ray 2.x raises it) becomes one line naming
    --address, exit 2, nothing written. Ray finds running clusters by their processes, so the missing cluster
    is Ray's answer stood in for here: this test may share the machine with the module's own Ray."""
    import featuremaps.atlas.ray as atlas_ray

    def no_cluster(*args, **kwargs):
        raise ConnectionError(
            "Could not find any running Ray instance. Please specify the one to connect to by setting "
            "`--address` flag or `RAY_ADDRESS` environment variable."
        )

    monkeypatch.setattr(atlas_ray.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(atlas_ray.ray, "init", no_cluster)
    root, model_file = synthetic
    out = tmp_path / "out"
    args = ["atlas", "--data", str(root), "--model", str(model_file), "--classes", ",".join(CLASSES)]
    assert main([*args, "--engine", "ray", "--address", "auto", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featuremaps: error: cannot connect to the Ray cluster at auto") and "\n" not in err
    assert "--address" in err and "ray start --head" in err
    assert not out.exists()
