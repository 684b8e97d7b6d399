"""Merge the JSON reports of a matrix's shards into one run's JSON.

``proxytest run --shard K/N`` in N CI jobs, then ``proxytest report --merge``
in one more: ``merge_reports`` joins their JSON forms (already validated by
``run_from_json``), and every report file is rendered from the result as from
a run's own JSON.

- Targets: concatenated in the matrix's order when every shard's report lists
  the same selection (``matrix_targets``, written by ``run --shard``), else in
  the order of the files. A target id in two files is a ``ReportError`` naming
  both (two runs of one shard, or overlapping runs, cannot be merged). A target
  of that selection that no file holds is a ``ReportError`` naming the missing
  shards: a lost shard must not make a smaller report pass.
- ``started_at`` is the earliest, ``duration_s`` the longest shard's (the
  shards ran in parallel, so the merged run took about as long as its slowest
  job); ``interrupted`` when any shard was.
- Reports of different proxytest versions merge with a notice; the merged
  report carries the first file's version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ReportError

__all__ = ["merge_reports"]


def _when(text: str) -> tuple[int, datetime | str]:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return 1, text  # unreadable timestamps sort after every readable one
    return 0, when if when.tzinfo else when.replace(tzinfo=UTC)


def _shard_numbers(shards: Sequence[str]) -> tuple[set[int], int | None]:
    numbers, counts = set(), set()
    for label in shards:
        index, _, count = label.partition("/")
        if index.isdigit() and count.isdigit():
            numbers.add(int(index))
            counts.add(int(count))
    return numbers, (counts.pop() if len(counts) == 1 else None)


def merge_reports(
    reports: Sequence[tuple[Path, Mapping[str, Any]]],
) -> tuple[dict[str, Any], list[str]]:
    """One run's JSON form from ``(file, JSON form)`` pairs, and notices for the user."""
    if not reports:
        raise ValueError("nothing to merge")
    notices: list[str] = []
    owner: dict[str, Path] = {}
    targets: dict[str, Mapping[str, Any]] = {}
    for path, data in reports:
        for target in data["targets"]:
            ident = target["id"]
            if ident in owner:
                raise ReportError(
                    f"target {ident!r} is also in {owner[ident]}",
                    file=path,
                    fix="merge each shard's report once: two runs of one target cannot be merged",
                )
            owner[ident] = path
            targets[ident] = target

    versions = {str(d["tool"].get("version", "?")) for _, d in reports}
    first = reports[0][1]
    if len(versions) > 1:
        each = ", ".join(f"{d['tool'].get('version', '?')} ({p})" for p, d in reports)
        notices.append(
            f"the reports come from different proxytest versions: {each}; "
            f"the merged report says {first['tool'].get('version', '?')}"
        )

    order = list(targets)
    selections = {tuple(d.get("matrix_targets") or ()) for _, d in reports}
    sharded = [d for _, d in reports if "shard" in d]
    if sharded and len(selections) == 1 and len(sharded) == len(reports):
        selection = selections.pop()
        missing = [i for i in selection if i not in targets]
        if missing:
            numbers, count = _shard_numbers([d["shard"] for d in sharded])
            absent = (
                ", ".join(f"{k}/{count}" for k in range(1, count + 1) if k not in numbers)
                if count
                else "?"
            )
            raise ReportError(
                f"{len(missing)} target(s) of the sharded matrix are in none of the reports: "
                f"{', '.join(missing)} (shards not given: {absent})",
                fix="pass the JSON report of every shard, RESULTS.json --merge MORE.json …",
            )
        order = [i for i in selection if i in targets] + [i for i in order if i not in selection]
    elif sharded:
        notices.append(
            "the shards' reports list different matrices (matrix_targets): "
            "targets are merged in the order of the files"
        )

    merged: dict[str, Any] = {
        "tool": dict(first["tool"]),
        "started_at": min((d["started_at"] for _, d in reports), key=_when),
        "duration_s": max(float(d["duration_s"]) for _, d in reports),
        "targets": [dict(targets[i]) for i in order],
    }
    if any(d.get("interrupted") is True for _, d in reports):
        merged["interrupted"] = True
    return merged, notices
