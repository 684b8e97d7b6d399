"""The check catalogue. IDs are stable (DESIGN.md); each has a one-line description."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from . import sse, ws
from .base import Check, EvalContext
from .delivery import analyse, judge_stream

__all__ = ["CHECKS", "Check", "EvalContext", "analyse", "judge_stream", "matching", "select"]

CHECKS: dict[str, Check] = {c.id: c for c in (*ws.CHECKS, *sse.CHECKS)}


def matching(pattern: str, ids: Iterable[str] | None = None) -> list[str]:
    """Check IDs matching a glob such as ``ws.*`` or ``sse.stream``."""
    return [i for i in (CHECKS if ids is None else ids) if fnmatch.fnmatchcase(i, pattern)]


def select(patterns: Iterable[str]) -> tuple[Check, ...]:
    """The checks matching any of ``patterns``, in catalogue order."""
    wanted = {i for p in patterns for i in matching(p)}
    return tuple(c for i, c in CHECKS.items() if i in wanted)
