"""The explorer's "what it looks for" panel (``/api/patterns/...``) through FastAPI's TestClient: a job in the
background with progress, its cache, the exemplars from the page's images, bad requests, a model without
gradients. Tiny in-code models and few steps (``steps=8``), so the optimisation takes well under a second."""

from __future__ import annotations

import base64
import dataclasses
import io
import time
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import png_bytes as _png  # noqa: E402  (conftest also gives the chain_model fixture)
from fastapi.testclient import TestClient  # noqa: E402

from featuremaps.explore.app import create_app  # noqa: E402
from featuremaps.models import wrap  # noqa: E402


def _app(model, tmp_path, n_images=2, **kw):
    paths = []
    for i in range(n_images):
        p = tmp_path / f"x{i}.png"
        p.write_bytes(_png(seed=i))
        paths.append(p)
    return create_app(wrap(model, classes=["cat", "dog", "owl"]), paths, **kw)


@pytest.fixture
def client(chain_model, tmp_path):
    return TestClient(_app(chain_model, tmp_path))


def _wait(client, path, timeout=60.0) -> tuple[dict, list[tuple[int, int]]]:
    """Poll the job's status until it ends; its last answer and every (done, total) seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(path)
        assert r.status_code == 200, r.text
        s = r.json()
        seen.append((s["done"], s["total"]))
        if s["state"] not in ("queued", "running"):
            return s, seen
        time.sleep(0.02)
    raise AssertionError(f"{path} still running after {timeout} s: {s}")


def test_a_job_runs_in_the_background_to_its_total_and_shows_picture_value_and_exemplars(client):
    path = "/api/patterns/C2/3?steps=8"
    assert client.get(path).json()["state"] == "idle"  # asking costs nothing
    assert client.get("/api/patterns/C2/3.png?steps=8").status_code == 404  # no picture before the job
    r = client.post(path)
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running", "done")
    s, seen = _wait(client, path)
    assert s["state"] == "done", s
    assert s["done"] == s["total"] == 8 + 1 + 2 + 1  # steps, the picture's check, two images, the crops
    dones = [d for d, t in seen if t]
    assert dones == sorted(dones)  # progress only goes up
    assert s["layer"] == "C2" and s["name"] == "cb" and s["channel"] == 3 and s["size"] == [32, 32, 3]
    assert np.isfinite(s["value"]) and np.isfinite(s["first"]) and s["gradients"] and not s["random_weights"]

    img = np.asarray(Image.open(io.BytesIO(client.get("/api/patterns/C2/3.png?steps=8").content)))
    assert img.shape == (256, 256, 3)  # 32 px enlarged 8x, nearest: blocks of 8 equal pixels
    assert (img[::8, ::8] == img[7::8, 7::8]).all() and img.std() > 0

    # exemplars: both images, best first, each valued at the channel's largest activation on that image
    ex = s["exemplars"]
    assert [e["name"] for e in ex] and sorted(e["name"] for e in ex) == ["x0.png", "x1.png"]
    assert [e["value"] for e in ex] == sorted((e["value"] for e in ex), reverse=True)
    for e in ex:
        view = client.get(f"/api/images/{e['image']}/layers/C2").json()
        assert e["value"] == pytest.approx(view["max"][3], rel=1e-4, abs=1e-5)
        crop = Image.open(io.BytesIO(base64.b64decode(e["src"].split(",", 1)[1])))
        b = e["box"]
        assert crop.size == (b["right"] - b["left"] + 1, b["bottom"] - b["top"] + 1)


def test_the_picture_maximises_its_channel_and_the_same_request_is_cached(client, chain_model, tmp_path):
    path = "/api/patterns/C2/1?steps=24"
    client.post(path)
    s, _ = _wait(client, path)
    assert s["value"] > s["first"]  # gradient ascent: the objective rose over the steps
    png = client.get("/api/patterns/C2/1.png?steps=24").content
    t = time.perf_counter()
    again = client.post(path)
    took = time.perf_counter() - t
    assert again.status_code == 202 and again.json()["state"] == "done" and took < 1.0
    assert again.json()["value"] == s["value"]
    assert client.get("/api/patterns/C2/1.png?steps=24").content == png
    # a new server, the same seed: the same picture (deterministic); another seed: another picture
    (tmp_path / "b").mkdir()
    other = TestClient(_app(chain_model, tmp_path / "b"))
    other.post(path)
    assert _wait(other, path)[0]["state"] == "done"
    assert other.get("/api/patterns/C2/1.png?steps=24").content == png
    other.post(path + "&seed=1")
    assert _wait(other, path + "&seed=1")[0]["state"] == "done"
    assert other.get("/api/patterns/C2/1.png?steps=24&seed=1").content != png


def test_a_new_channel_cancels_the_running_job_and_the_page_keeps_answering(client):
    slow = "/api/patterns/C2/0?steps=2048"
    client.post(slow)
    deadline = time.monotonic() + 30
    while client.get(slow).json()["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    t = time.perf_counter()
    r = client.get("/api/images/a0/layers/C1/grid.png")  # the maps answer while the optimisation runs
    assert r.status_code == 200 and time.perf_counter() - t < 5.0
    assert client.get(slow).json()["state"] == "running"
    client.post("/api/patterns/C2/2?steps=8")
    s, _ = _wait(client, "/api/patterns/C2/2?steps=8")
    assert s["state"] == "done"
    old = client.get(slow).json()
    assert old["state"] == "cancelled" and old["done"] < old["total"]
    assert client.get("/api/patterns/C2/0.png?steps=2048").status_code == 404


def test_an_upload_joins_the_exemplars_without_a_new_optimisation(client):
    path = "/api/patterns/C1/2?steps=8"
    client.post(path)
    first, _ = _wait(client, path)
    assert len(first["exemplars"]) == 2
    up = client.post("/api/images", content=_png(64, 64, seed=7), headers={"x-filename": "new.png"}).json()
    assert client.get(path).json()["state"] == "idle"  # its exemplars do not cover the upload yet
    client.post(path)
    s, _ = _wait(client, path)
    assert s["state"] == "done" and s["total"] == 1 + 1  # one image scanned, the crops; no steps
    assert up["id"] in [e["image"] for e in s["exemplars"]] and len(s["exemplars"]) == 3
    assert s["value"] == first["value"]


@pytest.mark.parametrize(
    "method, path, code, words",
    [
        ("post", "/api/patterns/C9/0", 404, "no conv layer 'C9'"),
        ("post", "/api/patterns/C2/6", 404, "channel 6 does not exist in C2"),
        ("get", "/api/patterns/C2/x", 400, "channel 'x' is not a number"),
        ("post", "/api/patterns/C2/0?steps=0", 400, "steps 0 is outside"),
        ("post", "/api/patterns/C2/0?steps=9999", 400, "steps 9999 is outside"),
        ("post", "/api/patterns/C2/0?size=64", 400, "takes"),  # a fixed-size model keeps its own size
        ("post", "/api/patterns/C2/0?model=m7", 404, "no model 'm7'"),
        ("get", "/api/patterns/C2/0.png", 404, "no visualization yet"),
    ],
)
def test_bad_requests_are_one_line_json_errors(client, method, path, code, words):
    r = getattr(client, method)(path)
    assert r.status_code == code, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]


def test_random_weights_are_said(chain_model, tmp_path):
    lm = dataclasses.replace(wrap(chain_model, classes=["cat", "dog", "owl"]), random_weights=True)
    c = TestClient(create_app(lm, []))
    s = c.get("/api/patterns/C1/0?steps=8").json()
    assert s["random_weights"] is True
    c.post("/api/patterns/C1/0?steps=8")
    s, _ = _wait(c, "/api/patterns/C1/0?steps=8")
    assert s["state"] == "done" and s["exemplars"] == []  # no images: no exemplars, still a picture
    assert c.get("/api/patterns/C1/0.png?steps=8").status_code == 200


def test_a_model_without_gradients_gets_its_exemplars_and_a_note(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from featuremaps import models

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    net(torch.zeros(1, 3, 32, 32))
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False, input_names=["input"])
    (tmp_path / "x.png").write_bytes(_png())
    c = TestClient(create_app(models.load(str(path)), [tmp_path / "x.png"]))
    s = c.get("/api/patterns/C1/2").json()
    assert s["gradients"] is False and "no gradients" in s["note"] and "exemplars only" in s["note"]
    c.post("/api/patterns/C1/2")
    s, _ = _wait(c, "/api/patterns/C1/2")
    assert s["state"] == "done" and len(s["exemplars"]) == 1 and "value" not in s
    assert c.get("/api/patterns/C1/2.png").status_code == 404
