"""What the text planners (nginx, HAProxy, Caddy) share: the driver, line edits, knobs.

A planner supplies its table (:meth:`TextState.apply`: which finding sets which
knob) and its place-finding (its proxy's parser, over every file of the config);
:class:`TextPlanner` drives it. The user's text is changed with
:class:`LineEdits`: a line replaced by one or more lines, or lines inserted
after a line. Every other line stays byte-identical (line endings included),
which is what makes the diff the whole change.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from .. import adapters
from ._collect import HOUR, Collector
from .base import Finding, Plan

__all__ = [
    "Inserts",
    "Knob",
    "LineEdits",
    "TextPlanner",
    "TextState",
    "Unreadable",
    "Work",
    "at_least",
    "duration_s",
    "included",
    "indent_of",
    "indent_unit",
    "knob_lines",
    "not_the_cause",
]

B = TypeVar("B")  # a planner's block: an nginx Node, a HAProxy Section, a Caddy Block

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

    def insert_before_last(self, number: int, *new: str) -> None:
        """``new`` lines go before the last line that replaces line ``number``."""
        current = self._replaced[number]
        self._replaced[number] = [*current[:-1], *new, current[-1]]

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


def indent_unit(text: str, default: str) -> str:
    """One level of indentation as the file writes it (its first indented line)."""
    for line in text.splitlines():
        lead = indent_of(line)
        if lead and line.strip():
            return "\t" if lead.startswith("\t") else " " * len(lead)
    return default


def included(pattern: str, home: str, files: Iterable[Path], seen: Iterable[Path]) -> list[Path]:
    """The files of the config that ``include``/``import`` ``pattern`` names (a glob,
    relative to the folder ``home``), in name order, but none of ``seen``."""
    full = pattern if pattern.startswith("/") else posixpath.join(home, pattern)
    full = posixpath.normpath(full)
    skip = set(seen)
    return sorted(
        p
        for p in files
        if p not in skip and fnmatch.fnmatchcase(posixpath.normpath(p.as_posix()), full)
    )


def at_least(number: int) -> Callable[[tuple[str, ...]], bool]:
    """A value test: one whole number of at least ``number``."""
    return lambda v: len(v) == 1 and v[0].isdigit() and int(v[0]) >= number


def not_the_cause(timeout_s: float, metrics: Mapping[str, object]) -> bool:
    """A timeout of an hour or more, or longer than the time the connection was cut
    after (``dropped_after_s``, 5 s of slack), is not what cut it."""
    dropped = metrics.get("dropped_after_s")
    return timeout_s >= HOUR or (isinstance(dropped, int | float) and dropped + 5 < timeout_s)


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


def knob_lines(indent: str, knobs: Iterable[Knob], end: str = "") -> list[str]:
    """The lines inserted for ``knobs``: each under a ``# why`` comment (one comment for
    knobs in a row that share it)."""
    lines: list[str] = []
    said = ""
    for knob in knobs:
        if knob.comment != said:
            lines.append(f"{indent}# {knob.comment}")
            said = knob.comment
        lines.append(f"{indent}{knob.text}{end}")
    return lines


class Inserts(Generic[B]):
    """Knobs to insert per block, in the order first asked, each once with its checks."""

    def __init__(self) -> None:
        self._blocks: dict[int, tuple[B, dict[Knob, list[str]]]] = {}

    def add(self, block: B, knob: Knob, check: str) -> None:
        _, knobs = self._blocks.setdefault(id(block), (block, {}))
        checks = knobs.setdefault(knob, [])
        if check not in checks:
            checks.append(check)

    def __iter__(self) -> Iterator[tuple[B, dict[Knob, list[str]]]]:
        return iter(list(self._blocks.values()))


class Work(Collector):
    """What a plan gathers: the changes and refusals, and the edits of each file."""

    def __init__(self, files: Mapping[Path, str]) -> None:
        super().__init__()
        self.edits = {path: LineEdits(text) for path, text in files.items()}

    def noted(
        self, file: Path, line: int, knobs: Mapping[Knob, Sequence[str]], end: str = ""
    ) -> None:
        """Record inserted ``knobs`` (each with its checks) after ``file:line``."""
        for knob, checks in knobs.items():
            for check in checks:
                self.change(file, line, knob.text + end, knob.comment, check)

    def files(self) -> dict[Path, str]:
        return {path: e.result() for path, e in self.edits.items() if e.changed}

    def plan(self) -> Plan:
        return Plan(self.files(), self.changes(), self.refusals())


class Unreadable(ValueError):
    """A file of the config the planner's parser cannot read: every finding is refused."""

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(reason)
        self.reason, self.remedy = reason, remedy


class TextState:
    """One plan in the making: a planner's subclass finds the places when it is made
    (from every file of the config) and answers each finding in :meth:`apply`."""

    proxy = ""  # the adapter's name, for its hints

    def __init__(self, files: Mapping[Path, str], work: Work) -> None:
        self.files = files
        self.work = work

    def apply(self, f: Finding) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write what :meth:`apply` queued (lines inserted per block)."""

    def refuse(self, f: Finding, reason: str, remedy: str, proposal: str | None = None) -> None:
        self.work.refuse(f.check, reason, remedy, proposal)

    def where(self, file: Path, line: int) -> str:
        """``line N``, or ``FILE:N`` in a config of several files."""
        return f"{file}:{line}" if len(self.files) > 1 else f"line {line}"

    def hint(self, f: Finding) -> str:
        return adapters.get(self.proxy).hint(f.check, f.failure) or ""

    def unknown(self, f: Finding) -> None:
        """A finding with no rule in the table: refused with the adapter's hint."""
        self.refuse(
            f,
            f"no config change is known for {f.failure.value} in {f.check}",
            self.hint(f) or "see the check's hint",
        )


class TextPlanner:
    """``plan(files, findings)``: the planner's :class:`TextState` over every file,
    each finding applied in order, then its queued lines written."""

    proxy = ""
    state: Callable[[Mapping[Path, str], Work], TextState]

    def plan(self, files: Mapping[Path, str], findings: Sequence[Finding]) -> Plan:
        if not files or not findings:
            return Plan({})
        work = Work(files)
        try:
            state = self.state(files, work)
        except Unreadable as exc:
            for f in findings:
                work.refuse(f.check, exc.reason, exc.remedy)
            return work.plan()
        for finding in findings:
            state.apply(finding)
        state.flush()
        return work.plan()
