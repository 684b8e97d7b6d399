"""The shape of a check: a probe (I/O) and an evaluation (a pure function)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..probes import ProbeContext
from ..results import Outcome
from ..timing import Thresholds

__all__ = ["Check", "EvalContext", "fmt_ms"]


@dataclass(frozen=True)
class EvalContext:
    """What an evaluation may use besides the timeline."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    # Direct origin-to-client p95 delay (ms) measured in the same run, by kind
    # ("sse", "ws"). Missing means no baseline: 0 is assumed.
    baseline: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    id: str
    description: str
    probe: Callable[[ProbeContext, str], Awaitable[Any]]
    evaluate: Callable[[Any, EvalContext], Outcome]
    # Proxy-neutral hints by failure kind; adapters override them per proxy.
    hints: Mapping[str, str] = field(default_factory=dict)
    # Timing checks compare with the direct baseline and are re-measured when
    # the tool's own event loop was late.
    timing: bool = False
    # When it runs: "quick" (seconds; all at once), "long" (holds up to max-hold;
    # all targets' long checks overlap), "lifecycle" (private proxy instance),
    # "load" (one target at a time, with no timing check running anywhere).
    kind: str = "quick"

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
