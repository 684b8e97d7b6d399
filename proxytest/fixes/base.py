"""What a config fix is: the contract between the per-proxy planners and `proxytest fix`.

Issue 14 (`proxytest fix`): for each failure whose cause maps to a config
change, a planner writes the smallest change to the user's own file, where the
failing traffic is routed, preserving their comments, order and formatting.
The command (to come) applies a :class:`Plan` to a copy, re-runs the checks
and reports before → after; only a proven plan is ever written.

A planner is pure: text in, text out, no process, no file written. It reads the
templates as the user wrote them (``{{ placeholder }}`` words included, treated
as opaque values) and returns the new text of every file it changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..results import Failure

__all__ = ["Change", "Finding", "Plan", "Planner", "Refusal", "unified_diff"]


@dataclass(frozen=True)
class Finding:
    """A check that failed or degraded, and why (the evaluation's failure kind)."""

    check: str  # its ID, e.g. "sse.stream", "ws.upgrade@h2"
    failure: Failure
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One knob set in one place of one file."""

    file: Path  # the user's file, as given
    line: int  # 1-based line of the ORIGINAL text where the change goes
    knob: str  # what is set, as the user would write it: "proxy_buffering off;"
    checks: tuple[str, ...]  # the findings it addresses
    why: str  # one sentence: the cause, and why this knob at this place


@dataclass(frozen=True)
class Refusal:
    """A finding with no config change here: the cause is elsewhere, or fixing it would
    override a value the user set deliberately (then ``proposal`` says what to decide)."""

    check: str
    reason: str
    remedy: str  # the application-side remedy, or what the user must decide
    proposal: str | None = None  # a change proposed, not made (a conflict)


@dataclass(frozen=True)
class Plan:
    files: Mapping[Path, str]  # the new full text of every file it changes
    changes: tuple[Change, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def diff(self, originals: Mapping[Path, str]) -> str:
        """A unified diff of every changed file against its original."""
        return "".join(
            unified_diff(path, originals[path], text) for path, text in self.files.items()
        )


def unified_diff(path: Path, before: str, after: str) -> str:
    name = path.as_posix()
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


class Planner(Protocol):
    """One per proxy (``proxytest/fixes/<proxy>.py``, ``PLANNER``)."""

    def plan(self, files: Mapping[Path, str], findings: Sequence[Finding]) -> Plan:
        """``files``: the config's templates in order (the first is the main one)."""
        ...
