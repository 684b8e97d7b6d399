"""Verdict boundaries of sse.headers, sse.last-event-id and sse.compression."""

from __future__ import annotations

import pytest

from proxytest.checks import EvalContext
from proxytest.checks.sse import evaluate_compression, evaluate_headers, evaluate_resume
from proxytest.probes import ResumeTimeline
from proxytest.results import Verdict

from ..timelines import pressure, stream

CTX = EvalContext(baseline={"sse": 0.5})


def headers_tl(headers_ms: float | None, **kw: object) -> object:
    return stream([0.5, 0.5], count=2, initial_delay_ms=1500, headers_ms=headers_ms, **kw)


@pytest.mark.parametrize(
    ("ms", "verdict"),
    [(5.0, Verdict.PASS), (740.0, Verdict.PASS), (760.0, Verdict.FAIL), (1502.0, Verdict.FAIL)],
)
def test_headers_late_boundary_is_half_the_first_event_delay(ms: float, verdict: Verdict) -> None:
    outcome = evaluate_headers(headers_tl(ms), CTX)
    assert outcome.verdict == verdict
    if verdict == Verdict.FAIL:
        assert outcome.failure == "held"
        assert "held until the first event" in outcome.summary


def test_late_headers_the_tool_can_explain_are_measured_again() -> None:
    # caddy/default sse.headers@h2c at load average 16: headers after 878 ms,
    # long before the first event (1.5 s). Starved while awaited, or the tool's
    # own loop late: discarded (measured again), not blamed on the proxy.
    starved = evaluate_headers(headers_tl(878.0, pressure=pressure(1600, [(0, 900)])), CTX)
    assert starved.verdict == Verdict.ERROR
    assert starved.discard and "while the headers were awaited" in starved.discard
    assert evaluate_headers(headers_tl(878.0, lag_ms=120.0), CTX).discard
    # Calm machine: the proxy's.
    assert evaluate_headers(headers_tl(878.0, pressure=pressure(1600, [])), CTX).failure == "held"
    # Held until the first event: never explained away, however busy.
    held = headers_tl(1502.0, lag_ms=120.0, pressure=pressure(1600, [(0, 1600)]))
    assert evaluate_headers(held, CTX).verdict == Verdict.FAIL


def test_one_late_event_of_ten_is_judged_as_in_a_stream_of_twenty() -> None:
    # CI33: caddy/default sse.compression in Docker, one event of ten 92 ms late.
    # In sse.stream's 20 events a p95 spares it; it must here too.
    one = evaluate_compression(stream([0.5] * 9 + [92.0], count=10), CTX)
    assert one.verdict == Verdict.PASS, one.summary
    assert one.metrics["max_delay_ms"] == 92.0
    two = evaluate_compression(stream([0.5] * 8 + [92.0, 92.0], count=10), CTX)
    assert two.verdict == Verdict.DEGRADED
    held = evaluate_compression(stream([0.5] * 9 + [300.0], count=10), CTX)
    assert held.verdict == Verdict.DEGRADED


def test_headers_wrong_content_type_fails() -> None:
    outcome = evaluate_headers(headers_tl(5.0, headers=(("Content-Type", "text/plain"),)), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "content_type"


def test_headers_content_type_with_charset_passes() -> None:
    tl = headers_tl(5.0, headers=(("content-type", "text/event-stream; charset=utf-8"),))
    assert evaluate_headers(tl, CTX).verdict == Verdict.PASS


def test_headers_bad_status_fails() -> None:
    outcome = evaluate_headers(headers_tl(5.0, status=502), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.summary == "status 502 from proxy, expected 200"


def resume_tl(origin_saw: tuple[str | None, ...], resumed_from: int = 4) -> ResumeTimeline:
    first = stream(count=6, interval_ms=50, received=3, end="complete")
    second = stream(count=3, interval_ms=50)
    shifted = tuple(
        d.__class__(
            d.seq + resumed_from - 1, d.sent_at, d.received_at, str(d.seq + resumed_from - 1)
        )
        for d in second.deliveries
    )
    second = second.__class__(**{**second.__dict__, "deliveries": shifted})
    return ResumeTimeline(first, second, "3", origin_saw)


def test_resume_passes_when_the_header_arrives_and_the_stream_resumes() -> None:
    outcome = evaluate_resume(resume_tl((None, "3")), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "resumed at 4" in outcome.summary


def test_resume_fails_when_the_header_is_stripped() -> None:
    outcome = evaluate_resume(resume_tl((None, None), resumed_from=1), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "header"
    assert "did not reach the origin" in outcome.summary


def test_resume_fails_when_the_stream_restarts_elsewhere() -> None:
    outcome = evaluate_resume(resume_tl((None, "3"), resumed_from=2), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "resume"


def test_resume_without_a_first_stream_fails() -> None:
    first = stream(received=0, status=404, end="status")
    outcome = evaluate_resume(ResumeTimeline(first, None, None, ()), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "no stream to resume" in outcome.summary


GZIP = (("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip"))


def test_compression_absent_and_streamed_passes() -> None:
    outcome = evaluate_compression(stream([0.5] * 10, count=10), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["compressed"] is False


def test_compressed_and_flushed_per_event_passes() -> None:
    outcome = evaluate_compression(stream([0.8] * 10, count=10, headers=GZIP), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["compressed"] is True
    assert outcome.summary.startswith("gzip-compressed and flushed per event")


def test_compressed_and_late_is_degraded() -> None:
    outcome = evaluate_compression(stream([150.0] * 10, count=10, headers=GZIP), CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.failure == "compressed_delayed"


def test_compressed_and_held_fails() -> None:
    outcome = evaluate_compression(stream(arrivals_ms=[905.0] * 10, count=10, headers=GZIP), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "compressed_held"


def test_resume_with_ids_rewritten_by_the_proxy_fails_instead_of_raising() -> None:
    """A proxy that rewrites event ids to `evt-3` (and passes that back) is a finding."""
    good = resume_tl((None, "3"))
    rewritten = ResumeTimeline(good.first, good.second, "evt-3", (None, "evt-3"))
    outcome = evaluate_resume(rewritten, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "ids"
    assert "'evt-3'" in outcome.summary
