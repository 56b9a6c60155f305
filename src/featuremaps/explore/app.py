"""The explorer's web app: JSON and PNG endpoints over :class:`~featuremaps.explore.session.Explorer`, one
WebSocket for the live camera (``/api/live``: :mod:`featuremaps.explore.live`), and the page (``static/``: one
HTML, one script, one stylesheet, shipped in the package; nothing from a CDN).

Routes never take a file path: command-line images are reached by id (``a0``...), uploads by the hash of
their bytes, static files from a fixed list. Every error is a JSON ``{"error": message}`` with a 4xx code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import uvicorn
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.websockets import WebSocketDisconnect

from featuremaps.compare import align_by_depth, free_size_shape
from featuremaps.errors import UserError
from featuremaps.explore.live import MAX_FRAME_BYTES, LiveStream, frame_channels, frame_side
from featuremaps.explore.patterns import PatternJobs
from featuremaps.explore.session import BadRequest, Explorer, NotFound, TooLarge
from featuremaps.io import safe_name
from featuremaps.loaded import LoadedModel
from featuremaps.patterns.optimise import STEPS

STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
#: nothing but this server: scripts, styles, images and requests from 'self' only
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
NO_STORE = {"Cache-Control": "no-store"}
#: what the server (uvicorn) must be told for the live camera's socket: a message up to 64 MiB is read and
#: answered with an error when it is over the app's own frame limit (4 MiB), so a 50 MB frame costs that frame
#: only; a bigger one closes the socket (1009). The answers are PNG sprites stored uncompressed for speed over
#: loopback: no per-message deflate (it cost more than the frame's forward pass).
UVICORN_OPTIONS = {"ws_max_size": 64 * 2**20, "ws_per_message_deflate": False}


def serve_in_thread(app: FastAPI, backlog: int = 64) -> tuple[uvicorn.Server, int]:
    """``(server, port)``: ``app`` served by uvicorn (with :data:`UVICORN_OPTIONS`) on a free 127.0.0.1 port in a
    daemon thread, returned once it accepts connections (for scripts: screenshots, benchmarks); stop it with
    ``server.should_exit = True``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off", **UVICORN_OPTIONS)
    )
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, sock.getsockname()[1]


def _static(name: str) -> bytes:
    return resources.files("featuremaps.explore").joinpath("static").joinpath(name).read_bytes()


def create_app(
    lm: LoadedModel,
    images: list[Path] | None = None,
    *,
    others: list[LoadedModel] | tuple = (),
    cache_bytes: int = 512 * 2**20,
    upload_bytes: int = 128 * 2**20,
    max_upload_bytes: int = 20 * 2**20,
    allowed_hosts: list[str] | None = None,
    input_shape: tuple[int, ...] | None = None,
    face_crop: bool | None = None,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> FastAPI:
    """The explorer app for one model (or several: ``others``, reached as ``?model=m1``, ``m2``, ...; the
    first is ``m0``, the default) and the images given on the command line (the only paths it reads).
    Every model sees every upload (one store); the activation cache is shared out equally between them.
    ``input_shape`` (H, W, C): the size models that do not fix one are fed (an ONNX file with a dynamic input
    size needs it); with several models, one that fixes its size keeps it, as in ``featuremaps compare``.
    ``face_crop=False``: the emotion model sees whole images (``--no-face-crop``); by default it sees the
    largest face, and a photo without one whole, with a note in the page.

    ``cache_bytes`` bounds the per-image activations held (least recently used go first), ``upload_bytes`` the
    decoded uploads, ``max_upload_bytes`` one upload. ``allowed_hosts`` (e.g. ``["127.0.0.1", "localhost"]``)
    refuses requests for other host names (DNS rebinding). ``max_frame_bytes`` bounds one frame of the live
    camera (``/api/live``, a WebSocket: see :mod:`featuremaps.explore.live`); serve the app with
    :data:`UVICORN_OPTIONS`. Example::

        app = create_app(models.load("vgg16", weights="none"), [Path("cat.png")])
        uvicorn.run(app, host="127.0.0.1", port=8000, **UVICORN_OPTIONS)
    """
    share = len(others) + 1
    explorers = [
        Explorer(
            m,
            images,
            cache_bytes=cache_bytes // share,
            upload_bytes=upload_bytes,
            max_upload_bytes=max_upload_bytes,
            input_shape=free_size_shape(m, input_shape) if others else input_shape,  # several: as in compare
            face_crop=face_crop,
        )
        for m in (lm, *others)
    ]
    ex = explorers[0]
    jobs = {id(e): PatternJobs(e) for e in explorers}  # the "what it looks for" panel's work, per model
    for other in explorers[1:]:  # one store of decoded uploads (ids are hashes of the bytes) for every model
        other.uploads = ex.uploads
    app = FastAPI(title="featuremaps explore", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex
    app.state.explorers = explorers
    app.state.patterns = list(jobs.values())  # each model's PatternJobs, in the order of explorers
    app.state.live = set()  # the open live streams (one a tab); a closed socket's is gone
    model_ids = [f"m{i}" for i in range(len(explorers))]

    def pick(model: str) -> Explorer:
        """The explorer of model id ``m0``, ``m1``, ... (a one-line 404 naming the ids otherwise)."""
        if model not in model_ids:
            listing = ", ".join(f"{i} ({e.lm.name})" for i, e in zip(model_ids, explorers, strict=True))
            raise NotFound(f"no model '{model}': this explorer has {listing}")
        return explorers[model_ids.index(model)]

    def models_info(base: Explorer) -> list[dict]:
        """Each model, and how its conv layers line up with ``base``'s (by relative depth, as ``featuremaps
        compare`` aligns them): ``align[label in base] = label in this model``."""
        first = base.convs
        out = []
        for i, e in zip(model_ids, explorers, strict=True):
            picks = align_by_depth(len(first), len(e.convs))
            out.append(
                {
                    "id": i,
                    "name": e.lm.name,
                    "source": e.lm.source,
                    "layers": len(e.convs),
                    "align": {c.label: e.convs[k].label for c, k in zip(first, picks, strict=True)},
                }
            )
        return out

    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    pages = {name: _static(name) for name in STATIC}
    index = _static("index.html")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError):
        code = 404 if isinstance(e, NotFound) else 413 if isinstance(e, TooLarge) else 400
        if type(e) is UserError and request.url.path == "/api/images" and request.method == "POST":
            code = 415  # the upload did not decode as an image
        return JSONResponse({"error": str(e)}, status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        msg = "no such page or API route" if e.status_code == 404 else str(e.detail)
        return JSONResponse({"error": msg}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:3]:
            where = ".".join(str(v) for v in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "bad parameter " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # never a traceback page
        return JSONResponse({"error": f"internal error ({type(e).__name__}); see the server's terminal"}, 500)

    async def call(ex: Explorer, fn, *args):
        """Run ``fn``, one of ``ex``'s methods, on the explorer's worker thread (where all its model and picture
        work runs) and await it: the event loop keeps answering while a forward pass or a CAM takes seconds."""
        return await asyncio.wrap_future(ex.submit(fn, *args))

    def png(data: bytes, filename: str | None = None) -> Response:
        h = dict(NO_STORE)
        if filename:
            h["Content-Disposition"] = f'attachment; filename="{safe_name(filename)}"'
        return Response(data, media_type="image/png", headers=h)

    # ---------------------------------------------------------------- page
    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(index, headers=NO_STORE)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in pages:
            raise NotFound(f"no static file '{name}'")
        return Response(pages[name], media_type=STATIC[name], headers=NO_STORE)

    # ---------------------------------------------------------------- model and images
    @app.get("/api/info")
    def info(model: str = "m0"):
        e = pick(model)
        live = {"frame_side": frame_side(e), "channels": frame_channels(e), "max_frame_bytes": max_frame_bytes}
        return {**e.info(), "model_id": model, "models": models_info(e), "live": live}

    @app.get("/api/images")
    def list_images():
        return {"images": ex.images()}

    @app.post("/api/images", status_code=201)
    async def upload(request: Request):
        limit = ex.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"upload is over the {limit / 2**20:.0f} MiB limit; send a smaller image")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise TooLarge(f"upload is over the {limit / 2**20:.0f} MiB limit; send a smaller image")
        return ex.add_upload(bytes(data), unquote(request.headers.get("x-filename") or "upload"))

    @app.get("/api/images/{image_id}")
    def summary(image_id: str, model: str = "m0"):
        return pick(model).summary(image_id)

    @app.get("/api/images/{image_id}/input.png")
    def input_png(image_id: str, model: str = "m0"):
        return png(pick(model).input_png(image_id))

    @app.get("/api/images/{image_id}/original.png")
    def original_png(image_id: str, model: str = "m0"):
        return png(pick(model).input_png(image_id, original=True))

    # ---------------------------------------------------------------- layers and channels
    @app.get("/api/images/{image_id}/layers/{layer}")
    async def layer_view(image_id: str, layer: str, sort: str = "index", cell: int = 112, model: str = "m0"):
        e = pick(model)
        return await call(e, e.layer_view, image_id, layer, sort, cell)

    @app.get("/api/images/{image_id}/layers/{layer}/grid.png")
    async def grid(
        image_id: str,
        layer: str,
        sort: str = "index",
        page: int = 0,
        per_page: int = 64,
        cmap: str = "viridis",
        norm: str = "map",
        cell: int = 112,
        channels: str | None = None,
        download: bool = False,
        model: str = "m0",
    ):
        level = None if download else 0
        e = pick(model)
        data = await call(e, e.grid_png, image_id, layer, sort, page, per_page, cmap, norm, cell, channels, level)
        return png(data, f"{image_id}_{layer}_p{page}.png" if download else None)

    @app.get("/api/images/{image_id}/layers/{layer}/maps.npy")
    def maps_npy(image_id: str, layer: str, model: str = "m0"):
        e = pick(model)
        data, label = e.npy(image_id, layer)
        name = safe_name(f"{e.source(image_id).name.rsplit('.', 1)[0]}_{label}.npy")
        return Response(
            data,
            media_type="application/octet-stream",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/images/{image_id}/layers/{layer}/channels/{channel}.png")
    async def channel_png(
        image_id: str,
        layer: str,
        channel: str,
        cmap: str = "viridis",
        norm: str = "map",
        alpha: float | None = Query(None),
        download: bool = False,
        model: str = "m0",
    ):
        e = pick(model)
        data = await call(e, e.channel_png, image_id, layer, channel, cmap, norm, alpha)
        return png(data, f"{image_id}_{layer}_ch{channel}.png" if download else None)

    @app.get("/api/images/{image_id}/layers/{layer}/channels/{channel}/value")
    async def value(image_id: str, layer: str, channel: str, y: int, x: int, model: str = "m0"):
        e = pick(model)
        return await call(e, e.value, image_id, layer, channel, y, x)

    # ---------------------------------------------------------------- CAM
    @app.get("/api/images/{image_id}/cam")
    async def cam(
        image_id: str,
        layer: str,
        method: str = "gradcam",
        cls: str | None = Query(None, alias="class"),
        model: str = "m0",
    ):
        e = pick(model)
        return await call(e, e.cam_info, image_id, layer, method, cls)

    @app.get("/api/images/{image_id}/cam.png")
    async def cam_png(
        image_id: str,
        layer: str,
        method: str = "gradcam",
        cls: str | None = Query(None, alias="class"),
        alpha: float = 0.45,
        cmap: str = "jet",
        download: bool = False,
        model: str = "m0",
    ):
        e = pick(model)
        data = await call(e, e.cam_png, image_id, layer, method, cls, alpha, cmap)
        return png(data, f"{image_id}_{layer}_{method}.png" if download else None)

    # ---------------------------------------------------------------- what a channel looks for
    # POST starts the channel's job (in the background: a 202 with its status, at once); GET is its status
    # (progress, and when done the objective, the exemplars and the picture's URL); .png the picture.
    @app.get("/api/patterns/{layer}/{channel}.png")
    def pattern_png(
        layer: str, channel: str, steps: int = STEPS, size: int | None = None, seed: int = 0, model: str = "m0"
    ):
        e = pick(model)
        return png(jobs[id(e)].png(layer, channel, steps, size, seed))

    @app.post("/api/patterns/{layer}/{channel}", status_code=202)
    def pattern_start(
        layer: str, channel: str, steps: int = STEPS, size: int | None = None, seed: int = 0, model: str = "m0"
    ):
        e = pick(model)
        return jobs[id(e)].start(layer, channel, steps, size, seed)

    @app.get("/api/patterns/{layer}/{channel}")
    def pattern_status(
        layer: str, channel: str, steps: int = STEPS, size: int | None = None, seed: int = 0, model: str = "m0"
    ):
        e = pick(model)
        return JSONResponse(jobs[id(e)].status(layer, channel, steps, size, seed), headers=NO_STORE)

    # ---------------------------------------------------------------- live camera
    @app.websocket("/api/live")
    async def live(ws: WebSocket, model: str = "m0"):
        """One tab's camera: binary messages are frames (JPEG or PNG bytes), text messages settings (JSON:
        layer, sort, page, per_page, cmap, norm, cell, cam, method, class). Each frame taken is answered with a
        binary :func:`~featuremaps.explore.live.pack` message, or a text ``{"error", "frame"}``; frames that
        arrive while one runs wait one at a time, the newest (older ones are dropped)."""
        origin = ws.headers.get("origin")
        if origin and urlsplit(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008, reason="the live camera answers pages of this server only")
            return
        await ws.accept()
        try:
            e = pick(model)
        except NotFound as err:
            await ws.send_text(json.dumps({"error": str(err)}))
            await ws.close(code=1008)
            return
        stream = LiveStream(e, max_frame_bytes)
        app.state.live.add(stream)
        wake = asyncio.Event()
        sending = asyncio.Lock()

        async def say(**body):
            async with sending:
                await ws.send_text(json.dumps(body))

        async def worker():  # frames one at a time, always the newest waiting
            try:
                await answer_frames()
            except (WebSocketDisconnect, RuntimeError):  # the tab went while an answer was on its way
                pass

        async def answer_frames():
            while True:
                await wake.wait()
                wake.clear()
                item = stream.take()
                if item is None:
                    continue
                n, data = item
                try:
                    answer = await call(e, stream.process, n, data)
                except UserError as err:
                    await say(error=str(err), frame=n)
                    continue
                except Exception as err:  # never a dead stream for one bad frame
                    await say(error=f"frame {n}: internal error ({type(err).__name__})", frame=n)
                    continue
                async with sending:
                    await ws.send_bytes(answer)

        task = asyncio.create_task(worker())
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    try:
                        stream.offer(msg["bytes"])
                    except UserError as err:
                        await say(error=str(err), frame=stream.received)
                        continue
                    wake.set()
                elif msg.get("text") is not None:
                    try:
                        stream.configure(json.loads(msg["text"]))
                    except (UserError, ValueError) as err:
                        why = str(err) if isinstance(err, UserError) else "settings are not JSON"
                        await say(error=why, settings=True)
                    else:
                        await say(settings=dataclass_dict(stream.settings))
        except WebSocketDisconnect:
            pass
        finally:
            task.cancel()
            stream.close()
            app.state.live.discard(stream)

    @app.get("/api/colorbar.png")
    def colorbar(cmap: str = "viridis"):
        return png(Explorer.colorbar_png(cmap))

    return app


def dataclass_dict(s) -> dict:
    d = dataclasses.asdict(s)
    d["class"] = d.pop("cls")
    return d


__all__ = ["UVICORN_OPTIONS", "BadRequest", "NotFound", "create_app"]
