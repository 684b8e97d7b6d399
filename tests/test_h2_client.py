"""The HTTP/2 client of probes/h2.py against tests/h2relay.py and the real origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import h2.errors
import pytest
import pytest_asyncio

from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes import h2 as client
from proxytest.timing import Thresholds

from .h2relay import H2Fault, H2Relay
from .relay import Fault, Relay

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def origin() -> AsyncIterator[Origin]:
    async with Origin() as origin:
        yield origin


def context(origin: Origin, port: int, *, tls: bool) -> ProbeContext:
    return ProbeContext("127.0.0.1", port, origin, None, Thresholds(), tls=tls)  # type: ignore[arg-type]


async def read_all(stream: client.H2Stream) -> bytes:
    return b"".join([data async for data, _ in stream.chunks()])


@pytest.mark.parametrize("tls", [True, False], ids=["h2", "h2c"])
async def test_a_stream_through_the_relay(origin: Origin, tls: bool) -> None:
    async with H2Relay(origin.host, origin.port, tls=tls) as relay:
        ctx = context(origin, relay.port, tls=tls)
        async with client.connect(ctx, timeout=5) as conn:
            assert conn.alpn == ("h2" if tls else None)
            assert conn.enable_connect_protocol is True
            assert conn.max_concurrent_streams == 128
            stream = await conn.request("GET", "/sse?count=3&interval_ms=10&probe=p1")
            status, headers, at = await stream.response()
            body = await read_all(stream)
    assert status == 200
    assert dict(headers)["content-type"] == "text/event-stream"
    assert "transfer-encoding" not in dict(headers)
    assert at > 0
    assert body.count(b"event: tick") == 3
    assert origin.records("p1")[0].path == "/sse"


async def test_settings_without_extended_connect(origin: Origin) -> None:
    async with (
        H2Relay(origin.host, origin.port, H2Fault("no_connect", max_streams=7)) as relay,
        client.connect(context(origin, relay.port, tls=True), timeout=5) as conn,
    ):
        assert conn.enable_connect_protocol is False
        assert conn.max_concurrent_streams == 7
        assert conn.remote_settings[3] == 7


async def test_a_tls_listener_without_h2_is_not_offered(origin: Origin) -> None:
    async with H2Relay(origin.host, origin.port, alpn=("http/1.1",)) as relay:
        with pytest.raises(client.NotOffered, match=r"ALPN chose http/1\.1"):
            async with client.connect(context(origin, relay.port, tls=True), timeout=5):
                pass


async def test_a_cleartext_http1_listener_is_not_offered(origin: Origin) -> None:
    async with Relay(origin.host, origin.port, Fault("clean")) as relay:
        with pytest.raises(client.NotOffered, match="no h2c") as caught:
            async with client.connect(context(origin, relay.port, tls=False), timeout=5):
                pass
    assert caught.value.reason


async def test_the_stream_limit_locally_and_beyond_it(origin: Origin) -> None:
    async with (
        H2Relay(origin.host, origin.port, H2Fault(max_streams=2)) as relay,
        client.connect(context(origin, relay.port, tls=True), timeout=5) as conn,
    ):
        held = [await conn.request("GET", "/sse?count=1&hold_s=5") for _ in range(2)]
        for stream in held:
            assert (await stream.response())[0] == 200
        with pytest.raises(client.TooManyStreamsError):
            await conn.request("GET", "/sse?count=1")
        extra = await conn.request("GET", "/sse?count=1", beyond_limit=True)
        with pytest.raises(client.StreamReset, match="REFUSED_STREAM") as caught:
            await extra.response()
        assert caught.value.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        # the others are untouched, and a cancelled one frees its slot
        await held[0].reset()
        again = await conn.request("GET", "/sse?count=2&interval_ms=1")
        assert (await again.response())[0] == 200
        assert (await read_all(again)).count(b"event: tick") == 2


async def test_a_large_request_body_respects_flow_control(origin: Origin) -> None:
    async with (
        H2Relay(origin.host, origin.port) as relay,
        client.connect(context(origin, relay.port, tls=True), timeout=5) as conn,
    ):
        stream = await conn.request(
            "POST", "/__proxytest/ready", [("content-type", "x")], end_stream=False
        )
        await stream.send(b"x" * 300_000, end_stream=True)
        status, _, _ = await stream.response()
    assert status in (200, 405)
