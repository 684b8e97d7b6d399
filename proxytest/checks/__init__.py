"""The check catalogue. IDs are stable (DESIGN.md); each has a one-line description."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from ..errors import UsageError
from . import lifecycle, load, long, sse, ws
from .base import Check, EvalContext
from .delivery import analyse, judge_stream

# The catalogue order of DESIGN.md: WebSocket, SSE, lifecycle and load.
_ORDER = {
    name: index
    for index, name in enumerate((
        "ws.upgrade", "ws.echo", "ws.push", "ws.ping", "ws.close", "ws.subprotocol",
        "ws.idle", "ws.keepalive",
        "sse.headers", "sse.stream", "sse.last-event-id", "sse.reconnect", "sse.compression",
        "sse.idle", "sse.heartbeat", "sse.lifetime",
        "lifecycle.reload", "lifecycle.origin-restart", "load.concurrency",
    ))
}  # fmt: skip

__all__ = [
    "CHECKS",
    "Check",
    "EvalContext",
    "analyse",
    "judge_stream",
    "matching",
    "select",
    "select_valid",
]

_ALL = (*ws.CHECKS, *sse.CHECKS, *long.CHECKS, *lifecycle.CHECKS, *load.CHECKS)
CHECKS: dict[str, Check] = {c.id: c for c in sorted(_ALL, key=lambda c: _ORDER[c.id])}


def matching(pattern: str, ids: Iterable[str] | None = None) -> list[str]:
    """Check IDs matching a glob such as ``ws.*`` or ``sse.stream``."""
    return [i for i in (CHECKS if ids is None else ids) if fnmatch.fnmatchcase(i, pattern)]


def select(patterns: Iterable[str]) -> tuple[Check, ...]:
    """The checks matching any of ``patterns``, in catalogue order."""
    wanted = {i for p in patterns for i in matching(p)}
    return tuple(c for i, c in CHECKS.items() if i in wanted)


def select_valid(patterns: Iterable[str], *, option: str = "--checks") -> tuple[Check, ...]:
    """``select``, where a pattern that matches no check is a usage error naming ``option``."""
    patterns = tuple(patterns)
    for pattern in patterns:
        if not matching(pattern):
            raise UsageError(
                f"{option} {pattern!r} matches no check", fix="known checks: " + ", ".join(CHECKS)
            )
    return select(patterns)
