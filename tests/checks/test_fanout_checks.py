"""Verdict boundaries of load.fanout, on fan-out curves made by hand."""

from __future__ import annotations

from proxytest.checks import CHECKS, EvalContext
from proxytest.checks.load import evaluate_fanout
from proxytest.probes.fanout import ladder, percentile
from proxytest.probes.timeline import FanoutSide, FanoutStep, FanoutTimeline
from proxytest.results import Failure, Verdict

CTX = EvalContext()
DIRECT_MS = 2.0


def side(n: int, p99: float | None = DIRECT_MS, **kw: object) -> FanoutSide:
    fields: dict[str, object] = dict(
        subscribers=n, connected=n, published=10, expected=n * 10, received=n * 10,
        p50_ms=None if p99 is None else p99 / 2, p99_ms=p99,
        max_ms=None if p99 is None else p99 + 1,
    )  # fmt: skip
    fields.update(kw)
    return FanoutSide(**fields)  # type: ignore[arg-type]


def step(
    n: int,
    sse: float | FanoutSide = 3.0,
    ws: float | FanoutSide | None = 3.0,
    direct: float | FanoutSide = DIRECT_MS,
    **kw: object,
) -> FanoutStep:
    def make(value: float | FanoutSide) -> FanoutSide:
        return value if isinstance(value, FanoutSide) else side(n, value)

    return FanoutStep(
        n=n, sse=make(sse), ws=None if ws is None else make(ws),
        direct_sse=make(direct), direct_ws=make(direct), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def curve(*steps: FanoutStep, **kw: object) -> FanoutTimeline:
    fields: dict[str, object] = dict(steps=steps, requested_max_n=steps[-1].n, max_n=steps[-1].n)
    fields.update(kw)
    return FanoutTimeline(**fields)  # type: ignore[arg-type]


def test_it_is_in_the_catalogue_as_a_load_check_measured_again_when_slow() -> None:
    check = CHECKS["load.fanout"]
    assert check.phase == "load" and check.timing
    assert list(CHECKS).index("load.fanout") == list(CHECKS).index("load.concurrency") + 1


def test_the_ladder_ends_at_the_max_n() -> None:
    assert ladder(250) == (10, 50, 100, 250)
    assert ladder(300) == (10, 50, 100, 250, 300)
    assert ladder(5) == (5,)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_as_prompt_as_directly_at_every_n_passes_with_the_metrics_at_the_top() -> None:
    tl = curve(step(10), step(50), step(100, 4.0, 5.0), step(250, 9.0, 10.0, direct=8.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.PASS, outcome.summary
    assert "one publisher to 250 subscribers per protocol" in outcome.summary
    assert "no knee up to N=250" in outcome.summary
    m = outcome.metrics
    assert (m["sse_p99_ms"], m["ws_p99_ms"], m["direct_sse_p99_ms"]) == (9.0, 10.0, 8.0)
    assert (m["sse_max_ms"], m["ws_p50_ms"]) == (10.0, 5.0)
    assert (m["sse_knee_n"], m["ws_knee_n"], m["max_n"]) == (None, None, 250)
    assert (m["sse_lost"], m["ws_lost"]) == (0, 0)
    assert [point["n"] for point in m["curve"]] == [10, 50, 100, 250]
    assert m["curve"][2] == {
        "n": 100, "sse_p50_ms": 2.0, "sse_p99_ms": 4.0, "ws_p50_ms": 2.5, "ws_p99_ms": 5.0,
        "sse_lost": 0, "ws_lost": 0, "direct_sse_p99_ms": 2.0, "direct_ws_p99_ms": 2.0,
        "origin_write_ms": 0.0, "direct_origin_write_ms": 0.0, "loop_lag_ms": 0.0,
    }  # fmt: skip


def test_slower_than_directly_by_the_margin_is_degraded_with_the_knee() -> None:
    # Within 50 ms of the direct path at 100, 60 ms over it at 250, past 100 ms at 500.
    tl = curve(step(10), step(100, 40.0, 30.0), step(250, 62.0, 20.0), step(500, 180.0, 150.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.DEGRADED, outcome.summary
    assert outcome.failure == Failure.FANOUT_SLOW
    assert outcome.summary.startswith("fan-out slower than directly from N=250: SSE p99 62 ms")
    assert "(the knee): SSE at N=500, WebSocket at N=500; nothing lost" in outcome.summary
    assert outcome.discard is None
    m = outcome.metrics
    assert (m["sse_knee_n"], m["ws_knee_n"]) == (500, 500)
    # The latencies reported are those of the largest N where both delivered: 500.
    assert m["sse_p99_ms"] == 180.0


def test_a_knee_for_one_protocol_only() -> None:
    tl = curve(step(10), step(250, 3.0, 120.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert (outcome.metrics["sse_knee_n"], outcome.metrics["ws_knee_n"]) == (None, 250)
    assert "WebSocket p99 120 ms against 2.0 ms directly" in outcome.summary


def test_messages_lost_where_the_direct_path_delivered_fail() -> None:
    lossy = side(100, 3.0, received=950)
    tl = curve(step(10), step(100, sse=lossy))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.FAIL, outcome.summary
    assert outcome.failure == Failure.FANOUT_LOST
    assert "SSE at N=100: 50 of 1000 messages lost" in outcome.summary
    assert "where the direct path delivered every message" in outcome.summary
    assert "small N" not in outcome.summary
    assert (outcome.metrics["sse_lost"], outcome.metrics["sse_knee_n"]) == (50, 100)
    # The metrics come from the largest N where both delivered.
    assert outcome.metrics["at_n"] == 10


def test_a_loss_at_a_small_n_says_so() -> None:
    tl = curve(step(10, ws=side(10, 3.0, received=90)))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "(already at a small N)" in outcome.summary
    assert outcome.metrics["sse_p99_ms"] is None  # no N where both delivered


def test_subscribers_refused_are_a_connection_limit() -> None:
    refused = side(500, 3.0, connected=250, expected=2500, received=2500,
                   refused=(("connection reset", 250),))  # fmt: skip
    tl = curve(step(10), step(250), step(500, sse=refused))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == Failure.LIMIT
    assert "250/500 subscribed (250 connection reset)" in outcome.summary
    assert outcome.metrics["sse_knee_n"] == 500


def test_a_loss_after_the_knee_of_that_protocol_is_not_judged() -> None:
    # SSE passed 100 ms at 250 (its knee); stepping went on for WebSocket, and SSE lost
    # messages at 500: past its knee, so the verdict is the slowdown.
    tl = curve(step(10), step(250, 150.0, 5.0), step(500, side(500, 300.0, received=10), 8.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.metrics["sse_lost"] == 4990  # still counted in the total


def test_a_publisher_refused_by_the_target_fails_with_its_status() -> None:
    nothing = side(10, None, published=0, expected=0, received=0)
    tl = curve(step(10, nothing, nothing, publish_error="the publisher got status 405"))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == Failure.STATUS
    assert "status 405" in outcome.summary


def test_without_a_direct_baseline_it_is_an_error() -> None:
    tl = curve(step(10, direct=side(10, 3.0, received=70)))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.summary.startswith("the direct baseline could not be measured: at N=10")
    assert "30 of 100 messages lost" in outcome.summary
    slow = evaluate_fanout(curve(step(10, direct=150.0)), CTX)
    assert slow.verdict == Verdict.ERROR and "p99 150 ms" in slow.summary


def test_where_the_direct_path_stopped_keeping_up_the_tool_reached_its_limit() -> None:
    # At 2000 the direct path itself was past the knee: that step is the tool's,
    # not judged; everything before it passed.
    tl = curve(
        step(10), step(1000, 60.0, 60.0, direct=40.0), step(2000, 400.0, 400.0, direct=180.0),
        tool_limit="the direct path itself did not keep up at N=2000: the tool's own limit",
    )  # fmt: skip
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.PASS, outcome.summary
    assert "one publisher to 1000 subscribers" in outcome.summary
    assert "the tool's own limit" in outcome.summary
    assert outcome.metrics["max_n"] == 2000 and outcome.metrics["at_n"] == 1000
    assert outcome.metrics["sse_knee_n"] is None


def test_past_the_knee_as_directly_within_the_margin_passes_and_says_whose_limit() -> None:
    tl = curve(step(10), step(1000, 110.0, 105.0, direct=90.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["sse_knee_n"] == 1000
    assert "the machine's limit, not the proxy's" in outcome.summary


def test_websocket_not_proxied_judges_sse_alone() -> None:
    tl = curve(step(10, ws=None), step(250, ws=None), ws_refused="status 400")
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.PASS
    assert "WebSocket not proxied (status 400, see ws.upgrade): SSE alone judged" in (
        outcome.summary
    )
    m = outcome.metrics
    assert m["ws_p99_ms"] is None and m["ws_lost"] is None and m["ws_knee_n"] is None
    assert m["curve"][0]["ws_p99_ms"] is None


def test_a_slowdown_the_tools_own_lateness_explains_is_measured_again() -> None:
    tl = curve(step(10), step(250, 120.0, 3.0, loop_lag_ms=110.0, direct_loop_lag_ms=5.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.discard is not None and "110 ms late" in outcome.discard
    # A burst of 2N reads lags the loop as much directly: not the tool's lateness.
    busy = curve(step(10), step(250, 120.0, 3.0, loop_lag_ms=110.0, direct_loop_lag_ms=100.0))
    assert evaluate_fanout(busy, CTX).discard is None


def test_a_loss_while_the_tools_loop_stalled_past_the_wait_is_an_error() -> None:
    tl = curve(step(10), step(250, side(250, 3.0, received=2000), loop_lag_ms=2500.0))
    outcome = evaluate_fanout(tl, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert "the tool was overloaded" in outcome.summary


def test_a_setup_error_and_no_step_are_errors() -> None:
    failed = FanoutTimeline((), 250, 0, error="the proxy did not start")
    assert evaluate_fanout(failed, CTX).verdict == Verdict.ERROR
    none = FanoutTimeline((), 250, 0, tool_limit="no file descriptors left")
    outcome = evaluate_fanout(none, CTX)
    assert outcome.verdict == Verdict.ERROR and "no file descriptors left" in outcome.summary
