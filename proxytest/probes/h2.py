"""A small asyncio HTTP/2 client on the sans-I/O ``h2`` library, for the ``@h2`` probes.

One connection is one TCP (or TLS) connection and one reader task that feeds
``h2`` and hands each event to the stream it belongs to; streams are read and
written by the probes' own tasks. Over TLS it offers ALPN ``h2, http/1.1``;
over cleartext it speaks h2c with prior knowledge (the preface straight away).

    async with h2.connect(ctx, timeout=5) as conn:        # NotOffered: no h2 here
        stream = await conn.request("GET", "/sse?probe=…")
        status, headers, at = await stream.response()
        async for data, at in stream.chunks():
            ...

Exceptions::

    Exception
     ├── NotOffered            the listener does not speak HTTP/2 (.reason)
     └── ConnectionError
          └── StreamReset      the peer reset the stream (.error_code)
    h2.exceptions.TooManyStreamsError
                               request() beyond the server's MAX_CONCURRENT_STREAMS
                               (unless ``beyond_limit=True``: h2.streams sends one
                               more on purpose, to see how the server refuses it)

Nothing waits without a bound of its own except what a caller bounds:
``connect`` takes a timeout; ``response()``, ``chunks()`` and ``send()`` are
meant to run inside the caller's ``asyncio.timeout``. Leaving ``connect``
sends GOAWAY, closes the socket and ends the reader task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from .context import ProbeContext

__all__ = [
    "H2Connection",
    "H2Stream",
    "NotOffered",
    "StreamReset",
    "TooManyStreamsError",
    "connect",
    "error_name",
]

TooManyStreamsError = h2.exceptions.TooManyStreamsError

_READ_SIZE = 64 * 1024
_CLOSE_TIMEOUT_S = 1.0
# Receive windows as a browser opens them (Chromium: 6 MiB per stream, 15 MiB per
# connection), so streams nobody reads for a while do not stall the others.
_STREAM_WINDOW = 6 * 1024 * 1024
_CONNECTION_WINDOW = 15 * 1024 * 1024


class NotOffered(Exception):
    """The listener does not speak HTTP/2: ``reason`` says what it did instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def error_name(code: int) -> str:
    """REFUSED_STREAM, CANCEL, … or the number when the code is unknown."""
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error code {code:#x}"


class StreamReset(ConnectionError):
    """The peer reset the stream (RST_STREAM) with ``error_code``."""

    def __init__(self, error_code: int, who: str = "the proxy") -> None:
        super().__init__(f"stream reset by {who}: {error_name(error_code)}")
        self.error_code = error_code


class _End:
    """The marker a stream's data queue ends with (END_STREAM)."""


_END = _End()
_Item = tuple[bytes, float, int] | _End | BaseException


@dataclass(eq=False)
class _StreamState:
    response: asyncio.Future[tuple[int, tuple[tuple[str, str], ...], float]]
    data: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    failed: BaseException | None = None
    ended: bool = False


class _Client(h2.connection.H2Connection):
    """h2's connection, where the local check of MAX_CONCURRENT_STREAMS can be lifted."""

    lift_limit = False

    @property
    def open_outbound_streams(self) -> int:
        return 0 if self.lift_limit else super().open_outbound_streams

    def _receive_goaway_frame(
        self, frame: hyperframe.frame.GoAwayFrame
    ) -> tuple[list[hyperframe.frame.Frame], list[h2.events.Event]]:
        # A graceful GOAWAY (NO_ERROR): the streams up to its last stream id still
        # get their answers (Envoy sends one before the 403 to a CONNECT it does not
        # route), but h2 takes any GOAWAY as the end and refuses every later frame,
        # even in the same read: keep its state machine open; request() refuses new
        # streams after a GOAWAY.
        frames, events = super()._receive_goaway_frame(frame)
        if not frame.error_code:
            self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class H2Connection:
    """One HTTP/2 connection to the listener under test (made by :func:`connect`)."""

    def __init__(
        self,
        ctx: ProbeContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        alpn: str | None,
    ) -> None:
        self._ctx = ctx
        self._reader = reader
        self._writer = writer
        self.alpn = alpn
        self.remote_settings: dict[int, int] = {}
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self._h2 = _Client(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            },
        )
        self._streams: dict[int, _StreamState] = {}
        self._settings_seen = asyncio.Event()
        self._window = asyncio.Event()  # set whenever a WINDOW_UPDATE or SETTINGS arrives
        self._closed: BaseException | None = None  # the connection is lost
        self._goaway: str | None = None  # no new streams
        self._reader_task: asyncio.Task[None] | None = None

    # -- what the server said ----------------------------------------------------------
    @property
    def enable_connect_protocol(self) -> bool:
        return self.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1

    @property
    def max_concurrent_streams(self) -> int | None:
        return self.remote_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)

    # -- lifecycle ---------------------------------------------------------------------
    def _preface(self) -> None:
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        self._flush()

    async def _start(self, timeout: float, first: bytes = b"") -> None:
        """Read (``first``, then the socket) until the server's first SETTINGS frame."""
        self._reader_task = asyncio.create_task(self._read_loop(first))
        waiter = asyncio.create_task(self._settings_seen.wait())
        try:
            await asyncio.wait(
                {waiter, self._reader_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._settings_seen.is_set():
            return
        if self._closed is not None:
            raise self._closed
        raise TimeoutError(f"no SETTINGS frame from the server within {timeout:g} s")

    async def aclose(self) -> None:
        """GOAWAY, close the socket, end the reader task; streams still open fail."""
        if self._closed is None:
            with contextlib.suppress(Exception):
                self._h2.close_connection()
                self._flush()
            self._fail_all(ConnectionError("the client closed the connection"))
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()

    # -- streams -----------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        protocol: str | None = None,
        end_stream: bool = True,
        beyond_limit: bool = False,
    ) -> H2Stream:
        """Open a stream with a request head (``protocol``: RFC 8441 extended CONNECT).

        Raises ``TooManyStreamsError`` when the server's MAX_CONCURRENT_STREAMS
        streams are open already, unless ``beyond_limit`` (send it anyway).
        """
        if self._closed is not None or self._goaway is not None:
            raise ConnectionError(f"the connection is gone: {self._closed or self._goaway}")
        head = [(":method", method)]
        if protocol is not None:
            head.append((":protocol", protocol))
        head += [(":scheme", self._ctx.scheme), (":authority", self._ctx.authority)]
        given = {k.lower() for k, _ in headers}
        extra = [(k.lower(), v) for k, v in self._ctx.headers if k.lower() not in given]
        head += [(":path", path), *((k.lower(), v) for k, v in headers), *extra]
        stream_id = self._h2.get_next_available_stream_id()
        state = _StreamState(asyncio.get_running_loop().create_future())
        self._h2.lift_limit = beyond_limit
        try:
            self._h2.send_headers(stream_id, head, end_stream=end_stream)
        finally:
            self._h2.lift_limit = False
        self._streams[stream_id] = state
        self._flush()
        return H2Stream(self, stream_id, state)

    async def _send(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        view = memoryview(data)
        while True:
            self._check_open(stream_id)
            window = min(
                self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size
            )
            if window <= 0 and view:
                self._window.clear()
                await self._window.wait()
                continue
            chunk, view = view[:window], view[window:]
            last = not view
            self._h2.send_data(stream_id, bytes(chunk), end_stream=end_stream and last)
            self._flush()
            await self._writer.drain()
            if last:
                return

    async def _reset(self, stream_id: int, code: int) -> None:
        state = self._streams.get(stream_id)
        if self._closed is not None or state is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # closed both ways already
            self._h2.reset_stream(stream_id, code)
            self._flush()
        self._fail(stream_id, ConnectionError("the client reset the stream"))

    def _consumed(self, stream_id: int, length: int) -> None:
        if self._closed is None and length:
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                self._h2.acknowledge_received_data(length, stream_id)
                self._flush()

    def _check_open(self, stream_id: int) -> None:
        state = self._streams[stream_id]
        if state.failed is not None:
            raise state.failed
        if self._closed is not None:
            raise ConnectionError(f"the connection is gone: {self._closed}")

    # -- the reader task ---------------------------------------------------------------
    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self, first: bytes) -> None:
        data = first
        try:
            while True:
                if not data:
                    data = await self._reader.read(_READ_SIZE)
                    if not data:
                        raise ConnectionError("the proxy closed the connection")
                at = time.monotonic()
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self._flush()
                    raise ConnectionError(f"HTTP/2 protocol error from the proxy: {exc}") from exc
                data = b""
                for event in events:
                    self._dispatch(event, at)
                self._flush()
        except (ConnectionError, OSError) as exc:
            self._fail_all(exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc)))

    def _dispatch(self, event: h2.events.Event, at: float) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.remote_settings[int(code)] = change.new_value
            self._settings_seen.set()
            self._window.set()
        elif isinstance(event, h2.events.WindowUpdated):
            self._window.set()
        elif isinstance(event, h2.events.ResponseReceived):
            state = self._streams.get(event.stream_id)
            if state is not None and not state.response.done():
                status, headers = 0, []
                for name, value in event.headers or ():
                    key, val = str(name), str(value)
                    if key == ":status":
                        status = int(val)
                    elif not key.startswith(":"):
                        headers.append((key, val))
                state.response.set_result((status, tuple(headers), at))
        elif isinstance(event, h2.events.DataReceived):
            state = self._streams.get(event.stream_id)
            length = event.flow_controlled_length or 0
            if state is None:
                self._consumed(event.stream_id, length)
            else:
                state.data.put_nowait((event.data or b"", at, length))
        elif isinstance(event, h2.events.StreamEnded):
            state = self._streams.get(event.stream_id)
            if state is not None:
                state.ended = True
                state.data.put_nowait(_END)
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self._fail(event.stream_id, StreamReset(event.error_code or 0))
        elif isinstance(event, h2.events.ConnectionTerminated):
            last = event.last_stream_id or 0
            why = f"the proxy sent GOAWAY ({error_name(event.error_code or 0)})"
            if event.error_code:
                raise ConnectionError(why)
            self._goaway = why
            for stream_id in list(self._streams):
                if stream_id > last:
                    self._fail(stream_id, ConnectionError(why))

    def _fail(self, stream_id: int, exc: BaseException) -> None:
        state = self._streams.get(stream_id)
        if state is None or state.failed is not None or state.ended:
            return
        state.failed = exc
        if not state.response.done():
            state.response.set_exception(exc)
            state.response.exception()  # retrieved: nobody may ask for it
        state.data.put_nowait(exc)
        self._window.set()

    def _fail_all(self, exc: ConnectionError) -> None:
        if self._closed is None:
            self._closed = exc
        for stream_id in list(self._streams):
            self._fail(stream_id, exc)
        self._window.set()


class H2Stream:
    """One request/response exchange on an :class:`H2Connection`."""

    def __init__(self, conn: H2Connection, stream_id: int, state: _StreamState) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._state = state

    async def response(self) -> tuple[int, tuple[tuple[str, str], ...], float]:
        """Status, headers (no pseudo-headers) and when the HEADERS frame arrived."""
        return await asyncio.shield(self._state.response)

    async def chunks(self) -> AsyncIterator[tuple[bytes, float]]:
        """DATA payloads and their arrival times, until END_STREAM."""
        while True:
            item = await self._state.data.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                self._state.data.put_nowait(item)  # a second reader sees it too
                raise item
            data, at, length = item
            self._conn._consumed(self.stream_id, length)
            yield data, at

    async def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """DATA within the peer's flow-control windows (waits for WINDOW_UPDATE)."""
        await self._conn._send(self.stream_id, data, end_stream)

    async def reset(self, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """RST_STREAM (CANCEL by default); a stream already ended is left alone."""
        await self._conn._reset(self.stream_id, code)


async def _open(
    ctx: ProbeContext,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str | None]:
    tls = ctx.ssl_context(("h2", "http/1.1"))
    reader, writer = await asyncio.open_connection(ctx.host, ctx.port, ssl=tls)
    if tls is None:
        return reader, writer, None
    ssl_object = writer.get_extra_info("ssl_object")
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    if alpn != "h2":
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await writer.wait_closed()
        raise NotOffered(
            f"ALPN chose {alpn}" if alpn else "no protocol chosen in ALPN (HTTP/1.1 only)"
        )
    return reader, writer, alpn


async def _h2c_answer(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """The server's first bytes after our preface: a SETTINGS frame, or NotOffered."""
    first = b""
    try:
        async with asyncio.timeout(timeout):
            while len(first) < 9 and not first.startswith(b"HTTP/"):
                more = await reader.read(_READ_SIZE)
                if not more:
                    break
                first += more
    except TimeoutError:
        raise NotOffered("no answer to the HTTP/2 preface (no h2c)") from None
    except OSError as exc:
        raise NotOffered(f"the connection failed at the HTTP/2 preface (no h2c): {exc}") from None
    if not first:
        raise NotOffered("the listener closed the connection at the HTTP/2 preface (no h2c)")
    if first.startswith(b"HTTP/"):
        line = first.split(b"\r\n", 1)[0].decode("latin-1")[:80]
        raise NotOffered(f"answered the HTTP/2 preface with {line!r} (no h2c)")
    # A frame header: 3 bytes length, type (4 = SETTINGS), flags, stream 0.
    if len(first) < 9 or first[3] != 0x4:
        raise NotOffered(f"answered the HTTP/2 preface with {first[:16]!r}, not SETTINGS")
    return first


@contextlib.asynccontextmanager
async def connect(ctx: ProbeContext, *, timeout: float) -> AsyncIterator[H2Connection]:
    """An HTTP/2 connection to the listener in ``ctx``, ready once its SETTINGS came.

    TLS: ALPN offers h2 and http/1.1; anything but h2 raises NotOffered. Cleartext:
    h2c with prior knowledge; an HTTP/1.1 answer, a close or silence raises NotOffered.
    Other failures raise ConnectionError, OSError or TimeoutError.
    """
    async with asyncio.timeout(timeout):
        reader, writer, alpn = await _open(ctx)
    conn = H2Connection(ctx, reader, writer, alpn)
    try:
        first = b""
        started = time.monotonic()
        conn._preface()
        if alpn is None:
            # h2c: tell an HTTP/1.1 answer (or silence) from a SETTINGS frame.
            first = await _h2c_answer(reader, timeout)
        await conn._start(max(0.0, timeout - (time.monotonic() - started)), first)
    except BaseException:
        await conn.aclose()
        raise
    try:
        yield conn
    finally:
        await conn.aclose()
