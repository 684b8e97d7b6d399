"""Run settings that shape long-lived traffic and the run (not thresholds: see timing.py).

Every number a user can set (in matrix.yaml, on the command line, as a pytest
option or ini key) is validated here and only here, by :func:`parse_setting`,
with the bounds in :data:`BOUNDS`: a NaN, an infinity, a negative or absurd
value is refused with a message that says what is allowed. Callers add where
the value came from (the matrix's file and line, or the flag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["BOUNDS", "DEFAULT_CONCURRENCY", "Bound", "SettingError", "Settings", "parse_setting"]


@dataclass(frozen=True)
class Bound:
    """What values a setting takes: a finite number in [minimum, maximum]."""

    minimum: float
    maximum: float
    integer: bool = False
    unit: str = "seconds"

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        text = f"{kind} of {self.unit} from {self.minimum:g} to {self.maximum:g}"
        if self.unit == "seconds":
            text += " (or with a unit: 45s, 90m, 2h)"
        return text


# Keys are the matrix keys (the flags are the same with dashes).
BOUNDS: dict[str, Bound] = {
    # A day: a hold longer than that is a soak test, not a check.
    "max_hold": Bound(0.1, 86_400.0),
    "heartbeat": Bound(0.1, 3_600.0),
    # Each WebSocket/SSE pair costs this process 4 file descriptors.
    "load_connections": Bound(1, 100_000, integer=True, unit="connections"),
    "concurrency": Bound(1, 64, integer=True, unit="targets"),
    # load.fanout steps N up to this, per protocol (SSE and WebSocket at once); this
    # machine's file descriptors end it sooner (each N costs the tool 4 of them).
    "fanout_max_n": Bound(1, 100_000, integer=True, unit="subscribers"),
}
DEFAULT_CONCURRENCY = 4  # targets in their start-up and quick phase at once


class SettingError(ValueError):
    """A value outside its :class:`Bound`; the message says what is allowed."""


def parse_setting(key: str, value: object) -> float:
    """``value`` (a number, or text from a file or a flag) as setting ``key``, or SettingError.

    Integer settings come back as whole floats; use ``int()`` on them.
    """
    bound = BOUNDS[key]
    if isinstance(value, bool):
        raise SettingError(f"must be {bound.describe()}, got {value!r}")
    try:
        if isinstance(value, str) and bound.unit == "seconds":
            number = _duration(value)
        else:
            number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        raise SettingError(f"must be {bound.describe()}, got {value!r}") from None
    if not math.isfinite(number):
        raise SettingError(f"must be {bound.describe()}, got {value!r} (not a finite number)")
    if bound.integer and not number.is_integer():
        raise SettingError(f"must be {bound.describe()}, got {value!r} (not a whole number)")
    if not bound.minimum <= number <= bound.maximum:
        raise SettingError(f"must be {bound.describe()}, got {value!r}")
    return number


# A duration in text: seconds, or a number with one unit (``45s``, ``90m``, ``2h``).
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    """``"2h"`` as 7200.0, ``"90m"`` as 5400.0, ``"45s"`` and ``"45"`` as 45.0 (ValueError)."""
    stripped = text.strip().lower()
    unit = _UNITS.get(stripped[-1:]) if stripped else None
    if unit is None:
        return float(stripped)
    return float(stripped[:-1]) * unit


@dataclass(frozen=True)
class Settings:
    # Longest time a long-lived check holds a connection. 75 s outlasts the
    # common 60 s idle timeouts (nginx proxy_read_timeout, Apache ProxyTimeout).
    max_hold_s: float = 75.0
    # Interval of WebSocket pings (ws.keepalive) and SSE comments (sse.heartbeat).
    heartbeat_s: float = 10.0
    # Concurrent WebSockets and, separately, SSE streams for load.concurrency.
    load_connections: int = 1000
    # Largest number of subscribers per protocol load.fanout steps up to. The default
    # keeps one target's check to seconds; benchmarks/bench_fanout.py goes further.
    fanout_max_n: int = 250

    def __post_init__(self) -> None:
        for field in fields(self):
            key = field.name.removesuffix("_s")
            try:
                parse_setting(key, getattr(self, field.name))
            except SettingError as exc:
                raise ValueError(f"invalid settings: {key} {exc}") from None
