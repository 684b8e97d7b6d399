"""Routes that answer upgrades the wrong way, for the security checks (issue 15).

Each route records its request (``probe=<token>``, as every route does) and,
after its answer, keeps reading the same connection raw for a bounded time:

``/sec/answer?status=426|200|403|101bad``
    Answers an upgrade request with that status (``101bad``: a 101 whose
    ``Sec-WebSocket-Accept`` is wrong), ``Connection: close`` on a non-101.
``/sec/naive``
    A backend that validates nothing: 101 (with the accept of the key, if any)
    to any request carrying ``Upgrade: websocket``; 200 otherwise.
``/sec/unrequested``
    101 to any request, upgrade asked for or not, then the bytes ``RAW_HELLO``
    as if another protocol had started.
``/sec/marker``
    An ordinary 200 ``marker parsed``: the second request a smuggling probe
    sends reaches it when the proxy parsed that request as a request.
``/sec/headers``
    200 with the request's headers as JSON (http.hop-by-hop reads the record).

How the origin tells a tunnel from a parsed request: after a non-101 answer
with ``Connection: close``, a proxy that keeps HTTP framing never writes on
that upstream connection again (it may not reuse it), so any byte that arrives
there after the answer came through a raw tunnel. The origin files those bytes
as a record of path ``RAW_PATH`` (``query``: ``bytes``, ``first_line``,
``after`` the status it answered) under the same probe token, and, when they
hold a request for ``/sec/marker``, answers it with ``SMUGGLED_HEADER`` (the
client then holds a response that only a tunnel could give). A parsed second
request arrives as its own ``/sec/marker`` record instead. Bounded: at most
``MAX_RAW`` bytes and ``hold_ms`` (default ``HOLD_MS``, after a 101
``SWITCH_HOLD_MS``; at most ``MAX_HOLD_MS``) per connection, then closed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ..routes import HEADERS_PATH
from .server import ORIGIN_HEADER, OriginRecord

if TYPE_CHECKING:
    from .server import Origin

__all__ = [
    "ANSWER_PATH",
    "HEADERS_PATH",
    "MARKER_PATH",
    "NAIVE_PATH",
    "RAW_HELLO",
    "RAW_PATH",
    "SMUGGLED_HEADER",
    "UNREQUESTED_PATH",
    "accept_of",
    "routes",
]

ANSWER_PATH = "/sec/answer"
NAIVE_PATH = "/sec/naive"
UNREQUESTED_PATH = "/sec/unrequested"
MARKER_PATH = "/sec/marker"
RAW_PATH = "/sec/raw"  # not a route: the path of a record of raw bytes on a connection
SMUGGLED_HEADER = "X-Proxytest-Smuggled"
RAW_HELLO = b"proxytest-raw-after-101\r\n"
# Longer than a probe listens after its second request (probes/security.py: 1.5 s for
# an answer, then up to 1 s for records), so a tunnel that delivers late is still seen.
HOLD_MS = 2500
# After a 101 the hold is shorter: a proxy that takes the 101 for an ordinary response
# delimited by the close (nginx, for a request that did not ask to upgrade) answers
# the client only when the origin closes, which must come before the probe gives up
# (2 s); a tunnel after a 101 delivers the next request at once.
SWITCH_HOLD_MS = 1000
MAX_HOLD_MS = 5000
MAX_RAW = 16 * 1024
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STATUSES = ("426", "200", "403", "101bad")


def accept_of(key: str) -> str:
    """The Sec-WebSocket-Accept of ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


class _RawRecorder:
    """Takes the place of aiohttp's parser on one connection: every byte after the
    answer lands here (aiohttp's ``set_parser`` protocol: ``feed_data``, ``feed_eof``)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = asyncio.Event()
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        room = MAX_RAW - len(self.data)
        if room > 0:
            self.data += data[:room]
        self.changed.set()
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True
        self.changed.set()


def _hold(request: web.Request, default: int) -> float:
    try:
        ms = int(request.query.get("hold_ms", default))
    except ValueError:
        ms = default
    return max(0, min(ms, MAX_HOLD_MS)) / 1000


def _head(status: int, reason: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class _Routes:
    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    def _identity(self) -> list[tuple[str, str]]:
        return [(ORIGIN_HEADER, self.origin.id)]

    async def _raw_answer(
        self, request: web.Request, answer: bytes, after: str, hold_ms: int
    ) -> None:
        """Write ``answer`` raw, then record what arrives on this connection until EOF,
        ``hold_ms`` or ``MAX_RAW``; answer a smuggled marker request; close."""
        record = self.origin._record(request)
        transport = request.transport
        recorder = _RawRecorder()
        if transport is None:
            self.origin._finish(record, "client-gone")
            return
        # Before the answer is written: no byte after it can reach aiohttp's parser.
        cast(Any, request.protocol).set_parser(recorder)
        transport.write(answer)
        deadline = time.monotonic() + _hold(request, hold_ms)
        answered = False
        while not recorder.eof and len(recorder.data) < MAX_RAW:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or transport.is_closing():
                break
            recorder.changed.clear()
            try:
                await asyncio.wait_for(recorder.changed.wait(), remaining)
            except TimeoutError:
                break
            if (
                not answered
                and MARKER_PATH.encode() in recorder.data
                and b"\r\n\r\n" in recorder.data
            ):
                answered = True
                self._file_raw(record, recorder.data, after)
                body = b"smuggled"
                headers = [
                    (SMUGGLED_HEADER, "1"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                    *self._identity(),
                ]
                transport.write(_head(200, "OK", headers, body))
        if recorder.data and not answered:
            self._file_raw(record, recorder.data, after)
        self.origin._finish(record, "complete")
        transport.close()

    def _file_raw(self, record: OriginRecord, data: bytes | bytearray, after: str) -> None:
        text = bytes(data).decode("latin-1")
        self.origin.store.add(
            OriginRecord(
                probe=record.probe,
                path=RAW_PATH,
                query={
                    "bytes": str(len(data)),
                    "first_line": text.split("\r\n", 1)[0][:200],
                    "marker": "1" if MARKER_PATH in text else "0",
                    "after": after,
                    "conn_of": record.path,
                },
                headers=(),
                received_at=time.monotonic(),
                http_version=record.http_version,
                origin_id=self.origin.id,
            )
        )

    async def answer(self, request: web.Request) -> web.StreamResponse:
        status = request.query.get("status", "426")
        if status not in STATUSES:
            raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}")
        if status == "101bad":
            head = _head(
                101,
                "Switching Protocols",
                [
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", "bm90IHRoZSBhY2NlcHQgb2YgdGhlIGtleQ=="),
                    *self._identity(),
                ],
            )
            return await self._closing(request, head, status)
        code = int(status)
        reason = {426: "Upgrade Required", 200: "OK", 403: "Forbidden"}[code]
        body = f"proxytest: answered {code} to an upgrade\n".encode()
        extra = [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")] if code == 426 else []
        head = _head(
            code,
            reason,
            [
                *extra,
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body))),
                ("Connection", "close" if code != 426 else "Upgrade, close"),
                *self._identity(),
            ],
            body,
        )
        return await self._closing(request, head, status, HOLD_MS)

    async def naive(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.origin._record(request)
            return web.Response(text="no upgrade asked\n")
        key = request.headers.get("Sec-WebSocket-Key")
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), *self._identity()]
        if key:
            headers.insert(2, ("Sec-WebSocket-Accept", accept_of(key)))
        return await self._closing(request, _head(101, "Switching Protocols", headers), "101")

    async def unrequested(self, request: web.Request) -> web.StreamResponse:
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), *self._identity()]
        head = _head(101, "Switching Protocols", headers) + RAW_HELLO
        return await self._closing(request, head, "101")

    async def marker(self, request: web.Request) -> web.Response:
        self.origin._record(request)
        return web.Response(text="marker parsed\n")

    async def headers(self, request: web.Request) -> web.Response:
        self.origin._record(request)
        seen = [[k, v] for k, v in request.headers.items()]
        return web.json_response(
            {"headers": seen, "version": f"{request.version.major}.{request.version.minor}"}
        )

    async def _closing(
        self, request: web.Request, answer: bytes, after: str, hold_ms: int = SWITCH_HOLD_MS
    ) -> web.StreamResponse:
        """``_raw_answer``, then the response aiohttp is given back: one already
        prepared is never written again (the connection is closed)."""
        await self._raw_answer(request, answer, after, hold_ms)
        return _Written()


class _Written(web.StreamResponse):
    """A response whose bytes this module already wrote raw: aiohttp sees it
    prepared and writes nothing (the connection is closed under it)."""

    def __init__(self) -> None:
        super().__init__(status=200)

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def routes(origin: Origin) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """The security routes, by path, for ``Origin.app``."""
    r = _Routes(origin)
    return {
        ANSWER_PATH: r.answer,
        NAIVE_PATH: r.naive,
        UNREQUESTED_PATH: r.unrequested,
        MARKER_PATH: r.marker,
        HEADERS_PATH: r.headers,
    }
