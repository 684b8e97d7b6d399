"""lb.failover: one backend dies mid-stream (probes/failover.py drives it).

Every client on the dead backend must learn within ``failover_learn_limit_s``
(a connection still open then hung), get events again from a live backend
within ``failover_reconnect_limit_s`` of learning, and read every event after
its Last-Event-ID (WebSocket: ``after=``) once. Reconnects the proxy answered
with errors first (it kept choosing the dead backend) make it ``degraded``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..probes import ProbeContext
from ..probes import failover as probe
from ..probes.failover import FailoverClient, FailoverTimeline, FailoverTry
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase, fmt_ms

__all__ = ["CHECKS", "ClientJudgement", "evaluate_failover", "judge_client"]


@dataclass(frozen=True)
class ClientJudgement:
    """What one client's story says (times in ms from the kill)."""

    affected: bool  # on the dead backend, or cut anyway: it had to reconnect
    detected_ms: float | None  # None: it had to and did not learn within the limit (hung)
    reconnected_ms: float | None  # events again from a live backend; None: not in time
    failed_attempts: int  # reconnects answered by errors before the one that worked
    lost: int
    duplicated: int
    resumed_on: str | None  # the backend of the reconnect that worked


def _gaps(seqs: tuple[int, ...]) -> tuple[int, int]:
    """(missing, duplicated) in a run of seqs meant to be contiguous and increasing."""
    if not seqs:
        return 0, 0
    distinct = set(seqs)
    return (max(seqs) - min(seqs) + 1) - len(distinct), len(seqs) - len(distinct)


def judge_client(c: FailoverClient, tl: FailoverTimeline) -> ClientJudgement:
    """One client against the limits of ``tl`` (pure)."""
    assert tl.killed_at is not None
    lost, duplicated = _gaps(c.seqs_before)
    affected = c.backend == tl.victim or c.learned_at is not None
    if not affected:
        return ClientJudgement(False, None, None, 0, lost, duplicated, None)
    detected = None
    if c.learned_at is not None and c.learned_at - tl.killed_at <= tl.learn_limit_s:
        detected = max(0.0, (c.learned_at - tl.killed_at) * 1000)
    resumed = c.resumed
    failed = sum(1 for t in c.tries if t.backend is None)
    reconnected = None
    # Live: one of the group's other backends. An origin outside the group (a
    # server that took the dead backend's port) serves another log: no failover.
    live = set(tl.backends) - {tl.victim}
    if resumed is not None and resumed.backend in live:
        failed = c.tries.index(resumed)
        answered, learned = resumed.answered_at, c.learned_at
        if (
            answered is not None
            and learned is not None
            and answered - learned <= tl.reconnect_limit_s
        ):
            reconnected = max(0.0, (answered - tl.killed_at) * 1000)
    if c.seqs_before and c.seqs_after:
        # Expected: last+1, last+2, … Anything at or before the last one read before
        # the cut was read twice; a seq missing up to the highest read was lost.
        last = max(c.seqs_before)
        again = sum(1 for s in c.seqs_after if s <= last)
        newer = tuple(s for s in c.seqs_after if s > last)
        missing, repeated = _gaps((last, *newer))
        lost += missing
        duplicated += again + repeated
    return ClientJudgement(
        True,
        detected,
        reconnected,
        failed,
        lost,
        duplicated,
        resumed.backend if resumed else None,
    )


def _kinds(clients: list[FailoverClient]) -> str:
    sse = sum(c.kind == "sse" for c in clients)
    ws = len(clients) - sse
    return ", ".join(p for p in (f"{sse} SSE" if sse else "", f"{ws} WebSocket" if ws else "") if p)


def evaluate_failover(tl: FailoverTimeline, ctx: EvalContext) -> Outcome:
    if tl.unsupported:
        return Outcome(Verdict.SKIP, tl.unsupported)
    if tl.error or tl.killed_at is None or tl.victim is None:
        return Outcome(Verdict.ERROR, tl.error or "no backend was killed")
    opened = [c for c in tl.clients if c.backend is not None]
    judged = [(c, judge_client(c, tl)) for c in opened]
    affected = [(c, j) for c, j in judged if j.affected]
    hung = [c for c, j in affected if j.detected_ms is None]
    stranded = [c for c, j in affected if j.detected_ms is not None and j.reconnected_ms is None]
    failed_attempts = sum(j.failed_attempts for _, j in affected)
    lost = sum(j.lost for _, j in judged)
    duplicated = sum(j.duplicated for _, j in judged)
    detected = [j.detected_ms for _, j in affected]
    reconnected = [j.reconnected_ms for _, j in affected]
    metrics: dict[str, object] = {
        "clients": len(opened),
        "backends": len(tl.backends),
        "clients_on_dead_backend": sum(c.backend == tl.victim for c in opened),
        "detected_after_ms": _max_ms(detected),
        "reconnected_after_ms": _max_ms(reconnected),
        "failed_attempts": failed_attempts,
        "events_lost": lost,
        "events_duplicated": duplicated,
    }
    not_opened = [c for c in tl.clients if c.backend is None]
    note = ""
    if not_opened:
        why = sorted({c.open_error or "?" for c in not_opened})
        note = f" ({_kinds(not_opened)} clients never opened: {'; '.join(why)})"
    on_victim = [c for c in opened if c.backend == tl.victim]
    intro = (
        f"backend {tl.victim} of {len(tl.backends)} killed with {len(on_victim)} of "
        f"{len(opened)} clients on it ({_kinds(on_victim)}){note}"
    )
    if hung:
        return Outcome(
            Verdict.FAIL,
            f"{intro}: {len(hung)} ({_kinds(hung)}) still open {tl.learn_limit_s:g} s later: "
            "the proxy holds connections to a dead backend open, clients never reconnect",
            metrics,
            failure=Failure.HUNG_ON_DEAD_BACKEND,
        )
    if stranded:
        tries = [t for c in stranded for t in c.tries]
        said = _answers(tries) or "none sent"
        return Outcome(
            Verdict.FAIL,
            f"{intro}: {len(stranded)} ({_kinds(stranded)}) got no events from a live backend "
            f"within {tl.reconnect_limit_s:g} s of learning ({len(tries)} attempts: {said})",
            metrics,
            failure=Failure.NO_FAILOVER,
        )
    learned = (
        f"all learned within {fmt_ms(_max_ms(detected))} "
        f"({', '.join(sorted({c.how or '?' for c, _ in affected}))})"
    )
    again = f"events again {fmt_ms(_max_ms(reconnected))} after the kill"
    if lost or duplicated:
        return Outcome(
            Verdict.FAIL,
            f"{intro}: {learned}, {again}, but {lost} events lost and {duplicated} duplicated "
            "across the failover (Last-Event-ID / after= not honoured on the way)",
            metrics,
            failure=Failure.LOST_EVENTS,
        )
    if failed_attempts:
        failed = [t for c, _ in affected for t in c.tries if t.backend is None]
        errors = sorted({t.error or "?" for t in failed})
        took = [t.answered_at - t.at for t in failed if t.answered_at is not None]
        slowest = f", the slowest after {fmt_ms(max(took) * 1000)}" if took else ""
        return Outcome(
            Verdict.DEGRADED,
            f"{intro}: {learned}; {failed_attempts} reconnect attempts answered "
            f"{', '.join(errors)}{slowest} before a live backend (the proxy kept sending them "
            f"to the dead backend); {again}, nothing lost",
            metrics,
            failure=Failure.RETRIED_DEAD_BACKEND,
        )
    return Outcome(
        Verdict.PASS,
        f"{intro}: {learned}; each reconnect reached a live backend at the first attempt; "
        f"{again}, none lost or duplicated",
        metrics,
    )


def _answers(tries: list[FailoverTry]) -> str:
    """'2 × status 503 (the slowest after 3.2 s), 1 × no event within the reconnect limit'."""
    counts: dict[str, int] = {}
    took: dict[str, list[float]] = {}
    for t in tries:
        what = f"events from {t.backend}" if t.backend is not None else (t.error or "?")
        counts[what] = counts.get(what, 0) + 1
        took.setdefault(what, [])
        if t.answered_at is not None:
            took[what].append(t.answered_at - t.at)
    return ", ".join(
        f"{n} × {what}"
        + (f" (the slowest after {fmt_ms(max(took[what]) * 1000)})" if took[what] else "")
        for what, n in counts.items()
    )


def _max_ms(values: list[float | None]) -> float | None:
    """The largest, rounded; None when one is None (or there are none)."""
    if not values or any(v is None for v in values):
        return None
    return round(max(v for v in values if v is not None), 1)


async def probe_failover(ctx: ProbeContext, check: str) -> FailoverTimeline:
    return await probe.failover(ctx, check)


CHECKS = (
    Check(
        "lb.failover",
        "a backend dies mid-stream: clients learn promptly, reconnect to a live one, lose no event",
        probe_failover,
        evaluate_failover,
        {
            Failure.HUNG_ON_DEAD_BACKEND: "the proxy kept client connections open after their "
            "backend died: clients wait instead of reconnecting; the proxy should close the "
            "client side when the upstream resets, and bound its upstream read timeout",
            Failure.NO_FAILOVER: "reconnects did not reach a live backend in time: the proxy "
            "kept choosing the dead one; retry the next backend on a connect failure and mark "
            "a failing backend down (passive or active health checks)",
            Failure.LOST_EVENTS: "events were lost or duplicated across the failover: the "
            "proxy must pass Last-Event-ID and the query string through unchanged, and the "
            "backends must share the event log (a pub/sub adapter)",
            Failure.RETRIED_DEAD_BACKEND: "reconnects were answered with errors before one "
            "reached a live backend: the proxy sent them to the dead backend; retry the next "
            "backend on a connect failure, or mark a backend down after one failure",
        },
        phase=Phase.LIFECYCLE,
    ),
)
