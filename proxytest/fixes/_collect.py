"""What every planner shares: which checks a pattern names, the paths their traffic
requests, and the collector of changes (one per knob and place, listing every check
it addresses) and refusals (one per check and reason)."""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

from .base import Change, Refusal

__all__ = ["HOUR", "LB", "SSE", "WS", "Collector", "matches", "path_of", "sample_paths"]

HOUR = 3600.0  # a timeout this long (or longer) is not what cut a stream

# Routes of the test origin (origin/server.py) the checks request: a planner asks the
# config which block routes them.
SSE, WS, LB = "/sse", "/ws/echo", "/lb/handshake"


def matches(check: str, *patterns: str) -> bool:
    """Whether a check ID (``ws.idle@h2`` counts as ``ws.idle``) matches a pattern."""
    base = check.split("@", 1)[0]
    return any(fnmatch.fnmatchcase(check, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


# The text planners (nginx, HAProxy, Caddy) ask where each path a check sends goes.
_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sse.*", (SSE,)),
    ("browser.eventsource", (SSE,)),
    ("ws.*", (WS,)),
    ("browser.websocket", (WS,)),
    ("lb.sticky", (LB,)),
    ("lb.*", (SSE, WS)),
    ("lifecycle.*", (WS, SSE)),
    ("load.*", (WS, SSE)),
)


def sample_paths(check: str) -> tuple[str, ...]:
    """The request paths a check sends (its ``@transport`` suffix ignored)."""
    plain = check.split("@", 1)[0]
    for pattern, paths in _PATHS:
        if fnmatch.fnmatchcase(plain, pattern):
            return paths
    return (SSE, WS)


def path_of(check: str) -> str:
    """The one request path the YAML planners (Envoy, Traefik) route a check by."""
    if matches(check, "ws.*", "browser.websocket"):
        return WS
    if matches(check, "lb.*"):
        return "/lb/events"
    if matches(check, "load.fanout"):
        return "/fanout/sse"
    if matches(check, "lifecycle.*"):
        return WS
    return SSE  # sse.*, browser.eventsource, load.concurrency, anything else streamed


class Collector:
    """A plan's changes, keyed by (file, line, knob), and its refusals, in the order made."""

    def __init__(self) -> None:
        self._changes: dict[tuple[Path, int, str], Change] = {}
        self._refusals: dict[tuple[str, str], Refusal] = {}

    def change(self, file: Path, line: int, knob: str, why: str, check: str) -> bool:
        """Record that ``knob`` at ``file:line`` addresses ``check``; True if it is new.
        A knob asked for again keeps its first ``why``."""
        key = (file, line, knob)
        known = self._changes.get(key)
        if known is None:
            self._changes[key] = Change(file, line, knob, (check,), why)
            return True
        if check not in known.checks:
            self._changes[key] = dataclasses.replace(known, checks=(*known.checks, check))
        return False

    def refuse(self, check: str, reason: str, remedy: str, proposal: str | None = None) -> None:
        self._refusals.setdefault((check, reason), Refusal(check, reason, remedy, proposal))

    def changes(self) -> tuple[Change, ...]:
        return tuple(self._changes.values())

    def refusals(self) -> tuple[Refusal, ...]:
        return tuple(self._refusals.values())
