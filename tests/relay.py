"""A controllable "faulty proxy": an HTTP/1.1 reverse proxy in asyncio that is
clean or injects exactly one fault, so each check of proxytest can be shown to
fail against its fault and to pass through the clean relay.

It is a real proxy at the TCP level (asyncio streams, no aiohttp): it parses the
request head, opens one upstream connection per client connection, parses the
response head and forwards Content-Length, chunked and close-delimited bodies; a
``101 Switching Protocols`` turns the connection into a two-way byte tunnel.
Simplifications, on purpose: one request per client connection (both sides get
``Connection: close``, later bytes from the client are ignored and its EOF ends
the exchange), the request body is forwarded whole before the response is read
(like nginx request buffering), ``Expect: 100-continue`` is not answered by the
relay itself, no ``Via``/``X-Forwarded-*`` headers are added.

Faults (``Fault.kind``), each with the real proxy behaviour it imitates:

- ``clean``: every chunk is written downstream as soon as it is read, TCP_NODELAY
  on both sockets, ``Upgrade`` and ``Connection: upgrade`` forwarded (a
  well-configured proxy).
- ``hold``: the whole response, head and body, waits until the upstream response
  ends; after a 101 the server→client bytes wait until the tunnel closes (a
  buffering proxy, ``proxy_buffering on``, an HTTP/1.0 upstream).
- ``strip_headers``: request headers named in ``headers`` are removed. Without
  ``Upgrade`` or ``Connection: upgrade`` the upstream sees a plain GET and its
  answer (e.g. 400) is forwarded (nginx without ``proxy_set_header Upgrade``;
  proxies that drop ``Last-Event-ID`` or ``Sec-WebSocket-Protocol``).
- ``delay``: each downstream body or tunnel chunk arrives ``delay_ms`` late, in
  order and still separate (a slow or overloaded hop).
- ``stall``: one downstream body or tunnel chunk of each response (the 5th) is
  held ``delay_ms``; the chunks behind it wait their turn, the rest pass at
  once (a hop that stalls now and then: the same few events late, every time).
  With ``stall_connections=N`` only the first N client connections stall (an
  intermittent stall: some attempts clean).
- ``coalesce``: downstream body or tunnel bytes are flushed every ``delay_ms``
  (HAProxy without ``http-no-delay``, Nagle-like batching).
- ``close_after_idle``: after ``idle_s`` without a byte in either direction both
  TCP connections are closed: no WebSocket close frame, chunked body left
  unterminated (``proxy_read_timeout``, ``timeout tunnel``, LB idle timeouts).
- ``cut_after_bytes``: both connections are aborted once ``after_bytes`` body or
  tunnel bytes went downstream, or upstream, whichever first (size limits).
- ``drop_ws_control``: after a 101, WebSocket frames are parsed both ways and
  ping/pong frames dropped, all else forwarded byte-exact (proxies that swallow
  or answer control frames themselves).
- ``drop_ws_close``: same parsing; a close frame is not forwarded, both TCP
  connections are aborted instead, so peers see 1006 (a proxy tearing tunnels
  down on its own terms, e.g. on reload).
- ``max_connections``: client connections beyond ``connections`` open at once
  are closed as soon as they are accepted (nginx out of ``worker_connections``,
  HAProxy at ``maxconn`` with no queue).
- ``crowd_delay``: once more than ``connections`` client connections are open,
  each downstream body or tunnel chunk arrives ``delay_ms`` late, in order (a
  proxy short of workers or buffers for the streams it holds: a broadcast slows
  as the subscribers grow).
- ``drop_messages``: every ``drop_every``-th downstream chunk of a chunked body
  (one SSE event, as the origin writes them) and every ``drop_every``-th
  downstream WebSocket data frame vanishes; the connections stay open (a hop that
  loses data under load).
- ``gzip``: a 200 without ``Content-Encoding`` to a request accepting gzip is
  compressed and sent chunked; ``flush=True`` syncs the compressor after each
  upstream chunk (events stay prompt), ``flush=False`` sends output only when
  zlib produces it or at the end (nginx ``gzip on`` for text/event-stream).

WebSocket frame depth (``ws.deflate``, ``ws.frames``):

- ``mangle_extensions``: ``Sec-WebSocket-Extensions`` is removed from the 101
  while the request's offer still reaches the origin, so the origin compresses
  and the client does not know (a proxy that passes only the response headers it
  knows).
- ``corrupt_fragment``: after a 101, client frames are parsed and the first
  payload byte of every continuation frame is flipped (a hop that re-frames
  fragmented messages and gets it wrong).
- ``launder_frames``: after a 101, invalid client frames are made valid before
  they go upstream: RSV bits cleared, a reserved opcode becomes binary, a
  control frame without FIN gets it, a text frame with bad UTF-8 becomes binary
  (a proxy that re-frames without validating: garbage reaches the origin as a
  valid message).

Security (issue 15; the clean relay is the safe path: it validates a WebSocket
handshake, ``400`` to one without ``Sec-WebSocket-Key``, with a version other
than 13 or over HTTP/1.0, forwards ``Upgrade`` only with ``Connection:
upgrade``, answers ``502`` to a 101 for a request that did not ask to upgrade,
and removes ``Proxy-Authorization`` with the other hop-by-hop headers):

- ``tunnel_any``: a request that asks to upgrade is forwarded unvalidated and the
  connection becomes a raw tunnel after ANY response, 101 or not, and after a
  101 to a request that did not ask (Varnish and Envoy before 1.8 as 0ang3el's
  websocket-smuggle shows: the request's Upgrade header decides, not the status).
- ``forward_hop_by_hop``: headers named in ``Connection``, ``Keep-Alive``,
  ``Proxy-Connection`` and ``Proxy-Authorization`` are forwarded to the origin.

Several backends (``Relay(..., more=[(host, port), ...], balance=...)``): each
request goes to one of the upstreams, chosen once its head is read:

- ``round_robin``: in turn, request by request (nginx, HAProxy, Envoy, Traefik
  with two servers and no stickiness; Caddy with ``lb_policy round_robin``).
- ``source``: by the client's address (nginx ``ip_hash``, HAProxy ``balance
  source``): every request of a client on loopback reaches the same backend.
- ``app_cookie``: by a hash of the application's session cookie
  ``proxytest_sid`` (nginx ``hash $cookie_proxytest_sid consistent``): a request
  without it, such as the long-polling handshake that sets it, lands on backend
  1, the polls that carry it on another (by the session id's hash; with two
  backends always backend 2), so the session is lost; WebSocket and SSE
  reconnects, which all carry the same cookie, stay together. (nginx balances
  an empty key round robin, so it loses the session in about half of the
  runs; the relay loses it every time, so a test of it is deterministic.)

A backend that refuses the connection is skipped for the next one, in order
(nginx's ``proxy_next_upstream error``: the clean path). Faults for a backend
that dies (``lb.failover``):

- ``no_retry``: no next backend: a request sent to a dead backend is answered
  502 (nginx ``proxy_next_upstream off``, Traefik without the retry middleware).
- ``hold_dead``: when a backend's connection resets or closes mid-response or
  mid-tunnel, the client's connection is held open without a byte until the
  client leaves (a proxy that never tells the client its upstream died).
- ``lose_resume``: ``Last-Event-ID`` and the query parameter ``after`` are
  removed from requests, so a reconnect starts at the newest event (a rewrite
  that drops what resumes a stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["BALANCE", "FAULT_KINDS", "Fault", "Relay"]

BALANCE = ("round_robin", "source", "app_cookie")

FAULT_KINDS = (
    "clean", "hold", "strip_headers", "delay", "stall", "coalesce", "close_after_idle",
    "cut_after_bytes", "drop_ws_control", "drop_ws_close", "gzip", "max_connections",
    "no_retry", "hold_dead", "lose_resume", "crowd_delay", "drop_messages",
    "mangle_extensions", "corrupt_fragment", "launder_frames",
    "tunnel_any", "forward_hop_by_hop",
)  # fmt: skip

STALLED_CHUNK = 5  # stall: which downstream chunk (1-based) is held
HEAD_TIMEOUT_S = 10.0  # a client must send its request head within this
CONNECT_TIMEOUT_S = 5.0  # upstream TCP connect
READ_TIMEOUT_S = 120.0  # no byte on a response head, body or tunnel for this long: give up
CLOSE_TIMEOUT_S = 2.0  # graceful close, then abort
MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024

Emit = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    """One fault for the relay to inject; parameters a kind does not use are ignored."""

    kind: str = "clean"
    delay_ms: int = 300  # delay, stall, coalesce
    idle_s: float = 1.0  # close_after_idle
    after_bytes: int = 64 * 1024  # cut_after_bytes
    headers: tuple[str, ...] = ()  # strip_headers
    flush: bool = True  # gzip: Z_SYNC_FLUSH after each upstream chunk
    connections: int = 100  # max_connections, crowd_delay: open client connections
    drop_every: int = 5  # drop_messages: every n-th SSE event or WebSocket data frame
    stall_connections: int = 0  # stall: only the first N client connections (0: all)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {FAULT_KINDS}")
        if self.drop_every < 2:
            raise ValueError(f"drop_every must be 2 or more, got {self.drop_every}")
        if self.delay_ms <= 0 or self.idle_s <= 0 or self.after_bytes <= 0:
            raise ValueError(
                f"delay_ms, idle_s and after_bytes must be positive, got {self.delay_ms}, "
                f"{self.idle_s}, {self.after_bytes}"
            )
        if isinstance(self.headers, str) or (self.kind == "strip_headers" and not self.headers):
            raise ValueError("strip_headers needs a tuple of names, e.g. headers=('Upgrade',)")


class _Abort(Exception):
    """Abort both TCP connections now (cut_after_bytes, drop_ws_close)."""


class _BadMessage(Exception):
    """A request or response head the relay cannot parse."""


@dataclass
class _Head:
    """A request or response head: start line plus headers in their original order and case."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        start, *lines = raw.decode("latin-1").split("\r\n")
        head = cls(start)
        for line in filter(None, lines):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadMessage(f"malformed header line {line!r}")
            head.headers.append((name, value.strip()))
        return head

    @property
    def status(self) -> int:
        try:
            return int(self.start.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise _BadMessage(f"malformed status line {self.start!r}") from None

    def get(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()}

    def remove(self, *names: str) -> None:
        drop = {n.lower() for n in names}
        self.headers = [(n, v) for n, v in self.headers if n.lower() not in drop]

    def encode(self) -> bytes:
        lines = [self.start, *(f"{n}: {v}" for n, v in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")


def _framing(head: _Head, method: str | None) -> tuple[str, int]:
    """How a body is delimited: ("none" | "length" | "chunked" | "close", length).

    ``method`` is None for a request, else the request method the response answers.
    """
    if method is not None and (
        method == "HEAD" or 100 <= head.status < 200 or head.status in (204, 304)
    ):
        return "none", 0
    if te := head.get("transfer-encoding"):
        if te.lower().rstrip().endswith("chunked"):
            return "chunked", 0
        if method is None:
            raise _BadMessage(f"request body framed by Transfer-Encoding {te!r}")
        return "close", 0
    if (length := head.get("content-length")) is not None:
        try:
            return "length", int(length.split(",")[0])
        except ValueError:
            raise _BadMessage(f"bad Content-Length {length!r}") from None
    return ("none", 0) if method is None else ("close", 0)


def _valid_handshake(req: _Head) -> bool:
    """A WebSocket upgrade a strict proxy forwards (RFC 6455 4.1); other upgrades pass."""
    if (req.get("upgrade") or "").lower() != "websocket":
        return True
    return (
        req.start.endswith("HTTP/1.1")
        and bool(req.get("sec-websocket-key"))
        and req.get("sec-websocket-version") == "13"
    )


class _WsFilter:
    """Incremental RFC 6455 frame splitter for one direction of a tunnel.

    Frames may span reads and one read may hold several frames. Frames whose
    opcode is in ``drop`` vanish; a close frame raises ``_Abort`` when
    ``abort_on_close``; every other byte comes out unchanged.
    """

    def __init__(self, drop: frozenset[int], abort_on_close: bool, drop_every: int = 0) -> None:
        self._drop, self._abort_on_close = drop, abort_on_close
        self._drop_every, self._data_frames = drop_every, 0  # drop_messages
        self._buf = bytearray()
        self._left = 0  # payload bytes of the current frame still to pass or drop
        self._keep = True

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return (bytes to forward, close frame seen)."""
        out = bytearray()
        self._buf += data
        while self._buf:
            if self._left:
                n = min(self._left, len(self._buf))
                if self._keep:
                    out += self._buf[:n]
                del self._buf[:n]
                self._left -= n
                continue
            header = self._header()
            if header is None:
                break  # wait for the rest of the frame header
            opcode, header_len, self._left = header
            if opcode == 0x8 and self._abort_on_close:
                return bytes(out), True
            self._keep = opcode not in self._drop
            if self._drop_every and opcode in (0x0, 0x1, 0x2):
                self._data_frames += 1
                self._keep = self._data_frames % self._drop_every != 0
            if self._keep:
                out += self._buf[:header_len]
            del self._buf[:header_len]
        return bytes(out), False

    def _header(self) -> tuple[int, int, int] | None:
        return _frame_header(self._buf)


def _frame_header(buf: bytearray) -> tuple[int, int, int] | None:
    """A WebSocket frame's (opcode, header length, payload length) at the start of
    ``buf``, or None until its whole header is there."""
    if len(buf) < 2:
        return None
    pos, length = 2, buf[1] & 0x7F
    if length >= 126:
        pos = 4 if length == 126 else 10
        if len(buf) < pos:
            return None
        length = int.from_bytes(buf[2:pos], "big")
    pos += 4 if buf[1] & 0x80 else 0  # masking key
    return (buf[0] & 0x0F, pos, length) if len(buf) >= pos else None


class _WsRewriter:
    """Client-to-upstream frames, whole, rewritten by ``corrupt_fragment`` or
    ``launder_frames`` (see the module docstring); every other byte unchanged."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        self._buf += data
        while (frame := self._frame()) is not None:
            out += self._rewrite(frame)
        return bytes(out)

    def _frame(self) -> bytearray | None:
        buf = self._buf
        header = _frame_header(buf)
        if header is None:
            return None
        _, pos, length = header
        if len(buf) < pos + length:
            return None
        frame = buf[: pos + length]
        del buf[: pos + length]
        return frame

    def _rewrite(self, frame: bytearray) -> bytearray:
        opcode, masked = frame[0] & 0x0F, bool(frame[1] & 0x80)
        pos = {126: 4, 127: 10}.get(frame[1] & 0x7F, 2) + (4 if masked else 0)
        if self._kind == "corrupt_fragment":
            if opcode == 0x0 and len(frame) > pos:
                frame[pos] ^= 0x01  # flips the unmasked byte as well
            return frame
        frame[0] &= 0x8F  # launder_frames: RSV bits cleared
        if opcode in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF):
            frame[0] = (frame[0] & 0xF0) | 0x2
        elif opcode >= 0x8:
            frame[0] |= 0x80
        elif opcode == 0x1 and frame[0] & 0x80:
            key = frame[pos - 4 : pos] if masked else b"\0\0\0\0"
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(frame[pos:]))
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                frame[0] = (frame[0] & 0xF0) | 0x2
        return frame


async def _first_of(*coros: Coroutine[Any, Any, None]) -> None:
    """Run coroutines until the first ends; cancel and await the rest; re-raise its error."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Downstream:
    """Server→client bytes, shaped by hold, delay or coalesce; written at once otherwise."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        fault: Fault,
        stall: bool = True,
        crowd: Callable[[], int] = lambda: 0,
    ) -> None:
        self._writer, self._kind, self._delay = writer, fault.kind, fault.delay_ms / 1000
        self._stall = stall
        self._crowded = lambda: crowd() > fault.connections  # crowd_delay
        self._held = bytearray()
        self._queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._chunks = 0
        if self._kind in ("delay", "stall", "crowd_delay"):
            self._task = asyncio.create_task(self._delayed())
        elif self._kind == "coalesce":
            self._task = asyncio.create_task(self._batched())

    async def head(self, data: bytes) -> None:
        """A response head: only hold keeps it back."""
        if self._kind == "hold":
            self._held += data
        else:
            await self._write(data)

    async def send(self, data: bytes) -> None:
        """Body or tunnel bytes."""
        if self._kind in ("hold", "coalesce"):
            self._held += data
        elif self._kind in ("delay", "stall", "crowd_delay"):
            self._chunks += 1
            late = (
                self._kind == "delay"
                or (self._kind == "crowd_delay" and self._crowded())
                or (self._kind == "stall" and self._stall and self._chunks == STALLED_CHUNK)
            )
            due = asyncio.get_running_loop().time() + (self._delay if late else 0.0)
            self._queue.put_nowait((due, data))
        else:
            await self._write(data)

    async def finish(self) -> None:
        """Deliver everything still held or queued (the upstream side ended)."""
        if self._task is not None and self._kind in ("delay", "stall", "crowd_delay"):
            self._queue.put_nowait(None)
            await self._task  # drains the queue, each chunk at its due time
        await self.aclose()
        if self._held:
            data = bytes(self._held)
            self._held.clear()
            await self._write(data)

    async def aclose(self) -> None:
        """Stop the writer task without delivering anything more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def _delayed(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._queue.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._write(data)

    async def _batched(self) -> None:
        while True:
            await asyncio.sleep(self._delay)
            if self._held:
                data = bytes(self._held)
                self._held.clear()
                await self._write(data)


class _Connection:
    """One client connection: one request, one upstream connection, one response."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[str, int],
        fault: Fault,
        number: int = 1,
        pick: Callable[[_Head], tuple[str, int]] | None = None,
        upstreams: Sequence[tuple[str, int]] = (),
        crowd: Callable[[], int] = lambda: 0,
    ) -> None:
        self.creader, self.cwriter, self.upstream, self.fault = reader, writer, upstream, fault
        self.pick = pick  # several backends: the upstream of this request
        # Several backends: every one, in the relay's order (the next on a refused connect).
        self.upstreams = tuple(upstreams) or (upstream,)
        self.number = number  # of this client connection, from 1
        self.crowd = crowd  # client connections open at the relay now
        self.ureader: asyncio.StreamReader | None = None
        self.uwriter: asyncio.StreamWriter | None = None
        self.last_io = asyncio.get_running_loop().time()
        self.sent = {"up": 0, "down": 0}  # body and tunnel bytes, for cut_after_bytes

    async def run(self) -> None:
        abort = False
        limit = self.fault.stall_connections
        self.sink = _Downstream(
            self.cwriter, self.fault, not limit or self.number <= limit, self.crowd
        )
        try:
            _nodelay(self.cwriter)
            if self.fault.kind == "close_after_idle":
                await _first_of(self._exchange(), self._idle_watchdog())
            else:
                await self._exchange()
        except _Abort:
            abort = True
        except (OSError, EOFError, TimeoutError, asyncio.LimitOverrunError, _BadMessage):
            # A peer went away, stalled or spoke garbage: close both sides (hold_dead:
            # keep the client waiting when it was the backend that went away).
            if self.fault.kind == "hold_dead" and self.uwriter is not None:
                await self._hold_client()
        finally:
            await self.sink.aclose()
            await self._close(abort)

    async def _exchange(self) -> None:
        raw = await self._read_head(self.creader, HEAD_TIMEOUT_S)
        if raw is None:
            return
        try:
            req = _Head.parse(raw)
            method = req.start.split(" ", 1)[0]
            body = _framing(req, None)
        except _BadMessage:
            return await self._reply(400, "Bad Request")
        wants_gzip = "gzip" in (req.get("accept-encoding") or "").lower()
        if self.pick is not None:
            self.upstream = self.pick(req)
        upgrade = self._rewrite_request(req)
        if upgrade and self.fault.kind != "tunnel_any" and not _valid_handshake(req):
            return await self._reply(400, "Bad Request")
        turn = self.upstreams.index(self.upstream) if self.upstream in self.upstreams else 0
        tries = (*self.upstreams[turn:], *self.upstreams[:turn])
        if self.fault.kind == "no_retry":
            tries = tries[:1]
        for upstream in tries:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self.ureader, self.uwriter = await asyncio.open_connection(
                        *upstream, limit=MAX_HEAD_BYTES
                    )
                break
            except (OSError, TimeoutError):
                continue  # the next backend, if any
        if self.uwriter is None:
            return await self._reply(502, "Bad Gateway")
        _nodelay(self.uwriter)
        self.uwriter.write(req.encode())
        await self.uwriter.drain()
        await self._copy_body(self.creader, *body, self._to_upstream, decode=False)
        while True:  # forward interim responses such as 100 Continue, then the real one
            raw = await self._read_head(self.ureader, READ_TIMEOUT_S)
            if raw is None:
                return await self._reply(502, "Bad Gateway")
            resp = _Head.parse(raw)
            if resp.status == 101 or not 100 <= resp.status < 200:
                break
            await self.sink.head(resp.encode())
        if resp.status == 101 and not upgrade and self.fault.kind != "tunnel_any":
            return await self._reply(502, "Bad Gateway")  # a switch nobody asked for
        if resp.status == 101 or (upgrade and self.fault.kind == "tunnel_any"):
            if resp.status == 101 and self.fault.kind == "mangle_extensions":
                resp.remove("Sec-WebSocket-Extensions")
            await self.sink.head(resp.encode())
            return await self._tunnel()
        await _first_of(self._response(resp, method, wants_gzip), self._watch_client())

    async def _hold_client(self) -> None:
        """hold_dead: say nothing to the client until it leaves (bounded)."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(READ_TIMEOUT_S):
                await self._watch_client()

    def _rewrite_request(self, req: _Head) -> bool:
        """Apply strip_headers, then the hop-by-hop rules of a well-configured proxy;
        whether the request asks to upgrade."""
        if self.fault.kind == "strip_headers":
            req.remove(*self.fault.headers)
        if self.fault.kind == "lose_resume":
            req.remove("Last-Event-ID")
            req.start = re.sub(r"([?&])after=[^& ]*&?", r"\1", req.start)
        upgrade = req.get("upgrade") is not None and "upgrade" in req.tokens("connection")
        if self.fault.kind == "tunnel_any":
            upgrade = req.get("upgrade") is not None
        if self.fault.kind != "forward_hop_by_hop":
            req.remove(*(req.tokens("connection") - {"upgrade", "close"}))
            req.remove("keep-alive", "proxy-connection", "proxy-authorization")
        req.remove("connection")
        if not upgrade:
            req.remove("upgrade")
        req.headers.append(("Connection", "upgrade" if upgrade else "close"))
        return upgrade

    async def _response(self, resp: _Head, method: str, wants_gzip: bool) -> None:
        assert self.ureader is not None
        body, length = _framing(resp, method)
        gzip = (
            self.fault.kind == "gzip" and wants_gzip and resp.status == 200
            and body != "none" and resp.get("content-encoding") is None
        )  # fmt: skip
        resp.remove(*(resp.tokens("connection") - {"close"}))
        resp.remove("connection", "keep-alive")
        emit: Emit = self._to_client
        if gzip:
            resp.remove("content-length", "transfer-encoding")
            resp.headers += [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip wrapper

            async def emit(data: bytes) -> None:
                out = compressor.compress(data)
                if self.fault.flush:
                    out += compressor.flush(zlib.Z_SYNC_FLUSH)
                if out:
                    await self._to_client(b"%x\r\n%s\r\n" % (len(out), out))

        resp.headers.append(("Connection", "close"))
        await self.sink.head(resp.encode())
        await self._copy_body(self.ureader, body, length, emit, decode=gzip)
        if gzip:
            out = compressor.flush()
            await self._to_client(b"%x\r\n%s\r\n0\r\n\r\n" % (len(out), out))
        await self.sink.finish()

    async def _tunnel(self) -> None:
        kind = self.fault.kind
        drop = frozenset({0x9, 0xA} if kind == "drop_ws_control" else ())
        inspect = kind in ("drop_ws_control", "drop_ws_close")

        async def pump(reader: asyncio.StreamReader, emit: Emit, drop_every: int = 0) -> None:
            ws = (
                _WsFilter(drop, abort_on_close=kind == "drop_ws_close", drop_every=drop_every)
                if inspect or drop_every
                else None
            )
            while data := await self._read(reader, READ_SIZE):
                close_seen = False
                if ws is not None:
                    data, close_seen = ws.feed(data)
                if data:
                    await emit(data)
                if close_seen:
                    raise _Abort

        async def downstream() -> None:
            assert self.ureader is not None
            every = self.fault.drop_every if kind == "drop_messages" else 0
            await pump(self.ureader, self._to_client, every)
            if kind == "hold_dead":
                raise EOFError("the backend closed the tunnel")
            await self.sink.finish()

        async def upstream() -> None:
            if kind not in ("corrupt_fragment", "launder_frames"):
                return await pump(self.creader, self._to_upstream)
            frames = _WsRewriter(kind)
            while data := await self._read(self.creader, READ_SIZE):
                if data := frames.feed(data):
                    await self._to_upstream(data)

        await _first_of(upstream(), downstream())

    async def _copy_body(
        self, reader: asyncio.StreamReader, framing: str, length: int, emit: Emit, decode: bool
    ) -> None:
        """Forward one body; chunked bodies stay chunked unless ``decode``."""
        if framing == "length":
            while length:
                data = await self._read(reader, min(length, READ_SIZE))
                if not data:
                    raise EOFError("body shorter than its Content-Length")
                length -= len(data)
                await emit(data)
        elif framing == "close":
            while data := await self._read(reader, READ_SIZE):
                await emit(data)
        elif framing == "chunked":
            chunks = 0
            while True:
                line = await self._readline(reader)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadMessage(f"bad chunk size line {line!r}") from None
                if size == 0:
                    while (trailer := await self._readline(reader)).strip():
                        line += trailer
                    if not decode:
                        await emit(line + trailer)
                    return
                chunks += 1
                if self.fault.kind == "drop_messages" and emit == self._to_client and not decode:
                    data = await self._read_exactly(reader, size)
                    crlf = await self._readline(reader)
                    if chunks % self.fault.drop_every:
                        await emit(line + data + crlf)
                    continue
                pending = b"" if decode else line
                while size:
                    data = await self._read(reader, min(size, READ_SIZE))
                    if not data:
                        raise EOFError("chunked body ended inside a chunk")
                    size -= len(data)
                    if not size:
                        crlf = await self._readline(reader)
                        data += b"" if decode else crlf
                    await emit(pending + data)
                    pending = b""

    async def _to_upstream(self, data: bytes) -> None:
        assert self.uwriter is not None
        data, cut = self._meter("up", data)
        self.uwriter.write(data)
        await self.uwriter.drain()
        if cut:
            raise _Abort

    async def _to_client(self, data: bytes) -> None:
        data, cut = self._meter("down", data)
        await self.sink.send(data)
        if cut:
            raise _Abort

    def _meter(self, direction: str, data: bytes) -> tuple[bytes, bool]:
        """Under cut_after_bytes: the part of ``data`` within budget, and whether to cut now."""
        if self.fault.kind != "cut_after_bytes":
            return data, False
        left = self.fault.after_bytes - self.sent[direction]
        self.sent[direction] += min(len(data), left)
        return data[:left], len(data) >= left

    async def _read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        async with asyncio.timeout(READ_TIMEOUT_S):
            data = await reader.read(n)
        self.last_io = asyncio.get_running_loop().time()
        return data

    async def _read_exactly(self, reader: asyncio.StreamReader, n: int) -> bytes:
        async with asyncio.timeout(READ_TIMEOUT_S):
            data = await reader.readexactly(n)
        self.last_io = asyncio.get_running_loop().time()
        return data

    async def _readline(self, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(READ_TIMEOUT_S):
            line = await reader.readuntil(b"\n")
        self.last_io = asyncio.get_running_loop().time()
        return line

    async def _read_head(self, reader: asyncio.StreamReader, timeout: float) -> bytes | None:
        """The head up to the blank line; None if the peer closed before sending a byte."""
        try:
            async with asyncio.timeout(timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        self.last_io = asyncio.get_running_loop().time()
        return raw

    async def _watch_client(self) -> None:
        """Return when the client hangs up; anything it sends after the request is ignored."""
        with contextlib.suppress(OSError):
            while await self.creader.read(READ_SIZE):
                self.last_io = asyncio.get_running_loop().time()

    async def _idle_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while (idle := loop.time() - self.last_io) < self.fault.idle_s:
            await asyncio.sleep(self.fault.idle_s - idle)

    async def _reply(self, status: int, reason: str) -> None:
        self.cwriter.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await self.cwriter.drain()

    async def _close(self, abort: bool) -> None:
        writers = [w for w in (self.cwriter, self.uwriter) if w is not None]
        for writer in writers:
            if abort:
                writer.transport.abort()
            else:
                writer.close()
        for writer in writers:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()  # the peer does not read: give up on the tail
            except Exception:
                pass  # closing a connection that already failed


class Relay:
    """The faulty proxy, as an async context manager bound to an ephemeral port.

    ``host`` and ``port`` are valid after ``__aenter__``. ``errors`` collects
    exceptions the relay did not expect (its own bugs); tests assert it is empty.
    ``__aexit__`` stops listening and closes every open connection.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        fault: Fault = Fault(),  # frozen, so a shared default is safe
        host: str = "127.0.0.1",
        *,
        more: Sequence[tuple[str, int]] = (),
        balance: str = "round_robin",
    ) -> None:
        if balance not in BALANCE:
            raise ValueError(f"unknown balance {balance!r}; choose one of {BALANCE}")
        self.upstream = (upstream_host, upstream_port)
        self.upstreams = (self.upstream, *more)  # several backends, backend 1 first
        self.balance = balance
        self.picked: list[int] = []  # the backend index of each request, in order
        self.fault = fault
        self.host = host
        self.port = 0
        self.accepted = 0  # client connections accepted so far
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, self.host, 0, limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault.kind == "max_connections" and len(self._tasks) >= self.fault.connections:
            # Over the limit: close at once, as a proxy out of worker connections does.
            writer.transport.abort()
            return
        self.accepted += 1
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, self.accepted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pick(self, head: _Head) -> tuple[str, int]:
        """The upstream of one request (several backends), by ``balance``."""
        n = len(self.upstreams)
        if self.balance == "round_robin":
            index = len(self.picked) % n
        elif self.balance == "source":
            index = 0  # every client here is 127.0.0.1: one hash, one backend
        else:
            cookies = dict(
                part.strip().partition("=")[::2]
                for part in (head.get("cookie") or "").split(";")
                if "=" in part
            )
            key = cookies.get("proxytest_sid", "")
            # No cookie: backend 1; a cookie: one of the others by its hash.
            index = 1 + zlib.crc32(key.encode()) % (n - 1) if key else 0
        self.picked.append(index)
        return self.upstreams[index]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        pick = self._pick if len(self.upstreams) > 1 else None
        try:
            await _Connection(
                reader,
                writer,
                self.upstream,
                self.fault,
                number,
                pick,
                self.upstreams,
                crowd=lambda: len(self._tasks),
            ).run()
        except Exception as exc:
            self.errors.append(exc)
