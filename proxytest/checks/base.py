"""The shape of a check: a probe (I/O) and an evaluation (a pure function).

``Check[T]`` ties them through the timeline type ``T``: the probe returns a
``T`` and the evaluation judges a ``T``, so the type checker refuses a check
whose evaluation expects another probe's timeline.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from ..probes import ProbeContext
from ..probes.context import Transport
from ..probes.http import offered
from ..results import Failure, Outcome, Verdict
from ..timing import Thresholds

__all__ = ["TRANSPORT_NAMES", "Check", "EvalContext", "Phase", "Unavailable", "fmt_ms", "over"]

T = TypeVar("T")


class Phase(enum.StrEnum):
    """When a check runs within a target's run (the runner schedules by phase)."""

    QUICK = "quick"  # seconds; all of a target's at once, in its concurrency slot
    LONG = "long"  # holds up to max-hold; every target's long checks overlap
    LIFECYCLE = "lifecycle"  # a private proxy instance (reload, origin restart)
    # After every target's quick checks (a browser's CPU would disturb their timing),
    # every target's at once, pages bounded by the run's Chromium
    BROWSER = "browser"
    LOAD = "load"  # one target at a time, with no timing check or browser running anywhere


@dataclass(frozen=True)
class EvalContext:
    """What an evaluation may use besides the timeline."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    # Direct origin-to-client p95 delay (ms) measured in the same run, by stream
    # kind ("sse", "ws"). Missing means no baseline: 0 is assumed, unless
    # ``baseline_problem`` says why it could not be measured (then a delay is
    # an error: too busy to judge timing).
    baseline: Mapping[str, float] = field(default_factory=dict)
    baseline_problem: str | None = None


@dataclass(frozen=True)
class Check(Generic[T]):
    id: str
    description: str
    # The probe gets the context and a label for its probe tokens (the check ID).
    probe: Callable[[ProbeContext, str], Awaitable[T]]
    evaluate: Callable[[T, EvalContext], Outcome]
    # Proxy-neutral hints by failure kind; adapters override them per proxy.
    hints: Mapping[Failure, str] = field(default_factory=dict)
    # Timing checks compare with the direct baseline and are re-measured when
    # the tool's own event loop was late.
    timing: bool = False
    phase: Phase = Phase.QUICK
    # The protocol its requests travel over; not h1: the ID ends in @h2 or @h2c.
    transport: Transport = "h1"

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def base_id(self) -> str:
        """The ID without its transport (``sse.stream`` for ``sse.stream@h2``)."""
        return self.id.split("@", 1)[0]


TRANSPORT_NAMES: Mapping[Transport, str] = {
    "h1": "HTTP/1.1",
    "h2": "HTTP/2 over TLS",
    "h2c": "HTTP/2 in cleartext (h2c)",
}


@dataclass(frozen=True)
class Unavailable:
    """The listener does not speak the check's transport: skipped, with why."""

    reason: str


def over(check: Check[T], transport: Transport) -> Check[T | Unavailable]:
    """``check`` with its requests sent over ``transport``: ID ``<id>@<transport>``.

    The probe first asks whether the listener speaks the transport (probes/http.py
    ``offered``); where it does not, the check is skipped with the reason. The
    evaluation and the hints are the HTTP/1.1 check's: the same fault is judged
    the same way whichever protocol carried it.
    """

    async def probe(ctx: ProbeContext, label: str) -> T | Unavailable:
        ctx = replace(ctx, transport=transport)
        reason = await offered(ctx)
        if reason is not None:
            return Unavailable(reason)
        return await check.probe(ctx, label)

    def evaluate(timeline: T | Unavailable, ctx: EvalContext) -> Outcome:
        if isinstance(timeline, Unavailable):
            return Outcome(Verdict.SKIP, timeline.reason, {"transport": transport})
        outcome = check.evaluate(timeline, ctx)
        return replace(outcome, metrics={**outcome.metrics, "transport": transport})

    return Check(
        f"{check.id}@{transport}",
        f"{check.description} (over {transport})",
        probe,
        evaluate,
        check.hints,
        check.timing,
        check.phase,
        transport,
    )


def fmt_ms(ms: float | None) -> str:
    """12.3 ms, 480 ms, 1.9 s: precision where it matters to a reader."""
    if ms is None:
        return "n/a"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"
