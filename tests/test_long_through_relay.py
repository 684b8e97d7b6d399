"""Long-lived, reconnect, lifecycle and load checks against the faulty relay.

max-hold is 3 s here and the relay's idle timeout 1 s, so a drop is measured
in seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Verdict
from proxytest.runner import run_checks
from proxytest.settings import Settings
from proxytest.timing import Thresholds

from .relay import Fault, Relay

pytestmark = pytest.mark.asyncio
SHORT = Settings(max_hold_s=3.0, heartbeat_s=0.4, load_connections=150)


async def through(
    fault: Fault, patterns: Sequence[str], settings: Settings = SHORT
) -> dict[str, CheckResult]:
    async with (
        Origin() as origin,
        Relay(origin.host, origin.port, fault) as relay,
        LagMonitor() as lag,
        new_session() as session,
    ):
        ctx = ProbeContext(
            relay.host, relay.port, origin, session, Thresholds(), lag, settings=settings
        )
        results = await run_checks(ctx, select(patterns), baseline={})
        assert relay.errors == []
    return {r.check: r for r in results}


LONG = ["ws.idle", "ws.keepalive", "sse.idle", "sse.heartbeat", "sse.lifetime"]


async def test_clean_relay_survives_max_hold() -> None:
    results = await through(Fault("clean"), LONG)
    for check in LONG:
        assert results[check].verdict == Verdict.PASS, results[check].summary
        assert results[check].metrics["dropped_after_s"] is None
    assert results["sse.lifetime"].metrics["events_received"] == 4


async def test_idle_timeout_is_measured() -> None:
    results = await through(Fault("close_after_idle", idle_s=1.0), LONG)
    for check in ("ws.idle", "sse.idle"):
        result = results[check]
        assert result.verdict == Verdict.FAIL, result.summary
        assert 0.9 <= result.metrics["dropped_after_s"] <= 1.6, result.metrics
        assert result.metrics["suggested_heartbeat_s"] == 1
    assert "1006" in results["ws.idle"].summary
    # Heartbeats every 0.4 s keep the same path alive for the whole hold.
    assert results["ws.keepalive"].verdict == Verdict.PASS, results["ws.keepalive"].summary
    assert results["sse.heartbeat"].verdict == Verdict.PASS, results["sse.heartbeat"].summary
    assert "a 0.4 s heartbeat works" in results["sse.heartbeat"].summary
    # Events every second do not leave the relay idle for 1 s... almost: a 1 s
    # interval against a 1 s idle limit may cut; only check it was not an error.
    assert results["sse.lifetime"].verdict in (Verdict.PASS, Verdict.FAIL)


async def test_heartbeat_slower_than_the_idle_timeout_fails() -> None:
    slow = Settings(max_hold_s=3.0, heartbeat_s=2.0)
    results = await through(
        Fault("close_after_idle", idle_s=1.0), ["ws.keepalive", "sse.heartbeat"], slow
    )
    for result in results.values():
        assert result.verdict == Verdict.FAIL
        assert "before the first heartbeat" in result.summary


async def test_a_total_duration_limit_fails_lifetime() -> None:
    # About 80 bytes an event: the relay cuts the stream after the third or so.
    settings = Settings(max_hold_s=4.0)
    results = await through(Fault("cut_after_bytes", after_bytes=250), ["sse.lifetime"], settings)
    result = results["sse.lifetime"]
    assert result.verdict == Verdict.FAIL
    assert "while events flowed" in result.summary


async def test_reconnect_through_clean_relay_loses_and_repeats_nothing() -> None:
    result = (await through(Fault("clean"), ["sse.reconnect"]))["sse.reconnect"]
    assert result.verdict == Verdict.PASS, result.summary
    assert result.metrics["connections"] == 3
    assert result.metrics["duplicated"] == 0


async def test_reconnect_without_last_event_id_replays_events() -> None:
    results = await through(Fault("strip_headers", headers=("Last-Event-ID",)), ["sse.reconnect"])
    result = results["sse.reconnect"]
    assert result.verdict == Verdict.FAIL
    assert result.metrics["duplicated"] > 0
    assert "the origin saw None" in result.summary


async def test_lifecycle_checks_skip_without_a_launched_proxy() -> None:
    results = await through(Fault("clean"), ["lifecycle.*"])
    for result in results.values():
        assert result.verdict == Verdict.SKIP
        assert "launched" in result.summary


async def test_load_through_a_clean_relay_passes() -> None:
    result = (await through(Fault("clean"), ["load.concurrency"]))["load.concurrency"]
    assert result.verdict == Verdict.PASS, result.summary
    assert result.metrics["ws_upgraded"] == 150
    assert result.metrics["sse_delivered"] == 150


async def test_load_finds_a_connection_limit() -> None:
    result = (await through(Fault("max_connections", connections=200), ["load.concurrency"]))[
        "load.concurrency"
    ]
    assert result.verdict == Verdict.FAIL
    assert result.metrics["ws_upgraded"] + result.metrics["sse_delivered"] <= 200
    assert "a connection limit on the path" in result.summary
