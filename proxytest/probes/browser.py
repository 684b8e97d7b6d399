"""Probes that drive a real Chromium through the proxy (the ``browser.*`` checks).

Each probe opens a tab in a browser context of its own (probes/cdp.py: its own
connection pool), loads the origin's test page *through the proxy*
(``/browser``, origin/page.py) and lets the page's script do the traffic:
EventSource, WebSocket, several EventSources at once. It polls what the page
publishes in ``window.proxytest`` and adds what only the browser's network
stack knows (the WebSocket handshake as Chromium saw it) and what only the
origin knows (the ``Last-Event-ID`` of each request). It never judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlencode

from ..routes import BROWSER_PATH
from . import ws_h2
from .cdp import Browsers, BrowserUnavailable, CdpError, Page
from .context import ProbeContext
from .timeline import (
    BrowserSocketTimeline,
    BrowserTimeline,
    ConnectionLimitTimeline,
    EventSourceTimeline,
)

__all__ = ["probe_connection_limit", "probe_eventsource", "probe_websocket"]

T = TypeVar("T", bound=BrowserTimeline)
STATE = "window.proxytest"
POLL_S = 0.1
CUT_AT = 3  # browser.eventsource: the origin cuts the stream after this event
RETRY_MS = 300  # ... and tells the browser to reconnect this soon (the default is ~3 s)
BINARY_SIZE = 65536  # browser.websocket: the binary message echoed


@contextlib.asynccontextmanager
async def _page(ctx: ProbeContext) -> AsyncIterator[Page]:
    """A tab of the run's browser, or of one started for this probe alone."""
    if ctx.browsers is not None:
        async with ctx.browsers.page() as page:
            await _extra_headers(page, ctx)
            yield page
        return
    timeout = ctx.thresholds.browser_start_timeout_s
    async with Browsers(start_timeout_s=timeout) as own, own.page() as page:
        await _extra_headers(page, ctx)
        yield page


async def _extra_headers(page: Page, ctx: ProbeContext) -> None:
    """Probe mode's headers (``--header``, the origin's token) on every request of the tab."""
    if ctx.headers:
        await page.send("Network.enable")
        await page.send("Network.setExtraHTTPHeaders", headers=dict(ctx.headers))


async def _load(page: Page, ctx: ProbeContext, url: str) -> str | None:
    """Load the test page; None when its script runs, else why it does not."""
    try:
        await page.goto(url, timeout=ctx.thresholds.browser_page_timeout_s)
    except (CdpError, TimeoutError) as exc:
        return f"the test page did not load through the proxy: {exc or 'timed out'}"
    if await page.js(f"typeof {STATE}") == "object":
        return None
    documents = [r for r in page.seen("Network.responseReceived") if r.get("type") == "Document"]
    status = documents[-1]["response"].get("status") if documents else None
    return f"the test page did not run (status {status} through the proxy)"


async def _state(page: Page) -> dict[str, Any]:
    value = await page.js(f"JSON.parse(JSON.stringify({STATE}))")
    return dict(value) if isinstance(value, dict) else {}


async def _until_done(page: Page, limit_s: float) -> dict[str, Any]:
    """Poll the page until its script says it is done, or ``limit_s`` passed."""
    deadline = time.monotonic() + limit_s
    while True:
        state = await _state(page)
        if state.get("done") or time.monotonic() > deadline:
            return state
        await asyncio.sleep(POLL_S)


_REFUSED = re.compile(r"WebSocket handshake: Unexpected response code: (\d{3})")


def _refused_status(page: Page) -> int | None:
    """The status of a refused WebSocket handshake, from Chromium's console message."""
    for entry in page.seen("Log.entryAdded"):
        found = _REFUSED.search(str(entry.get("entry", {}).get("text", "")))
        if found:
            return int(found.group(1))
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


async def _run(ctx: ProbeContext, empty: T, work: Any) -> T:
    """Open a page and run ``work(page)``; a missing browser or page is recorded in ``empty``."""
    try:
        async with _page(ctx) as page:
            result: T = await work(page)
            return result
    except BrowserUnavailable as exc:
        return replace(empty, unavailable=exc.reason, required=exc.required)


# -- browser.eventsource -------------------------------------------------------------------
def eventsource_shape(ctx: ProbeContext) -> tuple[int, float]:
    """How many events, how far apart (ms): a stream of min(browser_stream_s, max-hold)."""
    th = ctx.thresholds
    span_s = min(th.browser_stream_s, ctx.settings.max_hold_s)
    count = max(2 * CUT_AT, round(span_s * 1000 / th.browser_event_interval_ms))
    return count, span_s * 1000 / count


async def probe_eventsource(ctx: ProbeContext, check: str) -> EventSourceTimeline:
    """An EventSource through the proxy: opens, events, a cut, the browser's own reconnects."""
    token = ctx.token(check)
    count, interval = eventsource_shape(ctx)
    sse = ctx.prefix + "/sse?" + urlencode(
        {"count": count, "interval_ms": round(interval, 1), "retry_ms": RETRY_MS,
         "cut_at": CUT_AT, "cut_once": 1, "probe": token}
    )  # fmt: skip
    # Every reconnect costs the retry delay and the origin starts its schedule anew.
    limit_s = count * interval / 1000 + ctx.thresholds.stream_grace_s * 2
    url = ctx.url(
        BROWSER_PATH,
        token,
        mode="eventsource",
        sse=sse,
        until=count,
        limit_ms=round(limit_s * 1000),
    )
    empty = EventSourceTimeline(
        url=url, tls=ctx.tls, expected_last=count, cut_at=CUT_AT, interval_ms=interval
    )

    async def work(page: Page) -> EventSourceTimeline:
        problem = await _load(page, ctx, url)
        if problem is not None:
            return replace(empty, page_error=problem)
        state = await _until_done(page, limit_s + ctx.thresholds.stream_grace_s)
        records = [r for r in await ctx.origin.wait_for(token, bool, 0.0) if r.path == "/sse"]
        return replace(
            empty,
            page_protocol=state.get("page_protocol"),
            end=state.get("end") or "timeout",
            created_ms=_float(state.get("created")) or 0.0,
            opens_ms=tuple(float(t) for t in state.get("opens", ())),
            first_event_ms=_float(state.get("first_event")),
            event_ids=tuple(str(i) for i in state.get("events", ())),
            errors=tuple(
                (float(e["at"]), e.get("last"), int(e.get("state", -1)))
                for e in state.get("errors", ())
            ),
            origin_last_event_ids=tuple(r.last_event_id for r in records),
            origin_cuts=sum(1 for r in records if r.end == "cut"),
        )

    return await _run(ctx, empty, work)


# -- browser.websocket ---------------------------------------------------------------------
async def probe_websocket(ctx: ProbeContext, check: str) -> BrowserSocketTimeline:
    """A WebSocket from the page: opens, echoes text and binary, closes; h2 or HTTP/1.1."""
    token = ctx.token(check)
    ws = ctx.prefix + "/ws/echo?" + urlencode({"probe": token})
    limit_s = ctx.thresholds.handshake_timeout_s + 2 * ctx.thresholds.message_timeout_s
    url = ctx.url(
        BROWSER_PATH, token, mode="websocket", socket=ws, binary=BINARY_SIZE,
        limit_ms=round(limit_s * 1000),
    )  # fmt: skip
    empty = BrowserSocketTimeline(url=url, tls=ctx.tls, binary_size=BINARY_SIZE)

    async def work(page: Page) -> BrowserSocketTimeline:
        problem = await _load(page, ctx, url)
        if problem is not None:
            return replace(empty, page_error=problem)
        state = await _until_done(page, limit_s + ctx.thresholds.message_timeout_s)
        responses = page.seen("Network.webSocketHandshakeResponseReceived")
        requests = page.seen("Network.webSocketWillSendHandshakeRequest")
        status = responses[0]["response"].get("status") if responses else None
        if status is None:  # a refused handshake shows only in the console
            status = _refused_status(page)
        sent = requests[0]["request"].get("headers", {}) if requests else None
        records = [r for r in await ctx.origin.wait_for(token, bool, 0.0) if r.path == "/ws/echo"]
        code = state.get("close_code")
        return replace(
            empty,
            page_protocol=state.get("page_protocol"),
            end=state.get("end") or "timeout",
            created_ms=_float(state.get("created")) or 0.0,
            opened_ms=_float(state.get("opened")),
            text_echoed=state.get("text_echoed"),
            binary_echoed=state.get("binary_echoed"),
            close_code=int(code) if isinstance(code, int) else None,
            close_reason=state.get("close_reason"),
            was_clean=state.get("was_clean"),
            handshake_status=int(status) if isinstance(status, int) else None,
            sent_key=(
                None if sent is None else any(k.lower() == "sec-websocket-key" for k in sent)
            ),
            origin_upgraded=any(r.upgraded for r in records),
        )

    # What the listener advertises to an HTTP/2 client (Chromium uses RFC 8441 only
    # where it is advertised): tells which protocol a refused WebSocket tried, which
    # Chromium does not report.
    async with ws_h2.offer(ctx) as (found, _):
        empty = replace(empty, extended_connect=found.advertised)
    return await _run(ctx, empty, work)


# -- browser.connection-limit --------------------------------------------------------------
async def probe_connection_limit(ctx: ProbeContext, check: str) -> ConnectionLimitTimeline:
    """Several EventSources to one host from one page: how many open at once."""
    th = ctx.thresholds
    token = ctx.token(check)
    streams = th.browser_streams
    # Open until the probe closes them: one event, then heartbeats (a gone client shows).
    hold_s = 2 * th.browser_page_timeout_s + 4 * th.browser_settle_s
    sse = (
        ctx.prefix
        + "/sse?"
        + urlencode({"count": 1, "hold_s": round(hold_s), "comment_every_s": 1, "probe": token})
    )
    limit_s = th.browser_page_timeout_s + 3 * th.browser_settle_s
    url = ctx.url(
        BROWSER_PATH, token, mode="limit", sse=sse, n=streams, limit_ms=round(limit_s * 1000)
    )
    empty = ConnectionLimitTimeline(url=url, tls=ctx.tls, streams=streams)

    async def opened(page: Page) -> tuple[dict[str, Any], int]:
        state = await _state(page)
        return state, sum(1 for s in state.get("streams", ()) if s.get("opened") is not None)

    async def settle(page: Page, limit: float, least: int) -> tuple[dict[str, Any], int]:
        """Wait until all opened, or none more for browser_settle_s (at least ``least``)."""
        deadline = time.monotonic() + limit
        state, count = await opened(page)
        changed = time.monotonic()
        while count < streams and time.monotonic() < deadline:
            if count >= least and time.monotonic() - changed > th.browser_settle_s:
                break
            await asyncio.sleep(POLL_S)
            state, now = await opened(page)
            if now != count:
                count, changed = now, time.monotonic()
        return state, count

    async def work(page: Page) -> ConnectionLimitTimeline:
        problem = await _load(page, ctx, url)
        if problem is not None:
            return replace(empty, page_error=problem)
        try:
            state, count = await settle(page, th.browser_page_timeout_s, 1)
            first = tuple(_float(s.get("opened")) for s in state.get("streams", ()))
            reopened = None
            if 0 < count < streams:
                # Is the rest waiting for a connection? Close one and watch.
                await page.js("window.proxytestCloseOne()")
                _, later = await settle(page, 2 * th.browser_settle_s, count + 1)
                reopened = later > count
            errors = sum(int(s.get("errors", 0)) for s in state.get("streams", ()))
        finally:
            with contextlib.suppress(CdpError, TimeoutError):
                await page.js("window.proxytestCloseAll && window.proxytestCloseAll()")
        return replace(
            empty,
            page_protocol=state.get("page_protocol"),
            end="complete",
            opened_ms=first,
            errors=errors,
            reopened=reopened,
        )

    return await _run(ctx, empty, work)
