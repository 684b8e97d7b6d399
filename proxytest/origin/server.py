"""The origin behind the proxy under test.

Routes are behaviours, chosen by path and query (all GET but the publisher):

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
``/lb/handshake``, ``/lb/poll?sid=…``
    A long-polling session held in this origin's memory (origin/sessions.py): a
    poll reaching another backend is 400 ``unknown session``, as socket.io answers.

``/lb/events``, ``/lb/ws``
    Events of a topic from a log the origins of one group share (origin/events.py),
    so a client resumes on another backend where it was cut (``lb.failover``).

``/fanout/sse``, ``/fanout/ws``, ``POST /fanout/publish``
    Broadcast: subscribers of ``topic`` over SSE or WebSocket receive every
    message the publisher posts (origin/fanout.py; ``load.fanout``). Not recorded.

``/sec/answer``, ``/sec/naive``, ``/sec/unrequested``, ``/sec/marker``, ``/sec/headers``
    Upgrades answered the wrong way and what arrives after them on the same
    connection, for the security checks (origin/security.py).

``/__proxytest/records?probe=<P>``
    What the origin recorded for probe ``P``, as JSON: ``{"origin": id, "now":
    <origin time.monotonic()>, "records": [OriginRecord.to_json(), ...]}``, for a
    client that cannot read the origin's memory (``proxytest probe`` in front of a
    deployed ``proxytest origin``). Not recorded itself.

Every WebSocket route takes ``protocols`` (comma-separated, the server's
preference order) and negotiates a subprotocol from what the client offered.

Deployed (``proxytest origin``, origin/cli.py), an origin may have:

* a **token**: every route (ready and records included) then requires it, as the
  query parameter ``token=<T>`` or the header ``X-Proxytest-Token: <T>`` (browsers
  cannot set headers on EventSource or WebSocket, hence the query), compared in
  constant time; without it: 401 ``proxytest origin: token required``, before any
  upgrade. The token is stripped from what is recorded.
* a **prefix**: every route is served under it (``/rt/sse``) and only there, for an
  ingress that routes a path without rewriting it. Records name the route without
  the prefix (``/sse``), so checks read the same records either way.

Every response carries ``X-Proxytest-Origin: <id>``; the ready route adds
``X-Proxytest-Clock: <origin time.monotonic()>`` (a client estimates the clock
offset from it: event payloads carry the origin's monotonic send time).

Every event and message carries its sequence number and send time
(``time.monotonic()``, shared by all processes of this machine). Requests that
carry ``probe=<token>`` are recorded (headers, Last-Event-ID, subprotocols
offered, close codes, pongs) so checks can compare both ends. The origin sends
only standard headers: no ``X-Accel-Buffering`` or other proxy hints.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import secrets
import socket
import ssl
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from ..routes import BROWSER_PATH, READY_PATH, RECORDS_PATH
from . import events, frames
from .events import EventLog
from .fanout import Fanout
from .page import BROWSER_PAGE
from .sessions import HANDSHAKE_PATH, POLL_PATH, Sessions

__all__ = [
    "CLOCK_HEADER",
    "ORIGIN_HEADER",
    "TOKEN_HEADER",
    "TOKEN_PARAM",
    "Origin",
    "OriginRecord",
    "RecordStore",
    "event_payload",
    "normalise_prefix",
]

MAX_MESSAGE = 8 * 1024 * 1024
_MAX_RECORDS_PER_PROBE = 10_000

ORIGIN_HEADER = "X-Proxytest-Origin"  # on every response: the origin's id
CLOCK_HEADER = "X-Proxytest-Clock"  # on the ready route: the origin's time.monotonic()
TOKEN_HEADER = "X-Proxytest-Token"  # the token, as a header ...
TOKEN_PARAM = "token"  # ... or as a query parameter (browsers cannot set headers)
TOKEN_REQUIRED = "proxytest origin: token required"


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
    # The id of the origin that received it: with several backends sharing one
    # RecordStore, which backend the proxy picked.
    origin_id: str | None = None
    # ws.frames and ws.deflate (origin/frames.py): each message's digest, in order,
    # and the Sec-WebSocket-Extensions the origin answered
    digests: list[str] = field(default_factory=list)
    extensions_selected: str | None = None

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        """This record as JSON values: tuples become lists, bytes (ping and pong
        payloads) base64 strings (standard alphabet, padded). :meth:`from_json`
        reads it back exactly (floats survive JSON's round trip in Python)."""
        return {
            "probe": self.probe,
            "path": self.path,
            "query": dict(self.query),
            "headers": [[k, v] for k, v in self.headers],
            "received_at": self.received_at,
            "http_version": self.http_version,
            "upgrade_requested": self.upgrade_requested,
            "last_event_id": self.last_event_id,
            "subprotocols_offered": list(self.subprotocols_offered),
            "subprotocol_selected": self.subprotocol_selected,
            "upgraded": self.upgraded,
            "events_sent": self.events_sent,
            "messages_received": [[kind, size] for kind, size in self.messages_received],
            "pings_received": [_b64(data) for data in self.pings_received],
            "pongs_received": [[at, _b64(data)] for at, data in self.pongs_received],
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "finished_at": self.finished_at,
            "end": self.end,
            "origin_id": self.origin_id,
            "digests": list(self.digests),
            "extensions_selected": self.extensions_selected,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OriginRecord:
        """The record :meth:`to_json` wrote. Raises KeyError, TypeError or ValueError
        on anything else."""
        return cls(
            probe=str(data["probe"]),
            path=str(data["path"]),
            query={str(k): str(v) for k, v in data["query"].items()},
            headers=tuple((str(k), str(v)) for k, v in data["headers"]),
            received_at=float(data["received_at"]),
            http_version=str(data["http_version"]),
            upgrade_requested=bool(data["upgrade_requested"]),
            last_event_id=_opt_str(data["last_event_id"]),
            subprotocols_offered=tuple(str(p) for p in data["subprotocols_offered"]),
            subprotocol_selected=_opt_str(data["subprotocol_selected"]),
            upgraded=bool(data["upgraded"]),
            events_sent=int(data["events_sent"]),
            messages_received=[(str(k), int(n)) for k, n in data["messages_received"]],
            pings_received=[_unb64(d) for d in data["pings_received"]],
            pongs_received=[(float(at), _unb64(d)) for at, d in data["pongs_received"]],
            close_code=None if data["close_code"] is None else int(data["close_code"]),
            close_reason=_opt_str(data["close_reason"]),
            finished_at=None if data["finished_at"] is None else float(data["finished_at"]),
            end=_opt_str(data["end"]),
            origin_id=_opt_str(data.get("origin_id")),  # added later: older origins lack it
            digests=[str(d) for d in data.get("digests", [])],  # added later, as origin_id
            extensions_selected=_opt_str(data.get("extensions_selected")),
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def normalise_prefix(prefix: str) -> str:
    """``/rt/``, ``rt`` and ``/rt`` are ``/rt``; ``""`` and ``/`` are no prefix.

    Raises ValueError for what cannot be a path prefix (a query, a fragment,
    whitespace, ``.`` or ``..`` segments, an empty segment)."""
    text = prefix.strip("/")
    if not text:
        return ""
    bad = [c for c in "?#%\\" if c in text] + [c for c in text if c.isspace() or ord(c) < 32]
    segments = text.split("/")
    if bad or any(seg in ("", ".", "..") for seg in segments):
        raise ValueError(f"not a path prefix: {prefix!r} (write it as /path or /a/b)")
    return "/" + text


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


class RecordStore:
    """What origins recorded, by probe token, and a signal when it changed.

    Each :class:`Origin` has its own unless it is given one: the backends behind one
    proxy share a store (runner.py), so a probe that waits for its records sees them
    whichever backend the proxy picked (``OriginRecord.origin_id`` says which).
    ``max_probes``: probes remembered at once (None: all); past it the oldest is
    forgotten.
    """

    def __init__(self, max_probes: int | None = None) -> None:
        self.max_probes = max_probes
        self._records: dict[str, list[OriginRecord]] = defaultdict(list)
        self._changed = asyncio.Event()

    def records(self, probe: str) -> list[OriginRecord]:
        """Every request recorded for ``probe``, in arrival order."""
        return list(self._records.get(probe, ()))

    def add(self, record: OriginRecord) -> None:
        probe = record.probe
        if probe and len(self._records[probe]) < _MAX_RECORDS_PER_PROBE:
            self._records[probe].append(record)
            while self.max_probes is not None and len(self._records) > self.max_probes:
                del self._records[next(iter(self._records))]
        self.notify()

    def notify(self) -> None:
        self._changed.set()

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


class Origin:
    """The aiohttp origin, as an async context manager bound to ``host``:``port``.

    ``port=0`` picks a free ephemeral port; read ``origin.port`` after entering.
    :meth:`listen_also` adds another address on the same port (a proxy in a
    container on a bridge network reaches this machine through the bridge's
    gateway); ``host`` stays the address the origin is known by.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        prefix: str = "",
        origin_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_probes: int | None = None,
        log: EventLog | None = None,
        store: RecordStore | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.id = origin_id or "origin-" + secrets.token_hex(6)
        if token is not None and not token:
            raise ValueError("an empty token would admit anyone: pass None for no token")
        self._token = token.encode() if token is not None else None
        self.prefix = normalise_prefix(prefix)
        self.ssl_context = ssl_context
        # Probes remembered at once (None: all); past it the oldest is forgotten. A
        # run's own origin keeps all; a deployed one serves probes for days. Backends
        # behind one proxy share one store (given), each its own sessions.
        self.store = store if store is not None else RecordStore(max_probes)
        self.sessions = Sessions(self.id)
        self._runner: web.AppRunner | None = None
        self.hosts: tuple[str, ...] = ()  # every address it listens on, ``host`` first
        self.listening: tuple[tuple[str, int], ...] = ()  # every (address, port), first first
        self._adding = asyncio.Lock()
        # The event log of /lb/events (origin/events.py): shared by the origins of
        # one group of backends, a private one otherwise.
        self.log = log if log is not None else EventLog()
        self.killed = False  # kill() made it look like a dead process; revive() undoes it
        self._fanout = Fanout()  # the broadcast routes' topics (fanout.py)

    # -- lifecycle ---------------------------------------------------------------
    def app(self) -> web.Application:
        from .security import routes as security_routes  # imports this module

        middlewares = [_client_gone] if self._token is None else [self._guard, _client_gone]
        app = web.Application(client_max_size=MAX_MESSAGE, middlewares=middlewares)
        app.on_response_prepare.append(self._identify)
        routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            READY_PATH: self._ready,
            RECORDS_PATH: self._records_route,
            "/sse": self._sse,
            BROWSER_PATH: self._browser,
            "/ws/echo": self._ws_echo,
            "/ws/push": self._ws_push,
            "/ws/ping": self._ws_ping,
            "/ws/close": self._ws_close,
            **events.routes(self),
            **frames.routes(self),
            HANDSHAKE_PATH: self._lb_handshake,
            POLL_PATH: self._lb_poll,
            "/fanout/sse": self._fanout.sse,
            "/fanout/ws": self._fanout.ws,
            **security_routes(self),  # /sec/*: origin/security.py (issue 15, security)
        }
        for path, handler in routes.items():
            app.router.add_get(self.prefix + path, handler)
        app.router.add_post(self.prefix + "/fanout/publish", self._fanout.publish)
        return app

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """401 unless the request carries the token (query or header), before any
        handler runs: an upgrade is refused before its 101, a 404 too."""
        if not self.admits(request):
            return web.Response(status=401, text=TOKEN_REQUIRED)
        return await handler(request)

    def admits(self, request: web.Request) -> bool:
        """Whether ``request`` carries this origin's token (always, without one)."""
        if self._token is None:
            return True
        ok = False
        for given in (request.query.get(TOKEN_PARAM), request.headers.get(TOKEN_HEADER)):
            if given is not None:
                # Both compared, each in constant time: no shortcut to time.
                ok |= hmac.compare_digest(given.encode(), self._token)
        return ok

    async def _identify(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[ORIGIN_HEADER] = self.id

    async def __aenter__(self) -> Origin:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        try:
            self.port = await self._site(self.host, self.port)
        except BaseException:
            await self.__aexit__()
            raise
        self.hosts = (self.host,)
        self.listening = ((self.host, self.port),)
        return self

    async def _site(self, host: str, port: int) -> int:
        """Start listening on ``host``:``port``; the port it got (``port`` 0: a free one)."""
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        return int(server.sockets[0].getsockname()[1])

    async def listen_also(self, host: str, port: int | None = None) -> int:
        """Listen on ``host`` too, on ``port`` (default: the same port; 0: a free one),
        once per address. Returns the port. Raises OSError if it cannot."""
        async with self._adding:
            if self._runner is None:
                raise RuntimeError("the origin is not running")
            wanted = self.port if port is None else port
            for known_host, known_port in self.listening:
                if known_host == host and (wanted == 0 or known_port == wanted):
                    return known_port
            got = await self._site(host, wanted)
            if host not in self.hosts:
                self.hosts = (*self.hosts, host)
            self.listening = (*self.listening, (host, got))
            return got

    async def kill(self) -> None:
        """Die as a process does, without dying: stop listening (new connections are
        refused) and reset every open connection (a TCP RST, no goodbye: no close
        frame, no chunked terminator). :meth:`revive` listens again on the same port."""
        if self._runner is None:
            raise RuntimeError("the origin is not running")
        self.killed = True
        for site in list(self._runner.sites):
            await site.stop()  # closes the listening socket only
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            transport = handler.transport
            if transport is None:
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # linger 0: close() sends a RST
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        self._notify()

    async def revive(self) -> None:
        """Listen again on every address and port it listened on before :meth:`kill`."""
        if self._runner is None:
            raise RuntimeError("the origin is not running")
        if not self.killed:
            return
        for host, port in self.listening:
            await self._site(host, port)
        self.killed = False

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.hosts = ()
        self.listening = ()

    @property
    def url(self) -> str:
        """Where it is reached on its first address, prefix included (no trailing /)."""
        return url_of(self.host, self.port, tls=self.ssl_context is not None) + self.prefix

    # -- records -----------------------------------------------------------------
    def records(self, probe: str) -> list[OriginRecord]:
        """Every request the origin received for ``probe``, in arrival order (with a
        shared store: every backend's)."""
        return self.store.records(probe)

    async def wait_for(self, probe: str, predicate: Any, timeout: float) -> list[OriginRecord]:
        """Wait until ``predicate(records)`` is true, or ``timeout``; return the records."""
        return await self.store.wait_for(probe, predicate, timeout)

    def local_time(self, origin_time: float) -> float:
        """In this process the origin's clock is the client's (``OriginView``)."""
        return origin_time

    def _notify(self) -> None:
        self.store.notify()

    def _record(self, request: web.Request) -> OriginRecord:
        probe = request.query.get("probe", "")
        path = request.path
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
        record = OriginRecord(
            probe=probe,
            path=path,
            query={k: v for k, v in request.query.items() if k != TOKEN_PARAM},
            headers=tuple(
                (k, v) for k, v in request.headers.items() if k.lower() != TOKEN_HEADER.lower()
            ),
            received_at=time.monotonic(),
            http_version=f"{request.version.major}.{request.version.minor}",
            upgrade_requested=request.headers.get("Upgrade", "").lower() == "websocket",
            last_event_id=request.headers.get("Last-Event-ID"),
            origin_id=self.id,
        )
        self.store.add(record)
        return record

    def _finish(self, record: OriginRecord, end: str) -> None:
        record.finished_at = time.monotonic()
        record.end = end
        self._notify()

    # -- HTTP routes ---------------------------------------------------------------
    async def _ready(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text=self.id, headers={CLOCK_HEADER: repr(time.monotonic())})

    async def _records_route(self, request: web.Request) -> web.Response:
        probe = request.query.get("probe", "")
        if not probe:
            raise web.HTTPBadRequest(text="query parameter probe is required")
        body = {
            "origin": self.id,
            "now": time.monotonic(),
            "records": [record.to_json() for record in self.records(probe)],
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})

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

    async def _lb_handshake(self, request: web.Request) -> web.Response:
        self._record(request)
        return self.sessions.handshake()

    async def _lb_poll(self, request: web.Request) -> web.Response:
        self._record(request)
        return self.sessions.poll(request.query.get("sid", ""))

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


def url_of(host: str, port: int, *, tls: bool = False) -> str:
    """``http://host:port`` (``[v6]`` bracketed), https with ``tls``."""
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def serve_forever(hosts: Sequence[str], port: int) -> None:
    """Serve on every address of ``hosts`` (the first decides a free port) until killed."""
    async with Origin(hosts[0], port) as origin:
        for host in hosts[1:]:
            await origin.listen_also(host)
        # One JSON line first: a parent process reads the id and port from it.
        print(json.dumps({"id": origin.id, "port": origin.port, "url": origin.url}), flush=True)
        await asyncio.Event().wait()
