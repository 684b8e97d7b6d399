"""load.fanout for real: the origin's broadcast routes, the faulty relay, a real proxy.

N stays small (up to 50 subscribers of each protocol) so these take seconds. The
check through real proxies, with the origin in its own process, at the matrix's 250:
tests/integration/test_proxies.py (full_load_run).
"""

from __future__ import annotations

import aiohttp
import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.origin.fanout import ws_text_frame
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Verdict
from proxytest.runner import run_checks
from proxytest.settings import Settings
from proxytest.timing import Thresholds

from .relay import Fault, Relay

SMALL = Settings(fanout_max_n=50)
# One attempt: a degraded verdict is not measured again here (the runner would).
ONCE = Thresholds(timing_retries=0)


async def through(fault: Fault) -> CheckResult:
    async with (
        Origin() as origin,
        Relay(origin.host, origin.port, fault) as relay,
        LagMonitor() as lag,
        new_session() as session,
    ):
        ctx = ProbeContext(relay.host, relay.port, origin, session, ONCE, lag, settings=SMALL)
        (result,) = await run_checks(ctx, select(["load.fanout"]), baseline={})
        assert relay.errors == []
    return result


@pytest.mark.asyncio
async def test_a_clean_relay_passes_with_every_message_delivered() -> None:
    result = await through(Fault("clean"))
    assert result.verdict == Verdict.PASS, result.summary
    m = result.metrics
    assert m["max_n"] == 50 and [p["n"] for p in m["curve"]] == [10, 50]
    assert m["sse_lost"] == 0 and m["ws_lost"] == 0
    assert m["sse_knee_n"] is None and m["ws_knee_n"] is None
    assert 0 < m["sse_p99_ms"] < 100 and 0 < m["ws_p99_ms"] < 100
    assert m["direct_sse_p99_ms"] is not None and m["direct_ws_p99_ms"] is not None
    assert m["origin_process"] is False  # no launched proxy: the in-process origin


@pytest.mark.asyncio
async def test_a_relay_that_slows_down_with_many_streams_is_degraded_at_its_knee() -> None:
    # Past 40 open client connections every chunk is 150 ms late: N=10 (20 streams and
    # the publisher) is prompt, N=50 (100 streams) is not.
    result = await through(Fault("crowd_delay", connections=40, delay_ms=150))
    assert result.verdict == Verdict.DEGRADED, result.summary
    assert result.metrics["sse_knee_n"] == 50 and result.metrics["ws_knee_n"] == 50
    assert result.metrics["sse_lost"] == 0 and result.metrics["ws_lost"] == 0
    assert result.summary.startswith("fan-out slower than directly from N=50")
    assert result.hint and "buffering" in result.hint


@pytest.mark.asyncio
async def test_a_relay_that_drops_messages_fails() -> None:
    result = await through(Fault("drop_messages", drop_every=3))
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.metrics["sse_lost"] > 0 and result.metrics["ws_lost"] > 0
    assert result.metrics["sse_knee_n"] == 10  # the first step already
    assert "messages lost on open connections" in result.summary
    assert "already at a small N" in result.summary


@pytest.mark.asyncio
async def test_the_origin_broadcasts_the_same_message_to_both_protocols() -> None:
    async with Origin() as origin, aiohttp.ClientSession() as session:
        base = origin.url
        ws = await session.ws_connect(f"{base}/fanout/ws?topic=t1")
        assert (await ws.receive_str()) == "subscribed"
        sse = await session.get(f"{base}/fanout/sse?topic=t1")
        assert sse.headers["Content-Type"] == "text/event-stream"
        assert b"subscribed" in await sse.content.readuntil(b"\n\n")
        async with session.post(
            f"{base}/fanout/publish", params={"topic": "t1", "seq": "7", "count": "2",
                                              "interval_ms": "10"},
        ) as answer:  # fmt: skip
            summary = await answer.json()
        assert summary["subscribers"] == 2 and summary["written"] == 4 and summary["gone"] == 0
        first = await ws.receive_str()
        assert first.startswith('{"seq":7,"sent":')
        event = (await sse.content.readuntil(b"\n\n")).decode()
        assert event.startswith('id: 7\nevent: comment\ndata: {"seq":7,')
        assert (await ws.receive_str()).startswith('{"seq":8,')
        await ws.close()
        sse.close()
        async with session.post(f"{base}/fanout/publish") as answer:
            assert answer.status == 400  # no topic
        async with session.post(f"{base}/fanout/publish?topic=t1&count=0") as answer:
            assert answer.status == 400  # bounded


def test_the_websocket_frame_lengths_follow_rfc_6455() -> None:
    assert ws_text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert ws_text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert ws_text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
