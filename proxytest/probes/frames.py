"""Frame-depth probes: ``ws.frames`` (raw frames) and ``ws.deflate`` (RFC 7692).

``ws.frames`` speaks RFC 6455 by hand over an asyncio stream after a normal
handshake, so it can send what a library would refuse to: fragments split inside
a UTF-8 sequence with a ping between them, one message of 16 MiB, 10,000 small
messages in one burst, and four invalid frames. The origin's ``/ws/frames``
route (origin/frames.py) echoes every message and records its digest, so a
corruption is placed on the way in or on the way back, and an invalid frame that
reached the origin as a valid message is seen there.

``ws.deflate`` offers permessage-deflate through wsproto (which compresses and
inflates) and compares three views of the extension: what the client offered,
what the origin saw and answered (``OriginRecord.extensions_selected``), and
what the client got in the 101.

Every wait is bounded (``Thresholds.handshake_timeout_s``, ``message_timeout_s``,
and ``INVALID_WAIT_FRACTION`` of it for an invalid frame's answer); every read
is bounded in size (``FRAMES_MAX_MESSAGE``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..origin.frames import FRAMES_MAX_MESSAGE, digest
from .context import ProbeContext
from .ws import _parse_head, accept_for

__all__ = [
    "BURST_MESSAGES",
    "LARGE_SIZES",
    "BurstResult",
    "DeflateExchange",
    "DeflateTimeline",
    "FragmentCase",
    "FramesTimeline",
    "InvalidCase",
    "SizeCase",
    "deflate",
    "encode_frame",
    "frames",
]

LARGE_SIZES = (1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024)  # one frame each, in order
BURST_MESSAGES = 10_000
BURST_SIZE = 32  # bytes per burst message
BURST_BATCH = 250  # messages per write
# An invalid frame's answer (a close, or the connection dropped) is awaited this
# fraction of message_timeout_s (2 s unscaled): the origin answers at once.
INVALID_WAIT_FRACTION = 0.4
INVALID_CASES = ("bad_utf8", "reserved_opcode", "fragmented_control", "rsv_bits")
DEFLATE_SIZES = (16, 4096, 256 * 1024)
# Our socket's close is awaited this long at most: over TLS a proxy may never send
# its close_notify (measured: Envoy), and the result is known by then.
CLOSE_WAIT_S = 0.2

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


# -- timelines -----------------------------------------------------------------------
@dataclass(frozen=True)
class FragmentCase:
    name: str  # what was fragmented, and how
    ok: bool  # the message came back whole and byte-exact
    pong: bool  # the ping sent between its fragments was answered
    error: str | None = None


@dataclass(frozen=True)
class SizeCase:
    size: int
    ok: bool
    took_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class BurstResult:
    sent: int
    echoed: int  # echoes read, byte-exact or not
    intact: int  # echoes byte-exact
    in_order: bool  # each echo had the next sequence number
    p50_ms: float | None  # per-message latency: written to echo read
    p99_ms: float | None
    took_ms: float
    error: str | None = None


@dataclass(frozen=True)
class InvalidCase:
    name: str  # one of INVALID_CASES
    # "closed" (a close frame, ``code``), "dropped" (the connection ended without
    # one), "ignored" (still open after the wait), "delivered" (the origin got it,
    # or its echo or pong came back, as a valid frame), "error" (no upgrade)
    outcome: str
    code: int | None = None
    detail: str | None = None
    origin_refused: bool = False  # the origin's own reader refused it (it got that far)


@dataclass(frozen=True)
class FramesTimeline:
    status: int | None
    error: str | None
    fragments: tuple[FragmentCase, ...] = ()
    sizes: tuple[SizeCase, ...] = ()
    burst: BurstResult | None = None
    invalid: tuple[InvalidCase, ...] = ()
    accept_ok: bool = True


@dataclass(frozen=True)
class DeflateExchange:
    kind: str  # text | binary
    size: int
    compressible: bool
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class DeflateTimeline:
    status: int | None
    error: str | None  # the handshake's
    offered: str  # Sec-WebSocket-Extensions the client sent
    origin_offered: str | None  # ... as the origin saw it (None: not there)
    origin_selected: str | None  # what the origin answered (None: no extension)
    client_got: str | None  # what the 101 said (None: no extension)
    client_refused: str | None = None  # the client's protocol library refused the 101
    exchanges: tuple[DeflateExchange, ...] = ()
    origin_messages: int = 0


# -- raw frames ------------------------------------------------------------------------
def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One RFC 6455 frame, masked as a client's must be; ``rsv`` is the 3 RSV bits."""
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = bytes((first, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, bit | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class _Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed by the other side with {code}")
        self.code = code


@dataclass(frozen=True)
class _Frame:
    fin: bool
    opcode: int
    payload: bytes


class _Raw:
    """The client end of one WebSocket, frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pongs: list[bytes] = []
        self.close_code: int | None = None

    async def frame(self, limit: int) -> _Frame:
        b = await self.reader.readexactly(2)
        n = b[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        if n > limit:
            raise ValueError(f"a frame of {n} bytes, more than {limit}")
        key = await self.reader.readexactly(4) if b[1] & 0x80 else b""
        payload = await self.reader.readexactly(n) if n else b""
        return _Frame(bool(b[0] & 0x80), b[0] & 0xF, _mask(payload, key) if key else payload)

    async def message(self, limit: int = FRAMES_MAX_MESSAGE) -> tuple[int, bytes]:
        """The next data message (opcode, payload); pings answered, pongs kept."""
        opcode, parts, size = 0, list[bytes](), 0
        while True:
            f = await self.frame(limit - size)
            if f.opcode == PING:
                self.writer.write(encode_frame(PONG, f.payload))
            elif f.opcode == PONG:
                self.pongs.append(f.payload)
            elif f.opcode == CLOSE:
                code = int.from_bytes(f.payload[:2], "big") if len(f.payload) >= 2 else None
                self.close_code = code
                with contextlib.suppress(Exception):
                    self.writer.write(encode_frame(CLOSE, f.payload[:2]))
                raise _Closed(code)
            elif f.opcode in (TEXT, BINARY) and not parts:
                opcode, parts, size = f.opcode, [f.payload], len(f.payload)
            elif f.opcode == CONT and parts:
                parts.append(f.payload)
                size += len(f.payload)
            else:
                raise ValueError(f"unexpected frame (opcode {f.opcode:#x}) from the server")
            if f.fin and parts and f.opcode in (TEXT, BINARY, CONT):
                return opcode, b"".join(parts)


@dataclass
class _Opened:
    raw: _Raw | None
    status: int | None
    error: str | None
    accept_ok: bool = True


@contextlib.asynccontextmanager
async def _open(ctx: ProbeContext, probe: str) -> AsyncIterator[_Opened]:
    """A handshake by hand to /ws/frames (no extension offered); always closes."""
    url = ctx.url("/ws/frames", probe)
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: proxytest\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in ctx.headers)
        + "\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    opened = _Opened(None, None, None)
    try:
        async with asyncio.timeout(ctx.thresholds.handshake_timeout_s):
            reader, writer = await ctx.open_connection()
            writer.write(request)
            await writer.drain()
            status, _, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        accept = next((v for k, v in headers if k.lower() == "sec-websocket-accept"), None)
        opened = _Opened(
            _Raw(reader, writer) if status == 101 else None,
            status,
            None if status == 101 else f"status {status}",
            accept == accept_for(key),
        )
    except TimeoutError:
        opened.error = f"no answer to the upgrade within {ctx.thresholds.handshake_timeout_s:g} s"
    except asyncio.IncompleteReadError:
        opened.error = "connection closed before a response"
    except asyncio.LimitOverrunError:
        opened.error = "response head too long"
    except (OSError, ValueError) as exc:
        opened.error = f"{type(exc).__name__}: {exc}"
    try:
        yield opened
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection ended"
    return str(exc) or type(exc).__name__


# -- ws.frames -----------------------------------------------------------------------
def _split_utf8_text() -> tuple[bytes, list[bytes]]:
    """A text message and its fragments, each cut inside a multi-byte sequence."""
    text = "fragments: é, €, 𝄞 and ü — " * 8
    raw = text.encode()
    cuts = [raw.index("€".encode()) + 1, raw.index("𝄞".encode()) + 2, raw.rindex("é".encode()) + 1]
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return raw, pieces


async def _fragmented(raw: _Raw, opcode: int, name: str, timeout: float) -> FragmentCase:
    if opcode == TEXT:
        whole, pieces = _split_utf8_text()
    else:
        whole = bytes((i * 7 + 3) & 0xFF for i in range(3 * 65536 + 17))
        pieces = [whole[:65536], whole[65536:65600], whole[65600:]]
    ping = f"between-{name}".encode()
    frames = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        frames.append(encode_frame(opcode if i == 0 else CONT, piece, fin=last))
        if i == 0:
            frames.append(encode_frame(PING, ping))
    raw.writer.write(b"".join(frames))
    try:
        async with asyncio.timeout(timeout):
            await raw.writer.drain()
            got_op, got = await raw.message()
    except (_Closed, TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
        return FragmentCase(name, False, ping in raw.pongs, _why(exc))
    ok = got_op == opcode and got == whole
    error = None if ok else f"came back as {len(got)} bytes (opcode {got_op}), not byte-exact"
    return FragmentCase(name, ok, ping in raw.pongs, error)


def _large(size: int) -> bytes:
    block = hashlib.sha256(str(size).encode()).digest() * 2048  # 64 KiB, not compressible
    return (block * (size // len(block) + 1))[:size]


async def _sizes(raw: _Raw, timeout: float) -> list[SizeCase]:
    cases = []
    for size in LARGE_SIZES:
        payload = _large(size)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                raw.writer.write(encode_frame(BINARY, payload))
                await raw.writer.drain()
                op, got = await raw.message()
        except (_Closed, TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            cases.append(SizeCase(size, False, None, _why(exc)))
            break
        took = round((time.monotonic() - started) * 1000, 1)
        if op != BINARY or got != payload:
            cases.append(SizeCase(size, False, took, f"echo of {len(got)} bytes differs"))
            break
        cases.append(SizeCase(size, True, took))
    return cases


def _burst_payload(seq: int) -> bytes:
    return f"burst {seq:05d} ".encode().ljust(BURST_SIZE, b".")


async def _burst(raw: _Raw, timeout: float) -> BurstResult:
    frames = [encode_frame(TEXT, _burst_payload(i)) for i in range(BURST_MESSAGES)]
    sent_at = [0.0] * BURST_MESSAGES
    latencies: list[float] = []
    seqs: list[int] = []
    intact = 0
    error: str | None = None

    async def write() -> None:
        for start in range(0, BURST_MESSAGES, BURST_BATCH):
            now = time.monotonic()
            for i in range(start, min(start + BURST_BATCH, BURST_MESSAGES)):
                sent_at[i] = now
            raw.writer.write(b"".join(frames[start : start + BURST_BATCH]))
            await raw.writer.drain()

    async def read() -> None:
        nonlocal intact
        while len(seqs) < BURST_MESSAGES:
            _, got = await raw.message(BURST_SIZE * 4)
            now = time.monotonic()
            try:
                seq = int(got[6:11])
            except ValueError:
                seq = -1
            seqs.append(seq)
            if 0 <= seq < BURST_MESSAGES:
                latencies.append((now - sent_at[seq]) * 1000)
                intact += got == _burst_payload(seq)

    started = time.monotonic()
    writer = asyncio.create_task(write())
    try:
        async with asyncio.timeout(timeout):
            await read()
    except (_Closed, TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
        error = _why(exc)
    finally:
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
    took = (time.monotonic() - started) * 1000
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None

    return BurstResult(
        BURST_MESSAGES,
        len(seqs),
        intact,
        seqs == list(range(len(seqs))),
        pct(0.5),
        pct(0.99),
        round(took, 1),
        error,
    )


def _invalid_frame(case: str) -> tuple[bytes, bytes]:
    """(frame, its payload): ``case``'s invalid frame with a recognisable payload."""
    if case == "bad_utf8":
        payload = b"proxytest-invalid-utf8 \xc3\x28 \xff\xfe"
        return encode_frame(TEXT, payload), payload
    if case == "reserved_opcode":
        payload = b"proxytest-invalid-opcode-3"
        return encode_frame(0x3, payload), payload
    if case == "fragmented_control":
        payload = b"proxytest-invalid-ping-not-final"
        return encode_frame(PING, payload, fin=False), payload
    payload = b"proxytest-invalid-rsv1-without-deflate"  # rsv_bits
    return encode_frame(TEXT, payload, rsv=0x4), payload


async def _invalid(ctx: ProbeContext, check: str, case: str) -> InvalidCase:
    probe = ctx.token(f"{check}-{case}")
    frame, payload = _invalid_frame(case)
    wait = ctx.thresholds.message_timeout_s * INVALID_WAIT_FRACTION
    outcome, code, detail = "ignored", None, None
    echoed = False
    async with _open(ctx, probe) as opened:
        if opened.raw is None:
            return InvalidCase(case, "error", None, opened.error)
        raw = opened.raw
        raw.writer.write(frame + encode_frame(TEXT, b"proxytest-after-" + case.encode()))
        try:
            async with asyncio.timeout(wait):
                await raw.writer.drain()
                while True:
                    _, got = await raw.message()
                    echoed |= got == payload
        except _Closed as exc:
            outcome, code = "closed", exc.code
        except TimeoutError:  # before OSError, its base class
            outcome = "ignored"
        except (asyncio.IncompleteReadError, OSError):
            outcome = "dropped"
        except ValueError as exc:
            outcome, detail = "dropped", str(exc)
    records = await ctx.origin.wait_for(probe, lambda r: r and r[0].end is not None, wait / 2)
    at_origin = any(digest(payload) in r.digests for r in records)
    if at_origin or echoed or payload in raw.pongs:
        where = "the origin received it" if at_origin else "its echo or pong came back"
        return InvalidCase(case, "delivered", code, f"as a valid frame: {where}")
    refused = bool(records) and (records[0].close_reason or "").startswith("refused:")
    if detail is None and refused:
        detail = f"origin: {records[0].close_code} {records[0].close_reason}"
    return InvalidCase(case, outcome, code, detail, refused)


async def frames(ctx: ProbeContext, check: str) -> FramesTimeline:
    """Fragments, large messages, a burst, then the invalid frames (each on its own
    connection, at once)."""
    timeout = ctx.thresholds.message_timeout_s
    async with _open(ctx, ctx.token(check)) as opened:
        if opened.raw is None:
            return FramesTimeline(opened.status, opened.error)
        accept_ok = opened.accept_ok
        fragments = (
            await _fragmented(opened.raw, TEXT, "text split inside UTF-8 sequences", timeout),
            await _fragmented(opened.raw, BINARY, "binary in 3 fragments", timeout),
        )
        sizes = await _sizes(opened.raw, timeout) if all(f.ok for f in fragments) else []
    async with _open(ctx, ctx.token(check)) as opened:
        if opened.raw is None:
            burst = BurstResult(BURST_MESSAGES, 0, 0, True, None, None, 0.0, opened.error)
        else:
            burst = await _burst(opened.raw, timeout)
    invalid = await asyncio.gather(*(_invalid(ctx, check, case) for case in INVALID_CASES))
    return FramesTimeline(101, None, fragments, tuple(sizes), burst, tuple(invalid), accept_ok)


# -- ws.deflate ----------------------------------------------------------------------
def _deflate_payload(kind: str, size: int, compressible: bool) -> str | bytes:
    if compressible:
        pattern = "deflate me: é € 𝄞 " if kind == "text" else "0123456789abcdef"
        raw = (pattern.encode() * (size // len(pattern) + 1))[:size]
    else:
        raw = base64.b64encode(os.urandom(size))[:size] if kind == "text" else os.urandom(size)
    if kind == "binary":
        return raw
    text = raw.decode("utf-8", errors="ignore")
    return text + "x" * (size - len(text.encode()))


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in headers if k.lower() == name.lower()]
    return ", ".join(values) if values else None


async def _read_message(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: WSConnection
) -> str | bytes:
    text: list[str] = []
    data: list[bytes] = []
    received = 0
    while True:
        for event in conn.events():
            if isinstance(event, TextMessage):
                text.append(event.data)
            elif isinstance(event, BytesMessage):
                data.append(bytes(event.data))
            elif isinstance(event, Ping):
                writer.write(conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise _Closed(event.code)
            if isinstance(event, Message) and event.message_finished:
                return "".join(text) if isinstance(event, TextMessage) else b"".join(data)
        chunk = await reader.read(65536)
        if not chunk:
            raise asyncio.IncompleteReadError(b"", None)
        received += len(chunk)
        if received > 4 * max(DEFLATE_SIZES):
            raise ValueError(f"more than {received} bytes for one message")
        conn.receive_data(chunk)


async def deflate(ctx: ProbeContext, check: str) -> DeflateTimeline:
    """Offer permessage-deflate, then echo text and binary messages through it."""
    probe = ctx.token(check)
    parts = urlsplit(ctx.url("/ws/deflate", probe))
    conn = WSConnection(ConnectionType.CLIENT)
    offer = PerMessageDeflate()
    request = conn.send(
        Request(
            host=parts.netloc,
            target=f"{parts.path}?{parts.query}",
            extensions=[offer],
            extra_headers=[(b"User-Agent", b"proxytest")]
            + [(k.encode(), v.encode()) for k, v in ctx.headers],
        )
    )
    offered = offer.offer()
    offered_text = f"{offer.name}; {offered}" if isinstance(offered, str) else offer.name
    status: int | None = None
    error: str | None = None
    refused: str | None = None
    client_got: str | None = None
    exchanges: list[DeflateExchange] = []
    writer: asyncio.StreamWriter | None = None
    th = ctx.thresholds
    try:
        async with asyncio.timeout(th.handshake_timeout_s):
            reader, writer = await ctx.open_connection()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        status, _, headers = _parse_head(head)
        client_got = _header(headers, "Sec-WebSocket-Extensions")
        try:
            conn.receive_data(head)
            accepted = any(isinstance(e, AcceptConnection) for e in conn.events())
        except (RemoteProtocolError, LocalProtocolError) as exc:
            accepted, refused = False, str(exc)
        if status == 101 and not accepted and refused is None:
            refused = "the client did not accept the 101"
        if status == 101 and refused is None:
            exchanges = await _deflate_echoes(reader, writer, conn, th.message_timeout_s)
    except TimeoutError:
        error = f"no answer to the upgrade within {th.handshake_timeout_s:g} s"
    except asyncio.IncompleteReadError:
        error = "connection closed before a response"
    except asyncio.LimitOverrunError:
        error = "response head too long"
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.write(conn.send(CloseConnection(code=1000)))
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()
    if status is not None and status != 101 and error is None:
        error = f"status {status}"
    records = await ctx.origin.wait_for(
        probe, lambda r: r and r[0].end is not None, 0.5 if status == 101 else 0.0
    )
    record = records[0] if records else None
    return DeflateTimeline(
        status,
        error,
        offered_text,
        record.header("Sec-WebSocket-Extensions") if record else None,
        record.extensions_selected if record else None,
        client_got,
        refused,
        tuple(exchanges),
        len(record.messages_received) if record else 0,
    )


async def _deflate_echoes(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: WSConnection, timeout: float
) -> list[DeflateExchange]:
    out: list[DeflateExchange] = []
    for size in DEFLATE_SIZES:
        for kind in ("text", "binary"):
            for compressible in (True, False):
                payload = _deflate_payload(kind, size, compressible)
                msg = TextMessage(payload) if isinstance(payload, str) else BytesMessage(payload)
                try:
                    async with asyncio.timeout(timeout):
                        writer.write(conn.send(msg))
                        await writer.drain()
                        got = await _read_message(reader, writer, conn)
                except (
                    _Closed,
                    TimeoutError,
                    OSError,
                    ValueError,
                    asyncio.IncompleteReadError,
                    RemoteProtocolError,
                    LocalProtocolError,
                ) as exc:
                    why = _why(exc)
                    if isinstance(exc, RemoteProtocolError):
                        why = f"the client refused a frame: {exc}"
                    out.append(DeflateExchange(kind, size, compressible, False, why))
                    return out
                ok = got == payload
                error = None if ok else f"came back as {len(got)} units, not byte-exact"
                out.append(DeflateExchange(kind, size, compressible, ok, error))
    return out
