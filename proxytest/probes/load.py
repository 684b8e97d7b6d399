"""The load probe: many WebSockets and SSE streams open at the same time.

Connections are opened with bounded parallelism (like clients arriving in a
burst, without overflowing accept queues), each proves it works (an echo, a
first event), and all stay open together; then every WebSocket echoes once
more, so a proxy that silently dropped some is caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp

from ..errors import HarnessError
from ..origin.process import OriginProcess
from ..runtimes import LOOPBACK
from .context import ProbeContext
from .sse import SseParser
from .timeline import LoadTimeline

if TYPE_CHECKING:
    from ..harness import Harness

__all__ = ["behind_origin_process", "load", "raise_fd_limit"]

OPEN_PARALLEL = 64  # connections being set up at once
# A WebSocket and an SSE stream: one client socket each in this process, and as
# many origin sockets when the origin runs in this process too.
CLIENT_FDS_PER_PAIR = 2
FD_RESERVE = 256  # for everything else the tool has open


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


@contextlib.asynccontextmanager
async def behind_origin_process(
    ctx: ProbeContext, harness: Harness
) -> AsyncIterator[tuple[ProbeContext, OriginProcess]]:
    """A private instance of the target in front of a test origin in a process of its
    own (every backend of a several-backend config on that one process): the
    context that reaches the instance, and the origin. Both end on leaving."""
    hosts = harness.runtime.origin_hosts(LOOPBACK)
    async with OriginProcess(
        hosts, start_timeout_s=ctx.thresholds.origin_start_timeout_s
    ) as origin:
        assert origin.port is not None
        more = [(LOOPBACK, origin.port, origin.id)] * (harness.backends - 1)
        async with harness.instance(LOOPBACK, origin.port, origin.id, more=more) as inst:
            yield replace(ctx, host=inst.host, port=inst.port), origin


async def load(ctx: ProbeContext, check: str) -> LoadTimeline:
    """N WebSockets and N SSE streams through the proxy at once.

    With a launched proxy (``ctx.harness``) the origin runs in a process of its
    own behind a private instance of the target: this process then holds only
    the client side of each connection, and the origin's work does not slow the
    clients. Without one (a relay, in tests) the in-process origin serves.
    """
    limit = raise_fd_limit()  # before the origin process starts: it inherits it
    harness = ctx.harness
    if harness is None:
        return await _load(ctx, limit, origin_process=False)
    try:
        async with behind_origin_process(ctx, harness) as (own, _origin):
            return await _load(own, limit, origin_process=True)
    except HarnessError as exc:
        return LoadTimeline(
            requested=ctx.settings.load_connections, attempted=0, ws_ok=0, sse_ok=0,
            failures=(), setup_s=0.0, still_open=0, fd_limit=limit,
            error=f"{exc.problem} {exc.detail}".strip(),
        )  # fmt: skip


async def _load(ctx: ProbeContext, limit: int, *, origin_process: bool) -> LoadTimeline:
    requested = ctx.settings.load_connections
    # Each WebSocket/SSE pair: two client sockets here, and two origin sockets here
    # too when the origin runs in this process.
    per_pair = CLIENT_FDS_PER_PAIR * (1 if origin_process else 2)
    room = (limit - _open_fds() - FD_RESERVE) // per_pair
    attempted = max(0, min(requested, room))
    tool_limit = None
    if attempted < requested:
        tool_limit = (
            f"asked for {requested} of each kind, but this process may open only {limit} files "
            f"({per_pair} per WebSocket/stream pair): tested {attempted}"
        )
    failures: Counter[str] = Counter()
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    streams: list[aiohttp.ClientResponse] = []
    gate = asyncio.Semaphore(OPEN_PARALLEL)
    connector = aiohttp.TCPConnector(limit=0, force_close=True, ssl=ctx.ssl_context() or True)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        def too_late(kind: str) -> bool:
            if time.monotonic() < deadline:
                return False
            failures[f"{kind}: not attempted within {ctx.thresholds.load_open_deadline_s:g} s"] += 1
            return True

        async def open_ws() -> None:
            async with gate:
                if too_late("ws"):
                    return
                try:
                    async with asyncio.timeout(ctx.thresholds.load_connect_timeout_s):
                        ws = await session.ws_connect(f"{ctx.ws_base_url}/ws/echo", heartbeat=None)
                        await ws.send_str("hello")
                        msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "hello":
                        sockets.append(ws)
                    else:
                        failures[f"ws: {msg.type.name.lower()} instead of the echo"] += 1
                        await ws.close()
                except aiohttp.WSServerHandshakeError as exc:
                    failures[f"ws: status {exc.status}"] += 1
                except TimeoutError:
                    failures["ws: no answer in time"] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    failures[f"ws: {_kind(exc)}"] += 1

        async def open_sse() -> None:
            async with gate:
                if too_late("sse"):
                    return
                response = None
                try:
                    async with asyncio.timeout(ctx.thresholds.load_connect_timeout_s):
                        response = await session.get(
                            f"{ctx.base_url}/sse?count=1&hold_s=120",
                            headers={"Accept-Encoding": "identity"},
                        )
                        if response.status != 200:
                            failures[f"sse: status {response.status}"] += 1
                            response.close()
                            return
                        parser = SseParser()
                        while not parser.feed((await response.content.readany()).decode()):
                            if response.content.at_eof():
                                raise aiohttp.ClientPayloadError("ended before an event")
                    streams.append(response)
                except TimeoutError:
                    failures["sse: no event in time"] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    failures[f"sse: {_kind(exc)}"] += 1
                if response is not None and response not in streams:
                    response.close()

        started = time.monotonic()
        deadline = started + ctx.thresholds.load_open_deadline_s
        try:
            await asyncio.gather(
                *(open_ws() for _ in range(attempted)), *(open_sse() for _ in range(attempted))
            )
            setup_s = time.monotonic() - started
            still_open = await _still_open(sockets, streams, ctx.thresholds.load_connect_timeout_s)
        finally:
            await _close_all(sockets, streams)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return LoadTimeline(
        loop_lag_ms=ctx.lag.max_lag_ms(started),
        origin_process=origin_process,
        requested=requested,
        attempted=attempted,
        ws_ok=len(sockets),
        sse_ok=len(streams),
        failures=tuple(failures.most_common()),
        setup_s=round(setup_s, 2),
        still_open=still_open,
        tool_limit=tool_limit,
        fd_limit=limit,
        tool_rss_mb=round(rss_mb, 1),
    )


async def _still_open(
    sockets: list[aiohttp.ClientWebSocketResponse],
    streams: list[aiohttp.ClientResponse],
    timeout_s: float,
) -> int:
    """With everything open: every WebSocket echoes again; every stream is still open."""
    gate = asyncio.Semaphore(OPEN_PARALLEL * 4)

    async def again(ws: aiohttp.ClientWebSocketResponse) -> bool:
        async with gate:
            try:
                async with asyncio.timeout(timeout_s):
                    await ws.send_str("again")
                    msg = await ws.receive()
                return msg.type == aiohttp.WSMsgType.TEXT and msg.data == "again"
            except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError):
                return False

    echoed = await asyncio.gather(*(again(ws) for ws in sockets))
    open_streams = sum(1 for r in streams if not r.content.at_eof() and not r.closed)
    return sum(echoed) + open_streams


async def _close_all(
    sockets: list[aiohttp.ClientWebSocketResponse], streams: list[aiohttp.ClientResponse]
) -> None:
    for response in streams:
        response.close()

    async def close(ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await ws.close()

    await asyncio.gather(*(close(ws) for ws in sockets))


def _kind(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, word in (
        ("reset", "connection reset"),
        ("refused", "connection refused"),
        ("too many open files", "too many open files"),
        ("payload", "stream cut"),
        ("disconnect", "disconnected"),
    ):
        if needle in text:
            return word
    return type(exc).__name__
