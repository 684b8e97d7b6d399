"""Reading one target's results by check ID and metric name, and the words for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import RANK, Answer, State

_MEASURED = ("pass", "degraded", "fail")
_STATE_OF = {"pass": "good", "degraded": "caveat", "fail": "bad"}


@dataclass(frozen=True)
class Result:
    check: str
    verdict: str
    summary: str
    hint: str | None
    metrics: Mapping[str, Any]
    not_run: bool

    @property
    def measured(self) -> bool:
        return self.verdict in _MEASURED and not self.not_run

    @property
    def state(self) -> State:
        return _STATE_OF[self.verdict] if self.measured else "not-measured"  # type: ignore[return-value]

    def metric(self, name: str) -> Any:
        return self.metrics.get(name)


def short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    if cut.count("`") % 2:  # never leave a code span open
        cut = cut[: cut.rindex("`")]
    if cut.count("(") > cut.count(")"):  # nor a parenthesis: drop the aside it opened
        cut = cut[: cut.rindex("(")]
    return cut.rstrip(",;:( ") + " …"


class Results:
    def __init__(self, target: Mapping[str, Any]) -> None:
        self.by_id: dict[str, Result] = {}
        for item in target.get("results") or ():
            if not isinstance(item, Mapping) or not isinstance(item.get("check"), str):
                continue
            metrics = item.get("metrics")
            self.by_id[item["check"]] = Result(
                check=item["check"],
                verdict=str(item.get("verdict", "")),
                summary=str(item.get("summary") or ""),
                hint=item.get("hint") if isinstance(item.get("hint"), str) else None,
                metrics=metrics if isinstance(metrics, Mapping) else {},
                not_run=item.get("not_run") is True,
            )

    def ran(self, check: str) -> Result | None:
        """The result of ``check`` when it measured something (pass, degraded, fail)."""
        found = self.by_id.get(check)
        return found if found is not None and found.measured else None

    def why_not(self, check: str) -> str:
        """Says "not measured (why)" for a check that is absent, skipped, errored or not run."""
        found = self.by_id.get(check)
        if found is None:
            return f"not measured ({check} not in this run)"
        if found.not_run:
            return f"not measured (not run: {short(found.summary, 70)})"
        return f"not measured ({check} {found.verdict}: {short(found.summary, 70)})"

    def present(self, checks: Iterable[str]) -> tuple[str, ...]:
        return tuple(c for c in checks if c in self.by_id)


# -- building answers ---------------------------------------------------------------------
@dataclass
class Side:
    """An answer being built: clauses, each with the state it implies."""

    clauses: list[str] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    missing: str | None = None

    def add(self, text: str, state: State) -> None:
        self.clauses.append(text)
        self.states.append(state)

    def answer(self) -> Answer:
        judged = [s for s in self.states if s in RANK]
        parts = list(self.clauses)
        if self.missing:  # the main check did not measure: said first, whatever else did
            parts.insert(0, self.missing)
        parts += self.facts
        text = "; ".join(parts) if parts else (self.missing or "not measured")
        if judged:
            return Answer(text, max(judged, key=lambda s: RANK[s]))
        if self.missing or not self.facts:
            return Answer(text, "not-measured")
        return Answer(text, "fact")


def ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def secs(value: Any) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "? s"


def size(value: Any) -> str:
    if not isinstance(value, int):
        return "? B"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value} B"


def whole(value: Any) -> str:
    """A number rounded to a whole one, or '?' for what is not a number."""
    return f"{value:.0f}" if isinstance(value, int | float) else "?"


def num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def said(result: Result, limit: int = 90) -> str:
    """The result's summary, short, with its check ID."""
    if "see ws.upgrade" in result.summary and result.check != "ws.upgrade":
        # Every WebSocket check repeats the failed upgrade: say so once, in its row.
        return f"no WebSocket to measure, the upgrade fails ({result.check})"
    return f"{short(result.summary, limit)} ({result.check})"


def cite(result: Result) -> str:
    """'check: summary', for a sentence of the recommendation."""
    return f"{result.check}: {short(result.summary, 100)}"
