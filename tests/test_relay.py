"""Tests for the faulty relay (tests/relay.py): each fault shows its effect.

A small aiohttp upstream lives in this file. The client, the relay and the
upstream share one event loop, so ``time.monotonic()`` stamps written by the
upstream into each SSE event compare directly with arrival times.
Thresholds are generous: this runs on small, noisy CI machines.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from . import relay as relay_module
from .relay import FAULT_KINDS, Fault, Relay, _WsFilter

PROMPT_S = 0.25  # an event through a clean hop arrives within this (typically ~2 ms)
TIMEOUT = aiohttp.ClientTimeout(total=10)


# -- upstream -------------------------------------------------------------------


@dataclass
class Upstream:
    host: str = ""
    port: int = 0
    closes: list[tuple[Any, Any]] = field(default_factory=list)  # what /ws saw at its end


UPSTREAM = web.AppKey("upstream", Upstream)


async def sse(request: web.Request) -> web.StreamResponse:
    """``count`` events ``interval_ms`` apart; each carries its sent time (monotonic)."""
    count = int(request.query.get("count", "5"))
    interval = int(request.query.get("interval_ms", "100")) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(count):
        if i:
            await asyncio.sleep(interval)
        await resp.write(f"id: {i}\ndata: {time.monotonic()!r}\n\n".encode())
    await resp.write_eof()
    return resp


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    """Echo; "ping-me" sends a ping, "pong?" tells how many pongs came back,
    "close:CODE" closes with CODE. Pings are answered by hand (autoping off)."""
    upstream = request.app[UPSTREAM]
    ws = web.WebSocketResponse(autoping=False, protocols=("chat",), max_msg_size=0)
    await ws.prepare(request)
    pongs = 0
    while True:
        try:
            msg = await ws.receive()
        except asyncio.CancelledError:  # handler_cancellation: the TCP connection was lost
            upstream.closes.append(("abnormal", None))
            raise
        if msg.type is WSMsgType.TEXT and msg.data == "ping-me":
            await ws.ping(b"srv")
            await ws.send_str("ping-sent")
        elif msg.type is WSMsgType.TEXT and msg.data == "pong?":
            await ws.send_str(f"pongs={pongs}")
        elif msg.type is WSMsgType.TEXT and msg.data.startswith("close:"):
            upstream.closes.append(("sent", int(msg.data[6:])))
            await ws.close(code=int(msg.data[6:]), message=b"server-bye")
            break
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is WSMsgType.PONG:
            pongs += 1
        elif msg.type is WSMsgType.CLOSE:
            upstream.closes.append((msg.data, msg.extra))
            await ws.close()
            break
        else:  # CLOSED or ERROR: the connection went away without a close frame
            upstream.closes.append(("abnormal", ws.close_code))
            break
    return ws


async def headers(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"headers": dict(request.headers), "body_len": len(body)})


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = web.Application()
    app[UPSTREAM] = up = Upstream()
    app.router.add_get("/sse", sse)
    app.router.add_get("/ws", ws_echo)
    app.router.add_route("*", "/headers", headers)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.host, up.port = runner.addresses[0][:2]
    yield up
    await runner.cleanup()


# -- helpers --------------------------------------------------------------------


@dataclass
class Stream:
    sent: list[float]  # when the upstream wrote each event
    arrived: list[float]  # when the client read it
    per_read: list[int]  # events completed by each read

    @property
    def delays(self) -> list[float]:
        return [a - s for s, a in zip(self.sent, self.arrived, strict=True)]


async def read_sse(resp: aiohttp.ClientResponse) -> Stream:
    stream, buf = Stream([], [], []), b""
    async for chunk in resp.content.iter_any():
        now, buf, done = time.monotonic(), buf + chunk, 0
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            stream.sent.append(float(event.split(b"data: ")[1]))
            stream.arrived.append(now)
            done += 1
        stream.per_read.append(done)
    return stream


async def get_sse(relay: Relay, query: str = "count=5&interval_ms=100") -> Stream:
    url = f"http://{relay.host}:{relay.port}/sse?{query}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url) as resp:
        assert resp.status == 200
        return await read_sse(resp)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> aiohttp.WSMessage:
    """Next message; pings are answered here (the client runs with autoping off)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is not WSMsgType.PING:
            return msg
        await ws.pong(msg.data)


def ws_url(relay: Relay) -> str:
    return f"http://{relay.host}:{relay.port}/ws"


def relay_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "cr_code", None) is not None
        and t.get_coro().cr_code.co_filename == relay_module.__file__  # type: ignore[union-attr]
    ]


# -- pure parts -----------------------------------------------------------------


def test_fault_validates() -> None:
    assert Fault().kind == "clean"
    assert "no_upgrade_tunnel" not in FAULT_KINDS
    with pytest.raises(ValueError, match="choose one of"):
        Fault("buffer")
    with pytest.raises(ValueError, match="strip_headers"):
        Fault("strip_headers")
    with pytest.raises(ValueError, match="positive"):
        Fault("delay", delay_ms=0)


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    n = len(payload)
    if n < 126:
        length = bytes([n | (0x80 if mask else 0)])
    elif n < 1 << 16:
        length = bytes([126 | (0x80 if mask else 0)]) + n.to_bytes(2, "big")
    else:
        length = bytes([127 | (0x80 if mask else 0)]) + n.to_bytes(8, "big")
    key = b"\x01\x02\x03\x04" if mask else b""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if mask else payload
    return bytes([0x80 | opcode]) + length + key + body


@pytest.mark.parametrize("step", [1, 3, 1000, 1 << 20])
def test_ws_filter_drops_control_frames_across_reads(step: int) -> None:
    text, big, huge = frame(0x1, b"hi", True), frame(0x2, b"x" * 300, False), b""
    huge = frame(0x2, os.urandom(70_000), True)
    stream = text + frame(0x9, b"p", True) + big + frame(0xA, b"", False) + huge
    stream += frame(0x8, b"\x03\xe8", True)
    f, out = _WsFilter(frozenset({0x9, 0xA}), abort_on_close=False), b""
    for i in range(0, len(stream), step):
        data, closed = f.feed(stream[i : i + step])
        out += data
        assert not closed
    assert out == text + big + huge + frame(0x8, b"\x03\xe8", True)


def test_ws_filter_reports_close_and_keeps_what_came_before() -> None:
    f = _WsFilter(frozenset(), abort_on_close=True)
    data, closed = f.feed(frame(0x1, b"last", False) + frame(0x8, b"\x0f\xa1", False))
    assert (data, closed) == (frame(0x1, b"last", False), True)


# -- clean ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_clean_streams_sse_event_by_event(upstream: Upstream) -> None:
    async with Relay(upstream.host, upstream.port) as relay:
        assert relay.host == "127.0.0.1" and relay.port > 0
        stream = await get_sse(relay)
    assert len(stream.sent) == 5
    assert stream.arrived[0] < stream.sent[-1]  # the first event came while the stream ran
    assert max(stream.delays) < PROMPT_S
    assert relay.errors == []


@pytest.mark.asyncio
async def test_clean_forwards_headers_and_bodies(upstream: Upstream) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 10_000

    async with (
        Relay(upstream.host, upstream.port) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        url = f"http://{relay.host}:{relay.port}/headers"
        async with session.get(url, headers={"Last-Event-ID": "7", "X-Test": "a"}) as resp:
            seen = await resp.json()
        assert seen["headers"]["Last-Event-ID"] == "7" and seen["headers"]["X-Test"] == "a"
        assert seen["headers"]["Connection"] == "close"  # one request per connection
        async with session.post(url, data=b"x" * 100_000) as resp:
            assert (await resp.json())["body_len"] == 100_000
        async with session.post(url, data=chunks()) as resp:  # chunked request body
            assert (await resp.json())["body_len"] == 40_000
    assert relay.errors == []


@pytest.mark.asyncio
async def test_clean_websocket_is_byte_exact(upstream: Upstream) -> None:
    blob = os.urandom(1 << 20)
    async with (
        Relay(upstream.host, upstream.port) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        async with session.ws_connect(
            ws_url(relay), autoping=False, protocols=("chat",), max_msg_size=0
        ) as ws:
            assert ws.protocol == "chat"
            await ws.send_str("héllo")
            assert (await recv(ws)).data == "héllo"
            await ws.send_bytes(blob)
            assert (await recv(ws)).data == blob
            await ws.send_str("ping-me")
            assert (await recv(ws)).data == "ping-sent"  # recv answered the ping
            await ws.send_str("pong?")
            assert (await recv(ws)).data == "pongs=1"
            await ws.ping(b"abc")
            msg = await recv(ws)
            assert (msg.type, msg.data) == (WSMsgType.PONG, b"abc")
            await ws.close(code=4001, message=b"bye")
            assert ws.close_code == 1000  # the upstream's reply
        async with session.ws_connect(ws_url(relay), autoping=False) as ws:
            await ws.send_str("close:4002")
            msg = await recv(ws)
            assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4002, "server-bye")
    assert upstream.closes == [(4001, "bye"), ("sent", 4002)]
    assert relay.errors == []


# -- faults ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hold_delivers_sse_only_at_the_end(upstream: Upstream) -> None:
    async with Relay(upstream.host, upstream.port, Fault("hold")) as relay:
        stream = await get_sse(relay)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            with pytest.raises(TimeoutError):  # the 101 is held until the tunnel closes
                await asyncio.wait_for(session.ws_connect(ws_url(relay)), 0.5)
    assert len(stream.sent) == 5
    assert stream.arrived[0] > stream.sent[-1]
    assert relay.errors == []


@pytest.mark.asyncio
async def test_strip_headers(upstream: Upstream) -> None:
    fault = Fault("strip_headers", headers=("last-event-id",))
    async with (
        Relay(upstream.host, upstream.port, fault) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        url = f"http://{relay.host}:{relay.port}/headers"
        async with session.get(url, headers={"Last-Event-ID": "7", "X-Test": "a"}) as resp:
            seen = (await resp.json())["headers"]
        assert "Last-Event-ID" not in seen and seen["X-Test"] == "a"
    async with (
        Relay(upstream.host, upstream.port, Fault("strip_headers", headers=("Upgrade",))) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(ws_url(relay))
        assert info.value.status == 400
    assert relay.errors == []


@pytest.mark.asyncio
async def test_delay_shifts_every_chunk(upstream: Upstream) -> None:
    async with Relay(upstream.host, upstream.port, Fault("delay", delay_ms=300)) as relay:
        stream = await get_sse(relay)
        assert len(stream.sent) == 5 and min(stream.delays) >= 0.29
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.ws_connect(ws_url(relay)) as ws,
        ):
            started = time.monotonic()
            await ws.send_str("echo")
            assert (await recv(ws)).data == "echo"
            assert time.monotonic() - started >= 0.29
    assert relay.errors == []


@pytest.mark.asyncio
async def test_coalesce_batches_events(upstream: Upstream) -> None:
    async with Relay(upstream.host, upstream.port, Fault("coalesce", delay_ms=300)) as relay:
        stream = await get_sse(relay, "count=8&interval_ms=100")
    assert len(stream.sent) == 8
    assert max(stream.per_read) >= 2
    assert relay.errors == []


@pytest.mark.asyncio
async def test_close_after_idle(upstream: Upstream) -> None:
    async with Relay(upstream.host, upstream.port, Fault("close_after_idle", idle_s=0.5)) as relay:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(f"http://{relay.host}:{relay.port}/sse?count=3&interval_ms=3000") as resp,
        ):
            first = await resp.content.readuntil(b"\n\n")
            assert first.startswith(b"id: 0")
            started = time.monotonic()
            with pytest.raises(aiohttp.ClientPayloadError):  # chunked body left unterminated
                await resp.content.read()
            assert 0.3 <= time.monotonic() - started < 2.5
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.ws_connect(ws_url(relay)) as ws,
        ):
            started = time.monotonic()
            msg = await recv(ws)
            assert msg.type is WSMsgType.CLOSED and ws.close_code == 1006
            assert 0.3 <= time.monotonic() - started < 2.5
    assert relay.errors == []


@pytest.mark.asyncio
async def test_cut_after_bytes_breaks_a_big_message(upstream: Upstream) -> None:
    async with (
        Relay(upstream.host, upstream.port, Fault("cut_after_bytes")) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.ws_connect(ws_url(relay), max_msg_size=0) as ws,
    ):
        await ws.send_str("small")
        assert (await recv(ws)).data == "small"
        await ws.send_bytes(os.urandom(1 << 20))
        msg = await recv(ws)
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR)
        assert ws.close_code == 1006
    assert relay.errors == []


@pytest.mark.asyncio
async def test_drop_ws_control_leaves_pings_unanswered(upstream: Upstream) -> None:
    async with (
        Relay(upstream.host, upstream.port, Fault("drop_ws_control")) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.ws_connect(ws_url(relay), autoping=False) as ws,
    ):
        await ws.send_str("ping-me")
        assert (await recv(ws)).data == "ping-sent"  # the ping itself never arrived
        await ws.send_str("pong?")
        assert (await recv(ws)).data == "pongs=0"
        await ws.ping(b"abc")
        await ws.send_str("after")
        msg = await recv(ws)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "after")  # no PONG before it
    assert relay.errors == []


@pytest.mark.asyncio
async def test_drop_ws_close_gives_abnormal_closure(upstream: Upstream) -> None:
    async with (
        Relay(upstream.host, upstream.port, Fault("drop_ws_close")) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        async with session.ws_connect(ws_url(relay)) as ws:
            await ws.send_str("close:4001")
            msg = await recv(ws)
            assert msg.type is WSMsgType.CLOSED and ws.close_code == 1006
        async with session.ws_connect(ws_url(relay)) as ws:
            await ws.send_str("x")
            assert (await recv(ws)).data == "x"
            await ws.close(code=4001, message=b"bye")
            assert ws.close_code == 1006
        for _ in range(50):  # the upstream notices the abort on its own schedule
            if len(upstream.closes) == 2:
                break
            await asyncio.sleep(0.02)
    assert upstream.closes[0] == ("sent", 4001)
    assert upstream.closes[1][0] == "abnormal"  # its close frame never reached the upstream
    assert relay.errors == []


@pytest.mark.asyncio
@pytest.mark.parametrize("flush", [True, False])
async def test_gzip(upstream: Upstream, flush: bool) -> None:
    async with (
        Relay(upstream.host, upstream.port, Fault("gzip", flush=flush)) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
    ):
        url = f"http://{relay.host}:{relay.port}/sse?count=5&interval_ms=100"
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert "Content-Length" not in resp.headers
            stream = await read_sse(resp)
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as resp:
            assert "Content-Encoding" not in resp.headers
            assert len((await read_sse(resp)).sent) == 5
        async with session.get(url.replace("/sse?", "/headers?")) as resp:
            assert json.loads(await resp.text())["body_len"] == 0  # a Content-Length body
    assert len(stream.sent) == 5
    if flush:
        assert stream.arrived[0] < stream.sent[-1] and max(stream.delays) < PROMPT_S
    else:
        assert stream.arrived[0] > stream.sent[-1]
    assert relay.errors == []


# -- plumbing -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unreachable_upstream_is_502() -> None:
    async with (
        Relay("127.0.0.1", 1) as relay,
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"http://{relay.host}:{relay.port}/") as resp,
    ):
        assert resp.status == 502
    assert relay.errors == []


@pytest.mark.asyncio
async def test_exit_closes_open_connections(upstream: Upstream) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        relay = Relay(upstream.host, upstream.port, Fault("delay", delay_ms=50))
        async with relay:
            resp = await session.get(f"http://{relay.host}:{relay.port}/sse?count=100")
            await resp.content.readuntil(b"\n\n")
            ws = await session.ws_connect(ws_url(relay))
            assert relay_tasks()
        assert relay_tasks() == []
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()
        assert (await recv(ws)).type is WSMsgType.CLOSED
        resp.release()
        await ws.close()
    assert relay.errors == []
