"""lb.failover's evaluation on hand-made timelines: every verdict boundary."""

from __future__ import annotations

from proxytest.checks.base import EvalContext
from proxytest.checks.failover import evaluate_failover, judge_client
from proxytest.probes.failover import FailoverClient, FailoverTimeline, FailoverTry
from proxytest.results import Failure, Verdict

KILL = 100.0
CTX = EvalContext()


def client(
    kind: str = "sse",
    backend: str | None = "b1",
    *,
    before: range | tuple[int, ...] = range(1, 11),
    learned: float | None = KILL + 0.01,
    tries: tuple[FailoverTry, ...] | None = None,
    after: range | tuple[int, ...] = range(11, 21),
) -> FailoverClient:
    if tries is None:
        tries = (FailoverTry(KILL + 0.21, 200, None, "b2", KILL + 0.22),)
    return FailoverClient(
        kind,  # type: ignore[arg-type]
        backend,
        None if backend else "status 403",
        tuple(before),
        learned,
        "reset",
        tries if learned is not None else (),
        tuple(after) if learned is not None else (),
    )


def live(kind: str = "sse") -> FailoverClient:
    """A client on the backend that stays up: never cut, nothing to resume."""
    return client(kind, "b2", before=range(1, 31), learned=None)


def timeline(*clients: FailoverClient, **kw: object) -> FailoverTimeline:
    values: dict[str, object] = {
        "backends": ("b1", "b2"),
        "victim": "b1",
        "killed_at": KILL,
        "clients": clients,
        "learn_limit_s": 5.0,
        "reconnect_limit_s": 5.0,
        **kw,
    }
    return FailoverTimeline(**values)  # type: ignore[arg-type]


def test_prompt_failover_with_nothing_lost_passes() -> None:
    out = evaluate_failover(timeline(client(), client("ws"), live(), live("ws")), CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics == {
        "clients": 4,
        "backends": 2,
        "clients_on_dead_backend": 2,
        "detected_after_ms": 10.0,
        "reconnected_after_ms": 220.0,
        "failed_attempts": 0,
        "events_lost": 0,
        "events_duplicated": 0,
    }
    assert "first attempt" in out.summary and "(1 SSE, 1 WebSocket)" in out.summary


def test_errors_before_a_live_backend_are_degraded_and_counted() -> None:
    tries = (
        FailoverTry(KILL + 0.2, 502, "status 502"),
        FailoverTry(KILL + 0.4, None, "connection refused"),
        FailoverTry(KILL + 0.6, 200, None, "b2", KILL + 0.61),
    )
    out = evaluate_failover(timeline(client(tries=tries), client("ws"), live()), CTX)
    assert out.verdict == Verdict.DEGRADED, out.summary
    assert out.failure == Failure.RETRIED_DEAD_BACKEND
    assert out.metrics["failed_attempts"] == 2
    assert out.metrics["reconnected_after_ms"] == 610.0
    assert "the slowest after" not in out.summary  # no answer times: none shown
    assert "2 reconnect attempts answered connection refused, status 502" in out.summary


def test_a_client_that_learns_at_the_limit_passes_and_just_after_it_hung() -> None:
    at_limit = evaluate_failover(timeline(client(learned=KILL + 5.0)), CTX)
    assert at_limit.verdict == Verdict.PASS, at_limit.summary
    late = evaluate_failover(timeline(client(learned=KILL + 5.01), client("ws")), CTX)
    assert late.verdict == Verdict.FAIL
    assert late.failure == Failure.HUNG_ON_DEAD_BACKEND
    assert late.metrics["detected_after_ms"] is None
    never = evaluate_failover(timeline(client(learned=None), live()), CTX)
    assert never.failure == Failure.HUNG_ON_DEAD_BACKEND
    assert "1 (1 SSE) still open 5 s later" in never.summary


def test_no_live_backend_within_the_reconnect_limit_fails() -> None:
    refused = (
        *(
            FailoverTry(KILL + 0.5 * n, 503, "status 503", None, KILL + 0.5 * n + 0.3)
            for n in range(1, 10)
        ),
        FailoverTry(KILL + 4.9, None, "no event within the reconnect limit"),
    )
    out = evaluate_failover(timeline(client(tries=refused, after=()), live()), CTX)
    assert out.verdict == Verdict.FAIL
    assert out.failure == Failure.NO_FAILOVER
    assert out.metrics["reconnected_after_ms"] is None
    assert out.metrics["failed_attempts"] == 10
    assert (
        "(10 attempts: 9 × status 503 (the slowest after 300 ms), "
        "1 × no event within the reconnect limit)" in out.summary
    )
    # A live answer 5 s after learning is in time; later is not.
    in_time = (FailoverTry(KILL + 4.9, 200, None, "b2", KILL + 5.01),)
    assert evaluate_failover(timeline(client(tries=in_time)), CTX).verdict == Verdict.PASS
    too_late = (FailoverTry(KILL + 4.9, 200, None, "b2", KILL + 5.02),)
    out = evaluate_failover(timeline(client(tries=too_late)), CTX)
    assert out.failure == Failure.NO_FAILOVER


def test_an_answer_from_the_dead_backend_is_no_failover() -> None:
    back = (FailoverTry(KILL + 0.2, 200, None, "b1", KILL + 0.21),)
    out = evaluate_failover(timeline(client(tries=back)), CTX)
    assert out.failure == Failure.NO_FAILOVER


def test_an_answer_from_outside_the_group_is_no_failover() -> None:
    # An origin that is none of the proxy's backends (another server that took the
    # dead backend's port, say) serves another log: no failover to a live backend.
    stranger = (FailoverTry(KILL + 0.2, 200, None, "b9", KILL + 0.21),)
    out = evaluate_failover(timeline(client(tries=stranger), live()), CTX)
    assert out.verdict == Verdict.FAIL, out.summary
    assert out.failure == Failure.NO_FAILOVER
    assert "events from b9" in out.summary


def test_lost_or_duplicated_events_fail() -> None:
    lost = evaluate_failover(timeline(client(after=range(15, 25)), live()), CTX)
    assert lost.verdict == Verdict.FAIL
    assert lost.failure == Failure.LOST_EVENTS
    assert (lost.metrics["events_lost"], lost.metrics["events_duplicated"]) == (4, 0)
    replayed = evaluate_failover(timeline(client(after=range(8, 20))), CTX)
    assert replayed.failure == Failure.LOST_EVENTS
    assert (replayed.metrics["events_lost"], replayed.metrics["events_duplicated"]) == (0, 3)
    # A gap in a stream that was never cut counts too.
    gap = evaluate_failover(
        timeline(client(), client("sse", "b2", before=(1, 2, 4), learned=None)), CTX
    )
    assert gap.metrics["events_lost"] == 1


def test_a_client_cut_on_a_live_backend_must_resume_too() -> None:
    cut = client("ws", "b2", learned=KILL + 0.02)
    assert judge_client(cut, timeline()).affected
    hung_elsewhere = client("ws", "b2", learned=KILL + 0.02, tries=(), after=())
    out = evaluate_failover(timeline(client(), hung_elsewhere), CTX)
    assert out.failure == Failure.NO_FAILOVER


def test_clients_that_never_opened_are_named_but_not_judged() -> None:
    never = client("ws", None, before=(), learned=None)
    out = evaluate_failover(timeline(client(), never), CTX)
    assert out.verdict == Verdict.PASS
    assert out.metrics["clients"] == 1
    assert "1 WebSocket clients never opened: status 403" in out.summary


def test_skip_and_error() -> None:
    skip = evaluate_failover(FailoverTimeline(unsupported="one backend"), CTX)
    assert skip.verdict == Verdict.SKIP and skip.summary == "one backend"
    error = evaluate_failover(FailoverTimeline(error="no client got an event"), CTX)
    assert error.verdict == Verdict.ERROR
    assert evaluate_failover(FailoverTimeline(), CTX).verdict == Verdict.ERROR
