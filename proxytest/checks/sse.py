"""SSE checks: headers, per-event streaming, Last-Event-ID resumption, compression."""

from __future__ import annotations

from ..probes import ProbeContext, ResumeTimeline, StreamTimeline
from ..probes import sse as probe
from ..probes.timeline import ReconnectTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, fmt_ms, over
from .delivery import judge_stream, loop_late, starved_during

_IDENTITY = {"Accept-Encoding": "identity"}
_COMPRESSED = ("gzip", "br", "deflate", "zstd", "compress")
# A compressed stream held or delayed: the compressor is the likely knob.
_COMPRESSED_FAILURE = {
    Failure.HELD: Failure.COMPRESSED_HELD,
    Failure.DELAYED: Failure.COMPRESSED_DELAYED,
}


def _compressed(failure: Failure | None) -> Failure | None:
    return _COMPRESSED_FAILURE.get(failure, failure) if failure else None


# -- sse.headers -----------------------------------------------------------------
async def probe_headers(ctx: ProbeContext, check: str) -> StreamTimeline:
    th = ctx.thresholds
    url = ctx.url(
        "/sse",
        ctx.token(check),
        count=2,
        interval_ms=100,
        initial_delay_ms=th.headers_initial_delay_ms,
    )
    return await probe.read_stream(
        ctx,
        url,
        expected=2,
        interval_ms=100,
        headers=_IDENTITY,
        initial_delay_ms=th.headers_initial_delay_ms,
    )


def evaluate_headers(tl: StreamTimeline, ctx: EvalContext) -> Outcome:
    th = ctx.thresholds
    content_type = tl.header("Content-Type")
    headers_ms = None if tl.headers_at is None else (tl.headers_at - tl.requested_at) * 1000
    metrics = {
        "status": tl.status,
        "content_type": content_type,
        "headers_ms": None if headers_ms is None else round(headers_ms, 2),
        "first_event_delay_ms": tl.initial_delay_ms,
    }
    if tl.status is None:
        return Outcome(
            Verdict.FAIL, f"no response: {tl.error or tl.end}", metrics, failure=Failure.STATUS
        )
    if tl.status != 200:
        return Outcome(
            Verdict.FAIL,
            f"status {tl.status} from proxy, expected 200",
            metrics,
            failure=Failure.STATUS,
        )
    if not (content_type or "").lower().startswith("text/event-stream"):
        return Outcome(
            Verdict.FAIL,
            f"Content-Type {content_type!r} reached the client, expected text/event-stream",
            metrics,
            failure=Failure.CONTENT_TYPE,
        )
    late_after = th.headers_late_fraction * tl.initial_delay_ms
    if headers_ms is not None and headers_ms >= late_after:
        # Headers held for the first event arrive with it. Earlier than that, the
        # tool's own lateness, or a machine starved of CPU, can explain them:
        # measured again, never blamed on the proxy.
        assert tl.headers_at is not None
        first = tl.deliveries[0].sent_at if tl.deliveries else None
        why = None
        if first is not None and tl.headers_at < first:
            why = loop_late(tl, th) or starved_during(
                tl, th, [(tl.requested_at, tl.headers_at)], "the headers were awaited"
            )
        if why:
            return Outcome(
                Verdict.ERROR,
                f"headers arrived after {fmt_ms(headers_ms)}, before the first event, but "
                f"{why}: cannot tell the proxy's delay from the tool's",
                metrics,
                discard=why,
            )
        return Outcome(
            Verdict.FAIL,
            f"headers arrived after {fmt_ms(headers_ms)}, held until the first event "
            f"(sent at {fmt_ms(tl.initial_delay_ms)}): EventSource.onopen fires late",
            metrics,
            failure=Failure.HELD,
        )
    return Outcome(
        Verdict.PASS,
        f"200 text/event-stream after {fmt_ms(headers_ms)}, before the first event "
        f"(sent at {fmt_ms(tl.initial_delay_ms)})",
        metrics,
    )


# -- sse.stream ------------------------------------------------------------------
async def probe_stream(ctx: ProbeContext, check: str) -> StreamTimeline:
    th = ctx.thresholds
    count, interval = th.stream_count, th.stream_interval_ms
    url = ctx.url("/sse", ctx.token(check), count=count, interval_ms=interval)
    return await probe.read_stream(
        ctx, url, expected=count, interval_ms=interval, headers=_IDENTITY
    )


def evaluate_stream(tl: StreamTimeline, ctx: EvalContext) -> Outcome:
    return judge_stream(tl, ctx)


# -- sse.last-event-id -------------------------------------------------------------
async def probe_resume(ctx: ProbeContext, check: str) -> ResumeTimeline:
    return await probe.resume(ctx, check)


def evaluate_resume(tl: ResumeTimeline, ctx: EvalContext) -> Outcome:
    first = tl.first
    metrics: dict[str, object] = {
        "first_events": len(first.deliveries),
        "last_event_id_sent": tl.last_event_id_sent,
        "origin_last_event_id": tl.origin_saw[1] if len(tl.origin_saw) > 1 else None,
    }
    if first.status != 200 or not first.deliveries:
        what = f"status {first.status}" if first.status else (first.error or first.end)
        return Outcome(
            Verdict.FAIL, f"no stream to resume: {what}", metrics, failure=Failure.STATUS
        )
    if tl.last_event_id_sent is None:
        return Outcome(
            Verdict.FAIL, "events arrived without an id: field", metrics, failure=Failure.IDS
        )
    second = tl.second
    if second is None or second.status != 200:
        what = f"status {second.status}" if second and second.status else "no response"
        return Outcome(
            Verdict.FAIL, f"the reconnect failed: {what}", metrics, failure=Failure.STATUS
        )
    seen = tl.origin_saw[1] if len(tl.origin_saw) > 1 else None
    if seen != tl.last_event_id_sent:
        return Outcome(
            Verdict.FAIL,
            f"Last-Event-ID {tl.last_event_id_sent} did not reach the origin "
            f"(it saw {seen!r}): a reconnecting browser replays or loses events",
            metrics,
            failure=Failure.HEADER,
        )
    if not tl.last_event_id_sent.isdigit():
        return Outcome(
            Verdict.FAIL,
            f"the events' ids were changed on the way: the client got id "
            f"{tl.last_event_id_sent!r} for an event the origin sent with a number",
            metrics,
            failure=Failure.IDS,
        )
    expected_next = int(tl.last_event_id_sent) + 1
    ids = [d.seq for d in second.deliveries]
    metrics["resumed_at"] = ids[0] if ids else None
    if not ids or ids[0] != expected_next:
        return Outcome(
            Verdict.FAIL,
            f"the origin saw Last-Event-ID {seen} but the client resumed at "
            f"{ids[0] if ids else 'nothing'}, expected {expected_next}",
            metrics,
            failure=Failure.RESUME,
        )
    return Outcome(
        Verdict.PASS,
        f"Last-Event-ID {seen} reached the origin; the stream resumed at {expected_next}",
        metrics,
    )


# -- sse.reconnect ---------------------------------------------------------------
async def probe_reconnect(ctx: ProbeContext, check: str) -> ReconnectTimeline:
    return await probe.reconnect(ctx, check)


def evaluate_reconnect(tl: ReconnectTimeline, ctx: EvalContext) -> Outcome:
    first = tl.attempts[0]
    got = [i for a in tl.attempts for i in a.ids]
    seen = set(got)
    duplicated = len(got) - len(seen)
    lost = [i for i in tl.expected if i not in seen]
    sent = [a.last_event_id for a in tl.attempts[1:]]
    reached = [a.origin_saw for a in tl.attempts[1:]]
    metrics = {
        "connections": len(tl.attempts),
        "events_expected": len(tl.expected),
        "events_received": len(seen),
        "duplicated": duplicated,
        "lost": len(lost),
        "retry_ms": tl.retry_ms,
    }
    if first.status != 200:
        what = f"status {first.status}" if first.status else first.end
        return Outcome(Verdict.FAIL, f"no stream: {what}", metrics, failure=Failure.STATUS)
    if duplicated or lost:
        problems = []
        if duplicated:
            problems.append(f"{duplicated} events delivered twice")
        if lost:
            problems.append(f"{len(lost)} lost ({', '.join(map(str, lost[:6]))})")
        why = ""
        if sent != reached:
            why = f": Last-Event-ID {', '.join(map(str, sent))} sent, the origin saw " + (
                ", ".join(map(str, reached))
            )
        return Outcome(
            Verdict.FAIL,
            f"across {tl.cuts} cuts and {len(tl.attempts)} connections: "
            f"{' and '.join(problems)}{why}",
            metrics,
            failure=Failure.HEADER if sent != reached else Failure.RESUME,
        )
    retry = f"`retry: {tl.retry_ms}` honoured" if tl.retry_ms else "no `retry:` reached the client"
    return Outcome(
        Verdict.PASS,
        f"{len(tl.expected)} events over {len(tl.attempts)} connections ({tl.cuts} cuts), none "
        f"lost or duplicated; Last-Event-ID reached the origin each time, {retry}",
        metrics,
    )


# -- sse.compression ---------------------------------------------------------------
async def probe_compression(ctx: ProbeContext, check: str) -> StreamTimeline:
    th = ctx.thresholds
    count, interval = th.compression_count, th.stream_interval_ms
    url = ctx.url("/sse", ctx.token(check), count=count, interval_ms=interval)
    return await probe.read_stream(
        ctx, url, expected=count, interval_ms=interval, headers={"Accept-Encoding": "gzip"}
    )


def evaluate_compression(tl: StreamTimeline, ctx: EvalContext) -> Outcome:
    encoding = (tl.header("Content-Encoding") or "").strip().lower() or None
    compressed = encoding is not None and any(e in encoding for e in _COMPRESSED)
    outcome = judge_stream(tl, ctx)
    metrics = {**outcome.metrics, "compressed": compressed, "content_encoding": encoding}
    if outcome.verdict in (Verdict.ERROR,) or tl.status != 200:
        return Outcome(outcome.verdict, outcome.summary, metrics, outcome.failure, outcome.discard)
    if not compressed:
        if outcome.verdict == Verdict.PASS:
            return Outcome(
                Verdict.PASS, "not compressed (client asked for gzip); " + outcome.summary, metrics
            )
        return Outcome(
            outcome.verdict,
            f"not compressed, but {outcome.summary}",
            metrics,
            failure=outcome.failure,
            discard=outcome.discard,
        )
    if outcome.verdict == Verdict.PASS:
        return Outcome(
            Verdict.PASS,
            f"{encoding}-compressed and flushed per event: " + outcome.summary,
            metrics,
        )
    return Outcome(
        outcome.verdict,
        f"{encoding}-compressed: {outcome.summary}",
        metrics,
        failure=_compressed(outcome.failure),
        discard=outcome.discard,
    )


_BUFFERING = "the proxy buffers the response: turn buffering off for text/event-stream"
_ORDER = "something on the path replays or reorders the stream: look for retries or caching"

_HTTP1 = (
    Check(
        "sse.headers",
        "200 and text/event-stream reach the client before the first event, even a late one",
        probe_headers,
        evaluate_headers,
        {
            Failure.HELD: _BUFFERING,
            Failure.STATUS: "route /sse to the origin",
            Failure.CONTENT_TYPE: "do not rewrite Content-Type of event streams",
        },
    ),
    Check(
        "sse.stream",
        "20 small events 100 ms apart arrive one by one (delay vs a direct connection)",
        probe_stream,
        evaluate_stream,
        {
            Failure.HELD: _BUFFERING,
            Failure.DELAYED: "the proxy batches small writes: flush each chunk",
            Failure.TRUNCATED: "something on the path cut the stream: look for a timeout or size "
            "limit",
            Failure.ORDER: _ORDER,
        },
        timing=True,
    ),
    Check(
        "sse.last-event-id",
        "a reconnect's Last-Event-ID reaches the origin and the stream resumes after it",
        probe_resume,
        evaluate_resume,
        {
            Failure.HEADER: "forward the Last-Event-ID request header to the origin",
            Failure.IDS: "the events' `id:` fields did not reach the client: pass the event "
            "stream through unchanged",
            Failure.STATUS: "route /sse to the origin",
        },
    ),
    Check(
        "sse.reconnect",
        "after the origin cuts a stream, a browser-like reconnect loses and repeats no event",
        probe_reconnect,
        evaluate_reconnect,
        {
            Failure.HEADER: "forward the Last-Event-ID request header to the origin",
            Failure.RESUME: "the stream did not resume where it was cut: look for buffering that "
            "drops the events sent just before a cut",
        },
    ),
    Check(
        "sse.compression",
        "when the client accepts gzip: is the stream compressed, and still flushed per event?",
        probe_compression,
        evaluate_compression,
        {
            Failure.COMPRESSED_HELD: "leave text/event-stream out of the proxy's compression types",
            Failure.COMPRESSED_DELAYED: "leave text/event-stream out of compression, or flush per "
            "event",
            Failure.HELD: _BUFFERING,
            Failure.ORDER: _ORDER,
        },
        timing=True,
    ),
)
# Over HTTP/2 too (TLS by ALPN, and cleartext h2c), where the listener speaks it:
# the faults users meet over h2 differ (headers held until the first DATA frame,
# compression that buffers), so each is its own result beside the HTTP/1.1 one.
_OVER_H2 = ("sse.headers", "sse.stream", "sse.last-event-id", "sse.compression")
CHECKS = (
    *_HTTP1,
    *(over(c, transport) for transport in ("h2", "h2c") for c in _HTTP1 if c.id in _OVER_H2),
)
