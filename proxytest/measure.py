"""Honest timing: the direct baseline, and what several attempts of one check add up to.

Timing verdicts compare a proxy's delays with a direct origin-to-client
baseline, so the baseline is measured before any proxy starts (nothing else
runs then), accepted only when the tool was on time and the delay is as small
as a direct loopback delivery is, and otherwise replaced by the reason it could
not be had: a delay then is ``error`` ("too busy to judge timing"), never a
verdict computed against noise.

A timing check may take several attempts (``Thresholds.timing_retries``). An
attempt that the tool's own lateness explains (``Outcome.discard``) is measured
again and never counted. Every other attempt counts: one delayed attempt makes
the check ``degraded``, and the summary says in how many of the counted
attempts the delay showed ("delayed in 2 of 3 attempts, intermittent"), so an
intermittent stall is reported, not washed out by one clean attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .checks import CHECKS, analyse
from .checks.base import fmt_ms
from .checks.delivery import loop_late
from .probes import ProbeContext, StreamTimeline
from .results import Outcome, Verdict

__all__ = ["Baseline", "combine", "measure_again", "measure_baseline"]


@dataclass(frozen=True)
class Baseline:
    """Direct p95 delays (ms) by stream kind, or why they could not be measured."""

    delays_ms: Mapping[str, float] = field(default_factory=dict)
    problem: str | None = None


async def measure_baseline(ctx: ProbeContext) -> Baseline:
    """The direct origin-to-client p95 delay for SSE events and pushed messages.

    Up to ``1 + timing_retries`` attempts, with the retry pause between them;
    an attempt counts only when the tool was on time and both delays are under
    ``baseline_limit_ms``.
    """
    th = ctx.thresholds
    sse, ws = CHECKS["sse.stream"], CHECKS["ws.push"]
    seen: list[str] = []
    for attempt in range(1 + th.timing_retries):
        if attempt:
            await asyncio.sleep(th.retry_pause_s * attempt)
        timelines = await asyncio.gather(sse.probe(ctx, "baseline"), ws.probe(ctx, "baseline"))
        values: dict[str, float] = {}
        problems: list[str] = []
        for tl in timelines:
            assert isinstance(tl, StreamTimeline)
            stats = analyse(tl.deliveries, tl.expected, tl.interval_ms, th.coalesce_window_ms)
            if stats.received < tl.expected:
                problems.append(f"{tl.kind}: {stats.received}/{tl.expected} arrived ({tl.end})")
                continue
            values[tl.kind] = stats.p95_delay_ms or 0.0
            why = loop_late(tl, th)
            if why:
                problems.append(why)
            elif values[tl.kind] > th.baseline_limit_ms:
                problems.append(
                    f"{tl.kind} p95 {fmt_ms(values[tl.kind])} (direct loopback delivery takes "
                    f"under {fmt_ms(th.baseline_limit_ms)})"
                )
        if not problems:
            return Baseline(values)
        seen.append("; ".join(problems))
    return Baseline(
        problem="too busy to judge timing: the direct origin-to-client baseline could not be "
        f"measured in {len(seen)} attempts ({seen[-1]})"
    )


def measure_again(outcome: Outcome, timing: bool) -> bool:
    """Does this attempt call for another (when attempts remain)?"""
    return outcome.discard is not None or (timing and outcome.verdict == Verdict.DEGRADED)


def combine(outcomes: Sequence[Outcome]) -> Outcome:
    """The verdict of one check from all its attempts (see the module docstring)."""
    if len(outcomes) == 1:
        return outcomes[0]
    counted = [o for o in outcomes if o.discard is None]
    discarded = len(outcomes) - len(counted)
    if not counted:
        last = outcomes[-1]
        return Outcome(
            Verdict.ERROR,
            f"too busy to judge timing: in all {len(outcomes)} attempts {last.discard}",
            {**last.metrics, "attempts_discarded": discarded},
        )
    delayed = [o for o in counted if o.verdict == Verdict.DEGRADED]
    if not delayed:
        final = counted[-1]
        if discarded:
            note = f" ({discarded} earlier attempts discarded: the tool itself was late)"
            return Outcome(final.verdict, final.summary + note, final.metrics, final.failure)
        return final
    first = delayed[0]
    how = f"delayed in {len(delayed)} of {len(counted)} attempts"
    if len(delayed) < len(counted):
        how += ", intermittent"
    if discarded:
        how += f"; {discarded} more discarded: the tool itself was late"
    metrics: dict[str, Any] = {
        **first.metrics,
        "attempts_delayed": len(delayed),
        "attempts_counted": len(counted),
    }
    return Outcome(Verdict.DEGRADED, f"{first.summary} ({how})", metrics, first.failure)
