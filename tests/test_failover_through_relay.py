"""lb.failover through tests/relay.py in front of two in-process origins.

The relay round-robins over the two backends; one of them is killed
(``Origin.kill``: a RST on every connection) while 4 SSE and 4 WebSocket
clients stream a topic of the origins' shared event log. Real sockets, real
origins, the real probe; each fault gives its verdict and the clean path passes.
"""

from __future__ import annotations

import pytest

from proxytest.checks import CHECKS, select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.origin.events import EventLog
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Failure, Verdict
from proxytest.runner import run_checks
from proxytest.timing import Thresholds

from .relay import Fault, Relay
from .test_probe_mode import PREFIX, TOKEN, probe

pytestmark = pytest.mark.asyncio


async def failover_through(fault: Fault, *, backends: int = 2) -> tuple[CheckResult, Relay]:
    log = EventLog()
    async with (
        Origin(log=log, origin_id="b1") as b1,
        Origin(log=log, origin_id="b2") as b2,
        Relay(b1.host, b1.port, fault, more=[(b2.host, b2.port)][: backends - 1]) as relay,
        LagMonitor() as lag,
        new_session() as session,
    ):
        own = (b1, b2)[:backends]
        ctx = ProbeContext(relay.host, relay.port, b1, session, Thresholds(), lag, backends=own)
        (result,) = await run_checks(ctx, select(["lb.failover"]), baseline={})
        assert not b1.killed and not b2.killed  # the probe revives what it killed
    assert relay.errors == []
    return result, relay


async def test_the_clean_round_robin_with_retry_passes() -> None:
    result, _ = await failover_through(Fault("clean"))
    assert result.verdict == Verdict.PASS, result.summary
    m = result.metrics
    assert m["clients"] == 8 and m["backends"] == 2
    assert 1 <= m["clients_on_dead_backend"] <= 8  # type: ignore[operator]
    assert m["failed_attempts"] == 0
    assert m["events_lost"] == 0 and m["events_duplicated"] == 0
    assert m["detected_after_ms"] is not None and m["detected_after_ms"] < 1000  # type: ignore[operator]
    assert m["reconnected_after_ms"] is not None
    assert "first attempt" in result.summary


async def test_a_proxy_that_keeps_sending_to_the_dead_backend_is_degraded() -> None:
    result, _ = await failover_through(Fault("no_retry"))
    assert result.verdict == Verdict.DEGRADED, result.summary
    assert "kept sending them to the dead backend" in result.summary
    assert result.hint == CHECKS["lb.failover"].hints[Failure.RETRIED_DEAD_BACKEND]
    assert result.metrics["failed_attempts"] >= 1  # type: ignore[operator]
    assert result.metrics["events_lost"] == 0
    assert "status 502" in result.summary


async def test_a_proxy_that_holds_clients_of_a_dead_backend_fails_as_hung() -> None:
    result, _ = await failover_through(Fault("hold_dead"))
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.hint == CHECKS["lb.failover"].hints[Failure.HUNG_ON_DEAD_BACKEND]
    assert result.metrics["detected_after_ms"] is None
    assert "still open" in result.summary


async def test_a_proxy_that_drops_what_resumes_a_stream_loses_events() -> None:
    result, _ = await failover_through(Fault("lose_resume"))
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.hint == CHECKS["lb.failover"].hints[Failure.LOST_EVENTS]
    assert result.metrics["events_lost"] >= 1  # type: ignore[operator]


async def test_one_backend_is_skipped_with_the_reason() -> None:
    result, _ = await failover_through(Fault("clean"), backends=1)
    assert result.verdict == Verdict.SKIP
    assert "one backend" in result.summary


async def test_probe_mode_skips_it_the_backends_are_not_ours_to_kill() -> None:
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("clean")) as relay,
    ):
        results = await probe(relay.port, ["lb.failover"])
    assert results["lb.failover"].verdict == Verdict.SKIP
    assert "needs control of the proxy" in results["lb.failover"].summary
