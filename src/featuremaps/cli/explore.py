"""``featuremaps explore``: a local web page to browse a CNN's layers, channels, values and CAMs."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
import sys
import threading
import webbrowser

import uvicorn

from featuremaps.cli.loading import load_model_from_args
from featuremaps.compare import check_model_names, distinct_names, load_compared
from featuremaps.errors import UserError
from featuremaps.explore.app import UVICORN_OPTIONS, create_app
from featuremaps.images import find_images, unreadable

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a UserError saying what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OverflowError:  # the API's own callers: the CLI's --port is checked by its parser
        sock.close()
        raise UserError(f"port {port} is outside 0-65535; pick another --port") from None
    except OSError as e:
        sock.close()
        why = e.strerror or str(e)
        raise UserError(f"cannot listen on {host}:{port} ({why}); pick another --port or --host") from None
    sock.listen(64)
    return sock


def run(args) -> int:
    images = find_images(args.images) if args.images else []
    bad = {p: why for p in images if (why := unreadable(p))}
    for why in bad.values():  # named and left out: the page lists only images it can show
        print(f"featuremaps: warning: left out of the page: {why}", file=sys.stderr)
    images = [p for p in images if p not in bad]
    if args.models and args.model:
        raise UserError("pass --model for one model or --models for several, not both")
    names = check_model_names(args.models) if args.models else None  # bad names fail before any load
    sock = bind(args.host, args.port)  # before the model loads: a taken port fails at once
    if not is_loopback(args.host):  # only once it is true: a port that cannot be had says so alone
        print(
            f"featuremaps: warning: listening on {args.host}: anyone who can reach this machine can use the "
            "explorer and see the images; use the default 127.0.0.1 unless you mean it",
            file=sys.stderr,
        )
    try:
        return _serve(args, images, names, sock)
    finally:
        sock.close()  # a model that failed to load: the port is given back at once


def _serve(args, images, names, sock) -> int:
    if names:  # as in compare: --weights for applications/torchvision models, files keep their own
        loaded = distinct_names([load_compared(n, args.weights, args.unsafe) for n in names])
    else:
        loaded = [load_model_from_args(args)]
    lm = loaded[0]
    allowed = ["127.0.0.1", "localhost", "::1", "[::1]"] if is_loopback(args.host) else None
    app = create_app(
        lm,
        images,
        others=loaded[1:],
        cache_bytes=args.cache_mb * 2**20,
        max_upload_bytes=args.max_upload_mb * 2**20,
        allowed_hosts=allowed,
        input_shape=args.input_shape,
        face_crop=args.face_crop,
    )
    port = sock.getsockname()[1]
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    url = f"http://{'127.0.0.1' if shown in ('0.0.0.0', '[::]') else shown}:{port}/"
    shown_models = ", ".join(f"{m.name} ({m.source})" for m in loaded)
    print(f"featuremaps explore: {shown_models}; {len(images)} image(s) from the command line")
    if not any(importlib.util.find_spec(m) for m in ("websockets", "wsproto")):
        print(
            "featuremaps: note: the page's live camera needs a WebSocket package: pip install 'featuremaps[explore]'",
            file=sys.stderr,
        )
    print(f"open {url}  (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off", **UVICORN_OPTIONS)
    )
    if not args.no_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    server.run(sockets=[sock])
    return 0
