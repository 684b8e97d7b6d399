"""lb.sticky's traffic: one client, its own cookie jar, through a proxy in front of
several backends.

A browser keeps the cookies a proxy sets (HAProxy ``cookie … insert``, Traefik's
sticky cookie, Caddy's ``lb_policy cookie``, Envoy's hash-policy cookie) and
sends them back; so does this client (``CookieJar(unsafe=True)``: cookies for an
IP address too). In order:

1. a socket.io-style long-polling session: ``/lb/handshake`` (the origin that
   answers holds the session), then :data:`POLLS` polls carrying its id
   (origin/sessions.py: 400 ``unknown session`` on any other backend);
2. a WebSocket connected, closed and connected again :data:`RECONNECTS` times;
3. an SSE stream read and reconnected :data:`RECONNECTS` times with
   ``Last-Event-ID``, as EventSource does.

Each request says which backend answered (``X-Proxytest-Origin``, or the
origin's records when the header did not come through). Every request is
bounded in time; the whole probe takes well under a second on loopback.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp

from ..origin.server import ORIGIN_HEADER
from ..routes import HANDSHAKE_PATH, POLL_PATH
from .context import ProbeContext, tab_session
from .sse import SseParser
from .timeline import LbHop, LbPart, StickyTimeline
from .ws import _connect

__all__ = ["POLLS", "RECONNECTS", "sticky"]

POLLS = 8  # polls of the long-polling session after its handshake
RECONNECTS = 6  # WebSocket and SSE connections after the first of each
_SSE_EVENTS = 2  # events per SSE connection (its Last-Event-ID is the next one's)


async def _backend(ctx: ProbeContext, token: str, said: str | None) -> str | None:
    """The backend that got ``token``'s request: its header, else the origin's records."""
    if said:
        return said
    records = await ctx.origin.wait_for(
        token, lambda rs: any(r.origin_id for r in rs), ctx.thresholds.message_timeout_s
    )
    return next((r.origin_id for r in reversed(records) if r.origin_id), None)


async def _get(
    ctx: ProbeContext, part: LbPart, path: str, check: str, sid: str | None = None
) -> tuple[LbHop, bytes]:
    """One GET through the client's session: the hop, and the body read."""
    token = ctx.token(check)
    try:
        async with (
            asyncio.timeout(ctx.thresholds.handshake_timeout_s),
            ctx.session.get(ctx.url(path, token, sid=sid)) as response,
        ):
            body = await response.read()
            said = response.headers.get(ORIGIN_HEADER)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return LbHop(part, None, None, f"{type(exc).__name__}: {exc}".rstrip(": ")), b""
    return LbHop(part, await _backend(ctx, token, said), response.status), body


async def _polling(ctx: ProbeContext, check: str) -> list[LbHop]:
    hop, body = await _get(ctx, "handshake", HANDSHAKE_PATH, check)
    hops = [hop]
    try:
        sid = str(json.loads(body)["sid"]) if hop.status == 200 else None
    except (ValueError, KeyError, TypeError):
        sid = None
    if sid is None:
        return [replace(hop, error=hop.error or "the handshake gave no session id")]
    for _ in range(POLLS):
        hops.append((await _get(ctx, "poll", POLL_PATH, check, sid=sid))[0])
    return hops


async def _websockets(ctx: ProbeContext, check: str) -> list[LbHop]:
    hops = []
    for _ in range(1 + RECONNECTS):
        token = ctx.token(check)
        async with _connect(ctx, ctx.url("/ws/echo", token, ws=True)) as conn:
            if conn.ws is None:
                hops.append(LbHop("ws", None, conn.status, conn.error))
                continue
            records = await ctx.origin.wait_for(
                token,
                lambda rs: any(r.upgraded for r in rs),
                ctx.thresholds.message_timeout_s,
            )
            backend = next((r.origin_id for r in records if r.upgraded), None)
            hops.append(LbHop("ws", backend, 101))
    return hops


async def _sse_once(ctx: ProbeContext, check: str, last_id: str | None) -> tuple[LbHop, str | None]:
    token = ctx.token(check)
    url = ctx.url("/sse", token, count=_SSE_EVENTS, interval_ms=10)
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    parser = SseParser()
    try:
        async with (
            asyncio.timeout(ctx.thresholds.handshake_timeout_s),
            ctx.session.get(url, headers=headers) as response,
        ):
            said = response.headers.get(ORIGIN_HEADER)
            if response.status == 200:
                async for chunk in response.content.iter_any():
                    parser.feed(chunk.decode(errors="replace"))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return LbHop("sse", None, None, f"{type(exc).__name__}: {exc}".rstrip(": ")), last_id
    hop = LbHop("sse", await _backend(ctx, token, said), response.status)
    return hop, parser.last_event_id or last_id


async def _streams(ctx: ProbeContext, check: str) -> list[LbHop]:
    hops, last_id = [], None
    for _ in range(1 + RECONNECTS):
        hop, last_id = await _sse_once(ctx, check, last_id)
        hops.append(hop)
    return hops


async def sticky(ctx: ProbeContext, check: str) -> StickyTimeline:
    """A long-polling session, WebSocket and SSE reconnects of one client, in order."""
    backends = len(ctx.backends) or 1
    if backends <= 1:
        return StickyTimeline(backends)
    async with tab_session(ctx) as session:
        own = replace(ctx, session=session)
        hops = [
            *await _polling(own, check),
            *await _websockets(own, check),
            *await _streams(own, check),
        ]
    return StickyTimeline(backends, tuple(hops))
