"""The advice's data: ``Answer`` (one side of a row), ``Row``, ``Advice``; see __init__."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RANK", "TITLE", "Advice", "Answer", "Choice", "Row", "State", "Status"]

TITLE = "SSE or WebSocket behind this setup?"

State = Literal["good", "caveat", "bad", "not-measured", "fact"]
Status = Literal["good", "bad", "mixed", "not-measured"]
Choice = Literal["either", "SSE", "WebSocket", "neither", "not measured"]

RANK = {"good": 0, "caveat": 1, "bad": 2}  # the measured states, best first


@dataclass(frozen=True)
class Answer:
    """One side of a row: what was measured, and how it stands."""

    text: str
    state: State


@dataclass(frozen=True)
class Row:
    key: str
    claim: str
    sse: Answer
    ws: Answer | None  # None: the claim is about SSE alone
    checks: tuple[str, ...]  # the check IDs it comes from

    @property
    def status(self) -> Status:
        states = [a.state for a in (self.sse, self.ws) if a is not None]
        measured = [s for s in states if s in RANK]
        if not measured:
            return "not-measured"
        if all(s == "good" for s in measured):
            return "good"
        if all(s == "bad" for s in measured):
            return "bad"
        return "mixed"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "claim": self.claim,
            "sse": {"text": self.sse.text, "state": self.sse.state},
            "ws": None if self.ws is None else {"text": self.ws.text, "state": self.ws.state},
            "checks": list(self.checks),
            "status": self.status,
        }


@dataclass(frozen=True)
class Advice:
    target: str
    rows: tuple[Row, ...]
    choice: Choice
    brief: str  # the choice in one short line (the console's line for a run of many)
    recommendation: tuple[str, ...]  # sentences; the first one carries the choice

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "brief": self.brief,
            "recommendation": list(self.recommendation),
            "rows": [r.to_json() for r in self.rows],
        }
