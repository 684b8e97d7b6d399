"""Probes of the security checks (issue 15): raw HTTP/1.1 on asyncio streams.

Each attempt writes a request byte for byte (a malformed handshake, an upgrade
the origin refuses, headers a proxy must not forward), reads the answer with
every read bounded in size and time, and, for smuggling, writes a second
request on the same client connection and finds out where it went: the origin
(origin/security.py) files it as a parsed ``/sec/marker`` request, or as raw
bytes on the first request's upstream connection (a tunnel), or it never
arrives (the proxy answered it or closed). Timelines are frozen and judged by
checks/security.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..origin.security import (
    ANSWER_PATH,
    HEADERS_PATH,
    MARKER_PATH,
    NAIVE_PATH,
    RAW_HELLO,
    RAW_PATH,
    SMUGGLED_HEADER,
    UNREQUESTED_PATH,
)
from ..origin.server import ORIGIN_HEADER, OriginRecord
from .context import ProbeContext

__all__ = [
    "CONNECTION_NAMED",
    "HOP_BY_HOP",
    "Attempt",
    "HopTimeline",
    "SecurityTimeline",
    "probe_handshake_strict",
    "probe_hop_by_hop",
    "probe_smuggling",
    "probe_upgrade_unrequested",
]

HEAD_TIMEOUT_S = 2.0  # the answer to a request (a proxy that never answers costs this)
SECOND_TIMEOUT_S = 1.5  # the answer to the second request on the connection
RECORD_WAIT_S = 1.0  # the origin's records of a request that was answered
MAX_HEAD = 32 * 1024
MAX_BODY = 64 * 1024

# (name, value) sent to http.hop-by-hop that must not reach the origin, and one that must.
HOP_BY_HOP: tuple[tuple[str, str], ...] = (
    ("X-Proxytest-Hop", "named-in-connection"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Authorization", "Basic cHJveHl0ZXN0OnByb3h5LW9ubHk="),
    ("Proxy-Connection", "keep-alive"),
)
END_TO_END = ("X-Proxytest-End-To-End", "kept")
# Of those, the ones hop-by-hop only because the request's Connection header names them.
CONNECTION_NAMED: tuple[str, ...] = ("X-Proxytest-Hop",)


@dataclass(frozen=True)
class Attempt:
    """One variant: what the client sent and got, and what the origin saw.

    ``by``: who answered the first request: ``origin`` (its identity header),
    ``proxy`` (an answer without it) or ``none`` (no answer in time). ``second``:
    where the second request on the connection went: ``tunnel`` (raw bytes on
    the first request's upstream connection, or the origin's smuggled answer),
    ``parsed`` (a request of its own at the origin), ``refused`` (the proxy
    answered it), ``closed`` (the connection ended), ``silent`` (nothing in
    time), ``not_sent`` (no second request).
    """

    variant: str
    status: int | None
    by: str
    second: str = "not_sent"
    second_status: int | None = None
    reached_origin: bool = False
    upgrade_at_origin: bool = False
    raw_to_client: bool = False  # bytes after a 101 reached the client (RAW_HELLO)
    error: str | None = None


@dataclass(frozen=True)
class SecurityTimeline:
    attempts: tuple[Attempt, ...]
    # Why nothing was probed (the endpoint is the origin itself: no proxy to judge).
    skipped: str | None = None


@dataclass(frozen=True)
class HopTimeline:
    """http.hop-by-hop: the request as sent and as the origin saw it."""

    status: int | None
    sent: tuple[tuple[str, str], ...]
    seen: tuple[tuple[str, str], ...] | None  # None: the request never reached the origin
    origin_http_version: str | None = None
    error: str | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class _Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    extra: bytes = b""  # bytes after a 101's head

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


DIRECT = "the endpoint is the origin itself: no proxy in between to judge"


def _direct(ctx: ProbeContext) -> bool:
    """Whether ``ctx`` points at the origin itself (its own answers are not a proxy's)."""
    listening = getattr(ctx.origin, "listening", ())
    return (ctx.host, ctx.port) in listening


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _request(
    ctx: ProbeContext,
    path: str,
    token: str,
    headers: Sequence[tuple[str, str]],
    *,
    version: str = "HTTP/1.1",
    query: str = "",
    body: bytes = b"",
) -> bytes:
    target = f"{ctx.prefix}{path}?probe={token}{query}"
    lines = [f"GET {target} {version}", f"Host: {ctx.authority}"]
    lines += [f"{k}: {v}" for k, v in (*ctx.headers, *headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*lines, "", ""])).encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader, timeout: float) -> _Response | None:
    """One response (head, and a body framed by Content-Length or chunked, bounded);
    None when the connection closed before a head. Raises TimeoutError."""
    async with asyncio.timeout(timeout):
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raw = await reader.read(MAX_HEAD)
        start, *lines = raw.decode("latin-1").split("\r\n")
        try:
            status = int(start.split(" ", 2)[1])
        except (IndexError, ValueError):
            status = 0
        headers = tuple(
            (n.strip(), v.strip()) for n, _, v in (ln.partition(":") for ln in lines if ln)
        )
        response = _Response(status, headers, b"")
        if status == 101 or 100 <= status < 200 or status == 204:
            return response
        length = response.header("content-length")
        body = b""
        if length is not None and length.strip().isdigit():
            with contextlib.suppress(asyncio.IncompleteReadError):
                body = await reader.readexactly(min(int(length), MAX_BODY))
        elif "chunked" in (response.header("transfer-encoding") or "").lower():
            while b"0\r\n\r\n" not in body and len(body) < MAX_BODY:
                data = await reader.read(MAX_BODY)
                if not data:
                    break
                body += data
        return _Response(status, headers, body)


async def _after_101(reader: asyncio.StreamReader) -> bytes:
    """What arrives in a short window after a 101's head (bounded)."""
    data = b""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(0.3):
            while len(data) < len(RAW_HELLO):
                chunk = await reader.read(MAX_BODY)
                if not chunk:
                    break
                data += chunk
    return data


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


def _raw_marker(records: Sequence[OriginRecord]) -> bool:
    return any(r.path == RAW_PATH and r.query.get("marker") == "1" for r in records)


def _parsed_marker(records: Sequence[OriginRecord]) -> bool:
    return any(r.path == MARKER_PATH for r in records)


async def _attempt(
    ctx: ProbeContext,
    label: str,
    variant: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    version: str = "HTTP/1.1",
    query: str = "",
    body: bytes = b"",
    second: bool = True,
) -> Attempt:
    token = ctx.token(f"{label}-{variant}")
    try:
        reader, writer = await asyncio.wait_for(ctx.open_connection(), HEAD_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return Attempt(variant, None, "none", error=f"connect: {exc!r}")
    try:
        writer.write(_request(ctx, path, token, headers, version=version, query=query, body=body))
        await writer.drain()
        try:
            first = await _read_response(reader, HEAD_TIMEOUT_S)
        except (TimeoutError, OSError):
            first = None
        if first is None:
            records = await ctx.origin.wait_for(token, lambda rs: bool(rs), 0.3)
            return _attempt_of(variant, None, "not_sent", None, records, path)
        by = "origin" if first.header(ORIGIN_HEADER) else "proxy"
        raw_to_client = False
        if first.status == 101:
            raw_to_client = RAW_HELLO in await _after_101(reader)
        outcome, second_status = "not_sent", None
        if second:
            outcome, second_status = await _second(ctx, reader, writer, token)
        if second:
            wait = 0.3 if outcome in ("closed", "silent") else RECORD_WAIT_S
        else:
            wait = RECORD_WAIT_S if by == "origin" else 0.3
        records = await ctx.origin.wait_for(
            token,
            lambda rs: _raw_marker(rs) or _parsed_marker(rs) or (not second and bool(rs)),
            wait,
        )
        if _raw_marker(records) or outcome == "tunnel":
            outcome = "tunnel"
        elif _parsed_marker(records):
            outcome = "parsed"
        return _attempt_of(
            variant, first, outcome, second_status, records, path, by=by, raw=raw_to_client
        )
    finally:
        await _close(writer)


async def _second(
    ctx: ProbeContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str
) -> tuple[str, int | None]:
    """Write the marker request on the same connection; what the client got back."""
    try:
        writer.write(_request(ctx, MARKER_PATH, token, ()))
        await writer.drain()
        response = await _read_response(reader, SECOND_TIMEOUT_S)
    except TimeoutError:
        return "silent", None
    except OSError:
        return "closed", None
    if response is None:
        return "closed", None
    if response.header(SMUGGLED_HEADER):
        return "tunnel", response.status
    return "refused", response.status


def _attempt_of(
    variant: str,
    first: _Response | None,
    second: str,
    second_status: int | None,
    records: Sequence[OriginRecord],
    path: str,
    *,
    by: str = "none",
    raw: bool = False,
) -> Attempt:
    mine = [r for r in records if r.path == path]
    return Attempt(
        variant,
        None if first is None else first.status,
        by,
        second,
        second_status,
        reached_origin=bool(mine),
        upgrade_at_origin=any(r.header("Upgrade") for r in mine),
        raw_to_client=raw,
    )


def _ws_headers(
    *, key: bool = True, version: str = "13", connection: bool = True
) -> list[tuple[str, str]]:
    headers = [("Upgrade", "websocket")]
    if connection:
        headers.append(("Connection", "Upgrade"))
    if key:
        headers.append(("Sec-WebSocket-Key", _key()))
    headers.append(("Sec-WebSocket-Version", version))
    return headers


async def probe_smuggling(ctx: ProbeContext, label: str) -> SecurityTimeline:
    """ws.smuggling: the origin refuses an upgrade (426, 200, 403, a 101 with a wrong
    accept; a version it does not speak; an upgrade with a body), then a second
    request follows on the same connection. Variants run at once."""
    if _direct(ctx):
        return SecurityTimeline((), DIRECT)
    ws = _ws_headers()
    attempts = await asyncio.gather(
        _attempt(ctx, label, "status_426", ANSWER_PATH, ws, query="&status=426"),
        _attempt(ctx, label, "status_200", ANSWER_PATH, ws, query="&status=200"),
        _attempt(ctx, label, "status_403", ANSWER_PATH, ws, query="&status=403"),
        _attempt(
            ctx, label, "version_mismatch", ANSWER_PATH, _ws_headers(version="12"),
            query="&status=426",
        ),
        _attempt(
            ctx, label, "with_body", ANSWER_PATH, ws, query="&status=200",
            body=b"proxytest-upgrade-body",
        ),
        _attempt(ctx, label, "bad_accept_101", ANSWER_PATH, ws, query="&status=101bad"),
    )  # fmt: skip
    return SecurityTimeline(tuple(attempts))


async def probe_handshake_strict(ctx: ProbeContext, label: str) -> SecurityTimeline:
    """ws.handshake-strict: malformed handshakes to an origin that answers 101 to
    anything with ``Upgrade: websocket`` (origin/security.py ``/sec/naive``): only
    the proxy stands between them and a tunnel."""
    if _direct(ctx):
        return SecurityTimeline((), DIRECT)
    attempts = await asyncio.gather(
        _attempt(ctx, label, "no_key", NAIVE_PATH, _ws_headers(key=False), second=False),
        _attempt(ctx, label, "bad_version", NAIVE_PATH, _ws_headers(version="99"), second=False),
        _attempt(
            ctx, label, "http10", NAIVE_PATH, _ws_headers(), version="HTTP/1.0", second=False
        ),
        _attempt(
            ctx, label, "no_connection_upgrade", NAIVE_PATH, _ws_headers(connection=False),
            second=False,
        ),
    )  # fmt: skip
    return SecurityTimeline(tuple(attempts))


async def probe_upgrade_unrequested(ctx: ProbeContext, label: str) -> SecurityTimeline:
    """ws.upgrade-unrequested: a plain GET the origin answers with 101 and raw bytes."""
    if _direct(ctx):
        return SecurityTimeline((), DIRECT)
    attempt = await _attempt(ctx, label, "plain_get", UNREQUESTED_PATH, ())
    return SecurityTimeline((attempt,))


async def probe_hop_by_hop(ctx: ProbeContext, label: str) -> HopTimeline:
    """http.hop-by-hop: one GET carrying hop-by-hop headers; the origin's record."""
    token = ctx.token(label)
    connection = ("Connection", ", ".join(("keep-alive", *CONNECTION_NAMED)))
    sent = (connection, *HOP_BY_HOP, END_TO_END)
    if _direct(ctx):
        return HopTimeline(None, sent, None, skipped=DIRECT)
    try:
        reader, writer = await asyncio.wait_for(ctx.open_connection(), HEAD_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return HopTimeline(None, sent, None, error=f"connect: {exc!r}")
    try:
        writer.write(_request(ctx, HEADERS_PATH, token, sent))
        await writer.drain()
        try:
            response = await _read_response(reader, HEAD_TIMEOUT_S)
        except (TimeoutError, OSError):
            response = None
    finally:
        await _close(writer)
    status = None if response is None else response.status
    records = await ctx.origin.wait_for(
        token, lambda rs: any(r.path == HEADERS_PATH for r in rs), RECORD_WAIT_S if status else 0.3
    )
    mine = [r for r in records if r.path == HEADERS_PATH]
    if not mine:
        return HopTimeline(status, sent, None)
    return HopTimeline(status, sent, mine[0].headers, mine[0].http_version)
