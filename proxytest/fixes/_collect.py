"""What every planner shares: which checks a pattern names, the paths their traffic
requests, and the collector of changes (one per knob and place, listing every check
it addresses) and refusals (one per check and reason)."""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

from ..routes import HEADERS_PATH
from .base import Change, Finding, Refusal

__all__ = [
    "HEADERS",
    "HOUR",
    "LB",
    "SSE",
    "WS",
    "Collector",
    "hop_headers",
    "matches",
    "path_of",
    "refuse_connection_named",
    "refuse_removed",
    "sample_paths",
]

HOUR = 3600.0  # a timeout this long (or longer) is not what cut a stream

# Routes of the test origin (origin/server.py) the checks request: a planner asks the
# config which block routes them.
SSE, WS, LB = "/sse", "/ws/echo", "/lb/handshake"
HEADERS = HEADERS_PATH  # http.hop-by-hop

# Hop-by-hop headers a proxy must not forward whatever the Connection header names
# (RFC 9110 7.6.1, and the Proxy-* ones of HTTP/1.0 proxies): a planner removes by
# name those of them a run saw reach the origin.
# (probes.security sends them, with one the client names in Connection: a test holds
# the two lists together.)
NAMED_HOP_BY_HOP = ("Keep-Alive", "Proxy-Authorization", "Proxy-Connection")
HOP_WHY = "hop-by-hop headers stop here (the login for this proxy: Proxy-Authorization)"


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
    ("http.hop-by-hop", (HEADERS,)),
)


def sample_paths(check: str) -> tuple[str, ...]:
    """The request paths a check sends (its ``@transport`` suffix ignored)."""
    plain = check.split("@", 1)[0]
    for pattern, paths in _PATHS:
        if fnmatch.fnmatchcase(plain, pattern):
            return paths
    return (SSE, WS)


def refuse_connection_named(collector: Collector, f: Finding, names: tuple[str, ...]) -> None:
    """The part of an http.hop-by-hop finding no config line fixes (see hop_headers)."""
    if names:
        collector.refuse(
            f.check,
            f"{', '.join(names)}, named in the client's Connection header, reached the origin: "
            "no fixed list of headers removes what a client names there",
            "the proxy must drop every header its Connection header names: upgrade it, or "
            "make the origin ignore them",
        )


def refuse_removed(collector: Collector, f: Finding, names: tuple[str, ...]) -> None:
    """An http.hop-by-hop finding where the config already removes ``names``."""
    collector.refuse(
        f.check,
        f"the config already removes {', '.join(names)} on this route",
        "look for a layer in front of the proxy that adds them, or a route this config "
        "does not hold",
    )


def hop_headers(f: Finding) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(well-known hop-by-hop names to remove, other names that reached the origin).

    From the finding's ``forwarded_hop_by_hop``; a finding without it (an older
    report) removes every well-known name. The others are named only in the
    client's Connection header: no fixed list removes them (the proxy must parse
    Connection), so a planner refuses those.
    """
    seen = f.metrics.get("forwarded_hop_by_hop")
    if not isinstance(seen, list | tuple):
        return NAMED_HOP_BY_HOP, ()
    names = {str(n).lower() for n in seen}
    known = tuple(n for n in NAMED_HOP_BY_HOP if n.lower() in names)
    known_lower = {n.lower() for n in NAMED_HOP_BY_HOP}
    return known, tuple(str(n) for n in seen if str(n).lower() not in known_lower)


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
    if matches(check, "http.hop-by-hop"):
        return HEADERS
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
