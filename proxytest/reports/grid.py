"""What every grid report shares: columns, short labels, cell states, the overall line.

A cell's *state* is its verdict, except that a non-pass verdict the matrix
expects is ``known`` and a pass where the matrix expects a failure is ``stale``
(the expectation is out of date). Markdown and HTML draw the same states.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict

__all__ = [
    "STATES",
    "Overall",
    "cell_state",
    "check_ids",
    "non_pass",
    "overall",
    "short_label",
    "target_label",
]

# Four letters per check name keep 19 columns readable; the family goes above.
TINY = {
    "upgrade": "upgr", "subprotocol": "subp", "headers": "hdrs", "stream": "strm",
    "last-event-id": "leid", "compression": "gzip", "close": "clos", "keepalive": "keep",
    "heartbeat": "beat", "lifetime": "span", "reconnect": "recn", "reload": "rlod",
    "origin-restart": "orig", "concurrency": "conc", "eventsource": "evsr",
    "websocket": "wsck", "connection-limit": "clim",
    # security (issue 15, sec part)
    "smuggling": "smug", "handshake-strict": "hsst", "upgrade-unrequested": "unrq",
    "hop-by-hop": "hop",
}  # fmt: skip
TINY_FAMILY = {"lifecycle": "life", "browser": "brow"}

# state -> (word for people, order of severity for sorting)
STATES = {
    "pass": "pass",
    "stale": "pass, but the matrix expects a failure: update the matrix",
    "skip": "skipped",
    "known": "expected by the matrix (a documented failure)",
    "degraded": "degraded",
    "fail": "fail",
    "error": "error: the harness could not judge",
}


def check_ids(run: RunResult) -> list[str]:
    """The checks present in the run, in the order they first appear."""
    ids: list[str] = []
    for target in run.targets:
        for result in target.results:
            if result.check not in ids:
                ids.append(result.check)
    return ids


def short_label(check_id: str) -> tuple[str, str]:
    """``ws.upgrade`` -> ``("ws", "upgr")``; the transport goes with the family:
    ``sse.stream@h2`` -> ``("sse@h2", "strm")``."""
    check, at, transport = check_id.partition("@")
    family, _, name = check.partition(".")
    return TINY_FAMILY.get(family, family) + at + transport, TINY.get(name, name)


def target_label(target: TargetResult) -> str:
    """The target's ID, with ``(TLS)`` where its listener speaks TLS."""
    return f"{target.id} (TLS)" if target.tls else target.id


def cell_state(result: CheckResult) -> str:
    if result.unexpected_pass:
        return "stale"
    if result.verdict not in (Verdict.PASS, Verdict.SKIP) and result.as_expected:
        return "known"
    return result.verdict.value


@dataclass(frozen=True)
class Overall:
    as_expected: bool
    targets: int
    counts: dict[str, int]  # verdict -> results
    unexpected: int  # results that make the run fail
    known: int  # non-pass results the matrix expects

    @property
    def line(self) -> str:
        """``as expected: 10 targets, 150 pass, 2 fail (2 expected by the matrix)``."""
        head = "as expected" if self.as_expected else "UNEXPECTED RESULTS"
        return f"{head}: {self.details}"

    @property
    def details(self) -> str:
        order = [v.value for v in sorted(Verdict, key=lambda v: v.rank)]
        counts = ", ".join(f"{self.counts[v]} {v}" for v in order if self.counts.get(v))
        extra = []
        if self.unexpected:
            extra.append(f"{self.unexpected} unexpected")
        if self.known:
            extra.append(f"{self.known} expected by the matrix")
        tail = f" ({'; '.join(extra)})" if extra else ""
        plural = "s" if self.targets != 1 else ""
        return f"{self.targets} target{plural}, {counts or 'no results'}{tail}"


def overall(run: RunResult) -> Overall:
    counts: dict[str, int] = {}
    unexpected = known = 0
    for target in run.targets:
        for result in target.results:
            counts[result.verdict.value] = counts.get(result.verdict.value, 0) + 1
            if not result.as_expected:
                unexpected += 1
            elif cell_state(result) == "known":
                known += 1
    return Overall(run.as_expected, len(run.targets), counts, unexpected, known)


def non_pass(target: TargetResult) -> list[CheckResult]:
    """The results worth a line below a grid: worst first, unexpected before known."""
    if target.status != TargetStatus.OK:
        return []
    shown = [r for r in target.results if cell_state(r) != "pass"]
    return sorted(shown, key=lambda r: (r.as_expected, -r.verdict.rank))


def by_cause(target: TargetResult) -> list[list[CheckResult]]:
    """``non_pass`` grouped by cause: one state and one hint (every ws.* check after a
    refused upgrade) make one group, so a report states the cause once."""
    groups: dict[tuple[str, str | None, str], list[CheckResult]] = {}
    for result in non_pass(target):
        key = (cell_state(result), result.hint, result.summary if result.hint is None else "")
        groups.setdefault(key, []).append(result)
    return list(groups.values())
