"""WebSocket probes: a raw handshake, and aiohttp clients for everything after it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .context import ProbeContext
from .timeline import (
    CloseTimeline,
    Delivery,
    EchoExchange,
    EchoTimeline,
    HandshakeTimeline,
    PingTimeline,
    StreamEnd,
    StreamTimeline,
    SubprotocolTimeline,
)

__all__ = ["accept_for", "close", "echo", "handshake", "ping", "push", "subprotocol"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer ``key`` with (RFC 6455)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


async def handshake(ctx: ProbeContext, check: str) -> HandshakeTimeline:
    """Send an upgrade request by hand and record the status line and headers."""
    probe = ctx.token(check)
    url = ctx.url("/ws/echo", probe)
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "User-Agent: proxytest\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in ctx.headers)
        + "\r\n"
    ).encode()
    status: int | None = None
    reason = ""
    headers: list[tuple[str, str]] = []
    responded_at: float | None = None
    error: str | None = None
    writer: asyncio.StreamWriter | None = None
    requested_at = time.monotonic()
    try:
        async with asyncio.timeout(ctx.thresholds.handshake_timeout_s):
            reader, writer = await ctx.open_connection()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            responded_at = time.monotonic()
            status, reason, headers = _parse_head(head[:_MAX_HEAD])
    except TimeoutError:
        error = f"no answer to the upgrade request within {ctx.thresholds.handshake_timeout_s:g} s"
    except asyncio.IncompleteReadError as exc:
        error = (
            "connection closed before a response"
            if not exc.partial
            else f"connection closed in the response head ({len(exc.partial)} bytes)"
        )
    except asyncio.LimitOverrunError:
        error = "response head too long"
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    records = await ctx.origin.wait_for(probe, bool, 0.2 if status is not None else 0.0)
    return HandshakeTimeline(
        url=url,
        requested_at=requested_at,
        status=status,
        reason=reason,
        headers=tuple(headers),
        responded_at=responded_at,
        key=key,
        expected_accept=accept_for(key),
        error=error,
        origin_requests=len(records),
        origin_saw_upgrade=records[0].upgrade_requested if records else None,
        origin_upgraded=records[0].upgraded if records else None,
    )


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return int(code), reason.strip(), headers


@dataclass
class _Connected:
    ws: aiohttp.ClientWebSocketResponse | None
    status: int | None
    error: str | None


@contextlib.asynccontextmanager
async def _connect(ctx: ProbeContext, url: str, **kwargs: Any) -> AsyncIterator[_Connected]:
    """ws_connect that reports a failed handshake as data instead of raising."""
    ws: aiohttp.ClientWebSocketResponse | None = None
    result = _Connected(None, None, None)
    try:
        async with asyncio.timeout(ctx.thresholds.handshake_timeout_s):
            ws = await ctx.session.ws_connect(
                url, max_msg_size=8 * 1024 * 1024, autoclose=True, heartbeat=None, **kwargs
            )
        result = _Connected(ws, 101, None)
    except aiohttp.WSServerHandshakeError as exc:
        result = _Connected(None, exc.status or None, f"handshake failed: {exc.message}")
    except TimeoutError:
        result = _Connected(
            None,
            None,
            f"no answer to the upgrade within {ctx.thresholds.handshake_timeout_s:g} s",
        )
    except (aiohttp.ClientError, OSError) as exc:
        result = _Connected(None, None, f"{type(exc).__name__}: {exc}")
    try:
        yield result
    finally:
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ctx.thresholds.message_timeout_s):
                    await ws.close()


async def _receive(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> aiohttp.WSMessage:
    async with asyncio.timeout(timeout):
        return await ws.receive()


def _payload(kind: str, size: int) -> str | bytes:
    """A deterministic payload of exactly ``size`` bytes (UTF-8 bytes for text)."""
    if kind == "text":
        pattern = "proxytest-é€-".encode()  # multi-byte UTF-8 too
        raw = (pattern * (size // len(pattern) + 1))[:size].decode("utf-8", errors="ignore")
        return raw + "x" * (size - len(raw.encode()))
    block = bytes((i * 31 + 7) & 0xFF for i in range(256))
    return (block * (size // 256 + 1))[:size]


async def echo(ctx: ProbeContext, check: str) -> EchoTimeline:
    """Text and binary messages of each size in ``echo_sizes`` must come back byte-exact."""
    th = ctx.thresholds
    url = ctx.url("/ws/echo", ctx.token(check), ws=True)
    exchanges: list[EchoExchange] = []
    async with _connect(ctx, url) as conn:
        if conn.ws is None:
            return EchoTimeline(conn.status, conn.error, ())
        ws = conn.ws
        for size in th.echo_sizes:
            for kind in ("text", "binary"):
                payload = _payload(kind, size)
                started = time.monotonic()
                try:
                    if isinstance(payload, str):
                        await ws.send_str(payload)
                    else:
                        await ws.send_bytes(payload)
                    msg = await _receive(ws, th.message_timeout_s)
                except TimeoutError:
                    exchanges.append(EchoExchange(kind, size, False, None, "no echo in time"))
                    break
                except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                    exchanges.append(EchoExchange(kind, size, False, None, str(exc) or "closed"))
                    break
                rtt = (time.monotonic() - started) * 1000
                expected_type = (
                    aiohttp.WSMsgType.TEXT if kind == "text" else aiohttp.WSMsgType.BINARY
                )
                if msg.type != expected_type:
                    exchanges.append(
                        EchoExchange(
                            kind,
                            size,
                            False,
                            rtt,
                            f"got {msg.type.name} {_close_text(msg)}".strip(),
                        )
                    )
                    break
                ok = msg.data == payload
                exchanges.append(
                    EchoExchange(kind, size, ok, rtt, None if ok else "content differs")
                )
            if exchanges and not exchanges[-1].ok:
                break
        return EchoTimeline(101, None, tuple(exchanges), ws.close_code)


def _close_text(msg: aiohttp.WSMessage) -> str:
    if msg.type == aiohttp.WSMsgType.CLOSE:
        return f"(code {msg.data}{', ' + msg.extra if msg.extra else ''})"
    return ""


async def push(ctx: ProbeContext, check: str, *, count: int, interval_ms: float) -> StreamTimeline:
    """The origin pushes ``count`` messages; the client sends nothing and records arrivals."""
    th = ctx.thresholds
    url = ctx.url("/ws/push", ctx.token(check), ws=True, count=count, interval_ms=interval_ms)
    deliveries: list[Delivery] = []
    end: StreamEnd = "complete"
    error: str | None = None
    requested_at = time.monotonic()
    headers_at: float | None = None
    async with _connect(ctx, url) as conn:
        status = conn.status
        if conn.ws is None:
            end, error = "status", conn.error
        else:
            headers_at = time.monotonic()
            budget = interval_ms * count / 1000 + th.stream_grace_s
            try:
                async with asyncio.timeout(budget):
                    while len(deliveries) < count:
                        msg = await conn.ws.receive()
                        now = time.monotonic()
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            body = json.loads(msg.data)
                            sent = ctx.origin.local_time(float(body["sent"]))
                            deliveries.append(Delivery(int(body["seq"]), sent, now))
                        elif msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING):
                            continue
                        else:
                            end = "truncated"
                            error = f"connection ended: {msg.type.name} {_close_text(msg)}".strip()
                            break
            except TimeoutError:
                end, error = (
                    "timeout",
                    f"{len(deliveries)} of {count} messages after {budget:.1f} s",
                )
    ended_at = time.monotonic()
    return StreamTimeline(
        kind="ws",
        url=url,
        requested_at=requested_at,
        status=status,
        headers=(),
        headers_at=headers_at,
        deliveries=tuple(deliveries),
        expected=count,
        interval_ms=interval_ms,
        ended_at=ended_at,
        end=end,
        error=error,
        loop_lag_ms=ctx.lag.max_lag_ms(requested_at, ended_at),
        pressure=ctx.lag.pressure(requested_at, ended_at),
    )


async def ping(ctx: ProbeContext, check: str) -> PingTimeline:
    """Pings both ways: ours must be answered, the origin's must reach us and be answered."""
    th = ctx.thresholds
    probe = ctx.token(check)
    url = ctx.url("/ws/ping", probe, ws=True, count=1)
    async with _connect(ctx, url, autoping=False) as conn:
        if conn.ws is None:
            return PingTimeline(conn.status, conn.error, None, False, False, False)
        ws = conn.ws
        payload = b"proxytest-client"
        client_pong_ms: float | None = None
        origin_ping_seen = False
        started = time.monotonic()
        await ws.ping(payload)
        error: str | None = None
        try:
            async with asyncio.timeout(th.message_timeout_s):
                while client_pong_ms is None or not origin_ping_seen:
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.PONG and msg.data == payload:
                        client_pong_ms = (time.monotonic() - started) * 1000
                    elif msg.type == aiohttp.WSMsgType.PING:
                        origin_ping_seen = True
                        await ws.pong(msg.data)
                    elif msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        error = f"connection ended: {msg.type.name} {_close_text(msg)}".strip()
                        break
        except TimeoutError:
            pass
        records = await ctx.origin.wait_for(
            probe,
            lambda r: bool(r) and bool(r[0].pongs_received) and bool(r[0].pings_received),
            0.5 if origin_ping_seen else 0.0,
        )
        record = records[0] if records else None
        return PingTimeline(
            status=101,
            error=error,
            client_pong_ms=None if client_pong_ms is None else round(client_pong_ms, 2),
            origin_ping_seen=origin_ping_seen,
            origin_pong_seen=bool(record and record.pongs_received),
            origin_got_client_ping=bool(record and payload in record.pings_received),
        )


async def close(ctx: ProbeContext, check: str) -> CloseTimeline:
    """Close codes and reasons both ways: client 4001 to the origin, origin 4002 to us."""
    th = ctx.thresholds
    client_sent = (4001, "proxytest-client-bye")
    origin_sent = (4002, "proxytest-origin-bye")
    probe = ctx.token(check)
    origin_got: tuple[int | None, str | None] = (None, None)
    async with _connect(ctx, ctx.url("/ws/echo", probe, ws=True)) as conn:
        status, error = conn.status, conn.error
        if conn.ws is not None:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                async with asyncio.timeout(th.message_timeout_s):
                    await conn.ws.close(code=client_sent[0], message=client_sent[1].encode())
            records = await ctx.origin.wait_for(
                probe, lambda r: bool(r) and r[0].end is not None, th.message_timeout_s
            )
            if records:
                origin_got = (records[0].close_code, records[0].close_reason)
    client_got: tuple[int | None, str | None] = (None, None)
    url = ctx.url(
        "/ws/close",
        ctx.token(check),
        ws=True,
        code=origin_sent[0],
        reason=origin_sent[1],
        delay_ms=50,
    )
    async with _connect(ctx, url) as second:
        if second.ws is not None:
            try:
                msg = await _receive(second.ws, th.message_timeout_s)
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    client_got = (msg.data, msg.extra or "")
                else:
                    client_got = (second.ws.close_code, None)
            except (TimeoutError, aiohttp.ClientError, OSError):
                client_got = (second.ws.close_code, None)
    return CloseTimeline(
        status=status,
        error=error,
        client_sent=client_sent,
        origin_got=origin_got,
        origin_sent=origin_sent,
        client_got=client_got,
        second_status=second.status,
        second_error=second.error,
    )


async def subprotocol(ctx: ProbeContext, check: str) -> SubprotocolTimeline:
    """Offer two subprotocols; the origin picks one; both ends must agree."""
    offered = ("proxytest.v2", "proxytest.v1")
    prefers = ("proxytest.v1",)
    probe = ctx.token(check)
    url = ctx.url("/ws/echo", probe, ws=True, protocols=",".join(prefers))
    async with _connect(ctx, url, protocols=offered) as conn:
        client_got = conn.ws.protocol if conn.ws is not None else None
        records = await ctx.origin.wait_for(probe, bool, 0.2 if conn.ws is not None else 0.0)
        record = records[0] if records else None
        return SubprotocolTimeline(
            status=conn.status,
            error=conn.error,
            offered=offered,
            server_prefers=prefers,
            client_got=client_got,
            origin_offered=record.subprotocols_offered if record else None,
            origin_selected=record.subprotocol_selected if record else None,
        )
