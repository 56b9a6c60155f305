"""The explorer's live camera (explore/live.py and the /api/live socket): frames over a WebSocket through the
FastAPI test client (fast), the real server for a frame too big for the app (fast), and Chromium with a fake camera
playing a clip of examples/astronaut.png (slow)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import WebSocketDenialResponse  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from featuremaps import models  # noqa: E402
from featuremaps.explore.app import UVICORN_OPTIONS, create_app  # noqa: E402
from featuremaps.explore.live import FACE_FRAME_SIDE, FaceTracker, pack, raw_frame, unpack, y4m_clip  # noqa: E402
from featuremaps.explore.session import Explorer  # noqa: E402
from featuremaps.faces import FaceBox, crop_face  # noqa: E402
from featuremaps.images import load_image  # noqa: E402
from featuremaps.models import wrap  # noqa: E402
from featuremaps.pipeline import prepare  # noqa: E402
from featuremaps.render import colormap  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _jpeg(rgb: np.ndarray, side: int = 240) -> bytes:
    im = Image.fromarray(rgb)
    k = side / min(im.size)
    im = im.resize((round(im.width * k), round(im.height * k)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return _jpeg(load_image(EXAMPLES / "astronaut.png"))


@pytest.fixture(scope="module")
def cat() -> bytes:
    return _jpeg(load_image(EXAMPLES / "chelsea.png"))


@pytest.fixture(scope="module")
def face_model():
    """A tiny 48 px model that crops faces as the emotion model does (2 convs, 3 classes)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((48, 48, 3)),
            keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="first_conv"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(70, 3, padding="same", activation="relu", name="second_conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="live_net",
    )
    return dataclasses.replace(wrap(model, classes=["cat", "dog", "owl"]), is_emotion=True)


@pytest.fixture
def app(face_model):
    return create_app(face_model, [])


def _answer(ws) -> tuple[dict, dict]:
    """The next answer to a frame: (header, parts); a text message (an error) as ({"error": ...}, {})."""
    while True:
        m = ws.receive()
        if m.get("bytes") is not None:
            return unpack(m["bytes"])
        body = json.loads(m["text"])
        if "settings" in body and "error" not in body:
            continue  # the settings taken
        return body, {}


def _settings(ws, **values) -> dict:
    ws.send_text(json.dumps(values))
    return json.loads(ws.receive_text())


def test_a_frame_is_answered_with_its_prediction_grid_and_input(app, face_model, astronaut):
    """The face is cropped, the model runs once: the prediction, the chosen layer's page of channels as a sprite
    of 8 tiles a row at the map's own size, its channel means, and what the network saw."""
    c = TestClient(app)
    assert c.get("/api/info").json()["live"]["frame_side"] == FACE_FRAME_SIDE  # a face-cropping model: to find faces
    with c.websocket_connect("/api/live") as ws:
        assert _settings(ws, layer="C2", sort="mean")["settings"]["layer"] == "C2"
        ws.send_bytes(astronaut)
        head, parts = _answer(ws)
    assert head["frame"] == 1 and head["face"] is not None and head["face_crop"] is True
    assert [p["class"] for p in head["prediction"]] and len(head["prediction"]) == 3
    assert sum(p["probability"] for p in head["prediction"]) == pytest.approx(1.0, abs=1e-4)
    v = head["view"]
    assert v["label"] == "C2" and v["shape"] == [24, 24, 70] and len(head["channels"]) == 64
    # sorted by mean: the page's channels are the 64 highest means, in order
    assert head["channels"] == sorted(range(70), key=lambda k: -v["mean"][k])[:64]
    # the same face through the explorer's own path gives the same channel means
    ex = Explorer(face_model, [])
    rgb = load_image(io.BytesIO(astronaut))
    prep = prepare(face_model, crop_face(rgb, FaceBox(*head["face"])), face_crop=False)
    results, _ = ex.extractor(prep.x.shape)(prep.x[None])
    means = results[1].maps[0].mean(axis=(0, 1))
    np.testing.assert_allclose(v["mean"], means, rtol=2e-3, atol=1e-5)
    sprite = Image.open(io.BytesIO(parts["grid"]))
    assert sprite.mode == "P"  # indexed: its palette is the colormap
    grid = np.asarray(sprite.convert("RGB"))
    assert grid.shape == (8 * 24, 8 * 24, 3)  # 64 tiles, 8 a row, at the maps' 24x24 (the page scales them up)
    # each tile is its channel by its own min-max (norm "map") in viridis: the brightest pixel is the top colour
    m = results[1].maps[0]
    for j in (0, 9, 63):
        ch = head["channels"][j]
        tile = grid[(j // 8) * 24 : (j // 8 + 1) * 24, (j % 8) * 24 : (j % 8 + 1) * 24]
        y, x = np.unravel_index(np.argmax(m[..., ch]), m.shape[:2])
        lut = colormap("viridis")
        if m[..., ch].max() > m[..., ch].min():
            assert tuple(tile[y, x]) == tuple(lut[255]), (j, ch)
    assert np.asarray(Image.open(io.BytesIO(parts["input"]))).shape[:2] == (48, 48)
    assert head["cam"] is None and "cam" not in parts


def test_cam_of_each_frame_when_asked(app, astronaut):
    c = TestClient(app)
    with c.websocket_connect("/api/live") as ws:
        _settings(ws, layer="C1", cam=True, method="gradcam", **{"class": "2"})
        ws.send_bytes(astronaut)
        head, parts = _answer(ws)
    assert head["cam"]["class"] == "owl" and head["cam"]["layer"] == "C1" and head["cam"]["method"] == "gradcam"
    assert np.asarray(Image.open(io.BytesIO(parts["cam"]))).shape == (48, 48, 3)
    heat = np.asarray(Image.open(io.BytesIO(parts["heat"])))  # for the video: RGBA, more opaque where hotter
    assert heat.shape == (48, 48, 4) and heat[..., 3].min() < 20 and heat[..., 3].max() > 150
    # laid over the part of the frame the model saw: the face's crop, a square around the face box
    x, y, w, h = head["seen"]
    fx, fy, fw, fh = head["face"]
    assert w == h == pytest.approx(1.3 * max(fw, fh), abs=0.1)
    assert x < fx and y < fy and x + w > fx + fw and y + h > fy + fh


def test_bad_frames_get_an_error_each_and_the_stream_goes_on(app, astronaut):
    """Non-image bytes, an empty frame, a 50 MB frame: an error naming that frame; the next frame is answered."""
    c = TestClient(app)
    with c.websocket_connect("/api/live") as ws:
        ws.send_bytes(b"this is not a picture at all")
        err, _ = _answer(ws)
        assert err["frame"] == 1 and "frame 1 is not an image" in err["error"]
        ws.send_bytes(b"")
        err, _ = _answer(ws)
        assert err["frame"] == 2 and "empty" in err["error"]
        ws.send_bytes(b"\xff" * (50 * 2**20))
        err, _ = _answer(ws)
        assert err["frame"] == 3 and "50.0 MiB" in err["error"] and "limit" in err["error"]
        ws.send_bytes(astronaut)
        head, parts = _answer(ws)
        assert head["frame"] == 4 and head["prediction"] and parts["grid"]
        # bad settings: said, nothing changed, frames go on
        bad = _settings(ws, layer="C9")
        assert bad["settings"] is True and "no conv layer 'C9'" in bad["error"]
        bad = _settings(ws, colour="red")
        assert "unknown live setting(s) colour; use cam, cell, class, cmap" in bad["error"]
        bad = _settings(ws, cam=True, **{"class": "giraffe"})
        assert "unknown class 'giraffe'; use one of cat, dog, owl" in bad["error"]
        ws.send_text("{not json")
        assert "not JSON" in json.loads(ws.receive_text())["error"]
        ws.send_bytes(astronaut)
        head, _ = _answer(ws)
        assert head["frame"] == 5 and head["view"]["label"] == "C1"


def test_a_model_without_face_crop_sees_the_centre_of_the_frame(astronaut):
    """A 32 px RGB model: frames of its side, 3 channels; it sees the centre square of a 4:3 frame."""
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, name="ca"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    c = TestClient(create_app(wrap(net, classes=["a", "b"]), []))
    live = c.get("/api/info").json()["live"]
    assert live["frame_side"] == 32 and live["channels"] == 3
    with c.websocket_connect("/api/live") as ws:
        ws.send_bytes(raw_frame(np.zeros((30, 40, 3), np.uint8)))
        head, parts = _answer(ws)
        _settings(ws, cell=16)  # tiles smaller than the 30x30 maps: area-averaged down to 16x16
        ws.send_bytes(raw_frame(np.zeros((30, 40, 3), np.uint8)))
        small, small_parts = _answer(ws)
    assert head["face"] is None and head["face_crop"] is False and head["seen"] == [5, 0, 30, 30]
    assert head["input_shape"] == [32, 32, 3] and len(head["prediction"]) == 2
    assert Image.open(io.BytesIO(parts["grid"])).size == (4 * 30, 30)  # 4 channels in a row, at their own size
    assert Image.open(io.BytesIO(small_parts["grid"])).size == (4 * 16, 16) and small["view"]["tile"] == [16, 16]


def test_raw_frames_as_the_page_sends_them(app, astronaut):
    """Raw gray or RGB pixels (no image file): answered as the same picture as a file; a raw frame whose header
    and size disagree is named and refused, and the stream goes on."""
    rgb = load_image(io.BytesIO(astronaut))
    gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5).astype(np.uint8)
    c = TestClient(app)
    with c.websocket_connect("/api/live") as ws:
        ws.send_bytes(raw_frame(rgb))
        from_rgb, _ = _answer(ws)
        ws.send_bytes(raw_frame(gray))
        from_gray, _ = _answer(ws)
        ws.send_bytes(raw_frame(rgb)[:-1])
        err, _ = _answer(ws)
        assert err["frame"] == 3 and "raw 240x240x3 frame of 172799 bytes, not 172800" in err["error"]
        ws.send_bytes(b"FMR1" + bytes([0, 2, 0, 2, 4, 0, 0, 0]) + bytes(16))
        err, _ = _answer(ws)
        assert err["frame"] == 4 and "1 or 3 channels" in err["error"]
        ws.send_bytes(b"FMR1\x00")
        assert "cut short" in _answer(ws)[0]["error"]
        ws.send_bytes(raw_frame(rgb))
        assert _answer(ws)[0]["frame"] == 6
    assert from_rgb["size"] == [240, 240] and from_rgb["face"] is not None and from_gray["face"] is not None
    assert from_rgb["prediction"][0]["class"] == from_gray["prediction"][0]["class"]


def test_a_flood_of_frames_is_answered_newest_first(app, astronaut):
    """60 frames at once: older frames waiting are dropped (a queue of one), the newest is always answered."""
    c = TestClient(app)
    with c.websocket_connect("/api/live") as ws:
        for _ in range(60):
            ws.send_bytes(astronaut)
        answers = []
        while not answers or answers[-1]["frame"] < 60:
            head, _ = _answer(ws)
            answers.append(head)
    frames = [a["frame"] for a in answers]
    assert frames == sorted(frames) and frames[-1] == 60
    assert len(frames) < 60 and answers[-1]["dropped"] == 60 - len(frames)


def test_no_face_is_said_and_the_stream_goes_on(app, cat, astronaut):
    c = TestClient(app)
    with c.websocket_connect("/api/live") as ws:
        ws.send_bytes(cat)
        head, parts = _answer(ws)
        assert head["face"] is None and head["note"] == "no face in the frame" and parts == {}
        ws.send_bytes(astronaut)
        head, _ = _answer(ws)
        assert head["face"] is not None and head["prediction"]


def test_each_tab_has_its_own_stream_freed_when_it_closes(app, astronaut):
    c = TestClient(app)
    with c.websocket_connect("/api/live") as a, c.websocket_connect("/api/live") as b:
        _settings(a, layer="C1")
        _settings(b, layer="C2")
        assert len(app.state.live) == 2
        a.send_bytes(astronaut)
        b.send_bytes(astronaut)
        assert _answer(a)[0]["view"]["label"] == "C1" and _answer(b)[0]["view"]["label"] == "C2"
        assert _answer_count(a) == 1  # each counts its own frames
    deadline = time.monotonic() + 5
    while app.state.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.live == set()


def _answer_count(ws) -> int:
    ws.send_bytes(b"x")
    return _answer(ws)[0]["frame"] - 1


def test_a_page_of_another_site_is_refused(app):
    c = TestClient(app)
    with pytest.raises(WebSocketDisconnect) as e:
        with c.websocket_connect("/api/live", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
    assert e.value.code == 1008
    with c.websocket_connect("/api/live?model=m7") as ws:
        assert "no model 'm7'" in json.loads(ws.receive_text())["error"]


def test_the_socket_refuses_other_host_names(face_model):
    """DNS rebinding: with allowed hosts (as `featuremaps explore` on loopback sets them), a socket asked for
    under another host name is refused before it opens."""
    c = TestClient(create_app(face_model, [], allowed_hosts=["127.0.0.1", "localhost"]))
    with c.websocket_connect("/api/live", headers={"host": "127.0.0.1"}):
        pass
    with pytest.raises(WebSocketDenialResponse) as e:
        with c.websocket_connect("/api/live", headers={"host": "evil.example"}):
            pass
    assert e.value.status_code == 400


def test_pack_and_y4m_clip():
    head, parts = unpack(pack({"a": 1}, [("grid", "image/png", b"\x89PNG"), ("x", "t", b"")]))
    assert head["a"] == 1 and parts == {"grid": b"\x89PNG", "x": b""}
    rgb = np.zeros((10, 7, 3), np.uint8)
    clip = y4m_clip(rgb, frames=3)
    first = clip.split(b"\n", 1)[0].decode()
    assert first.startswith("YUV4MPEG2 W6 H10 ") and "C420jpeg" in first  # an odd side loses a column
    assert len(clip) == len(first) + 1 + 3 * (len(b"FRAME\n") + 6 * 10 * 3 // 2)


def test_face_tracker_follows_a_moving_face():
    """Found in the whole frame first, then near the last box as the face moves."""
    rgb = load_image(EXAMPLES / "astronaut.png")
    t = FaceTracker()
    boxes = []
    for dx in (0, 6, 12, 18):
        boxes.append(t.find(np.roll(rgb, dx, axis=1)))
    assert all(b is not None for b in boxes)
    xs = [b.x for b in boxes]
    assert all(3 <= b - a <= 9 for a, b in zip(xs, xs[1:], strict=False)), xs
    assert t.find(np.full_like(rgb, 128)) is None and t.last is None


def test_a_frame_over_the_apps_limit_over_the_real_server(face_model, astronaut):
    """Through uvicorn with UVICORN_OPTIONS (as `featuremaps explore` serves): a 50 MB message is read, answered
    with an error for that frame, and the next frame is answered; memory holds one frame, not a queue."""
    app = create_app(face_model, [])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off", **UVICORN_OPTIONS))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        deadline = time.time() + 30
        while not srv.started and time.time() < deadline:
            time.sleep(0.02)
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/live", timeout=60)
        try:
            ws.send_binary(b"\x00" * (50 * 2**20))
            err = json.loads(ws.recv())
            assert err["frame"] == 1 and "over the 4 MiB limit" in err["error"]
            ws.send_binary(astronaut)
            msg = ws.recv()
            while isinstance(msg, str):
                msg = ws.recv()
            head, _ = unpack(msg)
            assert head["frame"] == 2 and head["prediction"]
        finally:
            ws.close()
    finally:
        srv.should_exit = True
        t.join(10)


# ---------------------------------------------------------------- in Chromium, with a fake camera
CHROMIUM = shutil.which("chromium")


def _browser_ready():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def _serve(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off", **UVICORN_OPTIONS))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv, t


def _camera_flags(clip: Path) -> list[str]:
    return [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]


def _local(url: str, server: str) -> bool:
    return url.startswith((server + "/", "data:", "blob:" + server + "/"))


def _live(page) -> dict:
    return page.evaluate("window.featuremapsLive")


def _wait_frames(page, more: int, after: int = 0, timeout: float = 120_000) -> dict:
    page.wait_for_function(f"() => window.featuremapsLive.frames >= {after + more}", timeout=timeout)
    return _live(page)


@pytest.mark.slow
def test_live_camera_with_the_emotion_model_in_chromium(tmp_path):
    """The bundled emotion model on a fake camera playing the astronaut: it reads happy, the grid and the input
    follow each frame, a layer switch while live is drawn, freeze makes the frame an image every view applies
    to, the socket's state is freed, no console errors, every request to 127.0.0.1."""
    sync = _browser_ready()
    clip = tmp_path / "astronaut.y4m"
    clip.write_bytes(y4m_clip(load_image(EXAMPLES / "astronaut.png"), frames=36))
    app = create_app(models.load("emotion"), [EXAMPLES / "chelsea.png"])
    server, srv, t = _serve(app)
    errors, requests, sockets = [], [], []
    try:
        with sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=_camera_flags(clip))
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: requests.append(r.url))
                page.on("websocket", lambda w: sockets.append(w.url))
                page.set_default_timeout(120_000)
                page.goto(server + "/")
                page.wait_for_selector("#grid .cell")
                assert _live(page)["state"] == "off"
                page.click("[data-testid=camera]")
                state = _wait_frames(page, 5)
                assert state["label"] == "happy", state
                assert page.locator("#pred .bar").first.text_content().startswith("happy")
                assert state["fps"] > 0 and state["latencyMs"] > 0 and state["state"] == "running"
                assert page.locator("#videowrap").is_visible() and page.locator("#livebox").is_visible()
                assert "fps" in page.locator("#livestats").text_content()
                assert "(face crop), live" in page.locator("#inputnote").text_content()
                assert page.locator("#grid .cell").count() == 64  # C1 of the emotion VGG-16: 64 channels
                assert len(app.state.live) == 1

                # switch layers while live: the next answers draw C5 (256 channels, 12x12)
                page.locator("#layers li[data-label='C5']").click()
                page.wait_for_selector("#layertitle:has-text('C5 block3_conv1')")
                page.wait_for_function("() => (document.getElementById('grid').dataset.drawn || '').endsWith(' C5')")
                assert page.locator("#pageinfo").text_content() == "channels 1-64 of 256"
                page.click("#next")
                page.wait_for_selector("#pageinfo:has-text('65-128 of 256')")
                n = _live(page)["frames"]
                _wait_frames(page, 3, n)  # still running after the switches
                assert "layer=C5" in page.url

                # the CAM of each frame: in the CAM panel, and over the video where the network looked
                page.check("#camon")
                page.wait_for_selector("#caminfo:has-text('live: gradcam at C5 block3_conv1 for \"happy\"')")
                page.wait_for_selector("#liveheat:not([hidden])")
                heat, face = page.locator("#liveheat").bounding_box(), page.locator("#livebox").bounding_box()
                assert heat["x"] < face["x"] and heat["x"] + heat["width"] > face["x"] + face["width"]
                page.uncheck("#camon")
                page.wait_for_selector("#liveheat", state="hidden")

                # freeze: the frame on screen becomes an upload, shown with every view of an image
                page.click("[data-testid=freeze]")
                page.wait_for_selector("#images option:has-text('(upload)')", state="attached")
                page.wait_for_function("() => document.getElementById('images').value.startsWith('u')")
                page.wait_for_function(
                    "() => (document.getElementById('grid').dataset.src || '').includes('/images/u')"
                )
                assert page.locator("#layers li.active").get_attribute("data-label") == "C5"
                assert page.locator("#pred .bar").first.text_content().startswith("happy")
                assert "camera " in page.locator("#images option:checked").text_content()
                assert page.locator("#videowrap").is_hidden() and _live(page)["state"] == "off"
                page.wait_for_selector("#facewrap:not([hidden])")  # its face crop, as for any photo
                tile = page.locator("#grid .cell .tile").nth(2)  # hover values work on the frozen frame
                box = tile.bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.wait_for_selector("#hover[data-value]")
            finally:
                browser.close()
        deadline = time.monotonic() + 10
        while app.state.live and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.live == set()  # the closed socket left nothing behind
    finally:
        srv.should_exit = True
        t.join(10)
    assert errors == [], errors
    assert requests and all(_local(u, server) for u in requests), [u for u in requests if not _local(u, server)]
    assert sockets and all(u.startswith(server.replace("http://", "ws://") + "/api/live") for u in sockets), sockets


@pytest.mark.slow
def test_no_face_and_a_refused_camera_in_chromium(tmp_path, face_model):
    """A camera showing a cat: the page says there is no face and keeps answering frames. A camera refused:
    one clear message, and the page still works on its images."""
    sync = _browser_ready()
    clip = tmp_path / "cat.y4m"
    clip.write_bytes(y4m_clip(load_image(EXAMPLES / "chelsea.png"), frames=12))
    server, srv, t = _serve(create_app(face_model, [EXAMPLES / "astronaut.png"]))
    errors = []
    try:
        with sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=_camera_flags(clip))
            try:
                page = browser.new_page()
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.set_default_timeout(60_000)
                page.goto(server + "/")
                page.wait_for_selector("#grid .cell")
                page.click("[data-testid=camera]")
                state = _wait_frames(page, 3)
                assert state["label"] == "no face"
                assert "no face in the frame" in page.locator("#livenote").text_content()
                _wait_frames(page, 3, state["frames"])  # and it keeps running
                page.click("[data-testid=camera]")  # stop: the image view comes back
                page.wait_for_function(
                    "() => (document.getElementById('grid').dataset.src || '').includes('/images/a0')"
                )

                refused = browser.new_page()
                refused.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                refused.add_init_script(
                    "navigator.mediaDevices.getUserMedia = () => "
                    "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
                )
                refused.goto(server + "/")
                refused.wait_for_selector("#grid .cell")
                refused.click("[data-testid=camera]")
                refused.wait_for_selector("#livenote:not([hidden])")
                assert refused.locator("#livenote").text_content().startswith("camera refused: allow the camera")
                assert refused.locator("#camera").get_attribute("aria-pressed") == "false"
                assert refused.locator("#grid .cell").count() == 12 and refused.locator("#videowrap").is_hidden()

                absent = browser.new_page()  # no camera at all
                absent.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                absent.add_init_script(
                    "navigator.mediaDevices.getUserMedia = () => "
                    "Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));"
                )
                absent.goto(server + "/")
                absent.wait_for_selector("#grid .cell")
                absent.click("[data-testid=camera]")
                absent.wait_for_selector("#livenote:not([hidden])")
                assert absent.locator("#livenote").text_content() == (
                    "no camera found: connect one, then press camera again"
                )
            finally:
                browser.close()
    finally:
        srv.should_exit = True
        t.join(10)
    assert errors == [], errors


@pytest.mark.slow
def test_two_tabs_stream_on_their_own_in_chromium(tmp_path, face_model):
    """Two tabs live at once: each its own stream and settings (C1 and C2); closing one frees its stream and
    the other keeps going."""
    sync = _browser_ready()
    clip = tmp_path / "astronaut.y4m"
    clip.write_bytes(y4m_clip(load_image(EXAMPLES / "astronaut.png"), frames=12))
    app = create_app(face_model, [])
    server, srv, t = _serve(app)
    errors = []
    try:
        with sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=_camera_flags(clip))
            try:
                tabs = [browser.new_page(), browser.new_page()]
                for tab, layer in zip(tabs, ("C1", "C2"), strict=True):
                    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                    tab.set_default_timeout(60_000)
                    tab.goto(f"{server}/?layer={layer}")
                    tab.wait_for_selector("#layers li")
                    tab.click("[data-testid=camera]")
                for tab in tabs:
                    _wait_frames(tab, 3)
                assert len(app.state.live) == 2
                assert tabs[0].locator("#layertitle").text_content().startswith("C1 first_conv")
                assert tabs[1].locator("#layertitle").text_content().startswith("C2 second_conv")
                tabs[0].close()
                deadline = time.monotonic() + 10
                while len(app.state.live) > 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(app.state.live) == 1
                n = _live(tabs[1])["frames"]
                _wait_frames(tabs[1], 3, n)
            finally:
                browser.close()
    finally:
        srv.should_exit = True
        t.join(10)
    assert errors == [], errors
