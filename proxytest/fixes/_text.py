"""Line edits and the rule table shared by the text planners (nginx, HAProxy, Caddy).

A planner finds a place with its proxy's parser and then changes the user's
text with :class:`LineEdits`: a line replaced by one or more lines, or lines
inserted after a line. Every other line stays byte-identical (line endings
included), which is what makes the diff the whole change.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..results import Failure
from .base import Change, Finding, Refusal

__all__ = [
    "Knob",
    "LineEdits",
    "Pending",
    "Work",
    "duration_s",
    "indent_of",
    "matches",
    "sample_paths",
]

# A path each family of checks requests (routes of the test origin, origin/server.py):
# the planner asks the config which block routes it.
_SSE, _WS, _LB = "/sse", "/ws/echo", "/lb/handshake"
_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sse.*", (_SSE,)),
    ("browser.eventsource", (_SSE,)),
    ("ws.*", (_WS,)),
    ("browser.websocket", (_WS,)),
    ("lb.sticky", (_LB,)),
    ("lb.*", (_SSE, _WS)),
    ("lifecycle.*", (_WS, _SSE)),
    ("load.*", (_WS, _SSE)),
)


def sample_paths(check: str) -> tuple[str, ...]:
    """The request paths a check sends (its ``@transport`` suffix ignored)."""
    plain = check.split("@", 1)[0]
    for pattern, paths in _PATHS:
        if fnmatch.fnmatchcase(plain, pattern):
            return paths
    return (_SSE, _WS)


def matches(check: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(check.split("@", 1)[0], pattern)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 1}


def duration_s(value: str, bare: float = 1.0) -> float | None:
    """``"90s"``, ``"1h"``, ``"1m30s"``, ``"500ms"`` in seconds; ``bare`` is the unit of a
    number without one (nginx: seconds, HAProxy: milliseconds). None when unreadable."""
    value = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value) * bare
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h|d|w)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * (_UNITS[u] if u != "us" else 1e-6) for n, u in parts)


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


class LineEdits:
    """Edits of one file's lines (1-based, of the original text); other lines are kept."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self._replaced: dict[int, list[str]] = {}
        self._after: dict[int, list[str]] = {}

    def line(self, number: int) -> str:
        """The original line ``number`` without its line ending."""
        return self.lines[number - 1].rstrip("\r\n") if 0 < number <= len(self.lines) else ""

    def replace(self, number: int, *new: str) -> None:
        """Line ``number`` becomes ``new`` (one or several lines, without endings)."""
        if number in self._replaced:
            raise ValueError(f"line {number} is already replaced")
        self._replaced[number] = list(new)

    def replaced(self, number: int) -> list[str] | None:
        return self._replaced.get(number)

    def insert_after(self, number: int, *new: str) -> None:
        """``new`` lines after line ``number`` (0: at the top), after earlier inserts there."""
        self._after.setdefault(number, []).extend(new)

    @property
    def changed(self) -> bool:
        return bool(self._replaced or self._after)

    def result(self) -> str:
        out: list[str] = [self._end(n) for n in self._after.get(0, [])]
        for number, line in enumerate(self.lines, 1):
            new = self._replaced.get(number)
            ending = line[len(line.rstrip("\r\n")) :]
            if new is None:
                out.append(line)
            else:
                out.extend(self._end(n) for n in new[:-1])
                out.append(new[-1] + (ending or ""))
            extra = self._after.get(number)
            if extra:
                if not out[-1].endswith("\n"):  # the last line had no line ending
                    out[-1] += self.newline
                out.extend(self._end(n) for n in extra)
        if not self.lines and self._after.get(1):
            out.extend(self._end(n) for n in self._after[1])
        return "".join(out)

    def _end(self, line: str) -> str:
        return line + self.newline


@dataclass(frozen=True)
class Knob:
    """One setting a rule asks for: ``name`` (with its key words, e.g.
    ``("proxy_set_header", "upgrade")``) and the words of its value."""

    key: tuple[str, ...]
    value: tuple[str, ...]
    comment: str  # the why, one short line, for the comment above an inserted line

    @property
    def text(self) -> str:
        return " ".join((*self.key, *self.value))


@dataclass
class Pending:
    """A change being gathered: one knob in one place, for some checks."""

    file: Path
    line: int
    knob: str
    why: str
    checks: list[str] = field(default_factory=list)

    def change(self) -> Change:
        return Change(self.file, self.line, self.knob, tuple(self.checks), self.why)


class Work:
    """What a plan gathers: edits per file, changes keyed by (file, line, knob), refusals."""

    def __init__(self, files: dict[Path, str]) -> None:
        self.edits = {path: LineEdits(text) for path, text in files.items()}
        self.pending: dict[tuple[Path, int, str], Pending] = {}
        self.refusals: list[Refusal] = []
        self._refused: set[tuple[str, str]] = set()

    def note(self, file: Path, line: int, knob: str, why: str, check: str) -> bool:
        """Record that ``knob`` at ``file:line`` addresses ``check``; True if it is new."""
        key = (file, line, knob)
        new = key not in self.pending
        pending = self.pending.setdefault(key, Pending(file, line, knob, why))
        if check not in pending.checks:
            pending.checks.append(check)
        return new

    def refuse(self, check: str, reason: str, remedy: str, proposal: str | None = None) -> None:
        if (check, reason) not in self._refused:
            self._refused.add((check, reason))
            self.refusals.append(Refusal(check, reason, remedy, proposal))

    def files(self) -> dict[Path, str]:
        return {path: e.result() for path, e in self.edits.items() if e.changed}

    def changes(self) -> tuple[Change, ...]:
        return tuple(p.change() for p in self.pending.values())


def addressed(work: Work) -> set[str]:
    return {c for p in work.pending.values() for c in p.checks}


def kinds(findings: Iterable[Finding]) -> list[tuple[Finding, Failure]]:
    return [(f, f.failure) for f in findings]


def first_match(check: str, failure: Failure, table: Sequence[tuple[str, Failure, str]]) -> str:
    """The action of the first row of ``table`` (check pattern, failure, action) that fits."""
    for pattern, kind, action in table:
        if kind == failure and matches(check, pattern):
            return action
    return ""
