"""featuremaps explore: every route through FastAPI's TestClient, with tiny in-code Keras models."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import EMOTION_SIDE  # noqa: E402
from conftest import png_bytes as _png  # noqa: E402  (conftest also gives the chain_model fixture)
from fastapi.testclient import TestClient  # noqa: E402

from featuremaps.cli import main  # noqa: E402
from featuremaps.cli.options import build_parser  # noqa: E402
from featuremaps.errors import UserError  # noqa: E402
from featuremaps.explore.app import create_app  # noqa: E402
from featuremaps.explore.cache import ByteLRU  # noqa: E402
from featuremaps.explore.receptive import Field, receptive_fields  # noqa: E402
from featuremaps.models import wrap  # noqa: E402


@pytest.fixture
def client(chain_model, tmp_path):
    (tmp_path / "x.png").write_bytes(_png())
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me")
    app = create_app(wrap(chain_model, classes=["cat", "dog", "owl"]), [tmp_path / "x.png"], max_upload_bytes=200_000)
    return TestClient(app)


def _ok_png(r):
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_page_and_static_files_ship_in_the_package(client):
    r = client.get("/")
    assert r.status_code == 200 and "featuremaps explore" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("app.css", "css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    # nothing in the page points outside this server (no CDN, web font or analytics)
    for text in (client.get("/").text, client.get("/static/app.js").text, client.get("/static/app.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text and "@import" not in text


def test_info_lists_layers_classes_and_receptive_fields(client):
    info = client.get("/api/info").json()
    assert [(L["label"], L["name"]) for L in info["layers"]] == [("C1", "ca"), ("C2", "cb")]
    assert info["layers"][1]["shape"] == [16, 16, 6]
    assert info["layers"][1]["rf"] == {"size": [8.0, 8.0], "jump": [2.0, 2.0], "start": [0.5, 0.5]}
    assert info["receptive_field"]["exact"] is True
    assert info["classes"] == ["cat", "dog", "owl"]
    assert "gradcam" in info["methods"] and "scorecam" in info["methods"]
    assert info["images"] == [{"id": "a0", "name": "x.png", "origin": "command line"}]
    assert info["model"]["random_weights"] is False


def test_image_summary_prediction_and_layer_statistics(client, chain_model):
    s = client.get("/api/images/a0").json()
    assert s["input_shape"] == [32, 32, 3] and s["original_size"] == [40, 50]
    assert abs(sum(p["probability"] for p in s["prediction"]) - 1) < 1e-4
    assert s["prediction"][0]["class"] in ("cat", "dog", "owl")
    stats = {L["label"]: L for L in s["layers"]}
    assert set(stats) == {"C1", "C2"} and stats["C2"]["channels"] == 6
    assert 0 <= stats["C1"]["zero_fraction"] <= 1 and 0 <= stats["C2"]["dead"] <= 6
    _ok_png(client.get("/api/images/a0/input.png"))
    assert _ok_png(client.get("/api/images/a0/original.png")).shape == (40, 50, 3)


def test_layer_view_sorts_all_channels_and_grid_draws_them(client):
    v = client.get("/api/images/a0/layers/C2", params={"sort": "mean"}).json()
    assert v["shape"] == [16, 16, 6] and sorted(v["order"]) == list(range(6))
    means = [v["mean"][c] for c in v["order"]]
    assert means == sorted(means, reverse=True)
    vmax = client.get("/api/images/a0/layers/cb", params={"sort": "max"}).json()  # by name too
    assert [vmax["max"][c] for c in vmax["order"]] == sorted(vmax["max"], reverse=True)
    h, w = v["tile"]
    grid = _ok_png(client.get("/api/images/a0/layers/C2/grid.png", params={"sort": "mean", "norm": "layer"}))
    assert grid.shape == (h, 6 * w, 3)  # all six channels, one row
    g2 = _ok_png(client.get("/api/images/a0/layers/C2/grid.png", params={"channels": "5,0", "cmap": "gray"}))
    assert g2.shape == (h, 2 * w, 3)
    paged = _ok_png(client.get("/api/images/a0/layers/C2/grid.png", params={"per_page": 4, "page": 1}))
    assert paged.shape == (h, 2 * w, 3)  # the second page holds the last two channels


def test_norm_modes_change_the_picture(client):
    def pic(layer, norm):
        return _ok_png(client.get(f"/api/images/a0/layers/{layer}/grid.png", params={"norm": norm}))

    assert not np.array_equal(pic("C1", "map"), pic("C1", "layer"))
    s = client.get("/api/images/a0").json()
    lo, hi = s["global_range"]
    narrow = next(L["label"] for L in s["layers"] if (L["min"], L["max"]) != (lo, hi))
    assert not np.array_equal(pic(narrow, "layer"), pic(narrow, "global"))


def test_value_is_the_exact_activation_with_its_receptive_field(client, chain_model):
    import keras

    r = client.get("/api/images/a0/layers/C2/channels/3/value", params={"y": 5, "x": 7}).json()
    arr = np.load(io.BytesIO(client.get("/api/images/a0/layers/C2/maps.npy").content))
    assert arr.shape == (16, 16, 6) and arr.dtype == np.float32
    assert r["value"] == pytest.approx(float(arr[5, 7, 3]))
    # the same number straight from Keras
    x = np.asarray(Image.open(io.BytesIO(client.get("/api/images/a0/input.png").content)), np.float32)[None] / 255
    sub = keras.Model(chain_model.inputs, chain_model.get_layer("cb").output)
    assert r["value"] == pytest.approx(float(np.asarray(sub(x))[0, 5, 7, 3]), rel=1e-4, abs=1e-5)
    # C2 sees an 8x8 patch: centre 0.5 + 2 * position
    assert r["rf"] == {"top": 7, "left": 11, "bottom": 14, "right": 18}
    corner = client.get("/api/images/a0/layers/C2/channels/0/value", params={"y": 0, "x": 0}).json()
    assert corner["rf"] == {"top": 0, "left": 0, "bottom": 4, "right": 4}  # clipped at the border


def test_channel_png_and_overlay_export(client):
    big = _ok_png(client.get("/api/images/a0/layers/C2/channels/1.png"))
    assert big.shape == (32, 32, 3)  # at the input's size, for the overlay
    r = client.get("/api/images/a0/layers/C2/channels/1.png", params={"alpha": 0.5, "download": 1})
    assert _ok_png(r).shape == (32, 32, 3)
    assert "attachment" in r.headers["content-disposition"]
    npy = client.get("/api/images/a0/layers/C1/maps.npy")
    assert npy.status_code == 200 and 'filename="x_C1.npy"' in npy.headers["content-disposition"]
    _ok_png(client.get("/api/colorbar.png", params={"cmap": "magma"}))


def test_cam_for_any_class_method_and_layer(client):
    r = client.get("/api/images/a0/cam", params={"layer": "C1", "method": "gradcam++", "class": "owl"}).json()
    assert (r["layer"], r["method"], r["class_index"], r["class"]) == ("C1", "gradcam++", 2, "owl")
    r = client.get("/api/images/a0/cam", params={"layer": "C2", "method": "layercam", "class": "1"}).json()
    assert r["class"] == "dog"
    assert _ok_png(client.get("/api/images/a0/cam.png", params={"layer": "C2", "method": "scorecam"})).shape == (
        32,
        32,
        3,
    )


@pytest.mark.parametrize(
    "url, code, words",
    [
        ("/api/images/a0/layers/C9", 404, "C1-C2"),
        ("/api/images/a0/layers/nope/grid.png", 404, "no conv layer 'nope'"),
        ("/api/images/a0/layers/pool", 404, "no conv layer"),
        ("/api/images/a0/layers/C2/channels/6.png", 404, "0-5"),
        ("/api/images/a0/layers/C2/channels/-1/value?y=0&x=0", 404, "does not exist"),
        ("/api/images/a0/layers/C2/channels/abc.png", 400, "not a number"),
        ("/api/images/a0/layers/C2/channels/0/value?y=16&x=0", 400, "outside"),
        ("/api/images/a0/layers/C2/channels/0/value?y=a&x=0", 422, "y"),
        ("/api/images/a0/layers/C2/grid.png?channels=0,99", 404, "channel 99"),
        ("/api/images/a0/layers/C2/grid.png?page=5", 404, "page 5"),
        ("/api/images/a0/layers/C2/grid.png?norm=weird", 400, "norm"),
        ("/api/images/a0/layers/C2/grid.png?cmap=nope", 400, "colormap"),
        ("/api/images/a0/layers/C2?sort=median", 400, "sort"),
        ("/api/images/a0/cam?layer=C2&class=horse", 400, "unknown class 'horse'"),
        ("/api/images/a0/cam?layer=C2&class=7", 400, "3 classes"),
        ("/api/images/a0/cam?layer=C2&method=magic", 400, "method"),
        ("/api/images/a0/cam?layer=C7", 404, "no conv layer"),
        ("/api/images/a0/cam.png?layer=C2&alpha=3", 400, "alpha"),
        ("/api/images/zz/layers/C1", 404, "no image 'zz'"),
        ("/api/images/a1", 404, "no image"),
        ("/api/nothing", 404, "no such"),
    ],
)
def test_unknown_layer_channel_class_are_clear_4xx(client, url, code, words):
    r = client.get(url)
    assert r.status_code == code, r.text
    assert words in r.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/index.html/../../explore/app.py",
        "/api/images/..%2fsecret.txt/input.png",
        "/api/images/%2e%2e/input.png",
        "/api/images//etc/passwd/input.png",
        "/api/images/%2Fetc%2Fpasswd/original.png",
        "/api/images/secret.txt/input.png",
        "/../../../../etc/passwd",
        "/static/%2Fetc%2Fpasswd",
    ],
)
def test_no_route_reads_a_path_not_given(client, url):
    r = client.get(url)
    assert r.status_code in (400, 404), r.text
    assert "do not serve me" not in r.text and "root:" not in r.text and "import" not in r.text
    assert "error" in r.json()


def test_upload_decodes_and_becomes_an_image(client):
    r = client.post(
        "/api/images",
        content=_png(30, 30, seed=3),
        headers={"X-Filename": "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E.png"},
    )
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["name"] == "<img src=x onerror=alert(1)>.png" and up["id"].startswith(
        "u"
    )  # a label (the page sets it as text)
    assert client.post("/api/images", content=_png(30, 30, seed=3)).json()["id"] == up["id"]  # same bytes, same id
    assert client.get(f"/api/images/{up['id']}").json()["original_size"] == [30, 30]
    names = [i["name"] for i in client.get("/api/images").json()["images"]]
    assert names == ["x.png", "<img src=x onerror=alert(1)>.png"]
    r = client.post("/api/images", content=_png(30, 30, seed=4), headers={"X-Filename": "..%2F..%2Fetc%2Fpasswd"})
    assert r.json()["name"] == "passwd"  # never a path


@pytest.mark.parametrize(
    "body, code, words",
    [
        (b"", 400, "empty"),
        (b"hello, not an image", 415, "not an image"),
        (_png()[:60], 415, "image"),  # truncated
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000, 413, "limit"),
    ],
)
def test_bad_uploads_are_refused(client, body, code, words):
    r = client.post("/api/images", content=body, headers={"X-Filename": "bad.png"})
    assert r.status_code == code, r.text
    assert words in r.json()["error"]


def test_upload_pixel_bomb_refused(chain_model):
    app = create_app(wrap(chain_model), [])
    app.state.explorer.max_pixels = 1000
    r = TestClient(app).post("/api/images", content=_png(40, 40))
    assert r.status_code == 415 and "over the 1000 pixels limit" in r.json()["error"]


def test_random_weights_are_said(chain_model):
    lm = wrap(chain_model)
    lm.source = "keras.applications.VGG16 (random weights)"
    c = TestClient(create_app(lm, []))
    assert c.get("/api/info").json()["model"]["random_weights"] is True
    r = c.post("/api/images", content=_png())
    assert c.get(f"/api/images/{r.json()['id']}").json()["random_weights"] is True


def test_cache_is_bounded_by_bytes(chain_model):
    app = create_app(wrap(chain_model), [], cache_bytes=1, upload_bytes=1)
    c = TestClient(app)
    ids = [c.post("/api/images", content=_png(seed=i)).json()["id"] for i in range(3)]
    ex = app.state.explorer
    c.get(f"/api/images/{ids[-1]}")
    assert len(ex.cache) == 1 and len(ex.uploads) == 1  # the newest only
    r = c.get(f"/api/images/{ids[0]}")
    assert r.status_code == 404 and "upload" in r.json()["error"]


def test_byte_lru_evicts_least_recently_used():
    lru = ByteLRU(100)
    lru.put("a", 1, 40)
    lru.put("b", 2, 40)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3, 40)
    assert lru.keys() == ["a", "c"] and lru.nbytes == 80 and lru.evictions == 1
    lru.put("big", 4, 500)
    assert lru.keys() == ["big"]


def test_trusted_hosts(chain_model):
    c = TestClient(
        create_app(wrap(chain_model), [], allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://evil.example"
    )
    assert c.get("/api/info").status_code == 400
    ok = TestClient(create_app(wrap(chain_model), [], allowed_hosts=["127.0.0.1"]), base_url="http://127.0.0.1:8000")
    assert ok.get("/api/info").status_code == 200


# ---------------------------------------------------------------- receptive fields
def test_receptive_field_matches_perturbation(chain_model):
    """Changing input pixels outside the computed field never changes the map value; inside, it does."""
    import keras

    f = receptive_fields(chain_model).fields["C2"]
    sub = keras.Model(chain_model.inputs, chain_model.get_layer("cb").output)
    rng = np.random.default_rng(0)
    x = rng.random((1, 32, 32, 3)).astype(np.float32)
    y, xx = 6, 9
    box = f.box(y, xx, 32, 32)
    base = np.asarray(sub(x))[0, y, xx]
    outside = x.copy()
    mask = np.ones((32, 32), bool)
    mask[box["top"] : box["bottom"] + 1, box["left"] : box["right"] + 1] = False
    outside[0][mask] = rng.random((mask.sum(), 3))
    np.testing.assert_allclose(np.asarray(sub(outside))[0, y, xx], base, rtol=1e-5, atol=1e-6)
    changed = 0
    for _ in range(3):
        inside = x.copy()
        inside[0, box["top"] : box["bottom"] + 1, box["left"] : box["right"] + 1] = rng.random((8, 8, 3))
        changed += not np.allclose(np.asarray(sub(inside))[0, y, xx], base)
    assert changed


def test_receptive_fields_vgg_like_and_graphs(tiny_functional):
    import keras

    x = keras.Input((64, 64, 3))
    h = keras.layers.ZeroPadding2D(3)(x)
    h = keras.layers.Conv2D(4, 7, strides=2, name="stem")(h)
    h = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same", name="dil")(h)
    m = keras.Model(x, h)
    rf = receptive_fields(m)
    assert rf.fields["C1"] == Field((7.0, 7.0), (2.0, 2.0), (0.0, 0.0))
    assert rf.fields["C2"].size == (15.0, 15.0) and rf.exact
    branched = receptive_fields(tiny_functional)  # Add of two paths: approximate, said so
    assert not branched.exact and "branches" in branched.note
    assert set(branched.fields) == {"C1", "C2", "C3", "C4"}


# ---------------------------------------------------------------- CLI
def test_cli_parser_defaults_to_loopback_and_a_free_port():
    a = build_parser().parse_args(["explore", "x.png"])
    assert (a.host, a.port, a.no_browser, a.run) == ("127.0.0.1", 0, False, "explore")


def test_cli_bad_image_path_fails_cleanly(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing.png"), "--no-browser"]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_cli_warns_for_other_hosts_and_serves(tmp_path, capsys, monkeypatch, chain_model):
    from featuremaps.cli import explore as cli_explore

    chain_model.save(tmp_path / "m.keras")
    (tmp_path / "x.png").write_bytes(_png())
    served = {}

    def fake_run(self, sockets=None):
        served["sock"] = sockets[0].getsockname()
        served["app"] = self.config.app
        sockets[0].close()

    monkeypatch.setattr(cli_explore.uvicorn.Server, "run", fake_run)
    assert (
        main(["explore", str(tmp_path), "--model", str(tmp_path / "m.keras"), "--no-browser", "--host", "0.0.0.0"]) == 0
    )
    out = capsys.readouterr()
    assert "warning" in out.err and "0.0.0.0" in out.err
    assert f"http://127.0.0.1:{served['sock'][1]}/" in out.out
    info = TestClient(served["app"]).get("/api/info").json()
    assert info["images"][0]["name"] == "x.png"
    assert main(["explore", str(tmp_path / "x.png"), "--model", str(tmp_path / "m.keras"), "--no-browser"]) == 0
    assert "warning" not in capsys.readouterr().err and served["sock"][0] == "127.0.0.1"
    json.dumps(info)


def test_cli_names_and_leaves_out_unreadable_images(tmp_path, capsys, monkeypatch, chain_model):
    """A folder with a file that is not an image: one warning naming it; the page lists only the others."""
    from featuremaps.cli import explore as cli_explore

    chain_model.save(tmp_path / "m.keras")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(_png())
    (photos / "broken.jpg").write_text("not an image")
    served = {}

    def fake_run(self, sockets=None):
        served["app"] = self.config.app
        sockets[0].close()

    monkeypatch.setattr(cli_explore.uvicorn.Server, "run", fake_run)
    assert main(["explore", str(photos), "--model", str(tmp_path / "m.keras"), "--no-browser"]) == 0
    out = capsys.readouterr()
    assert "left out of the page" in out.err and "broken.jpg" in out.err and "not an image" in out.err
    assert "1 image(s) from the command line" in out.out
    page = TestClient(served["app"], base_url="http://127.0.0.1")  # the loopback server refuses other host names
    names = [im["name"] for im in page.get("/api/info").json()["images"]]
    assert names == ["a.png"]


def test_emotion_model_shows_its_face_crop():
    from pathlib import Path

    from featuremaps import models
    from featuremaps.emotion.model import shipped_weights_available

    if not shipped_weights_available():
        pytest.skip("the bundled emotion weights are not in this checkout")
    astronaut = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"
    c = TestClient(create_app(models.load("emotion"), [astronaut]))
    s = c.get("/api/images/a0").json()
    assert s["face_crop"] is True and len(s["face_box"]) == 4  # x, y, w, h in the original image
    assert s["input_shape"] == [EMOTION_SIDE, EMOTION_SIDE, 1]
    assert s["prediction"][0]["class"] in c.get("/api/info").json()["classes"]
    assert _ok_png(c.get("/api/images/a0/input.png")).shape[:2] == (EMOTION_SIDE, EMOTION_SIDE)  # what it saw
    assert c.get("/api/info").json()["model"]["face_crop"] is True


def _deep(n: int = 5):
    import keras

    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [keras.Input((24, 24, 3))]
        + [keras.layers.Conv2D(3 + i, 3, padding="same", activation="relu", name=f"d{i}") for i in range(n)]
        + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")],
        name="deep",
    )


def test_two_models_every_route_alignment_and_uploads(chain_model, tmp_path):
    """create_app(..., others=[m]): ?model=m1 on every image route gives the second model's views, the layer
    alignment is compare's depth rule, an upload is visible to both, an unknown model is a one-line 404."""
    from featuremaps.compare import align_rows

    (tmp_path / "x.png").write_bytes(_png())
    deep = _deep()
    c = TestClient(create_app(wrap(chain_model), [tmp_path / "x.png"], others=[wrap(deep)]))
    info = c.get("/api/info").json()
    assert [m["id"] for m in info["models"]] == ["m0", "m1"] and info["model_id"] == "m0"
    # 2 convs against 5: the rows of `featuremaps compare --align depth` with one row per layer of the first
    runs = [type("R", (), {"depth": 2})(), type("R", (), {"depth": 5})()]
    _, picks = align_rows(runs, 2)
    assert (
        info["models"][1]["align"]
        == {f"C{j + 1}": f"C{p[1] + 1}" for j, p in enumerate(picks)}
        == {
            "C1": "C1",
            "C2": "C5",
        }
    )
    info1 = c.get("/api/info", params={"model": "m1"}).json()
    assert info1["model"]["name"] == "deep" and len(info1["layers"]) == 5
    assert info1["models"][0]["align"]["C5"] == "C2"  # aligned from the model asked about
    up = c.post("/api/images", content=_png(seed=3), headers={"X-Filename": "u.png"}).json()["id"]
    for iid in ("a0", up):
        assert c.get(f"/api/images/{iid}", params={"model": "m1"}).json()["input_shape"] == [24, 24, 3]
        assert c.get(f"/api/images/{iid}").json()["input_shape"] == [32, 32, 3]
    v = c.get(f"/api/images/{up}/layers/C5", params={"model": "m1"}).json()
    assert v["name"] == "d4" and v["shape"] == [24, 24, 7]
    for url, extra in (("/layers/C5/grid.png", {}), ("/layers/C5/channels/1.png", {}), ("/input.png", {}),
                       ("/cam.png", {"layer": "C5"})):  # fmt: skip
        _ok_png(c.get(f"/api/images/{up}{url}", params={"model": "m1", **extra}))
    val = c.get(f"/api/images/{up}/layers/C5/channels/6/value", params={"model": "m1", "y": 2, "x": 3}).json()
    maps = np.load(io.BytesIO(c.get(f"/api/images/{up}/layers/C5/maps.npy", params={"model": "m1"}).content))
    assert val["value"] == pytest.approx(float(maps[2, 3, 6]))
    assert c.get(f"/api/images/{up}/cam", params={"model": "m1", "layer": "C5"}).json()["layer_name"] == "d4"
    r = c.get(f"/api/images/{up}/layers/C1", params={"model": "m7"})
    assert r.status_code == 404 and r.json()["error"] == "no model 'm7': this explorer has m0 (chain), m1 (deep)"
    assert c.get("/api/info", params={"model": "x"}).status_code == 404


def test_explore_cli_models_option(capsys):
    assert main(["explore", "--models", "vgg16,no_such_net", "--no-browser"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    assert main(["explore", "--model", "vgg16", "--models", "vgg16,emotion", "--no-browser"]) == 2
    assert "not both" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 22 §2, 28, 29
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_faceless_photo_is_fed_whole_with_a_note(chain_model):
    """The emotion model (it sees the largest face) on a photo without one: the whole photo, with a note, as
    `report` does; before, the summary was a 400 advising --no-face-crop, an option explore did not have."""
    lm = dataclasses.replace(wrap(chain_model, classes=["cat", "dog", "owl"]), is_emotion=True)
    c = TestClient(create_app(lm, [EXAMPLES / "chelsea.png", EXAMPLES / "astronaut.png"]))
    s = c.get("/api/images/a0").json()
    assert s["face_crop"] is True and s["face_box"] is None, s
    assert s["note"].startswith("no face found: the whole photo was fed to chain") and len(s["prediction"]) == 3
    assert _ok_png(c.get("/api/images/a0/input.png")).shape[:2] == (32, 32)
    face = c.get("/api/images/a1").json()
    assert len(face["face_box"]) == 4 and face["note"] == ""
    # --no-face-crop: every image whole, the astronaut too
    whole = TestClient(create_app(lm, [EXAMPLES / "astronaut.png"], face_crop=False))
    s = whole.get("/api/images/a0").json()
    assert (s["face_crop"], s["face_box"], s["note"]) == (False, None, "")
    assert whole.get("/api/info").json()["model"]["face_crop"] is False


def test_an_upload_the_model_cannot_take_is_not_offered(chain_model):
    """An upload whose analysis fails says why once, and is then forgotten: not listed, so not offered after a
    reload (it was listed for as long as it stayed in the upload store)."""

    def refuse_blank(x):
        if float(x.std()) == 0.0:
            raise UserError("this model cannot take a blank picture")
        return x / 255.0

    lm = dataclasses.replace(wrap(chain_model), preprocess_fn=refuse_blank)
    c = TestClient(create_app(lm, []))
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(buf, "PNG")
    r = c.post("/api/images", content=buf.getvalue(), headers={"X-Filename": "blank.png"})
    assert r.status_code == 201 and c.get("/api/images").json()["images"][0]["name"] == "blank.png"
    r = c.get(f"/api/images/{r.json()['id']}")
    assert r.status_code == 400 and "cannot take a blank picture" in r.json()["error"]
    assert c.get("/api/images").json()["images"] == []
    good = c.post("/api/images", content=_png(), headers={"X-Filename": "good.png"}).json()
    assert c.get(f"/api/images/{good['id']}").status_code == 200
    assert [im["name"] for im in c.get("/api/images").json()["images"]] == ["good.png"]


def test_cams_are_computed_once_per_layer_method_and_class(client, monkeypatch):
    """Every (layer, method, class) CAM of an image is kept (12 here; 8 were, so a tour of the layers with the CAM
    on recomputed them), and so is its overlay PNG."""
    from featuremaps.explore import session

    calls = []
    real = session.compute_cam

    def counted(*args, **kwargs):
        calls.append(kwargs.get("layer"))
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "compute_cam", counted)
    keys = [(layer, m, k) for layer in ("C1", "C2") for m in ("gradcam", "gradcam++") for k in ("0", "1", "2")]
    for _ in range(2):
        pngs = []
        for layer, m, k in keys:
            q = {"layer": layer, "method": m, "class": k}
            assert client.get("/api/images/a0/cam", params=q).status_code == 200
            pngs.append(_ok_png(client.get("/api/images/a0/cam.png", params=q)))
    assert len(calls) == len(keys) == 12


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_cli_port_out_of_range_is_one_line(tmp_path, capsys, port):
    assert main(["explore", "--no-browser", "--port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featuremaps: error: ") and "--port" in err[0], err
    assert "Traceback" not in err[0] and "Overflow" not in err[0]


def test_cli_port_in_use_fails_before_saying_it_listens(tmp_path, capsys, chain_model):
    """A taken port: one line, exit 2, and no "listening on" warning for a server that never listened."""
    chain_model.save(tmp_path / "m.keras")
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen(1)
    try:
        port = str(taken.getsockname()[1])
        argv = ["explore", "--model", str(tmp_path / "m.keras"), "--no-browser", "--host", "0.0.0.0", "--port", port]
        assert main(argv) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featuremaps: error: cannot listen on 0.0.0.0:"), err
    assert "listening" not in err[0]
