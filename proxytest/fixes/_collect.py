"""What a planner gathers while it walks the findings: changes (one per knob and
place, listing every check it addresses) and refusals (one per check and reason)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path

from .base import Change, Finding, Plan, Refusal

__all__ = ["Collector", "matches", "path_of"]


def matches(check: str, *patterns: str) -> bool:
    """Whether a check ID (``ws.idle@h2`` counts as ``ws.idle``) matches a pattern."""
    base = check.split("@", 1)[0]
    return any(fnmatch.fnmatchcase(check, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def path_of(check: str) -> str:
    """The request path the check's traffic takes (the origin's routes)."""
    if matches(check, "ws.*", "browser.websocket"):
        return "/ws/echo"
    if matches(check, "lb.*"):
        return "/lb/events"
    if matches(check, "load.fanout"):
        return "/fanout/sse"
    if matches(check, "lifecycle.*"):
        return "/ws/echo"
    return "/sse"  # sse.*, browser.eventsource, load.concurrency, anything else streamed


class Collector:
    def __init__(self) -> None:
        self._changes: dict[tuple[Path, int, str], Change] = {}
        self._refusals: dict[tuple[str, str], Refusal] = {}

    def change(self, file: Path, line: int, knob: str, finding: Finding, why: str) -> None:
        key = (file, line, knob)
        known = self._changes.get(key)
        checks = (known.checks if known else ()) + (finding.check,)
        self._changes[key] = Change(file, line, knob, tuple(dict.fromkeys(checks)), why)

    def has(self, file: Path, line: int, knob: str) -> bool:
        return (file, line, knob) in self._changes

    def refuse(
        self, finding: Finding, reason: str, remedy: str, proposal: str | None = None
    ) -> None:
        key = (finding.check, reason)
        self._refusals.setdefault(key, Refusal(finding.check, reason, remedy, proposal))

    def plan(self, files: Mapping[Path, str]) -> Plan:
        changed = {path: text for path, text in files.items()}
        return Plan(
            files=changed,
            changes=tuple(sorted(self._changes.values(), key=lambda c: (str(c.file), c.line))),
            refusals=tuple(self._refusals.values()),
        )
