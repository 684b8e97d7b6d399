"""The test origin: a client that leaves mid-answer is not an origin error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from pathlib import Path

import pytest
from aiohttp import web

from proxytest.origin import Origin
from proxytest.origin.server import _client_gone

pytestmark = pytest.mark.asyncio


async def test_a_handler_hit_by_a_vanished_client_answers_quietly() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Cannot write to closing transport")

    response = await _client_gone(None, handler)  # type: ignore[arg-type]
    assert response.status == 499


async def test_clients_that_reset_at_once_leave_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Requests whose client resets right after sending them (Ctrl-C of a run)."""
    async with Origin() as origin:
        loop = asyncio.get_running_loop()
        for path in ("/sse?count=3&interval_ms=10", "/ws/echo"):
            for _ in range(20):
                sock = socket.socket()
                sock.setblocking(False)
                await loop.sock_connect(sock, (origin.host, origin.port))
                head = (
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                await loop.sock_sendall(sock, head.encode())
                # SO_LINGER 0: close() sends a reset, as a killed client does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        await asyncio.sleep(0.3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_late_wake_up_delays_one_event_not_every_later_one() -> None:
    """Events keep their schedule: the origin's own lateness must not add up over a stream."""
    import json
    import time

    import aiohttp

    async with Origin() as origin, aiohttp.ClientSession() as session:
        url = f"{origin.url}/sse?count=6&interval_ms=100"
        sent: list[float] = []
        async with session.get(url) as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    sent.append(json.loads(line[6:])["sent"])
                    if len(sent) == 2:
                        time.sleep(0.35)  # the whole loop, origin included, stalls once
        assert len(sent) == 6
        # On schedule: the last event is due 500 ms after the first. Drift would make
        # it 850 ms (the 350 ms stall added to every later interval).
        assert sent[-1] - sent[0] < 0.7, [round(s - sent[0], 3) for s in sent]


@pytest.mark.parametrize("after_s", [0.0, 0.02, 0.1, 0.3])
async def test_an_origin_process_cancelled_while_starting_leaves_nothing(
    after_s: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while `async with OriginProcess()` is entering: __aexit__ never runs, so
    __aenter__ must end the process and remove the run dir it made itself."""
    import tempfile

    from proxytest.origin.process import OriginProcess

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    async def enter() -> None:
        async with OriginProcess():
            await asyncio.sleep(30)

    task = asyncio.create_task(enter())
    await asyncio.sleep(after_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert list(tmp_path.glob("proxytest-origin-*")) == []
