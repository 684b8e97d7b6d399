"""Hold probes: keep a WebSocket or an SSE stream open up to max-hold and see if it lives.

Idle means silent in both directions; keepalive adds WebSocket pings both
ways, heartbeat adds SSE ``:`` comments, lifetime keeps one event per second
flowing. The probe records when and how the connection ended, if it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp

from .context import ProbeContext
from .sse import read_stream
from .timeline import HoldMode, HoldTimeline
from .ws import _connect

__all__ = ["hold_sse", "hold_ws"]

_ORIGIN_GRACE_S = 10.0  # the origin keeps its side open this much past max-hold


async def hold_ws(ctx: ProbeContext, check: str, *, ping_every: float | None) -> HoldTimeline:
    """Open a WebSocket and hold it; with ``ping_every``, both ends ping at that interval."""
    hold = ctx.settings.max_hold_s
    probe = ctx.token(check)
    url = ctx.url("/ws/echo", probe, ws=True, ping_every_s=ping_every)
    mode: HoldMode = "keepalive" if ping_every else "idle"
    async with _connect(ctx, url) as conn:
        if conn.ws is None:
            return HoldTimeline("ws", mode, conn.status, conn.error, None, None, hold, ping_every)
        ws = conn.ws
        opened = time.monotonic()
        ended: float | None = None
        how: str | None = None
        code: int | None = None

        async def pinger() -> None:
            assert ping_every
            while not ws.closed:
                await asyncio.sleep(ping_every)
                with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                    await ws.ping(b"proxytest-keepalive")

        task = asyncio.create_task(pinger()) if ping_every else None
        try:
            async with asyncio.timeout(hold):
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        continue
                    ended = time.monotonic()
                    if msg.type == aiohttp.WSMsgType.CLOSE:
                        code = msg.data
                        how = f"close frame {msg.data}" + (f" {msg.extra!r}" if msg.extra else "")
                    else:
                        code = ws.close_code
                        how = "TCP close without a close frame (1006)"
                    break
        except TimeoutError:
            pass
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    records = await ctx.origin.wait_for(
        probe, lambda r: bool(r) and r[0].end is not None, 1.0 if ended else 0.0
    )
    record = records[0] if records else None
    return HoldTimeline(
        kind="ws",
        mode=mode,
        status=101,
        error=None,
        opened_at=opened,
        ended_at=ended,
        max_hold_s=hold,
        heartbeat_s=ping_every,
        how=how,
        close_code=code,
        origin_end=record.end if record else None,
        origin_ended_at=record.finished_at if record else None,
        origin_sent=record.events_sent if record else None,
    )


async def hold_sse(
    ctx: ProbeContext, check: str, *, comment_every: float | None = None, lifetime: bool = False
) -> HoldTimeline:
    """Open an SSE stream and hold it: quiet (with optional comments), or one event a second."""
    hold = ctx.settings.max_hold_s
    probe = ctx.token(check)
    identity = {"Accept-Encoding": "identity"}
    if lifetime:
        count = int(hold) + 1  # an event at 0 s, 1 s, … hold s
        url = ctx.url("/sse", probe, count=count, interval_ms=1000)
        tl = await read_stream(
            ctx,
            url,
            expected=count,
            interval_ms=1000,
            headers=identity,
            timeout_s=hold + ctx.thresholds.stream_grace_s,
        )
        mode: HoldMode = "lifetime"
    else:
        count = 1
        url = ctx.url(
            "/sse", probe, count=1, hold_s=hold + _ORIGIN_GRACE_S, comment_every_s=comment_every
        )
        tl = await read_stream(
            ctx, url, expected=1, interval_ms=0, headers=identity, timeout_s=hold + 0.5
        )
        mode = "heartbeat" if comment_every else "idle"
    opened = tl.deliveries[0].received_at if tl.deliveries else None
    survived = (
        tl.end == "timeout"
        if not lifetime
        else (tl.end == "complete" and len(tl.deliveries) >= count)
    )
    how = (
        None
        if survived
        else {
            "complete": "the response ended (chunked terminator)",
            "truncated": "the connection closed mid-response",
            "timeout": "stalled: no more events",
            "refused": "connection refused",
            "error": "connection failed",
            "status": f"status {tl.status}",
        }.get(tl.end, tl.end)
    )
    records = await ctx.origin.wait_for(
        probe, lambda r: bool(r) and r[0].end is not None, 1.0 if not survived else 0.0
    )
    record = records[0] if records else None
    return HoldTimeline(
        kind="sse",
        mode=mode,
        status=tl.status,
        error=tl.error if tl.status != 200 else None,
        opened_at=opened,
        ended_at=None
        if survived
        else (
            tl.deliveries[-1].received_at
            if lifetime and tl.end == "timeout" and tl.deliveries
            else tl.ended_at
        ),
        max_hold_s=hold,
        heartbeat_s=comment_every,
        how=how,
        events=len(tl.deliveries),
        expected_events=count,
        last_event_at=tl.deliveries[-1].received_at if tl.deliveries else None,
        origin_end=record.end if record else None,
        origin_ended_at=record.finished_at if record else None,
        origin_sent=record.events_sent if record else None,
    )
