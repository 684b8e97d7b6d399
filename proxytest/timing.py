"""Every time limit and verdict threshold in one place.

Two kinds of numbers live here, and only the first kind scales:

* **patience** (marked ``patience=True``): how long the tool waits for something
  before it gives up, such as a handshake, a proxy's start-up or a reply.
  ``PROXYTEST_TIME_SCALE`` (default 1) multiplies these, so a slow CI machine
  changes one number, not fifty;
* **verdict boundaries and traffic shapes**: what counts as delayed, coalesced,
  cut at once or hung, and what is sent. These never scale: a steady 250 ms
  delay is ``degraded`` on any machine, and a slower machine only makes the
  tool wait longer before it calls something missing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["MAX_TIME_SCALE", "Thresholds", "scale_from_env"]

MAX_TIME_SCALE = 100.0  # beyond this a run would wait for hours on a missing reply


def scale_from_env() -> float:
    """``PROXYTEST_TIME_SCALE`` as a finite factor in (0, MAX_TIME_SCALE]; UsageError if not."""
    raw = os.environ.get("PROXYTEST_TIME_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIME_SCALE):
        from .errors import UsageError

        raise UsageError(
            f"PROXYTEST_TIME_SCALE={raw!r} is not a number above 0 and at most {MAX_TIME_SCALE:g}",
            fix="set it to a factor such as 2 (twice as patient) or unset it",
        )
    return value


def _patience(seconds: float) -> Any:
    """A wait that ``PROXYTEST_TIME_SCALE`` stretches."""
    return field(default=seconds, metadata={"patience": True})


@dataclass(frozen=True)
class Thresholds:
    """Limits used by probes (timeouts) and checks (verdict boundaries)."""

    # -- traffic shapes ----------------------------------------------------------
    stream_count: int = 20
    stream_interval_ms: float = 100.0
    compression_count: int = 10
    headers_initial_delay_ms: float = 1500.0
    echo_sizes: tuple[int, ...] = (0, 1, 125, 126, 65535, 65536, 1024 * 1024)
    # lifecycle.reload watches open connections this long after the reload.
    reload_observe_s: float = 8.0
    # h2.streams opens at most this many streams on one connection (the advertised
    # MAX_CONCURRENT_STREAMS plus one, when that is lower).
    h2_streams_cap: int = 300
    # browser.eventsource streams this long at most (and never longer than max-hold):
    # long enough for a proxy's own cut such as Envoy's 15 s route timeout.
    browser_stream_s: float = 20.0
    browser_event_interval_ms: float = 250.0
    browser_streams: int = 7  # browser.connection-limit: one more than HTTP/1.1 allows
    # load.fanout: each step is a burst of this many messages, one every interval,
    # directly and then through the target.
    fanout_messages: int = 5
    fanout_interval_ms: float = 100.0

    # -- patience: scaled by PROXYTEST_TIME_SCALE ------------------------------------
    handshake_timeout_s: float = _patience(5.0)  # a proxy that never answers an upgrade
    message_timeout_s: float = _patience(5.0)  # one echo / pong / close reply
    stream_grace_s: float = _patience(5.0)  # beyond the stream's nominal length
    ready_timeout_s: float = _patience(20.0)  # proxy start until a request reaches the origin
    ready_poll_timeout_s: float = _patience(1.0)  # one readiness request through the proxy
    stop_grace_s: float = _patience(5.0)  # SIGTERM until SIGKILL of the process group
    check_timeout_s: float = _patience(30.0)  # one check, all retries included
    origin_start_timeout_s: float = _patience(15.0)  # the origin's own process says its port
    config_check_timeout_s: float = _patience(60.0)  # the proxy's own config checker
    version_timeout_s: float = _patience(10.0)  # a proxy's version command answers at once
    reload_confirm_timeout_s: float = _patience(5.0)  # new workers or the new route appear
    load_connect_timeout_s: float = _patience(10.0)  # one connection of load.concurrency
    browser_start_timeout_s: float = _patience(30.0)  # Chromium opens its DevTools port
    browser_page_timeout_s: float = _patience(15.0)  # the test page loads through the proxy
    # browser.connection-limit: no further EventSource opened for this long: the rest wait.
    browser_settle_s: float = _patience(2.0)
    # Past this, load.concurrency starts no new connection: a proxy that queues
    # connections beyond its limit would otherwise keep the probe for minutes.
    load_open_deadline_s: float = _patience(60.0)
    # h2.streams: how long each of the streams opened at once may take to deliver
    # its first event, and how long the one beyond the advertised limit is watched.
    h2_stream_wait_s: float = _patience(5.0)
    h2_beyond_wait_s: float = _patience(2.0)
    # load.fanout: after a burst's last message, how long stragglers are awaited (a
    # message later than this counts as lost); and when no further step starts.
    fanout_drain_s: float = _patience(2.0)
    fanout_deadline_s: float = _patience(90.0)
    # Before measuring again, wait this long times the attempts so far: a busy
    # moment of the machine (containers starting, a load check) passes, while a
    # proxy that delays does so whenever it is measured.
    retry_pause_s: float = _patience(1.0)

    # -- verdict boundaries (never scaled) ---------------------------------------------
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
    # One event later than this over the direct baseline is a delay users notice
    # however prompt the rest were (p95 alone would hide one event held 5 s).
    worst_delay_degraded_ms: float = 250.0
    # The tool's own event loop was late by more than this while a timing probe
    # ran: its lateness may explain a delay; re-measure instead of blaming the proxy.
    loop_lag_limit_ms: float = 30.0
    # Some task on the machine waited for a CPU during this fraction of a timing
    # probe's time (Linux PSI): the machine was starved; same as above.
    cpu_pressure_limit: float = 0.5
    # Attempts of a timing check beyond the first: after one the tool's own
    # lateness explains (not counted), or a delayed one (to tell steady from
    # intermittent delays).
    timing_retries: int = 2
    # The direct origin-to-client p95 delay must be under this for the baseline
    # to be used: on loopback it is well under 1 ms; more means a busy machine.
    baseline_limit_ms: float = 20.0
    # lifecycle.reload: a connection closed this soon after the reload was cut at
    # once, not drained.
    reload_cut_within_s: float = 1.0
    # lifecycle.origin-restart: a client told of a dead origin within prompt_s is
    # told promptly; one not told within learn_limit_s has a hung connection; new
    # requests must get through within recover_limit_s of the origin's return.
    origin_prompt_s: float = 2.0
    origin_learn_limit_s: float = 10.0
    origin_recover_limit_s: float = 15.0
    # lb.failover: a client on the backend that died must learn it within
    # learn_limit_s (else its connection hung), and get events again from a live
    # backend within reconnect_limit_s of learning, retrying like EventSource
    # every retry_ms, at most max_tries times; resume_s: how long it then reads.
    failover_learn_limit_s: float = 5.0
    failover_reconnect_limit_s: float = 5.0
    failover_retry_ms: float = 200.0
    failover_max_tries: int = 10
    failover_resume_s: float = 1.0
    # load.concurrency: connections that time out while the tool's own loop lagged
    # this long may be the tool's doing (half the connect timeout's default).
    load_tool_lag_limit_ms: float = 5000.0
    # h2.streams: fewer concurrent streams per connection than this is degraded. A
    # browser page multiplexes its EventSources, fetches and (RFC 8441) WebSockets
    # to one host over one connection; HAProxy's default is 100, nginx's 128, Go's 250.
    h2_streams_degraded_below: int = 100

    # load.fanout: p99 delivery latency past this is the knee of the fan-out curve
    # (a live comment a tenth of a second late); delivery failing at this N or
    # below is a failure at once, whatever the direct path did.
    fanout_knee_ms: float = 100.0
    fanout_small_n: int = 50

    def scaled(self, factor: float) -> Thresholds:
        """These thresholds with every wait (and only the waits) ``factor`` times longer."""
        changes = {
            f.name: getattr(self, f.name) * factor
            for f in fields(self)
            if f.metadata.get("patience")
        }
        return replace(self, **changes)

    @classmethod
    def from_env(cls) -> Thresholds:
        return cls().scaled(scale_from_env())
