"""The send-vs-arrival chart of a stream timeline, as geometry for the HTML template.

A ladder diagram: the top axis is the origin's send time, the bottom axis the
client's arrival time, on the same scale (seconds after the request). Each
event is one line from when it was sent to when it arrived: prompt delivery
draws (nearly) vertical lines; buffering and coalescing draw slanted lines that
bunch together at the bottom. Pure arithmetic over the report's ``timeline``
JSON, so ``proxytest report`` redraws it from a saved file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Ladder", "ladder"]

WIDTH, HEIGHT = 720, 176
LEFT, RIGHT = 78, 18
TOP_Y, BOTTOM_Y = 46, 128
_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600)
PROMPT_MS, LATE_MS = 20.0, 250.0  # colour bands of an event's delay


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Mark:
    seq: int
    sent_ms: float
    arrived_ms: float
    x1: float  # on the send axis
    x2: float  # on the arrival axis
    band: str  # prompt | late | held

    @property
    def delay_ms(self) -> float:
        return round(self.arrived_ms - self.sent_ms, 1)


@dataclass(frozen=True)
class Ladder:
    kind: str
    marks: tuple[Mark, ...]
    ticks: tuple[Tick, ...]
    headers_x: float | None
    headers_ms: float | None
    reconnect_x: float | None
    reconnect_ms: float | None
    expected: int | None
    end: str | None
    error: str | None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_x: int = WIDTH - RIGHT
    top_y: int = TOP_Y
    bottom_y: int = BOTTOM_Y

    @property
    def caption(self) -> str:
        noun = "messages" if self.kind == "ws" else "events"
        parts = [f"{len(self.marks)} of {self.expected} {noun} arrived"]
        if self.headers_ms is not None:
            what = "upgrade answered" if self.kind == "ws" else "headers arrived"
            parts.append(f"{what} after {_ms(self.headers_ms)}")
        if self.reconnect_ms is not None:
            parts.append(f"reconnected at {_ms(self.reconnect_ms)}")
        if self.end:
            parts.append(f"end: {self.end}" + (f" ({self.error})" if self.error else ""))
        return " · ".join(parts)


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _step(span_s: float) -> float:
    for step in _STEPS:
        if span_s / step <= 8:
            return step
    return _STEPS[-1]


def _label(seconds: float) -> str:
    return f"{round(seconds, 3):g}"


def _band(delay_ms: float) -> str:
    if delay_ms <= PROMPT_MS:
        return "prompt"
    return "late" if delay_ms <= LATE_MS else "held"


def ladder(timeline: dict[str, Any]) -> Ladder:
    events = [(int(e[0]), float(e[1]), float(e[2])) for e in timeline.get("events") or []]
    headers_ms = timeline.get("headers_ms")
    reconnect_ms = timeline.get("reconnect_ms")
    times = [t for e in events for t in e[1:]]
    times += [t for t in (headers_ms, reconnect_ms) if isinstance(t, int | float)]
    interval, expected = timeline.get("interval_ms"), timeline.get("expected")
    if isinstance(interval, int | float) and isinstance(expected, int) and expected > 1:
        times.append(interval * (expected - 1))  # the nominal send span, even if nothing came
    span_s = max([*times, 1.0]) / 1000
    step = _step(span_s)
    domain_s = math.ceil(span_s / step - 1e-9) * step
    scale = (WIDTH - RIGHT - LEFT) / (domain_s * 1000)

    def x(ms: float) -> float:
        return round(LEFT + max(ms, 0.0) * scale, 1)

    count = round(domain_s / step)
    ticks = tuple(Tick(x(i * step * 1000), _label(i * step)) for i in range(count + 1))
    marks = tuple(
        Mark(seq, sent, arrived, x(sent), x(arrived), _band(arrived - sent))
        for seq, sent, arrived in events
    )
    return Ladder(
        kind=str(timeline.get("kind") or "sse"),
        marks=marks,
        ticks=ticks,
        headers_x=x(headers_ms) if isinstance(headers_ms, int | float) else None,
        headers_ms=headers_ms if isinstance(headers_ms, int | float) else None,
        reconnect_x=x(reconnect_ms) if isinstance(reconnect_ms, int | float) else None,
        reconnect_ms=reconnect_ms if isinstance(reconnect_ms, int | float) else None,
        expected=expected if isinstance(expected, int) else len(marks),
        end=timeline.get("end"),
        error=timeline.get("error"),
    )
