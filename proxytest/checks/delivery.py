"""Judging a stream of timed deliveries (SSE events, pushed WebSocket messages).

Four shapes are told apart, in this order:

* **held** (fail): the first item arrives after half the stream's send span had
  passed: something buffered the response until (nearly) the end;
* **truncated** (fail): fewer items than sent, the stream ended early;
* **delayed / coalesced** (degraded): the p95 delay exceeds the direct baseline
  by more than ``delay_degraded_ms``, or a quarter of the items sent apart
  arrived together, or the worst single item exceeds it by more than
  ``worst_delay_degraded_ms`` (one event held 5 s is not hidden by a p95).
  The p95 never is the worst item itself (:func:`_p95`): one late item is
  judged by the worst-item limit alone, in a stream of 10 as in one of 20;
* **streamed** (pass): like a direct connection.

Only the tool's own lateness is discounted: its event loop's lag
(:func:`loop_late`) up to its size; for a held stream, which is judged by its
first item alone, that lag or the origin sending behind its schedule
(:func:`tool_late`); and, for a few late events only, a machine starved of CPU
while the stream ran (:func:`starved`). When it can explain
what was seen, the attempt is ``error`` with ``discard`` set, and the runner
measures again without counting it. Every other attempt counts; the
runner reports how many of them were delayed (runner.py, ``combine``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ..probes.timeline import Delivery, StreamTimeline
from ..results import Failure, Outcome, Verdict
from ..timing import Thresholds
from .base import EvalContext, fmt_ms

__all__ = [
    "DeliveryStats",
    "analyse",
    "judge_stream",
    "loop_late",
    "origin_behind_ms",
    "starved",
    "starved_during",
    "tool_late",
]


@dataclass(frozen=True)
class DeliveryStats:
    expected: int
    received: int
    in_order: bool
    duplicates: int
    first_delay_ms: float | None
    p50_delay_ms: float | None
    p95_delay_ms: float | None
    max_delay_ms: float | None
    send_span_ms: float
    coalesced: int
    coalesced_fraction: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _p95(values: list[float]) -> float:
    """The p95 by nearest rank, sparing at least the worst item.

    In a stream of 20 the nearest rank is the second worst; in one of 10
    (sse.compression) it would be the worst itself, so a single item 60 ms late
    made a stream of 10 degraded while one of 20 passed (CI32 and CI33 flips).
    """
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0]
    return ordered[min(round(0.95 * (len(ordered) - 1)), len(ordered) - 2)]


def analyse(
    deliveries: tuple[Delivery, ...], expected: int, interval_ms: float, window_ms: float
) -> DeliveryStats:
    seqs = [d.seq for d in deliveries]
    unique = set(seqs)
    delays = [(d.received_at - d.sent_at) * 1000 for d in deliveries]
    coalesced = 0
    for before, after in itertools.pairwise(deliveries):
        sent_gap = (after.sent_at - before.sent_at) * 1000
        received_gap = (after.received_at - before.received_at) * 1000
        if sent_gap >= interval_ms / 2 and received_gap < window_ms:
            coalesced += 1
    pairs = max(len(deliveries) - 1, 1)
    return DeliveryStats(
        expected=expected,
        received=len(unique),
        in_order=seqs == sorted(seqs),
        duplicates=len(seqs) - len(unique),
        first_delay_ms=round(delays[0], 2) if delays else None,
        p50_delay_ms=round(_percentile(delays, 0.5), 2) if delays else None,
        p95_delay_ms=round(_p95(delays), 2) if delays else None,
        max_delay_ms=round(max(delays), 2) if delays else None,
        send_span_ms=max(expected - 1, 0) * interval_ms,
        coalesced=coalesced,
        coalesced_fraction=round(coalesced / pairs, 3) if len(deliveries) > 1 else 0.0,
    )


def loop_late(tl: StreamTimeline, th: Thresholds) -> str | None:
    """Why the tool's own event loop (origin and clients share it) was late; None if on time."""
    if tl.loop_lag_ms > th.loop_lag_limit_ms:
        return f"the tool's own event loop was {fmt_ms(tl.loop_lag_ms)} late"
    return None


def origin_behind_ms(tl: StreamTimeline) -> float:
    """How far behind its schedule the origin sent the items (ms; 0 when on time).

    The origin sends item ``seq`` at a fixed offset from the first (one
    ``interval_ms`` per sequence number), so an item sent later than that is the
    tool's lateness, never the proxy's: small items are written without waiting
    for the proxy to read them.
    """
    if len(tl.deliveries) < 2:
        return 0.0
    first = tl.deliveries[0]
    behind = (
        (d.sent_at - first.sent_at) * 1000 - (d.seq - first.seq) * tl.interval_ms
        for d in tl.deliveries[1:]
    )
    return max(0.0, max(behind))


def tool_late(
    tl: StreamTimeline, th: Thresholds, limit_ms: float, delay_ms: float, noun: str = "events"
) -> str | None:
    """Why a ``delay_ms`` at or past ``limit_ms`` may be the tool's own; None if it is not.

    The tool was late when its event loop lagged, or its origin sent the items
    behind schedule, by more than ``loop_lag_limit_ms``; that explains the delay
    when, taken off, what remains is under ``limit_ms``.
    """
    lag, behind = tl.loop_lag_ms, origin_behind_ms(tl)
    late = max(lag, behind)
    if late <= th.loop_lag_limit_ms or delay_ms - late >= limit_ms:
        return None
    if behind > lag:
        return f"the tool's origin sent the {noun} up to {fmt_ms(behind)} behind schedule"
    return f"the tool's own event loop was {fmt_ms(lag)} late"


def starved(tl: StreamTimeline, th: Thresholds, late: Sequence[Delivery] = ()) -> str | None:
    """Why the machine was starved of CPU while ``tl`` ran (PSI); None if not, or unknown.

    Starvation can explain a few late items (one process descheduled for a
    while), never a steady delay of every item: that would show in the tool's
    own loop lag too. Starved over the whole stream, or during the travel of
    every one of the ``late`` items, explains them.
    """
    window_ms = (tl.ended_at - tl.requested_at) * 1000
    stall = tl.cpu_stall_ms
    if stall is not None and window_ms > 0 and stall / window_ms >= th.cpu_pressure_limit:
        return (
            f"the machine was starved of CPU ({stall / window_ms:.0%} of the time some task "
            "waited for one)"
        )
    what = "the late item" if len(late) == 1 else f"each of the {len(late)} late items"
    return starved_during(tl, th, [(d.sent_at, d.received_at) for d in late], f"{what} travelled")


def starved_during(
    tl: StreamTimeline, th: Thresholds, spans: Sequence[tuple[float, float]], what: str
) -> str | None:
    """Why the machine was starved of CPU in each of ``spans`` (PSI); None if not, or unknown."""
    shares = [tl.stall_fraction(since, until) for since, until in spans]
    if not shares or any(f is None or f < th.cpu_pressure_limit for f in shares):
        return None
    least = min(f for f in shares if f is not None)
    return (
        f"the machine was starved of CPU while {what} (some task waited for one "
        f"{least:.0%} of that time or more)"
    )


def _late_stall(tl: StreamTimeline, late: Sequence[Delivery]) -> dict[str, float]:
    """``late_cpu_stall_fraction``: the most CPU-starved late item's share (where PSI says)."""
    shares = [f for d in late if (f := tl.stall_fraction(d.sent_at, d.received_at)) is not None]
    return {"late_cpu_stall_fraction": round(max(shares), 2)} if shares else {}


def _ended(tl: StreamTimeline) -> str:
    reasons = {
        "truncated": "the stream was cut",
        "timeout": "the stream stalled",
        "refused": "connection refused",
        "error": "connection failed",
    }
    text = reasons.get(tl.end, tl.end)
    return f"{text} ({tl.error})" if tl.error else text


def judge_stream(tl: StreamTimeline, ctx: EvalContext, *, noun: str = "events") -> Outcome:
    """The verdict on one stream; shared by sse.stream, sse.compression and ws.push."""
    th = ctx.thresholds
    stats = analyse(tl.deliveries, tl.expected, tl.interval_ms, th.coalesce_window_ms)
    baseline = ctx.baseline.get(tl.kind, 0.0)
    metrics = {
        f"{noun}_expected": tl.expected,
        f"{noun}_received": stats.received,
        "first_delay_ms": stats.first_delay_ms,
        "p50_delay_ms": stats.p50_delay_ms,
        "p95_delay_ms": stats.p95_delay_ms,
        "max_delay_ms": stats.max_delay_ms,
        "baseline_p95_delay_ms": round(baseline, 2),
        "coalesced_fraction": stats.coalesced_fraction,
        "loop_lag_ms": tl.loop_lag_ms,
    }
    if tl.end == "status" or (tl.status is not None and tl.status not in (101, 200)):
        what = f"status {tl.status}" if tl.status else (tl.error or "no response")
        return Outcome(
            Verdict.FAIL,
            f"no stream: {what}",
            {**metrics, "status": tl.status},
            failure=Failure.STATUS,
        )
    if stats.received == 0:
        return Outcome(
            Verdict.FAIL,
            f"no {noun} arrived: {_ended(tl)}",
            metrics,
            failure=Failure.TRUNCATED if tl.end != "timeout" else Failure.HELD,
        )
    if not stats.in_order or stats.duplicates:
        return Outcome(
            Verdict.FAIL,
            f"{noun} out of order or duplicated ({stats.duplicates} duplicates)",
            metrics,
            failure=Failure.ORDER,
        )
    shape = (
        f"{stats.received}/{tl.expected} {noun}, first after {fmt_ms(stats.first_delay_ms)}, "
        f"p95 delay {fmt_ms(stats.p95_delay_ms)}"
    )
    held_after = th.held_fraction * stats.send_span_ms
    if stats.send_span_ms and (stats.first_delay_ms or 0) >= held_after:
        # Held is judged by the first item alone, so the tool's own stall can make
        # it: the loop that reads the stream (and runs the origin) stopped, the
        # first item waited unread, and the origin sent the next ones late (CI,
        # caddy/tls: first after 452 ms, p95 114 ms). Only what stays past the
        # limit once the tool's lateness is taken off is the proxy's.
        why = tool_late(tl, th, held_after, stats.first_delay_ms or 0, noun)
        if why:
            return Outcome(
                Verdict.ERROR,
                f"{shape}, but {why}: cannot tell a held stream from the tool's stall",
                metrics,
                discard=why,
            )
        ending = "held until the response ended" if tl.end == "complete" else _ended(tl)
        return Outcome(Verdict.FAIL, f"{shape}: {ending}", metrics, failure=Failure.HELD)
    if stats.received < tl.expected:
        return Outcome(
            Verdict.FAIL,
            f"{stats.received}/{tl.expected} {noun}: {_ended(tl)}",
            metrics,
            failure=Failure.TRUNCATED,
        )
    excess = (stats.p95_delay_ms or 0) - baseline
    worst = (stats.max_delay_ms or 0) - baseline
    coalesced = stats.coalesced_fraction >= th.coalesced_fraction_degraded
    held_once = worst > th.worst_delay_degraded_ms
    if excess > th.delay_degraded_ms or coalesced or held_once:
        # The tool's own lateness can explain a delay, or events read together,
        # only up to its size: a delay that stays over the limit once the loop's
        # lag is subtracted is the proxy's. A machine starved of CPU can explain
        # a few late events, not a steady delay.
        lag = tl.loop_lag_ms
        beyond = excess - lag > th.delay_degraded_ms or worst - lag > th.worst_delay_degraded_ms
        late_items = [
            d
            for d in tl.deliveries
            if (d.received_at - d.sent_at) * 1000 - baseline > th.delay_degraded_ms
        ]
        late = len(late_items)
        few = not coalesced and late < th.coalesced_fraction_degraded * stats.received
        why = loop_late(tl, th) if not beyond else None
        why = why or (starved(tl, th, late_items) if few else None)
        if why:
            return Outcome(
                Verdict.ERROR,
                f"{shape}, but {why}: cannot tell the proxy's delay from the tool's",
                metrics,
                discard=why,
            )
        # Without a direct baseline (probe mode) a delay the tool cannot explain is
        # not judged either; the tool's lateness above comes first, so a stall of
        # its own is measured again rather than reported (CI39: one WebSocket
        # message 251 ms late through a clean relay).
        if ctx.baseline_problem and tl.kind not in ctx.baseline:
            return Outcome(Verdict.ERROR, f"{shape}: {ctx.baseline_problem}", metrics)
        detail = []
        if excess > th.delay_degraded_ms:
            detail.append(f"{fmt_ms(excess)} over direct")
        if coalesced:
            detail.append(f"{stats.coalesced} of {tl.expected - 1} arrived together")
        if held_once and not coalesced and excess <= th.delay_degraded_ms:
            detail.append(f"one held {fmt_ms(stats.max_delay_ms)}")
        elif few:
            detail.append(f"{late} of {stats.received} late")
        return Outcome(
            Verdict.DEGRADED,
            f"{shape} ({', '.join(detail)}): delayed or coalesced on the way",
            {**metrics, "late_count": late, **_late_stall(tl, late_items)},
            failure=Failure.DELAYED,
        )
    # Without a baseline (probe mode: the origin is behind the path) the summary
    # says why, and so what the delay includes, rather than "direct 0 ms".
    direct = (
        f"direct {fmt_ms(baseline)}"
        if tl.kind in ctx.baseline or not ctx.baseline_problem
        else ctx.baseline_problem
    )
    return Outcome(
        Verdict.PASS,
        f"{stats.received}/{tl.expected} {noun} one by one, p95 delay "
        f"{fmt_ms(stats.p95_delay_ms)} ({direct})",
        metrics,
    )
