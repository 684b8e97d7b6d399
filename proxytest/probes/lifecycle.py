"""Lifecycle probes: a reload of the proxy, and an origin that dies and comes back.

Both run against a private instance of the target (``ctx.harness``), so they
never disturb the checks running against the main one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import aiohttp

from ..errors import HarnessError, Unsupported
from ..harness import Harness, ask_ready
from ..origin import Origin
from ..origin.process import OriginProcess
from ..runtimes import LOOPBACK
from .context import ProbeContext
from .sse import SseParser, read_stream
from .timeline import Fate, ReloadTimeline, RestartTimeline
from .ws import _connect

__all__ = ["origin_restart", "reload"]

_TICK_MS = 250


async def _watch_ws(
    ctx: ProbeContext, url: str, opened: asyncio.Event, stop: asyncio.Event
) -> Fate:
    """Hold a WebSocket receiving pushed messages until it ends or ``stop`` is set."""
    async with _connect(ctx, url) as conn:
        if conn.ws is None:
            opened.set()
            return Fate("ws", None, time.monotonic(), None, conn.error or f"status {conn.status}")
        ws, started, last = conn.ws, time.monotonic(), None
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                receiver = asyncio.ensure_future(ws.receive())
                await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not receiver.done():
                    receiver.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiver
                    return Fate("ws", started, None, last)
                msg = receiver.result()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    last = time.monotonic()
                    opened.set()
                    continue
                code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
                how = (
                    f"close frame {code}"
                    if msg.type == aiohttp.WSMsgType.CLOSE
                    else ("TCP close without a close frame (1006)")
                )
                return Fate("ws", started, time.monotonic(), last, how)
        finally:
            stopper.cancel()
            opened.set()


async def _watch_sse(
    ctx: ProbeContext, url: str, opened: asyncio.Event, stop: asyncio.Event
) -> Fate:
    """Hold an SSE stream receiving events until it ends or ``stop`` is set."""
    started = time.monotonic()
    last: float | None = None
    stopper = asyncio.create_task(stop.wait())
    try:
        async with ctx.session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            if response.status != 200:
                return Fate("sse", None, time.monotonic(), None, f"status {response.status}")
            parser = SseParser()
            while True:
                reader = asyncio.ensure_future(response.content.readany())
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not reader.done():
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                    return Fate("sse", started, None, last)
                try:
                    chunk = reader.result()
                except aiohttp.ClientPayloadError:
                    return Fate(
                        "sse", started, time.monotonic(), last, "the connection closed mid-response"
                    )
                if not chunk:
                    return Fate(
                        "sse",
                        started,
                        time.monotonic(),
                        last,
                        "the response ended (chunked terminator)",
                    )
                if parser.feed(chunk.decode(errors="replace")):
                    last = time.monotonic()
                    opened.set()
    except (aiohttp.ClientError, OSError) as exc:
        return Fate(
            "sse", started if last else None, time.monotonic(), last, f"{type(exc).__name__}: {exc}"
        )
    finally:
        stopper.cancel()
        opened.set()


async def _watch_all(
    ctx: ProbeContext, check: str, stop: asyncio.Event
) -> tuple[list[asyncio.Task[Fate]], bool]:
    """Open two pushed WebSockets and two SSE streams; wait until each delivered once."""
    long_count = 100_000  # never ends by itself
    watchers, events = [], []
    kinds = ("ws", "ws", "sse", "sse") if await _upgrades(ctx, check) else ("sse", "sse")
    for kind in kinds:
        opened = asyncio.Event()
        if kind == "ws":
            url = ctx.url(
                "/ws/push", ctx.token(check), ws=True, count=long_count, interval_ms=_TICK_MS
            )
            coro = _watch_ws(ctx, url, opened, stop)
        else:
            url = ctx.url("/sse", ctx.token(check), count=long_count, interval_ms=_TICK_MS)
            coro = _watch_sse(ctx, url, opened, stop)
        watchers.append(asyncio.create_task(coro))
        events.append(opened)
    try:
        async with asyncio.timeout(ctx.thresholds.handshake_timeout_s):
            await asyncio.gather(*(e.wait() for e in events))
    except TimeoutError:
        return watchers, False
    return watchers, True


async def _fates(watchers: list[asyncio.Task[Fate]], stop: asyncio.Event) -> tuple[Fate, ...]:
    stop.set()
    return tuple(await asyncio.gather(*watchers))


async def _new_connections(
    ctx: ProbeContext, check: str, *, websocket: bool = True
) -> tuple[str | None, str | None]:
    """A new WebSocket echo and a new SSE stream: None each when it worked, else why not."""
    ws_problem = await _new_websocket(ctx, check) if websocket else None
    url = ctx.url("/sse", ctx.token(check), count=2, interval_ms=50)
    tl = await read_stream(
        ctx, url, expected=2, interval_ms=50, headers={"Accept-Encoding": "identity"}
    )
    if len(tl.deliveries) == 2:
        return ws_problem, None
    if tl.status != 200:
        return ws_problem, f"status {tl.status}"
    return ws_problem, f"{len(tl.deliveries)}/2 events ({tl.end})"


async def _new_websocket(ctx: ProbeContext, check: str) -> str | None:
    async with _connect(ctx, ctx.url("/ws/echo", ctx.token(check), ws=True)) as conn:
        if conn.ws is None:
            return conn.error or f"status {conn.status}"
        try:
            await conn.ws.send_str("after")
            async with asyncio.timeout(ctx.thresholds.message_timeout_s):
                msg = await conn.ws.receive()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"no echo: {type(exc).__name__}"
        return None if msg.data == "after" else f"got {msg.type.name}"


async def _upgrades(ctx: ProbeContext, check: str) -> bool:
    """Does this proxy pass WebSocket upgrades at all? (If not, ws.upgrade says so.)"""
    async with _connect(ctx, ctx.url("/ws/echo", ctx.token(check), ws=True)) as conn:
        return conn.ws is not None


async def reload(ctx: ProbeContext, check: str) -> ReloadTimeline:
    harness = ctx.harness
    origin = ctx.origin
    if harness is None or not isinstance(origin, Origin):
        return ReloadTimeline(unsupported="needs a proxy that proxytest launched")
    observe = min(ctx.settings.max_hold_s, ctx.thresholds.reload_observe_s)
    # Several backends: the private instance fronts the same ones as the main instance.
    more = [(o.host, o.port, o.id) for o in ctx.backends[1:]]
    try:
        await harness.runtime.reach(origin)
        async with harness.instance(origin.host, origin.port, origin.id, more=more) as inst:
            own = replace(ctx, host=inst.host, port=inst.port)
            stop = asyncio.Event()
            watchers, opened = await _watch_all(own, check, stop)
            if not opened:
                fates = await _fates(watchers, stop)
                return ReloadTimeline(error="the connections to watch did not open", fates=fates)
            await asyncio.sleep(0.5)
            ok, failed = 0, []

            async def poll(seconds: float) -> None:
                nonlocal ok
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    status, body = await ask_ready(
                        own.session, own.base_url, own.thresholds.ready_poll_timeout_s
                    )
                    if status == 200:
                        ok += 1
                    else:
                        failed.append(f"status {status}" if status is not None else body)
                    await asyncio.sleep(0.1)

            poller = asyncio.create_task(poll(3.5))
            await asyncio.sleep(0.5)
            reload_at = time.monotonic()
            try:
                done = await harness.reload(inst, origin.id)
            except Unsupported as exc:
                poller.cancel()
                await _fates(watchers, stop)
                return ReloadTimeline(unsupported=str(exc))
            reloaded_at = time.monotonic()
            await asyncio.sleep(observe)
            await poller
            fates = await _fates(watchers, stop)
            after_ws, after_sse = await _new_connections(
                own, check, websocket=any(f.kind == "ws" for f in fates)
            )
            return ReloadTimeline(
                method=done.how,
                observed=done.observed,
                reload_at=reload_at,
                reloaded_at=reloaded_at,
                observe_s=observe,
                fates=fates,
                during_ok=ok,
                during_failed=tuple(failed),
                after_ws=after_ws,
                after_sse=after_sse,
                alive_after=inst.process.alive,
                log_tail=inst.process.log_tail(10),
            )
    except HarnessError as exc:
        return ReloadTimeline(error=f"{exc.problem} {exc.detail}".strip())


async def origin_restart(ctx: ProbeContext, check: str) -> RestartTimeline:
    harness = ctx.harness
    if harness is None:
        return RestartTimeline(unsupported="needs a proxy that proxytest launched")
    try:
        hosts = harness.runtime.origin_hosts(LOOPBACK)
        start_s = ctx.thresholds.origin_start_timeout_s
        async with OriginProcess(hosts, start_timeout_s=start_s) as origin:
            return await _restart(ctx, check, harness, origin)
    except HarnessError as exc:
        return RestartTimeline(error=f"{exc.problem} {exc.detail}".strip())


async def _restart(
    ctx: ProbeContext, check: str, harness: Harness, origin: OriginProcess
) -> RestartTimeline:
    assert origin.port is not None
    th = ctx.thresholds
    # A config with several backends has all of them on this one origin process: the
    # origin dies for every backend at once, as the check means.
    more = [(LOOPBACK, origin.port, origin.id)] * (harness.backends - 1)
    async with harness.instance(LOOPBACK, origin.port, origin.id, more=more) as inst:
        own = replace(ctx, host=inst.host, port=inst.port)
        stop = asyncio.Event()
        watchers, opened = await _watch_all(own, check, stop)
        if not opened:
            fates = await _fates(watchers, stop)
            return RestartTimeline(error="the connections to watch did not open", fates=fates)
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        port = origin.port
        await origin.kill()
        # Wait until every client learned, or the limit: a hung one never will.
        await asyncio.wait(watchers, timeout=th.origin_learn_limit_s)
        fates = await _fates(watchers, stop)
        await origin.start(port)
        restarted_at = time.monotonic()
        recovered, last = None, "no attempt"
        while time.monotonic() - restarted_at < th.origin_recover_limit_s:
            status, body = await ask_ready(
                own.session, own.base_url, own.thresholds.ready_poll_timeout_s
            )
            if status == 200 and body == origin.id:
                recovered = round(time.monotonic() - restarted_at, 2)
                break
            last = f"status {status}" if status is not None else body
            await asyncio.sleep(0.1)
        after_ws, after_sse = (None, None)
        if recovered is not None:
            after_ws, after_sse = await _new_connections(
                own, check, websocket=any(f.kind == "ws" for f in fates)
            )
        return RestartTimeline(
            killed_at=killed_at,
            learn_limit_s=th.origin_learn_limit_s,
            fates=fates,
            restarted_at=restarted_at,
            recovered_after_s=recovered,
            recover_limit_s=th.origin_recover_limit_s,
            last_failure=None if recovered is not None else last,
            after_ws=after_ws,
            after_sse=after_sse,
        )
