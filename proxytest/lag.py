"""Watch the tool's own event loop, so its lateness is never blamed on a proxy.

Origin, clients and several proxies share two cores. A sampler sleeps a short
tick and records how much later than asked it woke up; a timing probe asks for
the worst lag seen during its own window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

__all__ = ["LagMonitor"]


class LagMonitor:
    def __init__(self, tick_s: float = 0.01, keep: int = 60_000) -> None:
        self._tick = tick_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)
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
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick)
            after = time.monotonic()
            self._samples.append((after, max(0.0, (after - before - self._tick) * 1000)))

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
