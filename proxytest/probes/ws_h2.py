"""WebSocket over HTTP/2 (RFC 8441): extended CONNECT on one stream, frames by wsproto.

A browser that already has an HTTP/2 connection to a host opens its ``wss://``
WebSockets on it when the server's SETTINGS advertise
SETTINGS_ENABLE_CONNECT_PROTOCOL: a ``CONNECT`` stream with ``:protocol:
websocket``, answered 200, then WebSocket frames in the stream's DATA frames
(no HTTP/1.1 handshake, no Sec-WebSocket-Key). It does not fall back to
HTTP/1.1 when that WebSocket fails. The proxy turns it into an HTTP/1.1
upgrade to the origin, which records what it saw.

Browsers speak HTTP/2 only over TLS, so over cleartext these probes do nothing
and say so (``H2Offer.tls`` False); nor when the server does not advertise
extended CONNECT (a browser then uses an HTTP/1.1 WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)

from . import h2
from .context import ProbeContext
from .timeline import (
    CloseTimeline,
    EchoExchange,
    EchoTimeline,
    H2CloseTimeline,
    H2EchoTimeline,
    H2Offer,
    H2UpgradeTimeline,
)
from .ws import _payload

__all__ = ["H2WebSocket", "close", "echo", "offer", "open_websocket", "upgrade"]


def path_of(ctx: ProbeContext, path: str, probe: str, **query: object) -> str:
    """``/path?query`` of ``ctx.url`` (an HTTP/2 request carries no scheme or host in it)."""
    parts = urlsplit(ctx.url(path, probe, ws=False, **query))
    return f"{parts.path}?{parts.query}"


@contextlib.asynccontextmanager
async def offer(ctx: ProbeContext) -> AsyncIterator[tuple[H2Offer, h2.H2Connection | None]]:
    """An HTTP/2 connection where a browser would have one (TLS), and what it offers.

    Yields the connection only when it is there (over TLS, ALPN h2, SETTINGS read).
    """
    if not ctx.tls:
        yield H2Offer(tls=False), None
        return
    async with contextlib.AsyncExitStack() as stack:
        conn: h2.H2Connection | None = None
        try:
            timeout = ctx.thresholds.handshake_timeout_s
            conn = await stack.enter_async_context(h2.connect(ctx, timeout=timeout))
        except h2.NotOffered as exc:
            found = H2Offer(tls=True, not_offered=exc.reason)
        except TimeoutError:
            found = H2Offer(tls=True, error="no HTTP/2 SETTINGS frame in time")
        except (OSError, ConnectionError) as exc:
            found = H2Offer(tls=True, error=f"HTTP/2 connection failed: {exc}")
        else:
            found = H2Offer(
                tls=True,
                alpn=conn.alpn,
                advertised=conn.enable_connect_protocol,
                max_streams=conn.max_concurrent_streams,
            )
        yield found, conn


class H2WebSocket:
    """A client WebSocket in one HTTP/2 stream (after a 2xx answer to the CONNECT)."""

    def __init__(self, stream: h2.H2Stream) -> None:
        self.stream = stream
        self._ws = Connection(ConnectionType.CLIENT)
        self._chunks = stream.chunks()
        self._events: list[Event] = []
        self._parts: list[str | bytes | bytearray] = []

    async def send(self, event: Event) -> None:
        await self.stream.send(self._ws.send(event))

    async def send_message(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            await self.send(TextMessage(data=payload))
        else:
            await self.send(BytesMessage(data=payload))

    async def receive(self) -> str | bytes | CloseConnection:
        """The next whole message, or the peer's close (answered); pings are answered.

        Raises ConnectionError when the stream ends without a close frame (1006).
        """
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, Ping):
                    await self.send(event.response())
                elif isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        if isinstance(event, TextMessage):
                            return "".join(p for p in parts if isinstance(p, str))
                        return b"".join(p for p in parts if not isinstance(p, str))
                elif isinstance(event, CloseConnection):
                    if self._ws.state == ConnectionState.REMOTE_CLOSING:
                        with contextlib.suppress(ConnectionError):
                            await self.send(event.response())
                    return event
            try:
                data, _ = await anext(self._chunks)
            except StopAsyncIteration:
                raise ConnectionError("the stream ended without a close frame") from None
            self._ws.receive_data(data)
            self._events.extend(self._ws.events())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (when still open) and wait for the peer's answer."""
        if self._ws.state == ConnectionState.OPEN:
            await self.send(CloseConnection(code=code, reason=reason))
        while self._ws.state not in (ConnectionState.CLOSED, ConnectionState.REJECTING):
            if isinstance(await self.receive(), CloseConnection):
                break


async def open_websocket(
    ctx: ProbeContext, conn: h2.H2Connection, path: str
) -> tuple[H2WebSocket | None, int | None, str | None, float | None]:
    """Extended CONNECT to ``path``: (the WebSocket, status, error, when answered)."""
    try:
        async with asyncio.timeout(ctx.thresholds.handshake_timeout_s):
            stream = await conn.request(
                "CONNECT",
                path,
                [("sec-websocket-version", "13"), ("user-agent", "proxytest")],
                protocol="websocket",
                end_stream=False,
            )
            status, _, at = await stream.response()
    except TimeoutError:
        wait = ctx.thresholds.handshake_timeout_s
        return None, None, f"no answer to the extended CONNECT within {wait:g} s", None
    except ConnectionError as exc:  # StreamReset included
        return None, None, str(exc), None
    except h2.TooManyStreamsError as exc:
        return None, None, f"no stream available: {exc}", None
    if not 200 <= status < 300:
        with contextlib.suppress(ConnectionError):
            await stream.reset()
        return None, status, f"status {status} to the extended CONNECT", at
    return H2WebSocket(stream), status, None, at


async def _bye(ctx: ProbeContext, ws: H2WebSocket, code: int = 1000, reason: str = "") -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(ctx.thresholds.message_timeout_s):
            await ws.close(code, reason)
    with contextlib.suppress(ConnectionError):
        await ws.stream.reset()


async def upgrade(ctx: ProbeContext, check: str) -> H2UpgradeTimeline:
    """SETTINGS first (advertised?), then an extended CONNECT to the origin's echo route."""
    async with offer(ctx) as (found, conn):
        if conn is None or not found.advertised:
            return H2UpgradeTimeline(found)
        probe = ctx.token(check)
        path = path_of(ctx, "/ws/echo", probe)
        requested_at = time.monotonic()
        ws, status, error, at = await open_websocket(ctx, conn, path)
        if ws is not None:
            await _bye(ctx, ws)
        records = await ctx.origin.wait_for(probe, bool, 0.2 if status else 0.0)
        return H2UpgradeTimeline(
            offer=found,
            url=ctx.base_url + path,
            requested_at=requested_at,
            status=status,
            responded_at=at,
            error=error,
            origin_requests=len(records),
            origin_saw_upgrade=records[0].upgrade_requested if records else None,
            origin_upgraded=records[0].upgraded if records else None,
        )


async def echo(ctx: ProbeContext, check: str) -> H2EchoTimeline:
    """Text and binary messages of each size in ``echo_sizes``, byte-exact, over h2."""
    th = ctx.thresholds
    async with offer(ctx) as (found, conn):
        if conn is None or not found.advertised:
            return H2EchoTimeline(found)
        path = path_of(ctx, "/ws/echo", ctx.token(check))
        ws, status, error, _ = await open_websocket(ctx, conn, path)
        if ws is None:
            return H2EchoTimeline(found, EchoTimeline(status, error, ()))
        exchanges: list[EchoExchange] = []
        close_code: int | None = None
        for size in th.echo_sizes:
            for kind in ("text", "binary"):
                payload = _payload(kind, size)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(th.message_timeout_s):
                        await ws.send_message(payload)
                        got = await ws.receive()
                except TimeoutError:
                    exchanges.append(EchoExchange(kind, size, False, None, "no echo in time"))
                    break
                except ConnectionError as exc:
                    exchanges.append(EchoExchange(kind, size, False, None, str(exc) or "closed"))
                    break
                rtt = (time.monotonic() - started) * 1000
                if isinstance(got, CloseConnection):
                    close_code = got.code
                    what = f"got a close frame (code {got.code} {got.reason!r})"
                    exchanges.append(EchoExchange(kind, size, False, rtt, what))
                    break
                ok = got == payload
                wrong = None if ok else "content differs"
                if not ok and type(got) is not type(payload):
                    wrong = f"got a {'text' if isinstance(got, str) else 'binary'} message"
                exchanges.append(EchoExchange(kind, size, ok, rtt, wrong))
            if exchanges and not exchanges[-1].ok:
                break
        if close_code is None:
            await _bye(ctx, ws)
        return H2EchoTimeline(found, EchoTimeline(status, None, tuple(exchanges), close_code))


async def close(ctx: ProbeContext, check: str) -> H2CloseTimeline:
    """Close codes and reasons both ways, as ws.close does, on two h2 WebSockets."""
    th = ctx.thresholds
    client_sent = (4001, "proxytest-client-bye")
    origin_sent = (4002, "proxytest-origin-bye")
    async with offer(ctx) as (found, conn):
        if conn is None or not found.advertised:
            return H2CloseTimeline(found)
        probe = ctx.token(check)
        origin_got: tuple[int | None, str | None] = (None, None)
        ws, status, error, _ = await open_websocket(ctx, conn, path_of(ctx, "/ws/echo", probe))
        if ws is not None:
            await _bye(ctx, ws, *client_sent)
            records = await ctx.origin.wait_for(
                probe, lambda r: bool(r) and r[0].end is not None, th.message_timeout_s
            )
            if records:
                origin_got = (records[0].close_code, records[0].close_reason)
        client_got: tuple[int | None, str | None] = (None, None)
        path = path_of(
            ctx,
            "/ws/close",
            ctx.token(check),
            code=origin_sent[0],
            reason=origin_sent[1],
            delay_ms=50,
        )
        second, second_status, second_error, _ = await open_websocket(ctx, conn, path)
        if second is not None:
            try:
                async with asyncio.timeout(th.message_timeout_s):
                    got = await second.receive()
                if isinstance(got, CloseConnection):
                    client_got = (got.code, got.reason)
            except (TimeoutError, ConnectionError):
                pass
            with contextlib.suppress(ConnectionError):
                await second.stream.reset()
        return H2CloseTimeline(
            found,
            CloseTimeline(
                status=status,
                error=error,
                client_sent=client_sent,
                origin_got=origin_got,
                origin_sent=origin_sent,
                client_got=client_got,
                second_status=second_status,
                second_error=second_error,
            ),
        )
