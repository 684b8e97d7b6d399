"""Verdict boundaries of the long-lived checks, on synthetic hold timelines."""

from __future__ import annotations

import pytest

from proxytest.checks import EvalContext
from proxytest.checks.long import (
    evaluate_idle,
    evaluate_kept,
    evaluate_lifetime,
    suggested_heartbeat_s,
)
from proxytest.probes.timeline import HoldTimeline
from proxytest.results import Verdict

CTX = EvalContext()


def hold(
    kind: str = "ws", mode: str = "idle", dropped: float | None = None, **kw: object
) -> HoldTimeline:
    fields: dict[str, object] = dict(
        kind=kind,
        mode=mode,
        status=101 if kind == "ws" else 200,
        error=None,
        opened_at=10.0,
        ended_at=None if dropped is None else 10.0 + dropped,
        max_hold_s=75.0,
        how=None if dropped is None else "TCP close without a close frame (1006)",
    )
    fields.update(kw)
    return HoldTimeline(**fields)  # type: ignore[arg-type]


def test_survived_idle_passes_with_null_drop_time() -> None:
    outcome = evaluate_idle(hold(), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["dropped_after_s"] is None
    assert "held for 75 s" in outcome.summary


@pytest.mark.parametrize(("kind", "remedy"), [("ws", "ping"), ("sse", "`:` comment")])
def test_idle_drop_fails_with_time_and_suggested_heartbeat(kind: str, remedy: str) -> None:
    outcome = evaluate_idle(hold(kind, dropped=30.02), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "idle"
    assert outcome.metrics["dropped_after_s"] == 30.02
    assert outcome.metrics["suggested_heartbeat_s"] == 24
    assert outcome.summary.startswith("dropped after 30.0 s of silence")
    assert f"{remedy} every ≤ 24 s" in outcome.summary


def test_websocket_drop_says_what_became_of_the_origin_side() -> None:
    closed = evaluate_idle(hold(dropped=3.0, origin_end="client-gone"), CTX)
    assert "the proxy closed the origin's side too" in closed.summary
    assert closed.metrics["origin_side_closed"] is True
    leaked = evaluate_idle(hold(dropped=3.0, origin_end=None), CTX)
    assert "the origin's side stayed open" in leaked.summary
    assert leaked.metrics["origin_side_closed"] is False


def test_a_drop_one_moment_before_max_hold_still_fails() -> None:
    assert evaluate_idle(hold(dropped=74.9), CTX).verdict == Verdict.FAIL


def test_suggested_heartbeat_is_80_percent_at_least_one_second() -> None:
    assert suggested_heartbeat_s(60.0) == 48
    assert suggested_heartbeat_s(15.2) == 12
    assert suggested_heartbeat_s(0.9) == 1


def test_no_websocket_means_fail_pointing_at_upgrade() -> None:
    tl = hold(status=400, opened_at=None, error="handshake failed")
    outcome = evaluate_idle(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "upgrade"


def test_keepalive_survived_states_the_interval_that_works() -> None:
    outcome = evaluate_kept(hold(mode="keepalive", heartbeat_s=10.0), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "a 10 s heartbeat works behind this proxy" in outcome.summary
    assert outcome.metrics["heartbeat_s"] == 10.0


def test_drop_before_the_first_heartbeat_is_an_idle_failure() -> None:
    outcome = evaluate_kept(hold(mode="keepalive", heartbeat_s=10.0, dropped=5.0), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "idle"
    assert "before the first heartbeat" in outcome.summary


def test_drop_despite_heartbeats_is_a_lifetime_failure() -> None:
    outcome = evaluate_kept(hold("sse", "heartbeat", heartbeat_s=10.0, dropped=15.9), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "lifetime"
    assert "despite `:` comments every 10 s" in outcome.summary


def test_lifetime_all_events_passes() -> None:
    tl = hold("sse", "lifetime", events=76, expected_events=76)
    assert evaluate_lifetime(tl, CTX).verdict == Verdict.PASS


def test_lifetime_cut_while_events_flowed_fails() -> None:
    tl = hold(
        "sse",
        "lifetime",
        dropped=15.9,
        events=16,
        expected_events=76,
        how="the connection closed mid-response",
    )
    outcome = evaluate_lifetime(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "lifetime"
    assert "cut after 15.9 s while events flowed (16/76 events)" in outcome.summary


def test_a_lifetime_stall_of_the_origin_itself_is_the_tools_error_not_the_proxys() -> None:
    stalled = dict(kind="sse", mode="lifetime", dropped=74.0, events=75, expected_events=76)
    # The origin had sent only 75 events when the client gave up, and all arrived.
    tool = evaluate_lifetime(hold(**stalled, how="stalled: no more events", origin_sent=75), CTX)
    assert tool.verdict == Verdict.ERROR
    assert "the test origin itself fell behind" in tool.summary
    assert tool.failure is None
    # The origin sent all 76 and one never arrived: the proxy held it.
    proxy = evaluate_lifetime(hold(**stalled, how="stalled: no more events", origin_sent=76), CTX)
    assert proxy.verdict == Verdict.FAIL and proxy.failure == "lifetime"
    # A cut is a cut however far the origin had got.
    cut = evaluate_lifetime(
        hold(**stalled, how="the connection closed mid-response", origin_sent=75), CTX
    )
    assert cut.verdict == Verdict.FAIL


def test_a_heartbeat_not_shorter_than_max_hold_says_nothing_about_heartbeats() -> None:
    outcome = evaluate_kept(hold("sse", "heartbeat", heartbeat_s=80.0), CTX)
    assert outcome.verdict == Verdict.SKIP
    assert "no heartbeat was sent" in outcome.summary
    assert evaluate_kept(hold("ws", "keepalive", heartbeat_s=10.0), CTX).verdict == Verdict.PASS
