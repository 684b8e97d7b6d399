"""What a probe sees of the origin: its id, what it recorded, and its clock.

Two implementations share this small interface: ``Origin`` itself (in this
process: records read in memory, one clock) and ``probes.remote.RemoteOrigin``
(a ``proxytest origin`` reached over HTTP through the deployed path: records
read from its records API, its clock converted into ours). Probes only ever
use an ``OriginView``, so every probe runs unchanged against either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .server import OriginRecord

__all__ = ["OriginView"]


class OriginView(Protocol):
    """The origin as a probe sees it (docs/architecture.md, "Probe mode")."""

    @property
    def id(self) -> str:
        """The origin's id: a request that reached it proves the path leads to it."""
        ...

    def records(self, probe: str) -> list[OriginRecord]:
        """What the origin recorded for ``probe`` so far (times on the client's clock)."""
        ...

    async def wait_for(
        self, probe: str, predicate: Callable[[list[OriginRecord]], object], timeout: float
    ) -> list[OriginRecord]:
        """Until ``predicate(records)`` holds, or ``timeout``: the records (bounded)."""
        ...

    def local_time(self, origin_time: float) -> float:
        """An origin ``time.monotonic()`` (an event's ``sent``) on the client's clock."""
        ...
