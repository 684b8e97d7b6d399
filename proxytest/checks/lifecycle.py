"""Lifecycle checks: a reload with connections open; an origin that dies mid-stream.

Both are informational about open connections (a reload that cuts them at
once is ``degraded``) and strict about new ones (``fail`` when the proxy no
longer serves after the event).
"""

from __future__ import annotations

from ..probes import ProbeContext
from ..probes import lifecycle as probe
from ..probes.timeline import Fate, ReloadTimeline, RestartTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase


def _fate_words(
    fates: tuple[Fate, ...], since: float, cut_until: float
) -> tuple[dict[str, int], list[float]]:
    counts = {"survived": 0, "drained": 0, "cut": 0}
    closed_after: list[float] = []
    for fate in fates:
        counts[_fate(fate, cut_until)] += 1
        if fate.ended_at is not None:
            closed_after.append(round(fate.ended_at - since, 2))
    return counts, closed_after


def _fate(fate: Fate, cut_until: float) -> str:
    if fate.ended_at is None:
        return "survived"
    return "cut" if fate.ended_at < cut_until else "drained"


def _cut_until(tl: ReloadTimeline, within_s: float) -> float:
    """Closed before this (a monotonic time) is cut at once, after it drained.

    The window starts when the reload command returned: a command that takes a
    while (``caddy reload`` in a helper container) is still the reload itself.
    """
    assert tl.reload_at is not None
    return max(tl.reload_at, tl.reloaded_at or tl.reload_at) + within_s


def _by_kind(fates: tuple[Fate, ...], cut_until: float) -> str:
    """'WebSockets: 2 cut at once; SSE streams: 2 survived'."""
    words = {"survived": "survived", "drained": "drained then closed", "cut": "cut at once"}
    parts = []
    for kind, noun in (("ws", "WebSockets"), ("sse", "SSE streams")):
        mine = [f for f in fates if f.kind == kind]
        if not mine:
            continue
        tally: dict[str, int] = {}
        for fate in mine:
            tally[_fate(fate, cut_until)] = tally.get(_fate(fate, cut_until), 0) + 1
        parts.append(f"{noun}: " + ", ".join(f"{n} {words[w]}" for w, n in tally.items()))
    return "; ".join(parts)


def _watched(fates: tuple[Fate, ...]) -> str:
    ws = sum(f.kind == "ws" for f in fates)
    sse = len(fates) - ws
    if not ws:
        return f"{sse} SSE streams (WebSocket is not proxied: see ws.upgrade)"
    return f"{ws} open WebSockets and {sse} SSE streams"


def evaluate_reload(tl: ReloadTimeline, ctx: EvalContext) -> Outcome:
    if tl.unsupported:
        return Outcome(Verdict.SKIP, tl.unsupported)
    if tl.error or tl.reload_at is None:
        return Outcome(Verdict.ERROR, tl.error or "the reload did not happen")
    if tl.observed is None and tl.alive_after:
        # Open streams that "survived" a reload that never happened prove nothing.
        return Outcome(
            Verdict.ERROR,
            f"reload not observed: after {tl.method}, no new process of the proxy appeared "
            "and nothing showed the new config; cannot judge what a reload does to streams",
            {"method": tl.method},
        )
    cut_until = _cut_until(tl, ctx.thresholds.reload_cut_within_s)
    counts, closed_after = _fate_words(tl.fates, tl.reload_at, cut_until)
    metrics: dict[str, object] = {
        "method": tl.method,
        "reload_observed": tl.observed,
        "open_connections": len(tl.fates),
        **{f"{k}_connections": v for k, v in counts.items()},
        "closed_after_s": closed_after,
        "observed_s": tl.observe_s,
        "new_requests_ok": tl.during_ok,
        "new_requests_failed": len(tl.during_failed),
    }
    fates = _by_kind(tl.fates, cut_until)
    if counts["drained"]:
        fates += f" (the last after {max(closed_after):.1f} s)"
    if not tl.alive_after:
        return Outcome(
            Verdict.FAIL,
            f"the proxy exited on reload ({tl.method})",
            metrics,
            failure=Failure.RELOAD_DIED,
        )
    if tl.after_ws or tl.after_sse:
        broken = "; ".join(
            p
            for p in (
                f"WebSocket: {tl.after_ws}" if tl.after_ws else "",
                f"SSE: {tl.after_sse}" if tl.after_sse else "",
            )
            if p
        )
        return Outcome(
            Verdict.FAIL,
            f"new connections fail after the reload: {broken}",
            metrics,
            failure=Failure.RELOAD_BROKEN,
        )
    during = f"{tl.during_ok} new requests during it all answered"
    if tl.during_failed:
        during = (
            f"{len(tl.during_failed)} of {tl.during_ok + len(tl.during_failed)} new "
            f"requests during it failed ({tl.during_failed[0]})"
        )
    summary = f"{tl.method}, watched {tl.observe_s:g} s: {fates}; {during}"
    if counts["cut"] or tl.during_failed:
        return Outcome(Verdict.DEGRADED, summary, metrics, failure=Failure.RELOAD_CUT)
    return Outcome(Verdict.PASS, summary, metrics)


def evaluate_restart(tl: RestartTimeline, ctx: EvalContext) -> Outcome:
    if tl.unsupported:
        return Outcome(Verdict.SKIP, tl.unsupported)
    if tl.error or tl.killed_at is None:
        return Outcome(Verdict.ERROR, tl.error or "the origin was not killed")
    learned = [
        None if f.ended_at is None else round(f.ended_at - tl.killed_at, 2) for f in tl.fates
    ]
    hung = [f.kind for f, s in zip(tl.fates, learned, strict=True) if s is None]
    known = [s for s in learned if s is not None]
    metrics: dict[str, object] = {
        "open_connections": len(tl.fates),
        "learned_after_s": learned,
        "hung_connections": len(hung),
        "recovered_after_s": tl.recovered_after_s,
    }
    if hung:
        return Outcome(
            Verdict.FAIL,
            f"{len(hung)} of {len(tl.fates)} connections ({', '.join(hung)}) still open "
            f"{tl.learn_limit_s:g} s after the origin died: clients hang instead of reconnecting",
            metrics,
            failure=Failure.HUNG,
        )
    if tl.recovered_after_s is None:
        return Outcome(
            Verdict.FAIL,
            f"no request got through within {tl.recover_limit_s:g} s after the origin came "
            f"back (last: {tl.last_failure})",
            metrics,
            failure=Failure.NO_RECOVERY,
        )
    if tl.after_ws or tl.after_sse:
        broken = tl.after_ws or tl.after_sse
        return Outcome(
            Verdict.FAIL,
            f"new connections fail after the origin came back: {broken}",
            metrics,
            failure=Failure.NO_RECOVERY,
        )
    slowest = max(known) if known else 0.0
    summary = (
        f"all {_watched(tl.fates)} learned within {slowest:.1f} s "
        f"({', '.join(sorted({f.how or '?' for f in tl.fates}))}); new connections "
        f"worked {tl.recovered_after_s:.1f} s after the origin came back"
    )
    if slowest > ctx.thresholds.origin_prompt_s:
        return Outcome(Verdict.DEGRADED, summary, metrics, failure=Failure.SLOW_LEARN)
    return Outcome(Verdict.PASS, summary, metrics)


async def probe_reload(ctx: ProbeContext, check: str) -> ReloadTimeline:
    return await probe.reload(ctx, check)


async def probe_restart(ctx: ProbeContext, check: str) -> RestartTimeline:
    return await probe.origin_restart(ctx, check)


CHECKS = (
    Check(
        "lifecycle.reload",
        "open streams across a config reload: survive, drain or drop; new connections work",
        probe_reload,
        evaluate_reload,
        {
            Failure.RELOAD_CUT: "the reload closed open connections at once: give old workers a "
            "drain period so clients are not cut on every deploy",
            Failure.RELOAD_BROKEN: "the proxy did not serve new connections after the reload",
            Failure.RELOAD_DIED: "the proxy exited on reload: check its reload command and config",
        },
        phase=Phase.LIFECYCLE,
    ),
    Check(
        "lifecycle.origin-restart",
        "the origin dies mid-stream: clients learn promptly; new connections work when it is back",
        probe_restart,
        evaluate_restart,
        {
            Failure.HUNG: "the proxy keeps client connections open although the origin is gone: "
            "enable upstream error propagation / shorter upstream timeouts",
            Failure.NO_RECOVERY: "the proxy keeps failing after the origin is back: look at "
            "passive health checks (max_fails/fail_timeout, outlier detection) and retry settings",
            Failure.SLOW_LEARN: "clients learn late that the origin died: look at upstream read "
            "timeouts",
        },
        phase=Phase.LIFECYCLE,
    ),
)
