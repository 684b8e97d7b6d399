"""The fan-out probe: one publisher, N subscribers over SSE and over WebSocket.

N steps up (``LADDER``, then the max N). At each N, every subscriber of both
protocols is subscribed to one topic (the origin's ``/fanout/*`` routes,
origin/fanout.py), and the publisher posts a burst of messages, one every
interval: first directly to the origin (the baseline, on a topic of its own),
then through the target. SSE and WebSocket subscribers share a topic and a
burst, so both meet the same load at the same moment: the fair comparison on a
machine of two cores, where two separate runs would see different neighbours.
Subscribers stay open from step to step (only the new ones are opened).

The receive side is as light as this process can make it: a raw asyncio
protocol per subscriber stores each read with its arrival time and scans it for
nothing but the burst's last message; the bytes are parsed after the burst.
Stepping stops at the knee of every protocol judged (p99 past the knee, or a
delivery failure), when the direct path itself fails (the tool's own limit),
at the max N, or at what the open-files limit allows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..errors import HarnessError
from ..runtimes import LOOPBACK
from .context import ProbeContext
from .load import (
    FD_RESERVE,
    OPEN_PARALLEL,
    _kind,
    _open_fds,
    behind_origin_process,
    raise_fd_limit,
)
from .timeline import FanoutSide, FanoutStep, FanoutTimeline

__all__ = ["LADDER", "fanout", "ladder", "percentile"]

LADDER = (10, 50, 100, 250, 500, 1000, 1500, 2000, 3000, 4000)
# Sockets of this process per N: an SSE and a WebSocket subscriber on each of the
# two paths (direct, through the target); twice that with the origin in this process.
CLIENT_FDS_PER_N = 4
_MESSAGE = re.compile(rb'"seq":(\d+),"sent":([0-9.eE+-]+)')
_CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (key 0), code 1000
READ_SIZE = 65536
# Linux: a read's kernel receive time as a struct timespec (SCM_TIMESTAMPNS has the
# option's number); Python's socket module does not name them.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
_LINGER_0 = struct.pack("ii", 1, 0)


def ladder(max_n: int) -> tuple[int, ...]:
    """The values of N measured up to ``max_n``: the ladder's, then ``max_n`` itself."""
    steps = [n for n in LADDER if n < max_n]
    return (*steps, max_n)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (not empty)."""
    index = max(0, min(len(values) - 1, int(-(-fraction * len(values) // 1)) - 1))
    return values[index]


@dataclass
class _Watch:
    """The burst's last message: how many subscribers still wait for it."""

    needle: bytes = b"\x00"
    left: int = 0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)


class _Subscriber:
    """One subscription: a request, a response head, then reads kept with their times.

    Transport-neutral: a driver (``_RawSocket`` in cleartext, ``_Protocol`` over
    TLS) hands it each read with its arrival time and tells it when the
    connection ends; it writes and closes through the driver.
    """

    def __init__(self, kind: str, request: bytes, watch: _Watch) -> None:
        self.kind, self.request, self.watch = kind, request, watch
        self.driver: _RawSocket | _Protocol | None = None
        self.head = b""
        self.status: int | None = None
        self.chunked = False
        self.reads: list[tuple[float, bytes]] = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = False
        self.tail = b""
        self.waiting = False  # counted in watch.left for the current burst
        self.parser = _SseParser() if kind == "sse" else _WsParser()

    def feed(self, at: float, data: bytes) -> None:
        """Bytes that arrived at ``at`` (this machine's monotonic clock)."""
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 65536:
                    self._fail("a response head over 64 KiB")
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self._parse_head(head)
            if self.ready.done():  # refused
                return
            if not data:
                return
        self.reads.append((at, data))
        seen = self.tail + data
        self.tail = seen[-40:]
        if not self.ready.done() and b"subscribed" in seen:
            self.ready.set_result(None)
        if self.waiting and self.watch.needle in seen:
            self._arrived()

    def _arrived(self) -> None:
        self.waiting = False
        self.watch.left -= 1
        if self.watch.left <= 0:
            self.watch.all_in.set()

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self.status = 0
            self._fail("a response that is not HTTP")
            return
        want = 101 if self.kind == "ws" else 200
        if self.status != want:
            self._fail(f"status {self.status}")
            return
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
        if isinstance(self.parser, _SseParser):
            self.parser.chunked = self.chunked

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(_Refused(why))
        if self.driver is not None:
            self.driver.abort()

    def lost(self) -> None:
        """The connection ended."""
        self.ended = True
        if not self.ready.done():
            self.ready.set_exception(_Refused("connection closed before it subscribed"))
        if self.waiting:
            self._arrived()

    def take(self) -> list[tuple[int, float, float]]:
        """(seq, sent, arrived) of every whole message read since the last call."""
        reads, self.reads = self.reads, []
        out: list[tuple[int, float, float]] = []
        for at, data in reads:
            for body in self.parser.feed(data):
                for match in _MESSAGE.finditer(body):
                    out.append((int(match[1]), float(match[2]), at))
        return out

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close(_CLOSE_FRAME if self.kind == "ws" and self.status == 101 else b"")


class _Clock:
    """This machine's realtime clock (kernel receive stamps) on its monotonic clock."""

    offset = time.time() - time.monotonic()

    @classmethod
    def sync(cls) -> None:
        """Measure the offset again (before each burst): the closest of a few readings."""
        best = None
        for _ in range(5):
            before = time.monotonic()
            wall = time.time()
            after = time.monotonic()
            if best is None or after - before < best[0]:
                best = (after - before, wall - (before + after) / 2)
        assert best is not None
        cls.offset = best[1]


class _RawSocket:
    """A cleartext subscriber on a plain non-blocking socket, read with ``recvmsg``.

    The kernel stamps each read with when its data reached the socket
    (SO_TIMESTAMPNS): the latency a subscriber on its own machine would see, not
    including the time this process took to come round to reading it.
    """

    def __init__(self, sub: _Subscriber, sock: socket.socket) -> None:
        self.sub, self.sock = sub, sock
        self.loop = asyncio.get_running_loop()
        self.stamped = False
        self.open = True

    @classmethod
    async def connect(cls, sub: _Subscriber, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        driver = cls(sub, sock)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                driver.stamped = True
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, sub.request)
        except BaseException:
            sock.close()
            raise
        sub.driver = driver
        loop.add_reader(sock.fileno(), driver.readable)

    def readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(READ_SIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self._end()
            return
        at = None
        for level, kind, cdata in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(cdata)
                at = seconds + nanoseconds / 1e9 - _Clock.offset
        self.sub.feed(time.monotonic() if at is None else at, data)

    def _end(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sub.lost()

    def abort(self) -> None:
        if self.open:
            with contextlib.suppress(OSError):  # RST, not FIN: as a transport's abort()
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            self._end()

    def close(self, goodbye: bytes) -> None:
        if self.open and goodbye:
            with contextlib.suppress(OSError):
                self.sock.send(goodbye)
        self._end()


class _Protocol(asyncio.Protocol):
    """A subscriber over TLS: asyncio's transport, each read stamped when it is handed over."""

    def __init__(self, sub: _Subscriber) -> None:
        self.sub = sub
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sub.driver = self
        transport.write(self.sub.request)

    def data_received(self, data: bytes) -> None:
        self.sub.feed(time.monotonic(), data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sub.lost()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self, goodbye: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if goodbye:
                self.transport.write(goodbye)
            self.transport.close()


class _Refused(Exception):
    """A subscription that did not open, with why."""


class _SseParser:
    """Body bytes (chunked or not) to whole events."""

    def __init__(self) -> None:
        self.chunked = False
        self.raw = b""  # chunked framing not yet decoded
        self.left = 0  # bytes of the current chunk still to come (then its CRLF)
        self.text = b""  # decoded bytes not yet a whole event

    def feed(self, data: bytes) -> list[bytes]:
        if self.chunked:
            data = self._dechunk(data)
        self.text += data
        cut = self.text.rfind(b"\n\n")
        if cut < 0:
            return []
        whole, self.text = self.text[: cut + 2], self.text[cut + 2 :]
        return [whole]

    def _dechunk(self, data: bytes) -> bytes:
        self.raw += data
        out = bytearray()
        while self.raw:
            if self.left > 0:
                take = self.raw[: self.left]
                out += take
                self.raw = self.raw[len(take) :]
                self.left -= len(take)
                if self.left:
                    break
                self.left = -2  # the CRLF after the chunk
            if self.left < 0:
                if len(self.raw) < 2:
                    break
                self.raw, self.left = self.raw[2:], 0
                continue
            end = self.raw.find(b"\r\n")
            if end < 0:
                break
            try:
                size = int(self.raw[:end].split(b";", 1)[0], 16)
            except ValueError:
                size = 0
            self.raw = self.raw[end + 2 :]
            if size == 0:  # the last chunk: the stream ends
                self.raw = b""
                break
            self.left = size
        return bytes(out)


class _WsParser:
    """Server frames (unmasked) to the payloads of whole text messages."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out = []
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            at = pos + 2
            if length == 126:
                if len(buf) - at < 2:
                    break
                length, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
            elif length == 127:
                if len(buf) - at < 8:
                    break
                length, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
            if b1 & 0x80:
                at += 4  # a server never masks; skip a key if one came anyway
            if len(buf) - at < length:
                break
            if b0 & 0x0F in (0x1, 0x0):
                out.append(buf[at : at + length])
            pos = at + length
        self.buffer = buf[pos:]
        return out


@dataclass
class _Path:
    """One way to the origin (direct, or through the target) and its subscribers."""

    ctx: ProbeContext
    topic: str
    watch: _Watch = field(default_factory=_Watch)
    subs: dict[str, list[_Subscriber]] = field(default_factory=lambda: {"sse": [], "ws": []})
    refused: dict[str, Counter[str]] = field(
        default_factory=lambda: {"sse": Counter(), "ws": Counter()}
    )
    attempted: dict[str, int] = field(default_factory=lambda: {"sse": 0, "ws": 0})
    seq: int = 0
    # Cleartext subscribers on raw sockets with the kernel's receive times; False
    # (both paths, when the target speaks TLS): asyncio transports, stamped when read.
    kernel_stamps: bool = True

    def request(self, kind: str) -> bytes:
        ctx = self.ctx
        lines = [
            f"GET {ctx.prefix}/fanout/{kind}?topic={self.topic} HTTP/1.1",
            f"Host: {ctx.authority}",
        ]
        if kind == "ws":
            key = base64.b64encode(os.urandom(16)).decode()
            lines += [
                "Upgrade: websocket", "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            ]  # fmt: skip
        else:
            lines += ["Accept: text/event-stream", "Accept-Encoding: identity",
                      "Cache-Control: no-cache"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in ctx.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def live(self, kind: str) -> list[_Subscriber]:
        return [s for s in self.subs[kind] if _subscribed(s.ready) and not s.ended]

    def close(self) -> None:
        for subs in self.subs.values():
            for sub in subs:
                sub.close()


async def _open(path: _Path, kind: str, count: int, timeout_s: float) -> None:
    """Open ``count`` more subscribers of ``kind`` on ``path``; each waits for its first message."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_PARALLEL)
    ctx = path.ctx

    async def one() -> None:
        async with gate:
            sub = _Subscriber(kind, path.request(kind), path.watch)
            path.subs[kind].append(sub)
            tls = ctx.ssl_context()
            try:
                async with asyncio.timeout(timeout_s):
                    if tls is None and path.kernel_stamps:
                        await _RawSocket.connect(sub, ctx.host, ctx.port)
                    else:
                        await loop.create_connection(
                            lambda: _Protocol(sub), ctx.host, ctx.port, ssl=tls
                        )
                    await sub.ready
            except _Refused as exc:
                path.refused[kind][str(exc)] += 1
            except TimeoutError:
                path.refused[kind]["no answer in time"] += 1
                sub.close()
            except OSError as exc:
                path.refused[kind][_kind(exc)] += 1

    path.attempted[kind] += count
    await asyncio.gather(*(one() for _ in range(count)))


async def _burst(
    path: _Path, n: int, kinds: Sequence[str], count: int, interval_s: float, drain_s: float
) -> tuple[dict[str, FanoutSide], str | None, float]:
    """Publish ``count`` messages on ``path``'s topic: what each kind's subscribers got,
    why the publisher failed (None), and when the burst began."""
    members = {kind: path.live(kind) for kind in kinds}
    # One untimed message first: the first writes to subscribers opened since the
    # last burst (their buffers, and the proxy's) are not part of what is measured.
    path.seq += 1
    await _publish(path, path.seq)
    first, last = path.seq + 1, path.seq + count
    path.seq = last
    watch = path.watch
    watch.needle = b'"seq":%d,' % last
    watch.all_in.clear()
    watch.left = 0
    # A full collection now rather than during the burst; then a tick, so that the
    # lag monitor files the pause before the burst's window opens.
    gc.collect()
    await asyncio.sleep(0.02)
    _Clock.sync()
    began = time.monotonic()
    for subs in members.values():
        for sub in subs:
            sub.take()  # anything before the burst is not part of it
            sub.waiting = True
            watch.left += 1
    if watch.left == 0:
        watch.all_in.set()
    published, origin_ms = 0, 0.0
    error: str | None = None
    started = time.monotonic()
    for index in range(count):
        due = started + index * interval_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        took, why = await _publish(path, first + index)
        if why is None:
            published += 1
            origin_ms = max(origin_ms, took)
        error = error or why
    if published:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.all_in.wait(), drain_s)
    for subs in members.values():
        for sub in subs:
            sub.waiting = False
    sides = {}
    for kind, subs in members.items():
        latencies: list[float] = []
        received = dropped = 0
        for sub in subs:
            seen: set[int] = set()
            for seq, sent, arrived in sub.take():
                if first <= seq <= last and seq not in seen:
                    seen.add(seq)
                    latencies.append((arrived - sent) * 1000)
            received += min(len(seen), published)
            dropped += sub.ended
        latencies.sort()
        sides[kind] = FanoutSide(
            subscribers=n,
            connected=len(subs),
            published=published,
            expected=len(subs) * published,
            received=received,
            dropped=dropped,
            refused=tuple(path.refused[kind].most_common()),
            p50_ms=round(percentile(latencies, 0.5), 2) if latencies else None,
            p99_ms=round(percentile(latencies, 0.99), 2) if latencies else None,
            max_ms=round(latencies[-1], 2) if latencies else None,
            origin_write_ms=round(origin_ms, 2),
        )
    return sides, error, began


async def _publish(path: _Path, seq: int) -> tuple[float, str | None]:
    """POST message ``seq`` to ``path``'s topic: the origin's write loop (ms), or why not."""
    ctx = path.ctx
    url = f"{ctx.base_url}{ctx.prefix}/fanout/publish"
    query = {"topic": path.topic, "seq": str(seq)}
    try:
        async with asyncio.timeout(ctx.thresholds.message_timeout_s):
            async with ctx.session.post(
                url, params=query, data=b"a comment", headers=list(ctx.headers) or None
            ) as response:
                body = await response.read()
                if response.status != 200:
                    return 0.0, f"the publisher got status {response.status}"
                return _took_ms(body), None
    except TimeoutError:
        return 0.0, "the publisher got no answer in time"
    except Exception as exc:  # aiohttp.ClientError, OSError and the like
        return 0.0, f"the publisher's request failed: {_kind(exc)}"


def _knee(side: FanoutSide | None, knee_ms: float) -> bool:
    return side is not None and (not side.delivered or side.p99_ms is None or side.p99_ms > knee_ms)


async def fanout(ctx: ProbeContext, check: str) -> FanoutTimeline:
    """The fan-out curve through the target and directly, N stepping up.

    With a launched proxy (``ctx.harness``) the origin runs in a process of its
    own behind a private instance of the target (so this process holds only the
    clients); without one (a relay, in tests) the in-process origin serves, and
    its address is the direct path.
    """
    limit = raise_fd_limit()  # before the origin process starts: it inherits it
    requested = ctx.settings.fanout_max_n
    harness = ctx.harness
    if harness is None:
        host, port = getattr(ctx.origin, "host", None), getattr(ctx.origin, "port", None)
        if not isinstance(host, str) or not isinstance(port, int):
            return FanoutTimeline((), requested, 0, error="no direct path to the origin")
        direct = replace(ctx, host=host, port=port, tls=False)
        return await _fanout(ctx, direct, check, limit, origin_process=False)
    try:
        # Several backends: all of them on the one origin process (one topic).
        async with behind_origin_process(ctx, harness) as (own, origin):
            assert origin.port is not None
            direct = replace(ctx, host=LOOPBACK, port=origin.port, tls=False, prefix="")
            return await _fanout(own, direct, check, limit, origin_process=True)
    except HarnessError as exc:
        return FanoutTimeline(
            (), requested, 0, fd_limit=limit, error=f"{exc.problem} {exc.detail}".strip()
        )


async def _fanout(
    target: ProbeContext, direct: ProbeContext, check: str, limit: int, *, origin_process: bool
) -> FanoutTimeline:
    th = target.thresholds
    requested = target.settings.fanout_max_n
    per_n = CLIENT_FDS_PER_N * (1 if origin_process else 2)
    room = max(0, (limit - _open_fds() - FD_RESERVE) // per_n)
    max_n = min(requested, room)
    notes: list[str] = []
    if max_n < requested:
        notes.append(
            f"asked for up to {requested} subscribers of each protocol, but this process may "
            f"open only {limit} files ({per_n} per N): stepped up to {max_n}"
        )
    token = target.token(check)
    # Both paths stamp reads alike: by the kernel, unless the target speaks TLS.
    stamps = not target.tls
    paths = {
        "target": _Path(target, f"{token}-target", kernel_stamps=stamps),
        "direct": _Path(direct, f"{token}-direct", kernel_stamps=stamps),
    }
    count, interval = th.fanout_messages, th.fanout_interval_ms / 1000
    steps: list[FanoutStep] = []
    ws_refused: str | None = None
    deadline = time.monotonic() + th.fanout_deadline_s
    try:
        for n in ladder(max_n) if max_n else ():
            if time.monotonic() > deadline:
                notes.append(f"stopped after {th.fanout_deadline_s:g} s of stepping, before N={n}")
                break
            for name, path in paths.items():
                kinds = ("sse",) if name == "target" and ws_refused else ("sse", "ws")
                await asyncio.gather(*(
                    _open(path, kind, n - path.attempted[kind], th.load_connect_timeout_s)
                    for kind in kinds
                ))  # fmt: skip
            target_path = paths["target"]
            if not steps and ws_refused is None:
                ws_refused = _not_proxied(target_path, n)
            kinds = ("sse",) if ws_refused else ("sse", "ws")
            direct_sides, direct_error, since = await _burst(
                paths["direct"], n, ("sse", "ws"), count, interval, th.fanout_drain_s
            )
            direct_lag = target.lag.max_lag_ms(since)
            sides, error, since = await _burst(
                target_path, n, kinds, count, interval, th.fanout_drain_s
            )
            lag = target.lag.max_lag_ms(since)
            step = FanoutStep(
                n=n, sse=sides["sse"], ws=sides.get("ws"),
                direct_sse=direct_sides["sse"], direct_ws=direct_sides["ws"],
                loop_lag_ms=round(lag, 1), direct_loop_lag_ms=round(direct_lag, 1),
                publish_error=error, direct_publish_error=direct_error,
            )  # fmt: skip
            steps.append(step)
            if _knee(step.direct_sse, th.fanout_knee_ms) or _knee(
                step.direct_ws, th.fanout_knee_ms
            ):
                if n < max_n:
                    notes.append(
                        f"the direct path itself did not keep up at N={n}: the tool's own limit"
                    )
                break
            if all(_knee(s, th.fanout_knee_ms) for s in (step.sse, step.ws) if s is not None):
                break
    finally:
        for path in paths.values():
            path.close()
        await asyncio.sleep(0)  # let the transports start closing
    return FanoutTimeline(
        steps=tuple(steps),
        requested_max_n=requested,
        max_n=max_n,
        interval_ms=th.fanout_interval_ms,
        messages_per_step=count,
        ws_refused=ws_refused,
        tool_limit="; ".join(notes) or None,
        fd_limit=limit,
        origin_process=origin_process,
    )


def _not_proxied(path: _Path, n: int) -> str | None:
    """Every WebSocket subscription of the first step refused with one 4xx: not proxied."""
    refused = path.refused["ws"]
    if path.live("ws") or len(refused) != 1:
        return None
    ((why, times),) = refused.items()
    return why if why.startswith("status 4") and times >= n else None


def _took_ms(body: bytes) -> float:
    """The origin's longest broadcast loop, from the publish route's answer (0 if unsaid)."""
    match = re.search(rb'"took_ms":\s*([0-9.eE+-]+)', body)
    return float(match[1]) if match else 0.0


def _subscribed(ready: asyncio.Future[None]) -> bool:
    return ready.done() and not ready.cancelled() and ready.exception() is None
