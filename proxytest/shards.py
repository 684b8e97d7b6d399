"""``--shard K/N``: which part of a matrix's targets one CI job runs.

Scale-out beyond one machine is the CI system's own parallel jobs: job K of N
runs ``proxytest run --shard K/N`` and the last job merges their JSON reports
(``proxytest report --merge``, reports/merge.py).

The assignment is by position, round robin over the targets the run selected
(the matrix's order, after ``--only``): target ``i`` (0-based) belongs to shard
``i mod N + 1``. It depends on nothing but that list, so every machine and
every Python version assigns alike (no ``hash()``, no clock), every target is
in exactly one shard, and shard sizes differ by one at most, which balances
the jobs' wall time better than a hash of the id would with a few dozen
targets. Adding a target moves the ones after it to other shards; that is
harmless because all shards of one CI run run the same commit's matrix, and
each shard's JSON lists the whole selection (``matrix_targets``) so the merge
sees a missing shard instead of a smaller green report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import UsageError

__all__ = ["MAX_SHARDS", "Shard", "parse_shard"]

MAX_SHARDS = 1000
_SYNTAX = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_FIX = "write K/N with 1 <= K <= N, e.g. --shard 2/4 (GitHub Actions: ${{ matrix.shard }}/4)"

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (both from 1)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard {self.index}/{self.count} out of range")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def pick(self, targets: Sequence[T]) -> list[T]:
        """This shard's part of ``targets``, in their order."""
        return [t for i, t in enumerate(targets) if i % self.count == self.index - 1]


def parse_shard(text: str, option: str = "--shard") -> Shard:
    """``K/N`` as a ``Shard``, or a ``UsageError`` that says what is wrong."""
    found = _SYNTAX.fullmatch(text)
    if not found:
        raise UsageError(f"{option} {text!r}: expected K/N", fix=_FIX)
    index, count = int(found[1]), int(found[2])
    if count < 1 or count > MAX_SHARDS:
        raise UsageError(
            f"{option} {text!r}: N must be 1 to {MAX_SHARDS}",
            fix=_FIX,
        )
    if not 1 <= index <= count:
        raise UsageError(f"{option} {text!r}: K must be 1 to {count}", fix=_FIX)
    return Shard(index, count)
