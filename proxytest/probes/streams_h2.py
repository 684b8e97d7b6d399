"""h2.streams: how many long-held SSE streams one HTTP/2 connection carries at once.

A browser multiplexes every EventSource (and fetch) to one host over one
HTTP/2 connection, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS; the
next one waits for a free stream. This probe opens that many SSE streams at
once (capped), each held open by the origin, and counts those that get their
response headers and first event in time; then one more than advertised,
sent past the client's own limit, to see how the server refuses it.

Over cleartext it tries h2c (prior knowledge); a listener without HTTP/2 is
recorded as ``not_offered``.
"""

from __future__ import annotations

import asyncio
import contextlib

from . import h2
from .context import ProbeContext
from .timeline import H2Offer, H2StreamsTimeline
from .ws_h2 import path_of

__all__ = ["streams"]

# Streams are opened this many at a time: a proxy opens an upstream connection per
# stream, and a burst of hundreds overflows an origin's accept queue (SYNs dropped,
# retried a second later): that is the origin's limit, not the proxy's.
_BATCH = 25


class _Fate:
    """What became of one stream (filled in by its watcher task)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.delivered = False
        self.problem: str | None = None


async def _watch(stream: h2.H2Stream, fate: _Fate) -> None:
    try:
        fate.status, _, _ = await stream.response()
        if fate.status != 200:
            fate.problem = f"status {fate.status}"
            return
        seen = b""
        async for data, _ in stream.chunks():
            seen = (seen + data)[-4096:]
            if b"\n\n" in seen and b"data:" in seen:
                fate.delivered = True
                return
        fate.problem = "the stream ended before its first event"
    except h2.StreamReset as exc:
        fate.problem = f"refused: RST_STREAM {h2.error_name(exc.error_code)}"
    except ConnectionError as exc:
        fate.problem = f"the connection ended: {exc}"


def _late(fate: _Fate, wait_s: float) -> str:
    if fate.status is None:
        return f"no response headers within {wait_s:g} s"
    return f"headers, but no event within {wait_s:g} s"


async def _open_all(
    conn: h2.H2Connection, path: str, count: int, wait_s: float
) -> list[tuple[h2.H2Stream | None, _Fate]]:
    """Open ``count`` streams, ``_BATCH`` at a time (each batch delivering before the
    next is sent), and leave them all open; stop at the first batch with a failure."""
    opened: list[tuple[h2.H2Stream | None, _Fate]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        while len(opened) < count:
            batch: list[asyncio.Task[None]] = []
            for _ in range(min(_BATCH, count - len(opened))):
                fate = _Fate()
                try:
                    stream = await conn.request("GET", path, [("accept", "text/event-stream")])
                except (ConnectionError, h2.TooManyStreamsError) as exc:
                    fate.problem = f"could not open the stream: {exc}"
                    opened.append((None, fate))
                    break
                opened.append((stream, fate))
                batch.append(asyncio.create_task(_watch(stream, fate)))
            tasks += batch
            if batch:
                await asyncio.wait(batch, timeout=wait_s)
            if not all(fate.delivered for _, fate in opened):
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for _, fate in opened:
        if not fate.delivered and fate.problem is None:
            fate.problem = _late(fate, wait_s)
    return opened


async def _beyond(conn: h2.H2Connection, path: str, wait_s: float) -> tuple[str, bool]:
    """Send one stream past the advertised limit: (what happened, cleanly refused)."""
    fate = _Fate()
    try:
        stream = await conn.request(
            "GET", path, [("accept", "text/event-stream")], beyond_limit=True
        )
    except ConnectionError as exc:
        return f"could not be sent: {exc}", False
    task = asyncio.create_task(_watch(stream, fate))
    try:
        await asyncio.wait({task}, timeout=wait_s)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if fate.delivered:
        return "served anyway", False
    if fate.problem is None:
        return _late(fate, wait_s), False
    return fate.problem, fate.problem.startswith("refused")


async def streams(ctx: ProbeContext, check: str) -> H2StreamsTimeline:
    th = ctx.thresholds
    try:
        async with h2.connect(ctx, timeout=th.handshake_timeout_s) as conn:
            found = H2Offer(
                tls=ctx.tls,
                alpn=conn.alpn,
                advertised=conn.enable_connect_protocol,
                max_streams=conn.max_concurrent_streams,
            )
            limit = conn.max_concurrent_streams
            cap = th.h2_streams_cap
            count = cap if limit is None else min(limit, cap)
            # The origin holds each stream well past the probe's end, with a comment
            # every second so it notices when the proxy lets go of it.
            hold_s = th.h2_stream_wait_s + th.h2_beyond_wait_s + 10
            path = path_of(ctx, "/sse", ctx.token(check), count=1, hold_s=hold_s, comment_every_s=1)
            opened = await _open_all(conn, path, count, th.h2_stream_wait_s)
            served = sum(fate.delivered for _, fate in opened)
            first_bad = next((i for i, (_, f) in enumerate(opened) if not f.delivered), None)
            beyond, refused = None, False
            if limit is not None and limit < cap and served == count == len(opened):
                beyond, refused = await _beyond(conn, path, th.h2_beyond_wait_s)
            return H2StreamsTimeline(
                offer=found,
                cap=cap,
                requested=count,
                served=served,
                failure=None if first_bad is None else opened[first_bad][1].problem,
                failure_index=None if first_bad is None else first_bad + 1,
                beyond=beyond,
                beyond_refused=refused,
                wait_s=th.h2_stream_wait_s,
            )
    except h2.NotOffered as exc:
        return H2StreamsTimeline(H2Offer(tls=ctx.tls, not_offered=exc.reason))
    except TimeoutError:
        return H2StreamsTimeline(H2Offer(tls=ctx.tls, error="no HTTP/2 SETTINGS frame in time"))
    except (OSError, ConnectionError) as exc:
        return H2StreamsTimeline(H2Offer(tls=ctx.tls, error=f"HTTP/2 connection failed: {exc}"))
