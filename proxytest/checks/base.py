"""The shape of a check: a probe (I/O) and an evaluation (a pure function).

``Check[T]`` ties them through the timeline type ``T``: the probe returns a
``T`` and the evaluation judges a ``T``, so the type checker refuses a check
whose evaluation expects another probe's timeline.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..probes import ProbeContext
from ..results import Failure, Outcome
from ..timing import Thresholds

__all__ = ["Check", "EvalContext", "Phase", "fmt_ms"]

T = TypeVar("T")


class Phase(enum.StrEnum):
    """When a check runs within a target's run (the runner schedules by phase)."""

    QUICK = "quick"  # seconds; all of a target's at once, in its concurrency slot
    LONG = "long"  # holds up to max-hold; every target's long checks overlap
    LIFECYCLE = "lifecycle"  # a private proxy instance (reload, origin restart)
    LOAD = "load"  # one target at a time, with no timing check running anywhere


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

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


def fmt_ms(ms: float | None) -> str:
    """12.3 ms, 480 ms, 1.9 s: precision where it matters to a reader."""
    if ms is None:
        return "n/a"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"
