"""lb.failover's probe: one backend dies while clients stream through the proxy.

Against a launched proxy it starts a private instance in front of private
origins (one per backend of the config) that share one event log
(origin/events.py), so killing one never disturbs the target's other checks.
Through a relay (``ctx.harness`` None) it uses ``ctx.backends`` as they are and
revives the one it killed.

Each client subscribes to one topic (SSE on ``/lb/events``, WebSocket on
``/lb/ws``) and notes which backend serves it (every event names it). After
about a second of events the backend holding the most clients is killed
(``Origin.kill``: a RST on every connection, as a dead process). Each client
then records when it learned, reconnects like EventSource (Last-Event-ID; WS:
``after=``) every ``failover_retry_ms``, and reads what the live backend sends.
The evaluation (checks/failover.py) judges the timeline.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import aiohttp

from ..errors import HarnessError
from ..origin import Origin
from ..origin.events import EVENTS_PATH, EVENTS_WS_PATH, EventLog
from ..runtimes import LOOPBACK
from .context import ProbeContext, tab_session
from .sse import SseParser

__all__ = ["FailoverClient", "FailoverTimeline", "FailoverTry", "failover"]

ClientKind = Literal["sse", "ws"]
_INTERVAL_MS = 100
_COUNT = 1200  # two minutes of events: the topic outlives the probe
_SSE_CLIENTS = 4
_WS_CLIENTS = 4
_WARM_S = 1.0  # events before the kill


@dataclass(frozen=True)
class FailoverTry:
    """One reconnect attempt after the client learned its backend died."""

    at: float  # when it was sent (monotonic)
    status: int | None  # the answer's HTTP status (101 for a WebSocket), None: no answer
    error: str | None = None  # why it is no stream: refused, reset, a status, no event
    backend: str | None = None  # the origin that served its first event
    answered_at: float | None = None  # when its first event, or its error, arrived


@dataclass(frozen=True)
class FailoverClient:
    """One client's story: its backend, what it read, when it learned, how it resumed."""

    kind: ClientKind
    backend: str | None  # the origin that served it before the kill; None: never opened
    open_error: str | None = None  # why it never opened (then nothing else is known)
    seqs_before: tuple[int, ...] = ()  # events read before its stream ended
    learned_at: float | None = None  # its stream ended (error, reset, close); None: never
    how: str | None = None  # how it ended
    tries: tuple[FailoverTry, ...] = ()
    seqs_after: tuple[int, ...] = ()  # events read after the reconnect that worked

    @property
    def resumed(self) -> FailoverTry | None:
        """The attempt that got a stream with events, if any."""
        return next((t for t in self.tries if t.backend is not None), None)


@dataclass(frozen=True)
class FailoverTimeline:
    unsupported: str | None = None
    error: str | None = None
    backends: tuple[str, ...] = ()
    victim: str | None = None  # the backend killed
    killed_at: float | None = None
    clients: tuple[FailoverClient, ...] = ()
    learn_limit_s: float = 0.0
    reconnect_limit_s: float = 0.0


@dataclass
class _Client:
    """Mutable while the probe runs; frozen into a FailoverClient at the end."""

    kind: ClientKind
    number: int
    backend: str | None = None
    open_error: str | None = None
    seqs_before: list[int] = field(default_factory=list)
    learned_at: float | None = None
    how: str | None = None
    tries: list[FailoverTry] = field(default_factory=list)
    seqs_after: list[int] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    learned: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def frozen(self) -> FailoverClient:
        return FailoverClient(
            self.kind,
            self.backend,
            self.open_error,
            tuple(self.seqs_before),
            self.learned_at,
            self.how,
            tuple(self.tries),
            tuple(self.seqs_after),
        )


class _NoStream(Exception):
    """An attempt that got no stream: ``status`` (None: no HTTP answer) and why."""

    def __init__(self, status: int | None, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


@dataclass(frozen=True)
class _Event:
    seq: int
    backend: str


def _event(text: str) -> _Event | None:
    try:
        body = json.loads(text)
        return _Event(int(body["seq"]), str(body["origin"]))
    except (ValueError, KeyError, TypeError):
        return None


@contextlib.asynccontextmanager
async def _open(
    ctx: ProbeContext, kind: ClientKind, topic: str, probe: str, after: int | None
) -> AsyncIterator[AsyncIterator[_Event]]:
    """One subscription: yields its events; raises _NoStream if it got none."""
    timeout = ctx.thresholds.handshake_timeout_s
    if kind == "ws":
        url = ctx.url(
            EVENTS_WS_PATH,
            probe,
            ws=True,
            topic=topic,
            interval_ms=_INTERVAL_MS,
            count=_COUNT,
            after=after,
        )
        try:
            async with asyncio.timeout(timeout):
                ws = await ctx.session.ws_connect(url, heartbeat=None, autoclose=True)
        except aiohttp.WSServerHandshakeError as exc:
            raise _NoStream(exc.status or None, f"status {exc.status}") from None
        except TimeoutError:
            raise _NoStream(None, f"no answer within {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _NoStream(None, _cause(exc)) from None
        try:
            yield _ws_events(ws)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await ws.close()
        return
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    url = ctx.url(EVENTS_PATH, probe, topic=topic, interval_ms=_INTERVAL_MS, count=_COUNT)
    try:
        async with asyncio.timeout(timeout):
            response = await ctx.session.get(url, headers=headers)
    except TimeoutError:
        raise _NoStream(None, f"no answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _NoStream(None, _cause(exc)) from None
    try:
        if response.status != 200:
            raise _NoStream(response.status, f"status {response.status}")
        yield _sse_events(response)
    finally:
        response.close()


async def _sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[_Event]:
    parser, decoder = SseParser(), codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for chunk in response.content.iter_any():
        for raw in parser.feed(decoder.decode(chunk)):
            event = _event("\n".join(raw.data))
            if event is not None:
                yield event


async def _ws_events(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[_Event]:
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            event = _event(msg.data)
            if event is not None:
                yield event
            continue
        if msg.type == aiohttp.WSMsgType.CLOSE:
            raise ConnectionError(f"close frame {msg.data}")
        raise ConnectionError("TCP close without a close frame (1006)")


def _cause(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused" if "refused" in str(exc).lower() else str(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body ended before its end (reset)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."


async def _client(ctx: ProbeContext, client: _Client, topic: str, probe: str) -> None:
    """Subscribe, read until the stream ends, then reconnect and read ``resume_s``."""
    th = ctx.thresholds
    try:
        async with _open(ctx, client.kind, topic, probe, None) as events:
            async for event in events:
                client.backend = client.backend or event.backend
                client.seqs_before.append(event.seq)
                client.opened.set()
            how = "the stream ended (close frame)" if client.kind == "ws" else "the stream ended"
    except _NoStream as exc:
        if not client.seqs_before:
            client.open_error = exc.why
            return
        how = exc.why
    except (aiohttp.ClientError, OSError) as exc:
        how = _cause(exc)
    finally:
        client.opened.set()
    if not client.seqs_before:
        client.open_error = f"no event before the stream ended ({how})"
        return
    client.learned_at, client.how = time.monotonic(), how
    client.learned.set()
    give_up = client.learned_at + th.failover_reconnect_limit_s
    after = client.seqs_before[-1]
    for _ in range(th.failover_max_tries):
        await asyncio.sleep(th.failover_retry_ms / 1000)
        left = give_up - time.monotonic()
        if left <= 0:
            break
        at = resume_until = time.monotonic()  # resume_until: set by the first event
        try:
            async with asyncio.timeout(left) as limit:
                async with _open(ctx, client.kind, topic, probe, after) as events:
                    status = 101 if client.kind == "ws" else 200
                    async for event in events:
                        if not client.seqs_after:
                            client.tries.append(
                                FailoverTry(at, status, None, event.backend, time.monotonic())
                            )
                            resume_until = time.monotonic() + th.failover_resume_s
                            # Reading what it resumed with is not bound by the limit.
                            loop_now = asyncio.get_running_loop().time()
                            limit.reschedule(loop_now + th.failover_resume_s + 1.0)
                        client.seqs_after.append(event.seq)
                        if time.monotonic() >= resume_until:
                            break
                    if not client.seqs_after:
                        client.tries.append(
                            FailoverTry(
                                at, status, "no event before it ended", None, time.monotonic()
                            )
                        )
                        continue
                    break
        except _NoStream as exc:
            client.tries.append(FailoverTry(at, exc.status, exc.why, None, time.monotonic()))
        except TimeoutError:
            if client.seqs_after:
                break
            client.tries.append(FailoverTry(at, None, "no event within the reconnect limit"))
        except (aiohttp.ClientError, OSError) as exc:
            if client.seqs_after:
                break  # cut again while resuming: what it read is judged
            client.tries.append(FailoverTry(at, None, _cause(exc), None, time.monotonic()))
    client.done.set()


async def _run(ctx: ProbeContext, check: str, backends: Sequence[Origin]) -> FailoverTimeline:
    th = ctx.thresholds
    topic = f"{check}-{secrets.token_hex(4)}"
    ids = tuple(o.id for o in backends)
    clients = [_Client("sse", n) for n in range(_SSE_CLIENTS)]
    clients += [_Client("ws", _SSE_CLIENTS + n) for n in range(_WS_CLIENTS)]
    tasks: list[asyncio.Task[None]] = []
    victim: Origin | None = None
    killed_at: float | None = None
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            session = await stack.enter_async_context(tab_session(ctx))
            own = replace(ctx, session=session)
            probe = ctx.token(check)
            tasks.append(asyncio.create_task(_client(own, client, topic, probe)))
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(th.handshake_timeout_s):
                    await asyncio.gather(*(c.opened.wait() for c in clients))
            if not any(c.backend for c in clients):
                errors = sorted({c.open_error or "no event" for c in clients})
                return FailoverTimeline(
                    error=f"no client got an event through the proxy: {'; '.join(errors)}",
                    backends=ids,
                    clients=tuple(c.frozen() for c in clients),
                )
            await asyncio.sleep(_WARM_S)
            held = Counter(c.backend for c in clients if c.backend and c.learned_at is None)
            if not held:
                return FailoverTimeline(
                    error="every client's stream ended before a backend was killed",
                    backends=ids,
                    clients=tuple(c.frozen() for c in clients),
                )
            victim_id = held.most_common(1)[0][0]
            victim = next(o for o in backends if o.id == victim_id)
            killed_at = time.monotonic()
            await victim.kill()
            on_victim = [c for c in clients if c.backend == victim_id]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(th.failover_learn_limit_s):
                    await asyncio.gather(*(c.learned.wait() for c in on_victim))
            # Every client that learned (on the victim, or cut elsewhere) resumes.
            waiting = [c for c in clients if c.learned.is_set()]
            bound = th.failover_reconnect_limit_s + th.failover_resume_s + 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await asyncio.gather(*(c.done.wait() for c in waiting))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return FailoverTimeline(
        backends=ids,
        victim=victim.id if victim is not None else None,
        killed_at=killed_at,
        clients=tuple(c.frozen() for c in clients),
        learn_limit_s=th.failover_learn_limit_s,
        reconnect_limit_s=th.failover_reconnect_limit_s,
    )


async def failover(ctx: ProbeContext, check: str) -> FailoverTimeline:
    harness = ctx.harness
    if harness is None:
        if not ctx.backends:  # probe mode: the backends are not this process's to kill
            return FailoverTimeline(
                unsupported="needs control of the backends: use proxytest check"
            )
        if len(ctx.backends) < 2:
            return FailoverTimeline(unsupported=_ONE_BACKEND)
        try:
            return await _run(ctx, check, ctx.backends)
        finally:
            for origin in ctx.backends:
                await origin.revive()
    count = harness.backends
    if count < 2:
        return FailoverTimeline(unsupported=_ONE_BACKEND)
    log = EventLog()  # the private origins share it, as backends share a pub/sub
    run = secrets.token_hex(3)
    try:
        async with contextlib.AsyncExitStack() as stack:
            origins: list[Origin] = []
            for n in range(1, count + 1):
                origin = Origin(LOOPBACK, 0, log=log, origin_id=f"failover-{run}-b{n}")
                origins.append(await stack.enter_async_context(origin))
                await harness.runtime.reach(origin)
            inst = await stack.enter_async_context(harness.fronting(origins))
            own = replace(
                ctx, host=inst.host, port=inst.port, origin=origins[0], backends=tuple(origins)
            )
            return await _run(own, check, origins)
    except HarnessError as exc:
        return FailoverTimeline(error=f"{exc.problem} {exc.detail}".strip())


_ONE_BACKEND = (
    "the target fronts one backend: failover needs two or more "
    "({{ upstream_port_2 }} in the config)"
)
