"""Verdict boundaries of the shared stream judgement (sse.stream, ws.push, sse.compression)."""

from __future__ import annotations

import pytest

from proxytest.checks import EvalContext, judge_stream
from proxytest.errors import UsageError
from proxytest.results import Verdict
from proxytest.timing import Thresholds

from ..timelines import pressure, stream

CTX = EvalContext(Thresholds(), {"sse": 0.5, "ws": 0.5})


def test_streamed_like_direct_passes() -> None:
    outcome = judge_stream(stream([0.6] * 20), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "20/20 events one by one" in outcome.summary
    assert outcome.metrics["p95_delay_ms"] == pytest.approx(0.6)


@pytest.mark.parametrize(("delay", "verdict"), [(49.0, Verdict.PASS), (52.0, Verdict.DEGRADED)])
def test_delay_boundary_is_50ms_over_the_direct_baseline(delay: float, verdict: Verdict) -> None:
    # Steady delays (no coalescing): only the p95 excess over direct decides.
    outcome = judge_stream(stream([delay] * 20), CTX)
    assert outcome.verdict == verdict
    if verdict == Verdict.DEGRADED:
        assert outcome.failure == "delayed"


def test_baseline_is_subtracted() -> None:
    ctx = EvalContext(Thresholds(), {"sse": 30.0})
    assert judge_stream(stream([70.0] * 20), ctx).verdict == Verdict.PASS
    assert judge_stream(stream([90.0] * 20), ctx).verdict == Verdict.DEGRADED


@pytest.mark.parametrize("factor", [1, 3, 5, 100])
def test_the_time_factor_makes_waits_longer_and_leaves_verdicts_alone(factor: float) -> None:
    th = Thresholds().scaled(factor)
    ctx = EvalContext(th, {"sse": 0.5})
    # A steady 120 ms (or 250 ms) delay is degraded on any machine ...
    assert judge_stream(stream([120.0] * 20), ctx).verdict == Verdict.DEGRADED
    assert judge_stream(stream([250.0] * 20), ctx).verdict == Verdict.DEGRADED
    assert judge_stream(stream([5.0] * 20), ctx).verdict == Verdict.PASS
    # ... and what counts as coalesced or late does not move either.
    plain = Thresholds()
    for name in ("delay_degraded_ms", "coalesce_window_ms", "loop_lag_limit_ms",
                 "reload_cut_within_s", "origin_prompt_s", "origin_learn_limit_s",
                 "headers_late_fraction", "held_fraction", "stream_interval_ms"):  # fmt: skip
        assert getattr(th, name) == getattr(plain, name), name
    # Only the waits stretch.
    assert th.handshake_timeout_s == plain.handshake_timeout_s * factor
    assert th.ready_timeout_s == plain.ready_timeout_s * factor
    assert th.load_connect_timeout_s == plain.load_connect_timeout_s * factor


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "0", "-2", "1e9", "soon", ""])
def test_a_bad_time_scale_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PROXYTEST_TIME_SCALE", raw)
    with pytest.raises(UsageError, match="PROXYTEST_TIME_SCALE"):
        Thresholds.from_env()


def test_a_good_time_scale_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYTEST_TIME_SCALE", "2.5")
    assert Thresholds.from_env().check_timeout_s == 75.0


def _pairs(groups: int, per_group: int, count: int = 20) -> list[float]:
    """Arrival times where ``groups`` pairs of events arrive together, the rest promptly."""
    arrivals = [i * 100.0 + 0.5 for i in range(count)]
    for g in range(groups):
        first = 2 * g * per_group
        for k in range(1, per_group):
            if first + k < count:
                arrivals[first + k - 1] = arrivals[first + k]  # earlier one waits for the next
    return arrivals


def test_coalescing_boundary_is_a_quarter_of_the_gaps() -> None:
    # 19 gaps: 4 coalesced pairs (21 %) pass, 5 (26 %) are degraded. A coalesced
    # event is also ~100 ms late; a slow direct baseline isolates the coalescing rule.
    ctx = EvalContext(Thresholds(), {"sse": 200.0})
    four = judge_stream(stream(arrivals_ms=_pairs(4, 2)), ctx)
    five = judge_stream(stream(arrivals_ms=_pairs(5, 2)), ctx)
    assert four.metrics["coalesced_fraction"] < 0.25 <= five.metrics["coalesced_fraction"]
    assert four.verdict == Verdict.PASS
    assert five.verdict == Verdict.DEGRADED
    assert "arrived together" in five.summary


def test_held_until_the_end_fails() -> None:
    # All 20 events arrive together 10 ms after the last was sent.
    arrivals = [1910.0] * 20
    outcome = judge_stream(stream(arrivals_ms=arrivals), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "held"
    assert "held until the response ended" in outcome.summary
    assert "first after 1.9 s" in outcome.summary


def test_held_boundary_is_half_the_send_span() -> None:
    # Send span 1.9 s: a first event 0.9 s late is delayed, 1.0 s late is held.
    assert judge_stream(stream([900.0] * 20), CTX).verdict == Verdict.DEGRADED
    assert judge_stream(stream([960.0] * 20), CTX).failure == "held"


# CI on f4fe549, caddy/tls sse.compression: the first of ten events after
# 452 ms, p95 114 ms. The loop that reads the stream and runs the origin stopped
# for about 440 ms: the first event waited unread and the origin sent the next
# four late, in one go, when the loop ran again.
_STALLED_SENT = [0.0, 440.0, 441.0, 442.0, 443.0, 500.0, 600.0, 700.0, 800.0, 900.0]
_STALLED_ARRIVED = [452.0, 453.0, 454.0, 455.0, 556.0, 602.0, 701.0, 801.0, 901.0, 1001.0]


def test_a_first_event_held_by_the_tools_own_stall_is_measured_again() -> None:
    tl = stream(count=10, sent_ms=_STALLED_SENT, arrivals_ms=_STALLED_ARRIVED, lag_ms=440.0)
    outcome = judge_stream(tl, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard and "event loop was 440 ms late" in outcome.discard
    assert "first after 452 ms" in outcome.summary


def test_an_origin_behind_schedule_is_the_tools_lateness_too() -> None:
    # Where the loop's sampler saw nothing (an origin in its own process), the
    # origin's late sends still show the tool stalled.
    tl = stream(count=10, sent_ms=_STALLED_SENT, arrivals_ms=_STALLED_ARRIVED)
    outcome = judge_stream(tl, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard and "origin sent the events up to 340 ms behind" in outcome.discard


def test_a_held_stream_stays_held_whatever_the_tools_smaller_lateness() -> None:
    # Ten events held to the end (first after 910 ms) while the tool lagged 300 ms:
    # 610 ms remain, past half the 900 ms span. An origin on schedule adds nothing.
    for lag in (0.0, 300.0):
        outcome = judge_stream(stream(count=10, arrivals_ms=[910.0] * 10, lag_ms=lag), CTX)
        assert outcome.verdict == Verdict.FAIL, lag
        assert outcome.failure == "held"
        assert outcome.discard is None


def test_truncated_fails() -> None:
    outcome = judge_stream(stream(received=7, end="truncated", error="payload"), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "truncated"
    assert outcome.summary.startswith("7/20 events")


def test_no_events_at_all_fails() -> None:
    outcome = judge_stream(stream(received=0, end="timeout"), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "no events arrived" in outcome.summary


def test_bad_status_fails() -> None:
    outcome = judge_stream(stream(received=0, status=502, end="status"), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.summary == "no stream: status 502"


def test_out_of_order_fails() -> None:
    tl = stream()
    swapped = (tl.deliveries[1], tl.deliveries[0], *tl.deliveries[2:])
    outcome = judge_stream(tl.__class__(**{**tl.__dict__, "deliveries": swapped}), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "order"


def test_tool_lag_turns_degraded_into_a_discarded_attempt_not_a_verdict() -> None:
    outcome = judge_stream(stream([120.0] * 20, lag_ms=80.0), CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard and "event loop" in outcome.discard


def test_a_delay_far_beyond_the_tool_lag_is_still_the_proxys() -> None:
    # 207 ms late while the tool lagged 49 ms: 158 ms remain, over the 50 ms limit.
    outcome = judge_stream(stream([207.0] * 20, lag_ms=49.0), CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.discard is None


def test_coalescing_with_tool_lag_is_measured_again() -> None:
    ctx = EvalContext(Thresholds(), {"sse": 200.0})
    outcome = judge_stream(stream(arrivals_ms=_pairs(5, 2), lag_ms=60.0), ctx)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard


def test_tool_lag_does_not_hide_a_pass() -> None:
    assert judge_stream(stream([1.0] * 20, lag_ms=80.0), CTX).verdict == Verdict.PASS


def test_ws_push_uses_the_ws_baseline_and_noun() -> None:
    ctx = EvalContext(Thresholds(), {"ws": 40.0, "sse": 0.0})
    outcome = judge_stream(stream([80.0] * 20, kind="ws"), ctx, noun="messages")
    assert outcome.verdict == Verdict.PASS
    assert "messages" in outcome.summary


def test_a_few_late_events_count_when_the_tool_was_on_time() -> None:
    # Two events of ten 180 ms late while the tool was on time: the proxy's. (One
    # alone is judged by the worst-event limit, as in a stream of 20: below.)
    outcome = judge_stream(stream([1.0] * 8 + [180.0] * 2, count=10), CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.discard is None
    assert outcome.metrics["late_count"] == 2
    assert "2 of 10 late" in outcome.summary
    assert judge_stream(stream([1.0] * 9 + [180.0], count=10), CTX).verdict == Verdict.PASS


def test_one_event_held_long_is_not_hidden_by_the_p95() -> None:
    # 19 prompt events and one held 5 s: p95 is the second-worst, 1 ms.
    outcome = judge_stream(stream([1.0] * 19 + [5000.0]), CTX)
    assert outcome.metrics["p95_delay_ms"] < 5
    assert outcome.verdict == Verdict.DEGRADED
    assert "one held 5.0 s" in outcome.summary
    # ... while one event 200 ms late stays under the worst-event limit.
    assert judge_stream(stream([1.0] * 19 + [200.0]), CTX).verdict == Verdict.PASS


def test_a_machine_starved_of_cpu_discards_the_attempt() -> None:
    late = [1.0] * 8 + [180.0] * 2
    starved = stream(late, count=10, cpu_stall_ms=900.0)  # ~1 s window
    outcome = judge_stream(starved, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard and "starved of CPU" in outcome.discard
    busy_but_beyond = stream([1500.0] * 10, count=10, cpu_stall_ms=900.0)
    assert judge_stream(busy_but_beyond, CTX).verdict in (Verdict.DEGRADED, Verdict.FAIL)
    calm = stream(late, count=10, cpu_stall_ms=50.0)
    assert judge_stream(calm, CTX).discard is None


def test_a_machine_starved_while_the_late_event_travelled_discards_the_attempt() -> None:
    # Two events of ten 184 ms late: the whole stream was only ~30 % starved, but
    # the late events' own travel (sent at 800 and 900 ms) was.
    delays = [1.0] * 8 + [184.0] * 2
    during = stream(delays, count=10, pressure=pressure(1100, [(780, 1100)]))
    outcome = judge_stream(during, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.discard and "while each of the 2 late items travelled" in outcome.discard
    # One event 300 ms late (beyond the worst-event limit) whose travel was starved.
    one = stream([1.0] * 9 + [300.0], count=10, pressure=pressure(1300, [(880, 1300)]))
    assert "while the late item travelled" in (judge_stream(one, CTX).discard or "")
    # Starved at another moment: the proxy's own delay, with the share as a metric.
    elsewhere = judge_stream(stream(delays, count=10, pressure=pressure(1100, [(0, 300)])), CTX)
    assert elsewhere.verdict == Verdict.DEGRADED and elsewhere.discard is None
    assert elsewhere.metrics["late_cpu_stall_fraction"] < 0.5
    # Every late item must have been starved: one calm one is the proxy's.
    two = stream([1.0] * 8 + [184.0, 1.0] + [1.0] * 9 + [184.0], count=20,
                 pressure=pressure(2100, [(780, 1000)]))  # fmt: skip
    assert judge_stream(two, CTX).verdict == Verdict.DEGRADED
    # A steady delay is never explained by starvation, however starved.
    steady = stream([207.0] * 10, count=10, pressure=pressure(1300, [(0, 1300)]))
    judged = judge_stream(steady, CTX)
    assert judged.verdict == Verdict.DEGRADED and judged.discard is None


def test_systematic_delay_is_degraded_at_once() -> None:
    # Every event late, as HAProxy without http-no-delay.
    outcome = judge_stream(stream([207.0] * 20), CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.discard is None
    assert outcome.metrics["late_count"] == 20


def test_without_a_baseline_a_delay_is_too_busy_to_judge() -> None:
    ctx = EvalContext(Thresholds(), {}, "too busy to judge timing: no baseline")
    outcome = judge_stream(stream([207.0] * 20), ctx)
    assert outcome.verdict == Verdict.ERROR
    assert "too busy to judge timing" in outcome.summary
    # A prompt stream, or a held one, needs no baseline.
    assert judge_stream(stream([1.0] * 20), ctx).verdict == Verdict.PASS
    # The tool's own stall is measured again, baseline or not (CI39, probe mode: one
    # message 251 ms late while the loop that reads it lagged).
    late_first = judge_stream(stream([251.0] + [1.0] * 19, lag_ms=240.0), ctx)
    assert late_first.verdict == Verdict.ERROR and late_first.discard
