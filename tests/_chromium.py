"""Load a local HTML file in real headless Chromium over the DevTools protocol (no Playwright needed).

Uses the system ``chromium`` (Debian package) and the ``websocket-client`` package. :func:`why_unavailable`
says why the browser tests must be skipped (or returns None when they can run).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    env = os.environ.get("FEATUREMAPS_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


def why_unavailable() -> str | None:
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install chromium, or set FEATUREMAPS_CHROMIUM)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "the websocket-client package is not installed (pip install websocket-client)"
    return None


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (data: URIs excluded)
    images: list[dict] = field(default_factory=list)  # {src_prefix, complete, naturalWidth, naturalHeight}
    screenshot: bytes = b""
    title: str = ""
    evaluated: dict = field(default_factory=dict)


class _Cdp:
    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == name:
                return ev
        while time.monotonic() < end:
            self.ws.settimeout(max(0.1, end - time.monotonic()))
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == name:
                return msg
        raise TimeoutError(name)

    def close(self):
        self.ws.close()


def load_page(
    html_file: Path,
    width: int = 1366,
    height: int = 768,
    full_page: bool = False,
    script: str | None = None,
    timeout: float = 60.0,
) -> PageResult:
    """Open ``html_file`` in headless Chromium, collect console errors, requests, images, a screenshot."""
    exe = chromium_path()
    profile = tempfile.mkdtemp(prefix="fm-chromium-")
    proc = subprocess.Popen(
        [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        end = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {proc.returncode}")
            if time.monotonic() > end:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not any(t.get("type") == "page" for t in targets):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.loads(r.read())
            if time.monotonic() > end:
                raise TimeoutError("chromium opened no page")
            time.sleep(0.05)
        page = next(t for t in targets if t.get("type") == "page")
        cdp = _Cdp(page["webSocketDebuggerUrl"])
        try:
            return _run(cdp, html_file, width, height, full_page, script, timeout)
        finally:
            cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _run(cdp: _Cdp, html_file: Path, width, height, full_page, script, timeout) -> PageResult:
    res = PageResult()
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    cdp.events.clear()
    cdp.call("Page.navigate", url=Path(html_file).resolve().as_uri())
    cdp.wait_event("Page.loadEventFired", timeout)
    # let image decoding finish
    cdp.call(
        "Runtime.evaluate",
        expression="Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))",
        awaitPromise=True,
    )
    imgs = cdp.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression=(
            "Array.from(document.images).map(i => ({src: i.src.slice(0, 30), complete: i.complete, "
            "naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))"
        ),
    )
    res.images = imgs["result"]["value"]
    res.title = cdp.call("Runtime.evaluate", expression="document.title", returnByValue=True)["result"]["value"]
    if script:
        res.evaluated = cdp.call("Runtime.evaluate", expression=script, returnByValue=True)["result"].get("value")
    if full_page:
        m = cdp.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = cdp.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(m["height"], 6000), "scale": 1},
        )
    else:
        shot = cdp.call("Page.captureScreenshot", format="png")
    res.screenshot = base64.b64decode(shot["data"])
    for ev in cdp.events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            res.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            res.console_errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            res.console_errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith("data:"):
                res.requests.append(url)
    return res
