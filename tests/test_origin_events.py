"""The origin's shared event log (origin/events.py) and Origin.kill()/revive()."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from proxytest.origin import Origin
from proxytest.origin.events import EventLog
from proxytest.probes.sse import SseParser

pytestmark = pytest.mark.asyncio


async def _sse(
    session: aiohttp.ClientSession, url: str, n: int, headers: dict[str, str] | None = None
) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    parser = SseParser()
    async with asyncio.timeout(5), session.get(url, headers=headers) as response:
        assert response.status == 200
        async for chunk in response.content.iter_any():
            for event in parser.feed(chunk.decode()):
                body = json.loads("\n".join(event.data))
                assert event.id == str(body["seq"])
                got.append(body)
            if len(got) >= n:
                break
    return got


async def test_origins_sharing_a_log_serve_one_sequence_and_resume_after_an_id() -> None:
    log = EventLog()
    async with (
        Origin(log=log, origin_id="b1") as b1,
        Origin(log=log, origin_id="b2") as b2,
        aiohttp.ClientSession() as session,
    ):
        query = "topic=t1&interval_ms=20&count=50"
        first = await _sse(session, f"{b1.url}/lb/events?{query}", 3)
        last = int(str(first[-1]["seq"]))
        assert [e["seq"] for e in first] == list(range(last - 2, last + 1))
        assert {e["origin"] for e in first} == {"b1"}
        await asyncio.sleep(0.1)  # events published meanwhile are replayed on resume
        resumed = await _sse(
            session, f"{b2.url}/lb/events?{query}", 8, headers={"Last-Event-ID": str(last)}
        )
        assert [e["seq"] for e in resumed] == list(range(last + 1, last + 9))
        assert {e["origin"] for e in resumed} == {"b2"}
        # Every backend gives one event the same publish time (the log's schedule).
        again = await _sse(
            session, f"{b1.url}/lb/events?{query}", 1, headers={"Last-Event-ID": str(last)}
        )
        assert again[0]["sent"] == resumed[0]["sent"]

        async with session.ws_connect(f"{b2.url}/lb/ws?{query}&after={last}") as ws:
            seqs = []
            for _ in range(4):
                msg = await asyncio.wait_for(ws.receive(), 5)
                seqs.append(json.loads(msg.data)["seq"])
        assert seqs == list(range(last + 1, last + 5))


async def test_a_topic_ends_after_its_count_and_rejects_bad_queries() -> None:
    async with Origin() as origin, aiohttp.ClientSession() as session:
        got = await _sse(
            session, f"{origin.url}/lb/events?topic=t&interval_ms=10&count=3", 99,
            headers={"Last-Event-ID": "0"},
        )  # fmt: skip
        assert [e["seq"] for e in got] == [1, 2, 3]
        for query in ("", "topic=t&count=0", "topic=t&interval_ms=x", "topic=t&count=999999"):
            async with session.get(f"{origin.url}/lb/events?{query}") as response:
                assert response.status == 400, query


async def test_kill_resets_open_connections_refuses_new_ones_and_revive_listens_again() -> None:
    async with Origin() as origin, aiohttp.ClientSession() as session:
        url = f"{origin.url}/lb/events?topic=k&interval_ms=20"
        port = origin.port
        async with (
            session.get(url) as response,
            session.ws_connect(f"{origin.url}/lb/ws?topic=k") as ws,
        ):
            await response.content.readany()
            await ws.receive()
            killed = time.monotonic()
            await origin.kill()
            with pytest.raises(aiohttp.ClientPayloadError):
                async with asyncio.timeout(2):
                    while await response.content.readany():
                        pass
            async with asyncio.timeout(2):
                while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            assert ws.close_code != 1000  # no close frame from a dead process
            assert time.monotonic() - killed < 1
        with pytest.raises(aiohttp.ClientConnectorError):
            async with session.get(url):
                pass
        await origin.revive()
        assert origin.port == port
        async with session.get(url) as response:
            assert response.status == 200
