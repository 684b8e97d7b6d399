"""Synthetic timelines for the pure checks: every verdict boundary without sockets."""

from __future__ import annotations

from proxytest.probes import Delivery, StreamTimeline

T0 = 1000.0  # an arbitrary monotonic origin


def stream(
    delays_ms: list[float] | None = None,
    *,
    count: int = 20,
    interval_ms: float = 100.0,
    received: int | None = None,
    arrivals_ms: list[float] | None = None,
    sent_ms: list[float] | None = None,
    end: str = "complete",
    status: int | None = 200,
    kind: str = "sse",
    lag_ms: float = 0.0,
    cpu_stall_ms: float | None = None,
    pressure: tuple[tuple[float, int], ...] = (),
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/event-stream"),),
    headers_ms: float | None = 1.0,
    initial_delay_ms: float = 0.0,
    error: str | None = None,
) -> StreamTimeline:
    """A stream of ``count`` items sent every ``interval_ms``.

    ``delays_ms`` gives each item's delay; ``arrivals_ms`` gives absolute arrival
    times (ms after the first send) instead; ``sent_ms`` gives the origin's send
    times where it fell behind its schedule; ``received`` keeps only the first N.
    """
    sent = [T0 + (initial_delay_ms + i * interval_ms) / 1000 for i in range(count)]
    if sent_ms is not None:
        sent = [T0 + (initial_delay_ms + ms) / 1000 for ms in sent_ms]
    if arrivals_ms is not None:
        got = [T0 + a / 1000 for a in arrivals_ms]
    else:
        delays = delays_ms if delays_ms is not None else [0.5] * count
        got = [s + d / 1000 for s, d in zip(sent, delays, strict=False)]
    n = len(got) if received is None else received
    deliveries = tuple(
        Delivery(i + 1, sent[i], got[i], str(i + 1)) for i in range(min(n, len(got)))
    )
    ended = (deliveries[-1].received_at if deliveries else T0) + 0.001
    if cpu_stall_ms is not None:  # PSI samples at both ends of the window
        pressure = ((T0 - 0.001, 0), (ended, int(cpu_stall_ms * 1000)))
    return StreamTimeline(
        kind=kind,
        url="http://127.0.0.1:1/sse",
        requested_at=T0 - 0.001,
        status=status,
        headers=headers,
        headers_at=None if headers_ms is None else T0 - 0.001 + headers_ms / 1000,
        deliveries=deliveries,
        expected=count,
        interval_ms=interval_ms,
        ended_at=ended,
        end=end,
        error=error,
        loop_lag_ms=lag_ms,
        pressure=pressure,
        initial_delay_ms=initial_delay_ms,
    )


def pressure(
    span_ms: float, starved: list[tuple[float, float]], *, tick_ms: float = 50.0
) -> tuple[tuple[float, int], ...]:
    """PSI samples every ``tick_ms`` from T0: CPU wait 80 % of each tick inside a
    ``starved`` (from_ms, to_ms) range, 2 % elsewhere (as LagMonitor.pressure gives)."""
    samples, total, at = [], 0, -tick_ms
    while at <= span_ms + tick_ms:
        busy = any(lo <= at < hi for lo, hi in starved)
        total += int(tick_ms * (0.8 if busy else 0.02) * 1000)
        samples.append((T0 + at / 1000, total))
        at += tick_ms
    return tuple(samples)
