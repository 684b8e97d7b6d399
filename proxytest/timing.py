"""Every time limit and threshold in one place, scaled by one factor.

``PROXYTEST_TIME_SCALE`` (default 1) multiplies every timeout and every delay
threshold, so a slow CI machine changes one number, not fifty. Traffic shapes
(event counts and intervals) are not scaled: they define what is measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

__all__ = ["Thresholds", "scale_from_env"]


def scale_from_env() -> float:
    raw = os.environ.get("PROXYTEST_TIME_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        from .errors import UsageError

        raise UsageError(
            f"PROXYTEST_TIME_SCALE={raw!r} is not a positive number",
            fix="set it to a factor such as 2 (twice as patient) or unset it",
        )
    return value


@dataclass(frozen=True)
class Thresholds:
    """Limits used by probes (timeouts) and checks (verdict boundaries).

    Fields ending in ``_s`` or ``_ms`` are scaled by :meth:`scaled`; counts,
    fractions and traffic shapes are not.
    """

    # -- traffic shapes (not scaled) ------------------------------------------
    stream_count: int = 20
    stream_interval_ms: float = 100.0
    compression_count: int = 10
    headers_initial_delay_ms: float = 1500.0
    echo_sizes: tuple[int, ...] = (0, 1, 125, 126, 65535, 65536, 1024 * 1024)

    # -- timeouts ---------------------------------------------------------------
    handshake_timeout_s: float = 5.0  # a proxy that never answers an upgrade fails
    message_timeout_s: float = 5.0  # one echo / pong / close reply
    stream_grace_s: float = 5.0  # beyond the stream's nominal length
    ready_timeout_s: float = 20.0  # proxy start until a request reaches the origin
    stop_grace_s: float = 5.0  # SIGTERM until SIGKILL of the process group
    check_timeout_s: float = 30.0  # one check, all retries included

    # -- verdict boundaries -----------------------------------------------------
    # Direct delivery on loopback takes well under 1 ms; a buffering proxy adds
    # hundreds. 50 ms above the direct baseline is a delay users notice.
    delay_degraded_ms: float = 50.0
    # Events sent at least half an interval apart but read in one chunk within
    # this window were coalesced by something on the path.
    coalesce_window_ms: float = 5.0
    coalesced_fraction_degraded: float = 0.25
    # Held until the end: the first event arrives after this fraction of the
    # stream's send span has already passed.
    held_fraction: float = 0.5
    # Headers are late when they arrive after this fraction of the origin's
    # deliberate wait before the first event.
    headers_late_fraction: float = 0.5
    # The tool's own event loop was late by more than this while a timing probe
    # ran: re-measure instead of blaming the proxy.
    loop_lag_limit_ms: float = 30.0
    timing_retries: int = 2
    # Before measuring again, wait this long times the attempts so far: a busy
    # moment of the machine (containers starting, a load check) passes, while a
    # proxy that delays does so whenever it is measured.
    retry_pause_s: float = 1.0

    def scaled(self, factor: float) -> Thresholds:
        changes = {
            f.name: getattr(self, f.name) * factor
            for f in fields(self)
            if f.name.endswith(("_s", "_ms")) and f.name not in _SHAPES
        }
        return replace(self, **changes)

    @classmethod
    def from_env(cls) -> Thresholds:
        return cls().scaled(scale_from_env())


_SHAPES = frozenset({"stream_interval_ms", "headers_initial_delay_ms"})
