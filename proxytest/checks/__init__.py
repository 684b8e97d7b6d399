"""The check catalogue. IDs are stable; each has a one-line description.

A check's entry is its ``Check(...)`` in its module's ``CHECKS``. The
catalogue's order is the families' order below, then the order of the modules
and of the entries in them: the CLI's list, the reports and the tests follow
``CHECKS``. Adding a check: docs/architecture.md.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from ..errors import UsageError
from ..probes.context import TRANSPORTS
from . import browser, failover, frames, h2, lb, lifecycle, load, long, security, sse, ws
from .base import Check, EvalContext, Phase
from .delivery import analyse, judge_stream

__all__ = [
    "CHECKS",
    "Check",
    "EvalContext",
    "Phase",
    "analyse",
    "judge_stream",
    "matching",
    "select",
    "select_valid",
]

# WebSocket, SSE, plain HTTP (http.hop-by-hop), HTTP/2, lifecycle, load, several
# backends (lb), and a real browser's view of both protocols
FAMILIES = ("ws", "sse", "http", "h2", "lifecycle", "load", "lb", "browser")
# long.py holds the long-lived checks of both ws and sse: each goes after its family's
# quick ones (the sort by family is stable); a family's checks over HTTP/2 (@h2,
# @h2c) come after its HTTP/1.1 ones. h2.py holds ws.*@h2 and h2.streams. security.py
# holds ws.smuggling, ws.handshake-strict, ws.upgrade-unrequested and http.hop-by-hop.
_MODULES = (ws, frames, security, sse, h2, long, lifecycle, load, lb, failover, browser)
CHECKS: dict[str, Check[Any]] = {
    c.id: c
    for c in sorted(
        (c for module in _MODULES for c in module.CHECKS),
        key=lambda c: (FAMILIES.index(c.family), TRANSPORTS.index(c.transport)),
    )
}


def matching(pattern: str, ids: Iterable[str] | None = None) -> list[str]:
    """Check IDs matching a glob such as ``ws.*`` or ``sse.stream``."""
    return [i for i in (CHECKS if ids is None else ids) if fnmatch.fnmatchcase(i, pattern)]


def select(patterns: Iterable[str]) -> tuple[Check[Any], ...]:
    """The checks matching any of ``patterns``, in catalogue order."""
    wanted = {i for p in patterns for i in matching(p)}
    return tuple(c for i, c in CHECKS.items() if i in wanted)


def select_valid(patterns: Iterable[str], *, option: str = "--checks") -> tuple[Check[Any], ...]:
    """``select``, where a pattern that matches no check is a usage error naming ``option``."""
    patterns = tuple(patterns)
    for pattern in patterns:
        if not matching(pattern):
            raise UsageError(
                f"{option} {pattern!r} matches no check", fix="known checks: " + ", ".join(CHECKS)
            )
    return select(patterns)
