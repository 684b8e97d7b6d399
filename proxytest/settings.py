"""Run settings that shape long-lived traffic (not thresholds: see timing.py)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    # Longest time a long-lived check holds a connection. 75 s outlasts the
    # common 60 s idle timeouts (nginx proxy_read_timeout, Apache ProxyTimeout).
    max_hold_s: float = 75.0
    # Interval of WebSocket pings (ws.keepalive) and SSE comments (sse.heartbeat).
    heartbeat_s: float = 10.0
    # Concurrent WebSockets and, separately, SSE streams for load.concurrency.
    load_connections: int = 1000

    def __post_init__(self) -> None:
        if self.max_hold_s <= 0 or self.heartbeat_s <= 0 or self.load_connections < 1:
            raise ValueError(f"invalid settings: {self}")
