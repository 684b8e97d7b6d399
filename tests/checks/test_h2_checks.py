"""Verdict boundaries of the HTTP/2 checks, on timelines built by hand."""

from __future__ import annotations

from proxytest.checks.base import EvalContext
from proxytest.checks.h2 import evaluate_streams, evaluate_upgrade
from proxytest.probes.timeline import H2Offer, H2StreamsTimeline, H2UpgradeTimeline
from proxytest.results import Failure, Verdict

ADVERTISED = H2Offer(tls=True, alpn="h2", advertised=True, max_streams=100)


def test_a_200_the_origin_never_upgraded_is_a_failure() -> None:
    tl = H2UpgradeTimeline(
        ADVERTISED, "https://x/ws/echo", 1.0, 200, 1.01, None, 1, True, origin_upgraded=False
    )
    outcome = evaluate_upgrade(tl, EvalContext())
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == Failure.H2_WEBSOCKET


def test_a_connection_that_failed_over_tls_is_an_error_not_a_verdict() -> None:
    tl = H2UpgradeTimeline(H2Offer(tls=True, error="HTTP/2 connection failed: reset"))
    assert evaluate_upgrade(tl, EvalContext()).verdict == Verdict.ERROR


def test_stream_counts_at_the_boundaries() -> None:
    def judge(limit: int | None, served: int, requested: int) -> Verdict:
        offer = H2Offer(tls=True, alpn="h2", advertised=False, max_streams=limit)
        tl = H2StreamsTimeline(offer, 300, requested, served, failure_index=served + 1)
        return evaluate_streams(tl, EvalContext()).verdict

    assert judge(100, 100, 100) == Verdict.PASS
    assert judge(99, 99, 99) == Verdict.DEGRADED
    assert judge(128, 127, 128) == Verdict.FAIL
    assert judge(None, 300, 300) == Verdict.PASS
    assert judge(None, 150, 300) == Verdict.FAIL
