"""A headless Chromium driven over the DevTools protocol, for the HTML report test.

The protocol is JSON over one WebSocket: aiohttp (already a dependency) speaks
it in a few lines, so the test needs no Selenium and no chromedriver. Only
Debian's ``chromium`` package is required: browser downloads by tools fail on
machines without general internet access.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Page", "chromium_binary", "headless_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    """``$PROXYTEST_CHROMIUM``, else the first Chromium on PATH (Debian: /usr/bin/chromium)."""
    chosen = os.environ.get("PROXYTEST_CHROMIUM")
    if chosen:
        return chosen if shutil.which(chosen) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab: send commands, wait for events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.exceptions: list[str] = []  # uncaught script errors in the page
        self.requests: list[str] = []  # every URL the page asked for
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                params = data.get("params", {})
                if data["method"] == "Runtime.exceptionThrown":
                    self.exceptions.append(str(params.get("exceptionDetails")))
                elif data["method"] == "Network.requestWillBeSent":
                    self.requests.append(params.get("request", {}).get("url", ""))
                self._events.put_nowait(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser closed the connection"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[n] = future
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if event["method"] == method:
                    return event

    async def goto(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Page.navigate", url=url)
        await self.event("Page.loadEventFired")

    async def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page and return its value (JSON-able)."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 5) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.05)

    async def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the centre of ``selector``."""
        box = await self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def screenshot(self, path: Path) -> Path:
        reply = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(reply["data"]))
        return path


async def _devtools_port(profile: Path, process: subprocess.Popen[bytes], limit: float) -> int:
    """Chromium writes its port into DevToolsActivePort once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with code {process.returncode} at start")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        await asyncio.sleep(0.05)
    raise RuntimeError(f"chromium did not open its DevTools port within {limit:g} s")


@contextlib.asynccontextmanager
async def headless_chromium(
    binary: str, *, width: int = 1280, height: int = 900
) -> AsyncIterator[Page]:
    """Start ``binary`` headless with a private profile; yield its first tab."""
    with tempfile.TemporaryDirectory(prefix="proxytest-chromium-") as folder:
        profile = Path(folder)
        argv = [
            binary,
            "--headless=new",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
        ]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
        argv.append("about:blank")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            port = await _devtools_port(profile, process, 30)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(url, max_msg_size=0) as ws:
                    page = Page(ws)
                    try:
                        yield page
                    finally:
                        page._reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await page._reader
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
