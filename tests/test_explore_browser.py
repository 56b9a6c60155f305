"""featuremaps explore in a real browser: Playwright driving Debian's headless chromium against the real server."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def _nets():
    """The page's model (2 convs), and a deeper one (4 convs, 32 px input) for the two-model comparison."""
    import keras

    from featuremaps.models import wrap

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
        name="browser_net",
    )
    deeper = keras.Sequential(
        [keras.Input((32, 32, 3))]
        + [keras.layers.Conv2D(5 + i, 3, padding="same", activation="relu", name=f"deep_{i + 1}") for i in range(4)]
        + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")],
        name="deeper_net",
    )
    classes = ["cat", "dog", "owl"]
    return wrap(model, classes=classes), wrap(deeper, classes=classes)


def _serve(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off"))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv, t


@pytest.fixture
def server(tmp_path):
    from featuremaps.explore.app import create_app

    first, _ = _nets()
    url, srv, t = _serve(create_app(first, [EXAMPLES / "astronaut.png"]))
    yield url
    srv.should_exit = True
    t.join(10)


@pytest.fixture
def two_models(tmp_path):
    from featuremaps.explore.app import create_app

    first, deeper = _nets()
    url, srv, t = _serve(create_app(first, [EXAMPLES / "astronaut.png"], others=[deeper]))
    yield url
    srv.should_exit = True
    t.join(10)


def _local(url: str, server: str) -> bool:
    """A request the page may make: to its server, or for its own in-memory data (the sprites it keeps as blobs)."""
    return url.startswith((server + "/", "data:", "blob:" + server + "/"))


def _blank_refused(x):
    """The page's model's preprocessing, refusing a uniform picture (a model that cannot take some images)."""
    from featuremaps.errors import UserError

    if float(x.std()) == 0.0:
        raise UserError("this model cannot take a blank picture")
    return x / 255.0


@pytest.fixture
def faces(tmp_path):
    """The page's model as an emotion model (it sees the largest face), the astronaut and the faceless cat."""
    from featuremaps.explore.app import create_app

    first, _ = _nets()
    lm = dataclasses.replace(first, is_emotion=True)
    url, srv, t = _serve(create_app(lm, [EXAMPLES / "astronaut.png", EXAMPLES / "chelsea.png"]))
    yield url
    srv.should_exit = True
    t.join(10)


@pytest.fixture
def picky(tmp_path):
    """The page's model, whose preprocessing refuses blank pictures (uploads it cannot use)."""
    from featuremaps.explore.app import create_app

    first, _ = _nets()
    lm = dataclasses.replace(first, preprocess_fn=_blank_refused)
    url, srv, t = _serve(create_app(lm, [EXAMPLES / "astronaut.png"]))
    yield url
    srv.should_exit = True
    t.join(10)


@pytest.fixture
def pair(tmp_path):
    """The page's model with two command-line images (no face crop)."""
    from featuremaps.explore.app import create_app

    first, _ = _nets()
    url, srv, t = _serve(create_app(first, [EXAMPLES / "astronaut.png", EXAMPLES / "chelsea.png"]))
    yield url
    srv.should_exit = True
    t.join(10)


@contextlib.contextmanager
def _page(server):
    """A Chromium page on the explorer, collecting console errors and every request it makes."""
    errors, requests = [], []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.set_default_timeout(120_000)
            page.goto(server + "/")
            yield browser, page, errors, requests
        finally:
            browser.close()


def test_explore_page_in_chromium(server):
    with _page(server) as (browser, page, errors, requests):
        # the command-line image is offered and shown; 12 channels of C1
        page.wait_for_selector("#grid .cell")
        assert page.locator("#images option").first.text_content().startswith("astronaut.png")
        assert page.locator("#grid .cell").count() == 12
        assert page.locator("#layers li").count() == 2
        assert "dead" in page.locator("#layers li").first.text_content()

        # upload a photo: it becomes the current image, with a prediction
        page.set_input_files("#file", str(EXAMPLES / "chelsea.png"))
        page.wait_for_selector("#images option:has-text('chelsea.png (upload)')", state="attached")
        page.wait_for_selector("#pred .bar")
        assert page.locator("#images").input_value().startswith("u")

        # switch layers: C2 has 70 channels, shown 64 a page, then the rest
        page.locator("#layers li[data-label='C2']").click()
        page.wait_for_selector("#layertitle:has-text('C2 second_conv')")
        page.wait_for_selector("#pageinfo:has-text('1-64 of 70')")
        assert page.locator("#grid .cell").count() == 64
        page.click("#next")
        page.wait_for_selector("#pageinfo:has-text('65-70 of 70')")
        assert page.locator("#grid .cell").count() == 6
        page.click("#prev")
        page.wait_for_selector("#pageinfo:has-text('1-64 of 70')")

        # hover a map: the exact value, and the receptive field outlined on the input
        tile = page.locator("#grid .cell .tile").nth(3)
        box = tile.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5 + 1, box["y"] + box["height"] * 0.25 + 1)
        page.wait_for_selector("#hover[data-value]")
        shown = float(page.locator("#hover").get_attribute("data-value"))
        text = page.locator("#hover").text_content()
        assert "C2 F4 at (y 6, x 12)" in text, text
        image_id = page.locator("#images").input_value()
        url = f"{server}/api/images/{image_id}/layers/C2/channels/3/value?y=6&x=12"
        with urllib.request.urlopen(url) as r:
            assert shown == pytest.approx(json.load(r)["value"])
        assert page.locator("#rfbox").is_visible()

        # click a channel: large view over the input, opacity slider
        tile.click()
        page.wait_for_selector("#detail:not([hidden])")
        page.locator("#opacity").fill("30")
        assert page.locator("#doverlay").evaluate("e => e.style.opacity") == "0.3"

        # a CAM for a chosen class and method at this layer
        page.select_option("#camclass", "2")
        page.select_option("#cammethod", "gradcam++")
        page.check("#camon")
        page.wait_for_selector("#caminfo:has-text('gradcam++ at C2 second_conv for')")
        assert 'for "owl"' in page.locator("#caminfo").text_content()
        page.wait_for_selector("#camimg:not([hidden])")

        # the view lives in the URL: a new tab with it shows the same thing
        link = page.url
        for part in ("layer=C2", "channel=3", "class=2", "method=gradcam%2B%2B", "cam=1"):
            assert part in link, link
        other = browser.new_page()
        other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        other.on("request", lambda r: requests.append(r.url))
        other.goto(link)
        other.wait_for_selector("#detail:not([hidden])", timeout=120_000)
        assert other.locator("#layers li.active").get_attribute("data-label") == "C2"
        other.wait_for_selector("#caminfo:has-text('gradcam++ at C2 second_conv for \"owl\"')", timeout=120_000)

        # compare: a second image side by side, same channels
        page.select_option("#compare", "a0")
        page.wait_for_selector("#panelB:not([hidden]) #gridB .cell")
        assert page.locator("#gridB .cell").count() == 64
    assert errors == [], errors
    assert requests and all(_local(u, server) for u in requests), [u for u in requests if not _local(u, server)]


def test_two_models_side_by_side_in_chromium(two_models):
    """--models a,b: the same image through both models, the second at the layer of the same relative depth
    (2 convs against 4: C1 -> C1, C2 -> C4, the rule of featuremaps compare), each with its prediction; the
    view (models) lives in the URL; the main view can switch to the second model."""
    server = two_models
    with _page(server) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        assert page.locator("#modelwrap").is_visible() and page.locator("#vswrap").is_visible()
        page.select_option("#vs", "m1")
        page.wait_for_selector("#panelB:not([hidden]) #gridB .cell")
        assert page.locator("#gridB .cell").count() == 5  # deep_1: 5 channels
        page.wait_for_function("() => document.getElementById('inputB').naturalWidth === 32")  # its own 32 px input
        title = page.locator("#gridtitleB").text_content()
        assert "deeper_net" in title and "C1 deep_1" in title and "random weights" not in title, title
        page.locator("#layers li[data-label='C2']").click()
        page.wait_for_selector("#gridtitleB:has-text('C4 deep_4')")
        assert page.locator("#gridB .cell").count() == 8  # deep_4: 8 channels
        assert "predicts" in page.locator("#gridtitle").text_content()
        # hover the second model's map: its own value, read from its own route
        tile = page.locator("#gridB .cell .tile").nth(1)
        box = tile.bounding_box()
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.wait_for_selector("#hover:has-text('deeper_net')")
        assert "vs=m1" in page.url
        # the main view on the second model: its rail has 4 layers
        page.select_option("#modelsel", "m1")
        page.wait_for_selector("#layers li[data-label='C4']")
        assert page.locator("#layers li").count() == 4 and "model=m1" in page.url
        page.wait_for_selector("#grid .cell")
    assert errors == [], errors
    assert requests and all(_local(u, server) for u in requests), [u for u in requests if not _local(u, server)]


def test_controls_drop_and_export_in_chromium(server, tmp_path):
    """The toolbar's controls and the drop zone, in the page: sort by mean orders the tiles by the layer's
    channel means (read from the API), colormap and norm redraw the grid and the colour bar, a dropped file
    becomes the current image, and both export buttons download what the routes serve."""
    import base64

    import numpy as np

    with _page(server) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        image_id = page.locator("#images").input_value()

        # sort by mean: the tiles follow the API's channel means, highest first
        page.select_option("#sort", "mean")
        page.wait_for_selector("#gridtitle:has-text('sorted by mean')")
        with urllib.request.urlopen(f"{server}/api/images/{image_id}/layers/C1") as r:
            means = json.load(r)["mean"]
        captions = page.locator("#grid .cell").all_text_contents()
        shown = [int(c.split("·")[0].strip()[1:]) - 1 for c in captions]  # "F4 · 0.53" -> channel 3
        assert shown == sorted(range(len(means)), key=lambda c: -means[c]), (shown, means)
        assert "sort=mean" in page.url

        # colormap and norm: the colour bar and the tiles are redrawn with them
        bar = page.locator("#colorbar").get_attribute("src")
        page.select_option("#cmap", "magma")
        page.wait_for_function("() => document.getElementById('colorbar').src.includes('cmap=magma')")
        assert page.locator("#colorbar").get_attribute("src") != bar
        page.select_option("#norm", "layer")
        page.wait_for_function(
            "() => ['norm=layer', 'cmap=magma'].every(p => document.getElementById('grid').dataset.src.includes(p))"
        )
        assert "cmap=magma" in page.url and "norm=layer" in page.url

        # export the view (the page of tiles) as PNG and the layer's maps as .npy
        with page.expect_download() as dl:
            page.click("#exportpng")
        png = tmp_path / "view.png"
        dl.value.save_as(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with page.expect_download() as dl:
            page.click("#exportnpy")
        npy = tmp_path / "maps.npy"
        dl.value.save_as(npy)
        maps = np.load(npy)
        assert maps.shape == (48, 48, 12) and maps.dtype == np.float32
        assert np.allclose(maps.mean(axis=(0, 1)), means, rtol=1e-5, atol=1e-6)

        # drop a file on the drop zone: it is uploaded and becomes the current image
        b64 = base64.b64encode((EXAMPLES / "chelsea.png").read_bytes()).decode()
        transfer = page.evaluate_handle(
            """(b64) => {
                const bin = atob(b64), bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped cat.png", { type: "image/png" }));
                return dt;
            }""",
            b64,
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_selector("#images option:has-text('dropped cat.png (upload)')", state="attached")
        page.wait_for_function("() => document.getElementById('images').value.startsWith('u')")
        page.wait_for_selector("#pred .bar")
    assert errors == [], errors
    assert requests and all(_local(u, server) for u in requests), [u for u in requests if not _local(u, server)]


def _drawn(page, label: str, after: int = 0) -> int:
    """Wait until the page has drawn ``label``'s grid (its number-th drawing, later than ``after``); that number."""
    page.wait_for_function(
        "([label, after]) => { const d = (document.getElementById('grid').dataset.drawn || '0 -').split(' ');"
        " return d[1] === label && +d[0] > after; }",
        arg=[label, after],
    )
    return int(page.locator("#grid").get_attribute("data-drawn").split()[0])


def test_faceless_photo_is_fed_whole_with_a_note_in_chromium(faces):
    """The emotion model on a photo without a face (chelsea.png): the whole photo, its maps and prediction, with a
    note; before, the page kept the astronaut's input, prediction and maps under the cat's name and advised an
    option explore did not have."""
    with _page(faces) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        assert page.locator("#facewrap").is_visible() and "(face crop)" in page.locator("#inputnote").text_content()
        assert page.locator("#facenote").is_hidden()
        page.select_option("#images", "a1")
        page.wait_for_selector("#facenote:not([hidden])")
        assert "no face found: the whole photo was fed" in page.locator("#facenote").text_content()
        assert "the whole photo" in page.locator("#inputnote").text_content()
        page.wait_for_function("() => document.getElementById('grid').dataset.src.includes('/images/a1/')")
        page.wait_for_function("() => document.getElementById('input').naturalWidth === 48")
        assert "/images/a1/" in page.locator("#input").get_attribute("src")
        assert page.locator("#facewrap").is_hidden()  # no face box of another image
        assert page.locator("#pred .bar").count() == 3 and page.locator("#grid .cell").count() == 12
        assert "--no-face-crop" not in page.locator("body").text_content()
        assert page.locator("#status").get_attribute("class") != "error"
    assert errors == [], errors


def test_compare_shows_the_other_images_input_in_chromium(pair):
    """ "compare with": the second image's input (what the network saw of it) loads above its maps; nothing of it
    shows before (a hidden element stays hidden: an element's own display rule showed a broken image)."""
    with _page(pair) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        assert page.locator("#inputB").is_hidden() and page.locator("#panelB").is_hidden()
        page.select_option("#compare", "a1")
        page.wait_for_selector("#panelB:not([hidden]) #gridB .cell")
        page.wait_for_function("() => document.getElementById('inputB').naturalWidth > 0", timeout=30_000)
        assert page.locator("#inputB").is_visible()
        assert "/images/a1/input.png" in page.locator("#inputB").get_attribute("src")
        note = page.locator("#inputBnote").text_content()
        assert note == "what the network saw of chelsea.png: 48x48x3", note
        page.select_option("#compare", "")
        page.wait_for_selector("#panelB", state="hidden")
        assert page.locator("#inputB").is_hidden()
    assert errors == [], errors


def test_compare_with_a_faceless_photo_says_so_once_in_chromium(faces):
    """Comparing the astronaut with the faceless cat: the cat's caption gives its input and the note, and says
    "no face found" once (it said it twice: the input's tag and then the note). The compare list does not offer
    the image shown (it did: the same grid twice)."""
    with _page(faces) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        page.select_option("#compare", "a1")
        page.wait_for_selector("#panelB:not([hidden]) #gridB .cell")
        note = page.locator("#inputBnote").text_content()
        assert note.startswith("what the network saw of chelsea.png: 48x48x3; no face found: the whole photo"), note
        assert note.count("no face found") == 1, note
        # the compare list offers every image but the one shown; showing the compared one ends the comparison
        values = "() => [...document.getElementById('compare').options].map((o) => o.value)"
        assert page.evaluate(values) == ["", "a1"]
        page.select_option("#images", "a1")
        page.wait_for_selector("#panelB", state="hidden")
        page.wait_for_function("() => document.getElementById('grid').dataset.src.includes('/images/a1/')")
        assert page.evaluate(values) == ["", "a0"] and page.locator("#compare").input_value() == ""
    assert errors == [], errors


def test_cam_is_a_toggle_and_a_visited_layer_costs_no_request_in_chromium(server):
    """CAM on follows the layer (once per layer: cached); CAM off, a layer switch asks for no CAM; a layer seen
    before is drawn from the page's own copies, without a request (the click-to-drawn benchmark's case)."""
    with _page(server) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        n = _drawn(page, "C1")
        page.check("#camon")
        page.wait_for_selector("#caminfo:has-text('gradcam at C1 first_conv')")
        page.wait_for_selector("#camimg:not([hidden])")
        assert "cam=1" in page.url
        page.locator("#layers li[data-label='C2']").click()
        n = _drawn(page, "C2", n)
        page.wait_for_selector("#caminfo:has-text('gradcam at C2 second_conv')")  # it follows the layer
        page.uncheck("#camon")
        page.wait_for_selector("#camimg", state="hidden")
        assert "cam=1" not in page.url
        before = len(requests)
        for label in ("C1", "C2", "C1"):  # both seen: no request at all, and no CAM work
            page.locator(f"#layers li[data-label='{label}']").click()
            n = _drawn(page, label, n)
        later = requests[before:]
        assert not [u for u in later if "/cam" in u], later
        assert not [u for u in later if "/layers/" in u and not u.startswith("blob:")], later
        assert page.locator("#camimg").is_hidden() and "CAM off" in page.locator("#caminfo").text_content()
    assert errors == [], errors


def test_unusable_upload_clears_the_view_and_is_not_offered_in_chromium(picky, tmp_path):
    """An upload the model cannot take: the view clears (no input, prediction or maps of the image before it) and
    says why; the upload is not offered, not even after a reload; the file chooser names no file after an upload."""
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (80, 80), (128, 128, 128)).save(blank)
    with _page(picky) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")
        page.set_input_files("#file", str(blank))
        page.wait_for_selector("footer.error:has-text('cannot take a blank picture')")
        assert page.locator("#grid .cell").count() == 0
        assert page.locator("#input").get_attribute("src") is None and page.locator("#pred .bar").count() == 0
        assert page.locator("#inputwrap").is_hidden()  # no broken image where the input was
        assert "blank.png" in page.locator("#gridtitle").text_content()
        assert "blank.png" not in page.locator("#images").text_content()
        assert page.locator("#file").input_value() == ""
        page.reload()
        page.wait_for_selector("#grid .cell")
        assert "blank.png" not in page.locator("#images").text_content()
        # a usable upload: shown, offered, and the chooser is ready for the next file
        page.set_input_files("#file", str(EXAMPLES / "chelsea.png"))
        page.wait_for_selector("#images option:has-text('chelsea.png (upload)')", state="attached")
        page.wait_for_function("() => document.getElementById('grid').dataset.src.includes('/images/u')")
        assert page.locator("#file").input_value() == ""
    assert [e for e in errors if "400" not in e] == [], errors  # the refused upload's 400 is the one console line


def test_toolbar_keeps_its_place_in_chromium(server):
    """The colour bar's labels ("each map: its min" / a number), the page counter and the layer title change
    width; the toolbar's controls stay where they are."""
    with _page(server) as (browser, page, errors, requests):
        page.wait_for_selector("#grid .cell")

        def places():
            return [page.locator(f"#{i}").bounding_box() for i in ("compare", "exportpng", "next", "toolbar")]

        first = places()
        page.select_option("#norm", "layer")
        page.wait_for_function("() => !document.getElementById('cblo').textContent.startsWith('each map')")
        assert places() == first
        page.locator("#layers li[data-label='C2']").click()
        page.wait_for_selector("#pageinfo:has-text('1-64 of 70')")
        page.click("#next")
        page.wait_for_selector("#pageinfo:has-text('65-70 of 70')")
        assert places() == first
    assert errors == [], errors


def test_what_a_channel_looks_for_panel_in_chromium(pair):
    """Click a channel, compute its pattern in the background: progress, then the picture and the exemplars of
    the page's two images; another channel shows its own (nothing of the first), a computed one at once."""
    with _page(pair) as (browser, page, errors, requests):
        page.goto(pair + "/?layer=C2&steps=64")
        page.wait_for_selector("#grid .cell")
        assert page.locator("[data-testid=patterns-panel]").is_hidden()  # no channel selected: no panel
        page.locator("#grid .cell[data-channel='5'] .tile").click()
        panel = page.locator("[data-testid=patterns-panel]")
        page.wait_for_selector("[data-testid=patterns-panel][data-state=idle]")
        assert "C2 F6" in page.locator("#looktitle").text_content()
        page.locator("[data-testid=patterns-compute]").click()
        page.wait_for_selector("[data-testid=patterns-panel][data-state=done]", timeout=120_000)
        img = page.locator("[data-testid=patterns-image]")
        assert img.is_visible()
        page.wait_for_function("document.querySelector('[data-testid=patterns-image]').naturalWidth > 0")
        assert img.evaluate("e => e.naturalWidth") == 240  # 48 px enlarged 5x
        assert "objective" in page.locator("[data-testid=patterns-value]").text_content()
        assert page.locator("[data-testid=patterns-exemplars] figure").count() == 2  # both images of the page
        assert page.locator("[data-testid=patterns-progress]").is_hidden()
        assert panel.get_attribute("data-key").endswith("C2 5")

        # another channel: its own panel, nothing of F6 under its title
        page.locator("#grid .cell[data-channel='7'] .tile").click()
        page.wait_for_selector("#looktitle:has-text('C2 F8')")
        page.wait_for_selector("[data-testid=patterns-panel][data-state=idle]")
        assert img.is_hidden()
        # back to F6: computed, shown at once without pressing anything
        page.locator("#grid .cell[data-channel='5'] .tile").click()
        page.wait_for_selector("[data-testid=patterns-panel][data-state=done]")
        assert img.is_visible()
        assert not errors, errors
        assert all(_local(u, pair) for u in requests), [u for u in requests if not _local(u, pair)]
