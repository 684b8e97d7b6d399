"""Outcomes as data: verdicts, check results, target results, the run result.

These objects are what reports render; ``RunResult.to_json()`` is the JSON
report contract (docs/architecture.md, "Contracts").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CheckResult",
    "ConfigFile",
    "Failure",
    "FixChange",
    "FixRefusal",
    "FixRow",
    "FixStatus",
    "Outcome",
    "RunResult",
    "TargetFix",
    "TargetResult",
    "TargetStatus",
    "Verdict",
    "is_as_expected",
]


class Verdict(enum.StrEnum):
    PASS = "pass"  # behaves as a direct connection would
    DEGRADED = "degraded"  # works, but worse than direct in a way users notice
    FAIL = "fail"  # broken
    ERROR = "error"  # the harness could not judge
    SKIP = "skip"  # not applicable or not selected

    @property
    def rank(self) -> int:
        """Severity order for sorting and summaries (higher is worse)."""
        return _RANK[self]


_RANK = {
    Verdict.PASS: 0,
    Verdict.SKIP: 1,
    Verdict.DEGRADED: 2,
    Verdict.FAIL: 3,
    Verdict.ERROR: 4,
}


def is_as_expected(verdict: Verdict, expected: Verdict | None, not_run: bool = False) -> bool:
    """The exit-code rule, the CLI's and the pytest plugin's alike.

    Pass never fails a run; a skip only when it is "not applicable", never when
    the target could not run (``not_run``: binary, image or engine missing);
    anything else only when the matrix expects exactly it.
    """
    if not_run:
        return False
    if verdict in (Verdict.PASS, Verdict.SKIP):
        return True
    return expected is not None and verdict == expected


class Failure(enum.StrEnum):
    """What went wrong, as an evaluation names it: it selects the hint for that knob.

    Checks give a proxy-neutral hint per failure (``Check.hints``), adapters a
    proxy's own (``Adapter.hints``, optionally per check: ``"ws.idle:idle"``).
    """

    # no answer the check can use
    STATUS = "status"  # a status other than the one expected, or no response
    UPGRADE = "upgrade"  # the WebSocket upgrade was refused
    SILENT = "silent"  # the upgrade was never answered (a buffer waiting for a body)
    ACCEPT = "accept"  # a 101 with a wrong Sec-WebSocket-Accept or Upgrade
    # WebSocket traffic
    SIZE = "size"  # a large message did not make it
    ECHO = "echo"  # messages lost or corrupted
    PING = "ping"  # control frames not forwarded
    CLOSE = "close"  # close code or reason lost
    REQUEST = "request"  # Sec-WebSocket-Protocol lost on the way in
    RESPONSE = "response"  # ... or on the way out
    # streams (SSE events, pushed messages)
    HELD = "held"  # buffered until the end
    DELAYED = "delayed"  # delayed or coalesced
    TRUNCATED = "truncated"  # ended early
    ORDER = "order"  # out of order or duplicated
    CONTENT_TYPE = "content_type"  # text/event-stream rewritten
    COMPRESSED_HELD = "compressed_held"  # compressed, and held by the compressor
    COMPRESSED_DELAYED = "compressed_delayed"  # compressed, and flushed late
    IDS = "ids"  # events without an id: field
    HEADER = "header"  # Last-Event-ID did not reach the origin
    RESUME = "resume"  # the stream did not resume where it was cut
    # long-lived connections
    IDLE = "idle"  # an idle timeout dropped it
    LIFETIME = "lifetime"  # a limit on total duration cut it
    # lifecycle and load
    RELOAD_CUT = "reload_cut"  # a reload closed open connections at once
    RELOAD_BROKEN = "reload_broken"  # new connections failed after a reload
    RELOAD_DIED = "reload_died"  # the proxy exited on reload
    HUNG = "hung"  # clients not told that the origin died
    NO_RECOVERY = "no_recovery"  # still failing after the origin came back
    SLOW_LEARN = "slow_learn"  # clients told late that the origin died
    LIMIT = "limit"  # a connection limit on the path
    FANOUT_SLOW = "fanout_slow"  # a broadcast to many subscribers reaches them late
    FANOUT_LOST = "fanout_lost"  # broadcast messages lost while the connections stayed open
    # several backends
    NOT_STICKY = "not_sticky"  # a session's requests or reconnects reached another backend
    HUNG_ON_DEAD_BACKEND = "hung_on_dead_backend"  # a client not told its backend died
    NO_FAILOVER = "no_failover"  # a client could not reach a live backend in time
    LOST_EVENTS = "lost_events"  # events lost or duplicated across the failover
    RETRIED_DEAD_BACKEND = "retried_dead_backend"  # reconnects sent to the dead backend first
    # HTTP/2
    H2_WEBSOCKET = "h2_websocket"  # extended CONNECT advertised, the WebSocket over it broken
    STREAM_STALL = "stream_stall"  # a stream within the advertised limit stalled or refused
    STREAM_LIMIT = "stream_limit"  # fewer concurrent streams advertised than a page needs
    # WebSocket frame depth (issue 15, frames part: ws.deflate, ws.frames)
    EXTENSION = "extension"  # Sec-WebSocket-Extensions differs between client and origin
    FRAGMENTS = "fragments"  # a fragmented message did not arrive whole and byte-exact
    INVALID_FRAME = "invalid_frame"  # an invalid frame reached the other end as a valid one
    # security (issue 15, sec part: checks/security.py)
    SMUGGLED = "smuggled"  # a raw tunnel opened although the origin refused the upgrade
    LAX_HANDSHAKE = "lax_handshake"  # a malformed handshake forwarded and tunnelled
    UNREQUESTED_SWITCH = "unrequested_switch"  # a 101 to a plain request switched protocols
    HOP_BY_HOP = "hop_by_hop"  # Keep-Alive or Proxy-* forwarded (headers Connection names too)
    CONNECTION_NAMED = "connection_named"  # only headers the client named in Connection forwarded


class TargetStatus(enum.StrEnum):
    OK = "ok"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    """What a check's pure evaluation concludes from a timeline.

    ``failure`` names the kind of failure (:class:`Failure`) so the adapter
    can pick the hint for that exact knob. ``discard`` says why this attempt
    says nothing about the proxy (the tool's own lateness explains what was
    seen): the runner measures again, and never counts it. ``not_run``: a skip
    because something the check needs is missing on this machine (Chromium), which
    makes the run not green unless the target is optional or the run has
    ``--skip-missing`` (as a missing proxy binary does).
    """

    verdict: Verdict
    summary: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    discard: str | None = None
    not_run: bool = False


@dataclass(frozen=True)
class CheckResult:
    check: str
    verdict: Verdict
    summary: str
    expected: Verdict | None = None
    hint: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    attempts: int = 1
    # The probe's raw timeline (a live run), or its JSON form (a report read back).
    # Only stream timelines reach the JSON report, as "timeline" (drawn by the HTML).
    timeline: Any = field(default=None, compare=False, repr=False)
    # A skip because the target could not run at all (its binary, image or engine
    # is missing) and it is not optional: nothing was measured, so not green.
    not_run: bool = False
    # Every attempt of a check measured more than once: {"verdict", "summary",
    # "discarded"?}. In the JSON report as "attempts" (additive), when there are several.
    tries: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    # The :class:`Failure` value the evaluation named (``outcome.failure``), for a
    # fail or degraded result: what `proxytest fix` keys its config changes on.
    # In the JSON report as "failure" (additive), only when set. A plain string, so
    # a report written by a newer version with a kind this one lacks still loads.
    failure: str | None = None

    @property
    def as_expected(self) -> bool:
        """True when this result does not make the run fail."""
        return is_as_expected(self.verdict, self.expected, self.not_run)

    @property
    def unexpected_pass(self) -> bool:
        """The matrix expected a failure that did not happen: the entry is stale."""
        return self.expected not in (None, Verdict.PASS) and self.verdict == Verdict.PASS

    def timeline_json(self) -> dict[str, Any] | None:
        """The stream timeline in its report form, or None for any other timeline."""
        if isinstance(self.timeline, Mapping):
            return dict(self.timeline)
        stream_json = getattr(self.timeline, "stream_json", None)
        return stream_json() if callable(stream_json) else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "check": self.check,
            "verdict": self.verdict.value,
            "expected": self.expected.value if self.expected else None,
            "summary": self.summary,
            "hint": self.hint,
            "metrics": dict(self.metrics),
            "duration_s": round(self.duration_s, 3),
        }
        if self.not_run:  # additive: present only on a target that could not run
            data["not_run"] = True
        if self.failure is not None:  # additive: present only when a kind was named
            data["failure"] = self.failure
        if self.tries:  # additive: present only when the check was measured again
            data["attempts"] = [dict(t) for t in self.tries]
        timeline = self.timeline_json()
        if timeline is not None:
            data["timeline"] = timeline
        return data


@dataclass(frozen=True)
class ConfigFile:
    """One of a target's config files as the user wrote it (placeholders and all)."""

    path: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "text": self.text}


@dataclass(frozen=True)
class TargetResult:
    id: str
    proxy: str
    setup: str
    runtime: str
    proxy_version: str | None
    status: TargetStatus
    reason: str | None
    results: tuple[CheckResult, ...]
    duration_s: float = 0.0
    log_tail: str = ""
    config_files: tuple[ConfigFile, ...] = ()
    run_dirs: tuple[str, ...] = ()  # kept for a person to read (--keep-run-dirs)
    # The listener speaks TLS (the config names the run's certificate): its plain
    # check IDs are HTTP/1.1 over TLS; @h2 ones HTTP/2 by ALPN.
    tls: bool = False

    @property
    def as_expected(self) -> bool:
        return all(r.as_expected for r in self.results)

    @property
    def not_run(self) -> bool:
        """Skipped because it could not run, and not optional: the run is not green."""
        return self.status == TargetStatus.SKIPPED and any(r.not_run for r in self.results)

    @property
    def tally(self) -> str:
        """Verdict counts in the order they first occur: ``"1 fail, 18 pass"``."""
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
        return ", ".join(f"{n} {v}" for v, n in counts.items())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "proxy": self.proxy,
            "setup": self.setup,
            "runtime": self.runtime,
            "proxy_version": self.proxy_version,
            "status": self.status.value,
            "reason": self.reason,
            "results": [r.to_json() for r in self.results],
            "config_files": [c.to_json() for c in self.config_files],
        }
        if self.run_dirs:
            data["run_dirs"] = list(self.run_dirs)
        if self.tls:  # additive: present only for a TLS listener
            data["tls"] = True
        return data


class FixStatus(enum.StrEnum):
    """What `proxytest fix` concluded for one target (docs/architecture.md, "Config fixes")."""

    NOTHING = "nothing_to_fix"  # every check that ran passed: nothing changed
    PROVEN = "proven"  # every finding fixed by a patch the re-run proved
    PROVEN_IN_PART = "proven_in_part"  # a proven patch; other findings have no config change
    UNPROVEN = "unproven"  # the re-run did not prove the patch: never written
    NO_CONFIG_CHANGE = "no_config_change"  # findings, none with a config change here
    NOT_MEASURED = "not_measured"  # the config did not run, or checks could not be judged

    @property
    def green(self) -> bool:
        """Nothing is left to fix (the exit code's rule)."""
        return self in (FixStatus.NOTHING, FixStatus.PROVEN)

    @property
    def writable(self) -> bool:
        """The patch was proven: `--write` may apply it."""
        return self in (FixStatus.PROVEN, FixStatus.PROVEN_IN_PART)


@dataclass(frozen=True)
class FixRow:
    """One check before and after the patch (``after`` None: not re-run)."""

    check: str
    before: Verdict
    after: Verdict | None
    addressed: bool  # a change of the patch names this check
    summary: str  # the re-run's summary, else the first run's
    # The check was planned in part (a change and a refusal), and the re-run no longer
    # shows the kind the change addressed, only another (the refused part).
    cause_gone: bool = False

    @property
    def outcome(self) -> str:
        if self.after is None:
            return "not re-run"
        if self.before == Verdict.PASS:  # addressed too: the patch first broke it
            return "kept" if self.after == Verdict.PASS else "regressed"
        if self.addressed:
            if self.after == Verdict.PASS:
                return "fixed"
            return "fixed in part" if self.cause_gone else "not fixed"
        return self.after.value

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "before": self.before.value,
            "after": None if self.after is None else self.after.value,
            "addressed": self.addressed,
            "outcome": self.outcome,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class FixChange:
    """One knob set at one line of one file, with whether the re-run proved it."""

    file: str
    line: int
    knob: str
    checks: tuple[str, ...]
    why: str
    proven: bool | None = None  # None: not re-run

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "knob": self.knob,
                "checks": list(self.checks), "why": self.why, "proven": self.proven}  # fmt: skip


@dataclass(frozen=True)
class FixRefusal:
    """A finding left alone: no config change here, or one that would override a choice."""

    check: str
    reason: str
    remedy: str
    proposal: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "reason": self.reason, "remedy": self.remedy,
                "proposal": self.proposal}  # fmt: skip


@dataclass(frozen=True)
class TargetFix:
    """`proxytest fix` on one target: the patch, its proof, and what was written."""

    target: str
    status: FixStatus
    summary: str
    patch: str = ""  # a unified diff against the user's files
    files: tuple[ConfigFile, ...] = ()  # the new text of each changed file
    changes: tuple[FixChange, ...] = ()
    refusals: tuple[FixRefusal, ...] = ()
    rows: tuple[FixRow, ...] = ()
    after: TargetResult | None = None  # the re-run on the patched copy
    written: tuple[str, ...] = ()  # the files `--write` changed
    backups: tuple[str, ...] = ()  # ... and the copy of each original beside it

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": self.status.value,
            "summary": self.summary,
            "patch": self.patch,
            "files": [f.to_json() for f in self.files],
            "changes": [c.to_json() for c in self.changes],
            "refusals": [r.to_json() for r in self.refusals],
            "checks": [r.to_json() for r in self.rows],
            "after": None if self.after is None else self.after.to_json(),
            "written": list(self.written),
            "backups": list(self.backups),
        }


@dataclass(frozen=True)
class RunResult:
    tool_version: str
    started_at: str
    duration_s: float
    targets: tuple[TargetResult, ...]
    # Ctrl-C or SIGTERM ended the run: what was measured so far, the rest `error`.
    interrupted: bool = False
    # `run --shard K/N`: which part of the selection this run is ("2/4"), and the
    # ids of the whole selection in the matrix's order, so that a merge of the
    # shards' reports orders them and notices a missing shard (reports/merge.py).
    shard: str | None = None
    matrix_targets: tuple[str, ...] = ()
    # `proxytest fix`: one per target; the targets above are the run before the patch.
    fixes: tuple[TargetFix, ...] = ()

    @property
    def measured(self) -> bool:
        """Whether the targets that ran judged anything (not every check a skip).

        A run whose only targets are optional ones that could not run is allowed
        to measure nothing: the matrix or --skip-missing said so.
        """
        ran = [t for t in self.targets if t.status != TargetStatus.SKIPPED]
        return not ran or any(r.verdict != Verdict.SKIP for t in ran for r in t.results)

    @property
    def as_expected(self) -> bool:
        """The run's exit-code rule: green only for what was measured, and as expected."""
        return not self.interrupted and self.measured and all(t.as_expected for t in self.targets)

    @property
    def exit_code(self) -> int:
        if self.fixes:  # `proxytest fix`: green when nothing is left to fix
            return 0 if not self.interrupted and all(f.status.green for f in self.fixes) else 1
        return 0 if self.as_expected else 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tool": {"name": "proxytest", "version": self.tool_version},
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "targets": [t.to_json() for t in self.targets],
        }
        if self.interrupted:  # additive: present only on an interrupted run
            data["interrupted"] = True
        if self.shard is not None:  # additive: present only on a shard's run
            data["shard"] = self.shard
            data["matrix_targets"] = list(self.matrix_targets)
        if self.fixes:  # additive: present only on a `proxytest fix` report
            data["fixes"] = [f.to_json() for f in self.fixes]
        return data
