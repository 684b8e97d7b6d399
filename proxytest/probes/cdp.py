"""Chromium over the DevTools protocol (CDP): JSON over one WebSocket, spoken with aiohttp.

No Playwright, Selenium or chromedriver: only a Chromium binary (Debian's
``chromium``), because browser downloads by tools fail on machines without
general internet access. Chromium itself is started by runtimes/browser.py.

* :class:`Connection` is one WebSocket to the browser-wide endpoint; every
  page is a *flattened* session on it (``Target.attachToTarget`` with
  ``flatten``): commands and events carry the page's ``sessionId``.
* :meth:`Connection.page` opens a tab in a browser context of its own
  (``Target.createBrowserContext``): its own cookies, cache and, what matters
  here, its own connection pool, so one check's connections never count against
  another's per-host limit or reuse another's HTTP/2 connection.
* :class:`Browsers` is the run's browser: started on first use, shared by
  every check and target, closed when the run ends. A missing Chromium is
  :class:`BrowserUnavailable` (a skip, or an error where one is required).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from .._aio import finish
from ..runtimes.browser import INSTALL_HINT, Chromium, chromium_binary, launch_chromium
from ..tls import authority

__all__ = [
    "REQUIRE_ENV",
    "BrowserUnavailable",
    "Browsers",
    "CdpError",
    "Connection",
    "Page",
    "connect",
    "headless_page",
]

REQUIRE_ENV = "PROXYTEST_REQUIRE_BROWSER"  # "1": a missing Chromium is an error, not a skip
COMMAND_TIMEOUT_S = 30.0  # one protocol command answered (a navigation reply included)
MAX_EVENTS_KEPT = 20_000  # per page: what a probe can look through afterwards


class CdpError(RuntimeError):
    """A protocol command failed, or the browser went away."""


class BrowserUnavailable(Exception):
    """No Chromium to run: ``reason`` says how to get one; ``required`` when a run needs it."""

    def __init__(self, reason: str, *, required: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.required = required


class Page:
    """One tab, as a session of a :class:`Connection`: commands, events, script."""

    def __init__(self, connection: Connection, session_id: str, target_id: str) -> None:
        self.connection = connection
        self.session_id = session_id
        self.target_id = target_id
        self.events: list[dict[str, Any]] = []  # every event (method, params, at), in order
        self.exceptions: list[str] = []  # uncaught script errors in the page
        self.requests: list[str] = []  # every URL the page asked for
        self._changed = asyncio.Event()

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            self.exceptions.append(str(params.get("exceptionDetails")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(str(params.get("request", {}).get("url", "")))
        if len(self.events) < MAX_EVENTS_KEPT:
            self.events.append({"method": method, "params": params, "at": time.monotonic()})
        self._changed.set()

    def seen(self, method: str) -> list[dict[str, Any]]:
        """The params of every ``method`` event so far."""
        return [e["params"] for e in self.events if e["method"] == method]

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.connection.send(method, params, session_id=self.session_id)

    async def event(self, method: str, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        """The params of the first ``method`` event (one seen already counts)."""
        async with asyncio.timeout(timeout):
            while True:
                found = self.seen(method)
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    async def goto(self, url: str, timeout: float = COMMAND_TIMEOUT_S) -> None:
        """Navigate to ``url`` and wait for its load event (CdpError if it does not load)."""
        for domain in ("Page", "Runtime", "Network", "Log"):
            await self.send(f"{domain}.enable")
        loads = len(self.seen("Page.loadEventFired"))
        reply = await self.send("Page.navigate", url=url)
        if reply.get("errorText"):
            raise CdpError(f"loading {url} failed: {reply['errorText']}")
        async with asyncio.timeout(timeout):
            while len(self.seen("Page.loadEventFired")) <= loads:
                self._changed.clear()
                await self._changed.wait()

    async def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page and return its value (JSON-able)."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 5, every: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy or ``timeout`` passed; return its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(every)

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


class Connection:
    """One WebSocket to the browser endpoint; pages are flattened sessions on it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                future = self._pending.pop(data.get("id", -1), None)
                if future is not None:
                    if not future.done():
                        future.set_result(data)
                elif "method" in data:
                    page = self._pages.get(data.get("sessionId", ""))
                    if page is not None:
                        page._event(data["method"], data.get("params", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError("the browser closed the DevTools connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        """Send one command (to a page's session, or the browser) and return its result."""
        if self._reader.done():
            raise CdpError("the browser closed the DevTools connection")
        n = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[n] = future
        message: dict[str, Any] = {"id": n, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        try:
            await self.ws.send_str(json.dumps(message))
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                reply = await future
        finally:
            self._pending.pop(n, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return dict(reply.get("result", {}))

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A blank tab in a browser context of its own; both are gone on the way out."""
        context = (await self.send("Target.createBrowserContext", {"disposeOnDetach": True}))[
            "browserContextId"
        ]
        try:
            target = (
                await self.send(
                    "Target.createTarget", {"url": "about:blank", "browserContextId": context}
                )
            )["targetId"]
            session = (
                await self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
            )["sessionId"]
            page = self._pages[session] = Page(self, session, target)
            try:
                yield page
            finally:
                self._pages.pop(session, None)
                with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
                    await finish(self.send("Target.closeTarget", {"targetId": target}))
        finally:
            with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
                await finish(
                    self.send("Target.disposeBrowserContext", {"browserContextId": context})
                )

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def connect(chromium: Chromium) -> AsyncIterator[Connection]:
    """The DevTools connection to a running Chromium (runtimes/browser.py)."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(chromium.browser_url, max_msg_size=0)
        connection = Connection(ws)
        try:
            yield connection
        finally:
            await finish(connection.aclose())


@contextlib.asynccontextmanager
async def headless_page(
    binary: str, *, width: int = 1280, height: int = 900, spki_sha256: Sequence[str] = ()
) -> AsyncIterator[Page]:
    """A Chromium of its own and one tab in it (the HTML report's test uses this)."""
    async with (
        launch_chromium(binary, width=width, height=height, spki_sha256=spki_sha256) as chromium,
        connect(chromium) as connection,
        connection.page() as page,
    ):
        yield page


class Browsers:
    """The run's Chromium: started on first use, shared by every check, closed with the run.

    ``async with Browsers() as browsers`` then ``async with browsers.page() as page``:
    each page lives in a browser context of its own. Where no Chromium is found,
    :meth:`page` raises :class:`BrowserUnavailable`; ``required`` (default:
    ``PROXYTEST_REQUIRE_BROWSER=1``) marks that as an error rather than a skip.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        required: bool | None = None,
        start_timeout_s: float = 30.0,
        max_pages: int = 16,
    ) -> None:
        self._binary = binary
        # Pages open at once: a page's script and Chromium's own work share two
        # cores with the proxies; more at once only makes each wait longer.
        self._pages = asyncio.Semaphore(max_pages)
        self.start_timeout_s = start_timeout_s
        self.required = os.environ.get(REQUIRE_ENV) == "1" if required is None else required
        self._lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._connection: Connection | None = None
        self.chromium: Chromium | None = None
        self.starts = 0  # how many Chromiums this provider started (one per run)

    async def __aenter__(self) -> Browsers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _started(self) -> Connection:
        async with self._lock:
            if self._connection is not None and self.chromium is not None:
                if self.chromium.alive:
                    return self._connection
                raise CdpError(
                    f"the run's Chromium exited (code {self.chromium.process.returncode}): "
                    + self.chromium.log_tail(5)
                )
            binary = self._binary or chromium_binary()
            if binary is None:
                raise BrowserUnavailable(
                    f"no Chromium found: {INSTALL_HINT}", required=self.required
                )
            stack = contextlib.AsyncExitStack()
            try:
                self.chromium = await stack.enter_async_context(
                    launch_chromium(
                        binary,
                        spki_sha256=(authority().spki_sha256,),
                        start_timeout_s=self.start_timeout_s,
                    )
                )
                self._connection = await stack.enter_async_context(connect(self.chromium))
            except BaseException:
                await finish(stack.aclose())
                self.chromium = None
                raise
            self._stack = stack
            self.starts += 1
            return self._connection

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A tab in a browser context of its own (the browser starts on the first call)."""
        async with self._pages:
            connection = await self._started()
            async with connection.page() as page:
                yield page

    async def aclose(self) -> None:
        """Close the browser (if one was started); a later :meth:`page` starts a new one."""
        async with self._lock:
            stack, self._stack = self._stack, None
            self._connection = None
            self.chromium = None
            if stack is not None:
                await finish(stack.aclose())
