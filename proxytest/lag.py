"""Watch the tool's own lateness, so it is never blamed on a proxy.

Origin, clients and several proxies share two cores. A sampler sleeps a short
tick and records how much later than asked it woke up (the event loop's lag,
which the origin and the clients share); a timing probe asks for the worst lag
seen during its own window. Where the kernel reports CPU pressure (Linux PSI,
``/proc/pressure/cpu``), the sampler also records how long, in that window,
some task on the machine was ready to run but waited for a CPU: a machine
starved by other work delays a proxy for reasons that are not the proxy's.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from pathlib import Path

__all__ = ["LagMonitor", "PressureSamples", "cpu_stall_total_us", "stall_between"]

PRESSURE = Path("/proc/pressure/cpu")
# (monotonic time, PSI some-total µs) samples.
PressureSamples = tuple[tuple[float, int], ...]


def cpu_stall_total_us(path: Path = PRESSURE) -> int | None:
    """Microseconds some task waited for a CPU since boot (PSI ``some total``); None if unknown."""
    try:
        first = path.read_text().split("\n", 1)[0]
    except OSError:
        return None
    for word in first.split():
        if word.startswith("total="):
            with contextlib.suppress(ValueError):
                return int(word[6:])
    return None


class LagMonitor:
    def __init__(self, tick_s: float = 0.01, keep: int = 60_000) -> None:
        self._tick = tick_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)
        # (time, PSI some-total µs), taken every few ticks where the kernel has PSI.
        self._pressure: deque[tuple[float, int]] = deque(maxlen=keep // 5)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LagMonitor:
        self._task = asyncio.create_task(self._run(), name="proxytest-lag-monitor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        ticks = 0
        psi = cpu_stall_total_us() is not None
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick)
            after = time.monotonic()
            self._samples.append((after, max(0.0, (after - before - self._tick) * 1000)))
            if psi and ticks % 5 == 0:
                total = cpu_stall_total_us()
                if total is not None:
                    self._pressure.append((after, total))
            ticks += 1

    def max_lag_ms(self, since: float, until: float | None = None) -> float:
        """Worst lag (ms) of the samples taken between ``since`` and ``until``."""
        end = time.monotonic() if until is None else until
        worst = 0.0
        for taken, lag in reversed(self._samples):
            if taken < since:
                break
            if taken <= end + self._tick:
                worst = max(worst, lag)
        return round(worst, 2)

    def pressure(self, since: float, until: float | None = None) -> PressureSamples:
        """The PSI samples that bracket ``since`` … ``until`` (empty without PSI)."""
        end = time.monotonic() if until is None else until
        return _bracket(tuple(self._pressure), since, end)


def _bracket(samples: PressureSamples, since: float, until: float) -> PressureSamples:
    """The samples from the last at or before ``since`` to the first at or after ``until``.

    PSI is read every fifth tick (50 ms or more on a busy loop), so a short window
    may hold no sample: the ones just outside it measure it.
    """
    times = [t for t, _ in samples]
    start = max(bisect.bisect_right(times, since) - 1, 0)
    end = bisect.bisect_left(times, until) + 1
    return samples[start:end]


def stall_between(
    samples: PressureSamples, since: float, until: float
) -> tuple[float, float] | None:
    """(stall ms, covered ms): CPU wait between the samples that bracket ``since`` … ``until``.

    The covered span is that of the bracketing samples, at least the window where
    samples exist on both sides; None where fewer than two samples are found.
    """
    inside = _bracket(samples, since, until)
    if len(inside) < 2:
        return None
    (first_t, first), (last_t, last) = inside[0], inside[-1]
    if last_t <= first_t:
        return None
    return round((last - first) / 1000, 1), round((last_t - first_t) * 1000, 1)
