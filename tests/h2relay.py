"""A controllable "faulty HTTP/2 proxy": an HTTP/2 front end in asyncio (the ``h2``
library, server side) that forwards each stream to the origin over HTTP/1.1, is
clean or injects exactly one fault, so each ``@h2`` check and ``h2.streams`` can
be shown to fail against its fault and to pass through the clean relay.

It listens on 127.0.0.1, over TLS (the run's certificate from ``tls.authority()``,
ALPN ``h2, http/1.1`` by default; ``alpn=("http/1.1",)`` makes a listener without
h2, whose connections it closes after the handshake) or over cleartext h2c with
prior knowledge. Each stream gets its own upstream connection (``h11``, one
request, ``Connection: close``): plain requests are forwarded with their
bodies and the response is streamed back DATA frame by DATA frame as the origin
writes it; an RFC 8441 extended CONNECT (``:protocol websocket``) becomes an
HTTP/1.1 upgrade to the origin, and after its 101 the relay answers 200 and
carries bytes both ways between the stream's DATA frames and the upgraded TCP
connection (HAProxy's and Envoy's h2-to-h1 WebSocket translation). Flow control
is honoured both ways; hop-by-hop headers are dropped; no ``Via`` is added.

Every fault advertises ``SETTINGS_MAX_CONCURRENT_STREAMS = max_streams`` (128,
nginx's default) and, like a conforming server, resets a stream beyond it with
REFUSED_STREAM. Faults (``H2Fault.kind``), each with the real behaviour it imitates:

- ``clean``: advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, every response and
  tunnel byte is forwarded at once (HAProxy >= 2.4 on an ``alpn h2`` bind,
  Envoy with ``allow_connect`` and a websocket ``upgrade_configs``).
- ``no_connect``: extended CONNECT is not advertised (nginx 1.31, Go proxies
  without ``GODEBUG=http2xconnect=1``, HAProxy with
  ``h2-workaround-bogus-websocket-clients``); a CONNECT sent anyway gets 501.
- ``connect_reset``: advertised, but the WebSocket does not work: with
  ``reset_after_200`` (the default) the CONNECT is answered 200 and the stream
  reset at the client's first DATA frame (Traefik 3.2.4/3.3.0, traefik#11405);
  without it the CONNECT stream is reset at once (Envoy with ``allow_connect``
  but no websocket ``upgrade_configs``).
- ``hold_headers``: a response's HEADERS frame waits for the origin's first
  body bytes and goes out with them (caddy#4247, modelcontextprotocol/go-sdk#937):
  an SSE stream whose first event is late shows no headers until then.
- ``cap_streams``: advertises ``max_streams`` but serves only ``serve_streams``
  streams at once; the streams beyond them get no answer at all (``stall``,
  the default: a proxy whose upstream pool is exhausted queues them) or
  REFUSED_STREAM (``stall=False``), although they are within the advertised limit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from proxytest.tls import authority

__all__ = ["FAULT_KINDS", "H2Fault", "H2Relay"]

FAULT_KINDS = ("clean", "no_connect", "connect_reset", "hold_headers", "cap_streams")

CONNECT_TIMEOUT_S = 5.0  # upstream TCP connect
READ_TIMEOUT_S = 120.0  # no byte from the origin for this long: give up on the stream
CLOSE_TIMEOUT_S = 1.0
READ_SIZE = 64 * 1024
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "host"}
)


@dataclass(frozen=True)
class H2Fault:
    """One fault for the relay to inject; parameters a kind does not use are ignored."""

    kind: str = "clean"
    max_streams: int = 128  # advertised MAX_CONCURRENT_STREAMS (every kind)
    serve_streams: int = 10  # cap_streams: streams served at once
    stall: bool = True  # cap_streams: the rest get no answer (else REFUSED_STREAM)
    reset_after_200: bool = True  # connect_reset: 200, then RST at the first DATA

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {FAULT_KINDS}")
        if self.max_streams < 1 or self.serve_streams < 0:
            raise ValueError("max_streams must be positive and serve_streams not negative")


class _StreamGone(Exception):
    """The client reset the stream or the connection ended."""


class _Server(h2.connection.H2Connection):
    """h2's server side, with the relay (not h2) deciding which streams to refuse."""

    @property
    def open_inbound_streams(self) -> int:
        return 0


@dataclass(eq=False)
class _Stream:
    stream_id: int
    headers: dict[str, str]
    ordered: list[tuple[str, str]]
    inbound: asyncio.Queue[tuple[bytes, int] | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class _Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        relay: H2Relay,
    ) -> None:
        self.reader, self.writer, self.relay = reader, writer, relay
        self.fault = relay.fault
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = _Server(config=config)
        values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.fault.max_streams}
        if self.fault.kind != "no_connect":
            values[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=values)
        self.streams: dict[int, _Stream] = {}
        self.open: set[int] = set()  # admitted streams still open, stalled ones included
        self.window = asyncio.Event()

    # -- the connection --------------------------------------------------------------
    async def run(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            return  # a listener without h2: the client must not get this far
        self.h2.initiate_connection()
        self.flush()
        try:
            while data := await self.reader.read(READ_SIZE):
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self.flush()
                    return
                for event in events:
                    self.dispatch(event)
                self.flush()
                if self.h2.state_machine.state == h2.connection.ConnectionState.CLOSED:
                    return
        except OSError:
            return
        finally:
            self.window.set()
            for stream in self.streams.values():
                stream.inbound.put_nowait(None)
                if stream.task is not None:
                    stream.task.cancel()
            tasks = [s.task for s in self.streams.values() if s.task is not None]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            self.admit(event.stream_id, [(str(k), str(v)) for k, v in event.headers or ()])
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            stream = self.streams.get(event.stream_id)
            length = event.flow_controlled_length or 0
            if stream is None or stream.task is None:
                self.ack(event.stream_id, length)
            else:
                stream.inbound.put_nowait((event.data or b"", length))
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.inbound.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self.open.discard(event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.task is not None:
                stream.task.cancel()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()

    def admit(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        fault = self.fault
        if len(self.open) >= fault.max_streams:
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(stream_id, dict(headers), headers)
        self.streams[stream_id] = stream
        self.open.add(stream_id)
        if fault.kind == "cap_streams" and len(self.open) > fault.serve_streams:
            if not fault.stall:
                self.open.discard(stream_id)
                self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return  # stalled: open, never answered
        stream.task = asyncio.create_task(self.serve(stream))

    def reset(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, code)
            self.flush()

    def ack(self, stream_id: int, length: int) -> None:
        if length:
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                self.h2.acknowledge_received_data(length, stream_id)
                self.flush()

    async def respond(self, stream_id: int, status: int, headers: list[tuple[str, str]]) -> None:
        try:
            self.h2.send_headers(stream_id, [(":status", str(status)), *headers])
        except h2.exceptions.ProtocolError as exc:
            raise _StreamGone from exc
        self.flush()

    async def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        view = memoryview(data)
        while True:
            try:
                window = min(
                    self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
                )
                if window <= 0 and view:
                    self.window.clear()
                    if self.writer.is_closing():
                        raise _StreamGone
                    await self.window.wait()
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(stream_id, bytes(chunk), end_stream=end and not view)
            except h2.exceptions.ProtocolError as exc:
                raise _StreamGone from exc
            self.flush()
            await self.writer.drain()
            if not view:
                return

    # -- one stream ------------------------------------------------------------------
    async def serve(self, stream: _Stream) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            host, port = self.relay.upstream
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
            if stream.headers.get(":method") == "CONNECT":
                await self.tunnel(stream, reader, writer)
            else:
                await self.forward(stream, reader, writer)
        except (_StreamGone, asyncio.CancelledError):
            pass
        except (OSError, TimeoutError, h11.ProtocolError):
            self.reset(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            self.open.discard(stream.stream_id)
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await writer.wait_closed()

    def upstream_request(self, stream: _Stream, extra: list[tuple[str, str]]) -> h11.Request:
        method = stream.headers[":method"]
        headers = [("Host", stream.headers.get(":authority", "localhost"))]
        headers += [(k, v) for k, v in stream.ordered if k[0] != ":" and k not in HOP_BY_HOP]
        return h11.Request(
            method="GET" if method == "CONNECT" else method,
            target=stream.headers.get(":path", "/"),
            headers=headers + extra,
        )

    async def body(self, stream: _Stream) -> bytes:
        """The whole request body (the relay buffers it, like nginx's request buffering)."""
        parts = []
        while (item := await stream.inbound.get()) is not None:
            parts.append(item[0])
            self.ack(stream.stream_id, item[1])
        return b"".join(parts)

    async def forward(
        self, stream: _Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up = h11.Connection(h11.CLIENT)
        body = await self.body(stream)
        extra = [("Connection", "close"), ("Content-Length", str(len(body)))] if body else []
        request = self.upstream_request(stream, extra or [("Connection", "close")])
        writer.write(up.send(request) or b"")
        if body:
            writer.write(up.send(h11.Data(data=body)) or b"")
        writer.write(up.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        head: tuple[int, list[tuple[str, str]]] | None = None
        while True:
            event = up.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    up.receive_data(await reader.read(READ_SIZE))
                continue
            if isinstance(event, h11.Response):
                head = (event.status_code, _down_headers(event.headers))
                if self.fault.kind != "hold_headers":
                    await self.respond(stream.stream_id, *head)
                    head = None
            elif isinstance(event, h11.Data):
                if head is not None:  # hold_headers: they go out with the first bytes
                    await self.respond(stream.stream_id, *head)
                    head = None
                await self.send(stream.stream_id, bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if head is not None:
                    await self.respond(stream.stream_id, *head)
                if isinstance(event, h11.ConnectionClosed):
                    self.reset(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                else:
                    await self.send(stream.stream_id, b"", end=True)
                return

    async def rest_of_body(
        self, stream_id: int, up: h11.Connection, reader: asyncio.StreamReader
    ) -> None:
        while True:
            event = up.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    up.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Data):
                await self.send(stream_id, bytes(event.data))
            else:
                await self.send(stream_id, b"", end=True)
                return

    async def tunnel(
        self, stream: _Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sid = stream.stream_id
        if stream.headers.get(":protocol", "").lower() != "websocket" or (
            self.fault.kind == "no_connect"
        ):
            await self.respond(sid, 501, [("content-length", "0")])
            await self.send(sid, b"", end=True)
            return
        if self.fault.kind == "connect_reset" and not self.fault.reset_after_200:
            self.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        up = h11.Connection(h11.CLIENT)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", key),
        ]
        if "sec-websocket-version" not in stream.headers:
            extra.append(("Sec-WebSocket-Version", "13"))
        writer.write(up.send(self.upstream_request(stream, extra)) or b"")
        await writer.drain()
        while True:
            event = up.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    up.receive_data(await reader.read(READ_SIZE))
                continue
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                break
            if isinstance(event, h11.Response):  # no upgrade: forward the refusal
                await self.respond(sid, event.status_code, _down_headers(event.headers))
                await self.rest_of_body(sid, up, reader)
                return
            if isinstance(event, h11.ConnectionClosed):
                raise OSError("the origin closed the connection before answering")
        keep = ("sec-websocket-protocol", "sec-websocket-extensions")
        await self.respond(sid, 200, [(k, v) for k, v in _down_headers(event.headers) if k in keep])
        leftover, _ = up.trailing_data
        if leftover:
            await self.send(sid, bytes(leftover))

        async def up_to_client() -> None:
            while True:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    data = await reader.read(READ_SIZE)
                if not data:
                    await self.send(sid, b"", end=True)
                    return
                await self.send(sid, data)

        async def client_to_up() -> None:
            while (item := await stream.inbound.get()) is not None:
                if self.fault.kind == "connect_reset":
                    self.reset(sid, h2.errors.ErrorCodes.CANCEL)
                    raise _StreamGone
                writer.write(item[0])
                await writer.drain()
                self.ack(sid, item[1])
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.Event().wait()  # half-closed: the origin's side ends the tunnel

        tasks = [asyncio.create_task(up_to_client()), asyncio.create_task(client_to_up())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _down_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key not in HOP_BY_HOP:
            out.append((key, value.decode("latin-1")))
    return out


class H2Relay:
    """An HTTP/2 reverse proxy in front of ``upstream_host:upstream_port``; 127.0.0.1 only."""

    host = "127.0.0.1"

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        fault: H2Fault | None = None,
        *,
        tls: bool = True,
        alpn: tuple[str, ...] = ("h2", "http/1.1"),
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fault = fault or H2Fault()
        self.tls = tls
        self.alpn = alpn
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            files = authority().write(Path(folder))
            context.load_cert_chain(files.cert, files.key)
        context.set_alpn_protocols(list(self.alpn))
        return context

    async def __aenter__(self) -> H2Relay:
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self._ssl())
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
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _Connection(reader, writer, self).run()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
