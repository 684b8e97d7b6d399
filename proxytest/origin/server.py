"""The origin behind the proxy under test.

Routes are behaviours, chosen by path and query (all GET):

``/__proxytest/ready``
    200 with the origin's id: proves a request through the proxy reached *this*
    origin (an open port is not ready; Traefik answers 404 before its routes load).
``/sse``
    A Server-Sent Events stream. Query: ``count`` (20), ``interval_ms`` (100),
    ``size`` (padding bytes per event, 0), ``initial_delay_ms`` (0), ``retry_ms``
    (send ``retry:`` first), ``gap_after`` + ``gap_s`` (a quiet gap after that
    event), ``comment_every_s`` (``:`` heartbeat comments while quiet),
    ``hold_s`` (keep the stream open this long after the last event), ``start``
    (first id, 1), ``cut_at`` (comma-separated ids after which the connection is
    aborted, as an origin that dies would; with ``cut_once=1`` only a request
    without ``Last-Event-ID`` is cut, so a browser's reconnect is not cut again
    when the event before the cut never reached it). A ``Last-Event-ID``
    header resumes after that id.
``/browser``
    The HTML page with inline script that the ``browser.*`` checks load through
    the proxy in Chromium (origin/page.py says what its ``mode`` query does).
``/ws/echo``
    Echoes text and binary messages byte for byte; ``ping_every_s`` makes the
    origin ping the client at that interval (keepalive from the server side).
``/ws/push``
    Pushes ``count`` messages every ``interval_ms`` with no client traffic.
``/ws/ping``
    Sends ``count`` pings (payload ``proxytest-origin-<n>``) and records pongs;
    answers the client's pings itself so they can be recorded too.
``/ws/close``
    Closes with ``code`` and ``reason`` after ``delay_ms``.

Every WebSocket route takes ``protocols`` (comma-separated, the server's
preference order) and negotiates a subprotocol from what the client offered.

Every event and message carries its sequence number and send time
(``time.monotonic()``, shared by all processes of this machine). Requests that
carry ``probe=<token>`` are recorded (headers, Last-Event-ID, subprotocols
offered, close codes, pongs) so checks can compare both ends. The origin sends
only standard headers: no ``X-Accel-Buffering`` or other proxy hints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from ..routes import BROWSER_PATH, READY_PATH
from .page import BROWSER_PAGE

__all__ = ["Origin", "OriginRecord", "event_payload"]

MAX_MESSAGE = 8 * 1024 * 1024
_MAX_RECORDS_PER_PROBE = 10_000


@dataclass
class OriginRecord:
    """What the origin saw of one request. Filled in while the request runs."""

    probe: str
    path: str
    query: dict[str, str]
    headers: tuple[tuple[str, str], ...]
    received_at: float
    http_version: str
    upgrade_requested: bool = False
    last_event_id: str | None = None
    subprotocols_offered: tuple[str, ...] = ()
    subprotocol_selected: str | None = None
    upgraded: bool = False
    events_sent: int = 0
    messages_received: list[tuple[str, int]] = field(default_factory=list)
    pings_received: list[bytes] = field(default_factory=list)
    pongs_received: list[tuple[float, bytes]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    finished_at: float | None = None
    end: str | None = None  # complete | client-gone | error

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        """The record as the records API serves it (times: the origin's monotonic clock)."""
        data = asdict(self)
        data["pings_received"] = [p.decode("latin-1") for p in self.pings_received]
        data["pongs_received"] = [[t, p.decode("latin-1")] for t, p in self.pongs_received]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OriginRecord:
        """A record from :meth:`to_json`; keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["headers"] = tuple((str(k), str(v)) for k, v in values.get("headers", ()))
        values["subprotocols_offered"] = tuple(values.get("subprotocols_offered", ()))
        values["messages_received"] = [
            (str(k), int(n)) for k, n in values.get("messages_received", ())
        ]
        values["pings_received"] = [_bytes(p) for p in values.get("pings_received", ())]
        values["pongs_received"] = [
            (float(t), _bytes(p)) for t, p in values.get("pongs_received", ())
        ]
        return cls(**values)


def _bytes(value: object) -> bytes:
    """A payload as JSON carries it (text; ``asdict`` leaves bytes for the encoder)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1", errors="replace")


@web.middleware
async def _client_gone(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A client that left while the origin answered (a probe giving up, a run being
    interrupted) is not an error of the origin: no traceback in the tool's output."""
    try:
        return await handler(request)
    except ConnectionResetError:
        return web.Response(status=499, text="client closed the connection")


def event_payload(seq: int, size: int = 0) -> str:
    """The JSON body of one event or pushed message: sequence number and send time."""
    body: dict[str, Any] = {"seq": seq, "sent": time.monotonic()}
    if size:
        body["pad"] = "x" * size
    return json.dumps(body, separators=(",", ":"))


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be an integer") from None


def _float(request: web.Request, name: str, default: float) -> float:
    try:
        return float(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be a number") from None


class Origin:
    """The aiohttp origin, as an async context manager bound to ``host``:``port``.

    ``port=0`` picks a free ephemeral port; read ``origin.port`` after entering.
    :meth:`listen_also` adds another address on the same port (a proxy in a
    container on a bridge network reaches this machine through the bridge's
    gateway); ``host`` stays the address the origin is known by.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.id = "origin-" + secrets.token_hex(6)
        self._records: dict[str, list[OriginRecord]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.hosts: tuple[str, ...] = ()  # every address it listens on, ``host`` first
        self._adding = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE, middlewares=[_client_gone])
        app.router.add_get(READY_PATH, self._ready)
        app.router.add_get("/sse", self._sse)
        app.router.add_get(BROWSER_PATH, self._browser)
        app.router.add_get("/ws/echo", self._ws_echo)
        app.router.add_get("/ws/push", self._ws_push)
        app.router.add_get("/ws/ping", self._ws_ping)
        app.router.add_get("/ws/close", self._ws_close)
        return app

    async def __aenter__(self) -> Origin:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self.__aexit__()
            raise
        server = site._server
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self.hosts = (self.host,)
        return self

    async def listen_also(self, host: str) -> None:
        """Listen on ``host`` too, on the same port (once). Raises OSError if it cannot."""
        async with self._adding:
            if host in self.hosts:
                return
            if self._runner is None:
                raise RuntimeError("the origin is not running")
            site = web.TCPSite(self._runner, host, self.port)
            await site.start()
            self.hosts = (*self.hosts, host)

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.hosts = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- records -----------------------------------------------------------------
    def records(self, probe: str) -> list[OriginRecord]:
        """Every request the origin received for ``probe``, in arrival order."""
        return list(self._records.get(probe, ()))

    async def wait_for(self, probe: str, predicate: Any, timeout: float) -> list[OriginRecord]:
        """Wait until ``predicate(records)`` is true, or ``timeout``; return the records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records(probe)
            remaining = deadline - time.monotonic()
            if predicate(records) or remaining <= 0:
                return records
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    def local_time(self, origin_time: float) -> float:
        """In this process the origin's clock is the client's."""
        return origin_time

    def _notify(self) -> None:
        self._changed.set()

    def _record(self, request: web.Request) -> OriginRecord:
        probe = request.query.get("probe", "")
        record = OriginRecord(
            probe=probe,
            path=request.path,
            query=dict(request.query),
            headers=tuple(request.headers.items()),
            received_at=time.monotonic(),
            http_version=f"{request.version.major}.{request.version.minor}",
            upgrade_requested=request.headers.get("Upgrade", "").lower() == "websocket",
            last_event_id=request.headers.get("Last-Event-ID"),
        )
        if probe and len(self._records[probe]) < _MAX_RECORDS_PER_PROBE:
            self._records[probe].append(record)
        self._notify()
        return record

    def _finish(self, record: OriginRecord, end: str) -> None:
        record.finished_at = time.monotonic()
        record.end = end
        self._notify()

    # -- HTTP routes ---------------------------------------------------------------
    async def _ready(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text=self.id)

    async def _browser(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(
            text=BROWSER_PAGE,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        count = _int(request, "count", 20)
        interval = _float(request, "interval_ms", 100) / 1000
        size = _int(request, "size", 0)
        initial_delay = _float(request, "initial_delay_ms", 0) / 1000
        retry_ms = request.query.get("retry_ms")
        gap_after = _int(request, "gap_after", -1)
        gap = _float(request, "gap_s", 0)
        comment_every = _float(request, "comment_every_s", 0)
        hold = _float(request, "hold_s", 0)
        cut_at = {int(x) for x in request.query.get("cut_at", "").split(",") if x.strip().isdigit()}
        record = self._record(request)
        if request.query.get("cut_once") == "1" and record.last_event_id is not None:
            cut_at = set()
        start = _int(request, "start", 1)
        last = record.last_event_id
        if last is not None and last.strip().isdigit():
            start = int(last) + 1

        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        try:
            await response.prepare(request)
            if retry_ms is not None:
                await response.write(f"retry: {int(retry_ms)}\n\n".encode())
            # Each event is due at a fixed time from the start, so a late wake-up of
            # this loop delays one event instead of every later one (drift would
            # otherwise add up over a 75 s stream and look like the proxy's stall).
            first_due, gaps = time.monotonic() + initial_delay, 0.0
            await self._quiet(response, initial_delay, comment_every)
            for index in range(count):
                seq = start + index
                if index:
                    due = first_due + index * interval + gaps
                    await self._quiet(response, due - time.monotonic(), comment_every)
                frame = f"id: {seq}\nevent: tick\ndata: {event_payload(seq, size)}\n\n"
                await response.write(frame.encode())
                record.events_sent += 1
                if seq == gap_after:
                    await self._quiet(response, gap, comment_every)
                    gaps += gap
                if seq in cut_at and request.transport is not None:
                    # An origin that dies mid-stream: no chunked terminator, a reset.
                    request.transport.abort()
                    self._finish(record, "cut")
                    return response
            await self._quiet(response, hold, comment_every)
            await response.write_eof()
        except ConnectionResetError:
            self._finish(record, "client-gone")
            return response
        except asyncio.CancelledError:
            self._finish(record, "client-gone")
            raise
        self._finish(record, "complete")
        return response

    @staticmethod
    async def _quiet(response: web.StreamResponse, seconds: float, comment_every: float) -> None:
        """Wait ``seconds``, sending ``:`` comments every ``comment_every`` if set."""
        if seconds <= 0:
            return
        if comment_every <= 0:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(comment_every, remaining))
            if deadline - time.monotonic() > 0:
                await response.write(b": heartbeat\n\n")

    # -- WebSocket routes ----------------------------------------------------------
    async def _upgrade(
        self, request: web.Request, **kwargs: Any
    ) -> tuple[web.WebSocketResponse, OriginRecord]:
        record = self._record(request)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        record.subprotocols_offered = tuple(p.strip() for p in offered.split(",") if p.strip())
        protocols = tuple(p for p in request.query.get("protocols", "").split(",") if p)
        ws = web.WebSocketResponse(
            protocols=protocols, max_msg_size=MAX_MESSAGE, heartbeat=None, **kwargs
        )
        try:
            await ws.prepare(request)
        except web.HTTPException:
            self._finish(record, "error")
            raise
        record.upgraded = True
        record.subprotocol_selected = ws.ws_protocol
        self._notify()
        return ws, record

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        record: OriginRecord,
        reply: Callable[[WSMessage], Awaitable[None]] | None = None,
    ) -> None:
        """Read until the connection ends, recording every message and the close."""
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                record.close_code, record.close_reason = msg.data, msg.extra
                break
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            self._note(msg, record)
            if reply is not None and not ws.closed:
                await reply(msg)
        self._finish(record, "complete" if record.close_code is not None else "client-gone")

    def _note(self, msg: WSMessage, record: OriginRecord) -> None:
        if msg.type == WSMsgType.TEXT:
            record.messages_received.append(("text", len(msg.data.encode())))
        elif msg.type == WSMsgType.BINARY:
            record.messages_received.append(("binary", len(msg.data)))
        elif msg.type == WSMsgType.PONG:
            record.pongs_received.append((time.monotonic(), bytes(msg.data)))
        elif msg.type == WSMsgType.PING:
            record.pings_received.append(bytes(msg.data))
        self._notify()

    async def _ws_echo(self, request: web.Request) -> web.WebSocketResponse:
        ping_every = _float(request, "ping_every_s", 0)
        ws, record = await self._upgrade(request)
        pinger = asyncio.create_task(self._pinger(ws, ping_every)) if ping_every > 0 else None

        async def echo(msg: WSMessage) -> None:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)

        try:
            await self._serve(ws, record, echo)
        finally:
            if pinger is not None:
                pinger.cancel()
        return ws

    @staticmethod
    async def _pinger(ws: web.WebSocketResponse, every: float) -> None:
        """Ping the client every ``every`` seconds (its pongs are answered by aiohttp)."""
        n = 0
        while not ws.closed:
            await asyncio.sleep(every)
            n += 1
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.ping(f"proxytest-keepalive-{n}".encode())

    async def _ws_push(self, request: web.Request) -> web.WebSocketResponse:
        count = _int(request, "count", 20)
        interval = _float(request, "interval_ms", 100) / 1000
        size = _int(request, "size", 0)
        ws, record = await self._upgrade(request)
        reader = asyncio.create_task(self._serve(ws, record))
        try:
            first_due = time.monotonic()  # a fixed schedule, as for SSE: no drift
            for seq in range(1, count + 1):
                if seq > 1:
                    due = first_due + (seq - 1) * interval
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                if ws.closed:
                    break
                await ws.send_str(event_payload(seq, size))
                record.events_sent += 1
            await reader
        finally:
            reader.cancel()
        return ws

    async def _ws_ping(self, request: web.Request) -> web.WebSocketResponse:
        count = _int(request, "count", 1)
        interval = _float(request, "interval_ms", 100) / 1000
        ws, record = await self._upgrade(request, autoping=False)

        async def answer(msg: WSMessage) -> None:
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)

        reader = asyncio.create_task(self._serve(ws, record, answer))
        try:
            for n in range(1, count + 1):
                if ws.closed:
                    break
                await ws.ping(f"proxytest-origin-{n}".encode())
                await asyncio.sleep(interval)
            await reader
        finally:
            reader.cancel()
        return ws

    async def _ws_close(self, request: web.Request) -> web.WebSocketResponse:
        code = _int(request, "code", 1000)
        reason = request.query.get("reason", "")
        delay = _float(request, "delay_ms", 0) / 1000
        ws, record = await self._upgrade(request)
        if delay:
            await asyncio.sleep(delay)
        await ws.close(code=code, message=reason.encode())
        self._finish(record, "complete")
        return ws


async def serve_forever(hosts: Sequence[str], port: int) -> None:
    """Serve on every address of ``hosts`` (the first decides a free port) until killed."""
    async with Origin(hosts[0], port) as origin:
        for host in hosts[1:]:
            await origin.listen_also(host)
        # One JSON line first: a parent process reads the id and port from it.
        print(json.dumps({"id": origin.id, "port": origin.port, "url": origin.url}), flush=True)
        await asyncio.Event().wait()
