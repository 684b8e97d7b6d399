"""Long-lived connection checks: idle, keepalive, heartbeat and lifetime holds.

Each holds one connection up to max-hold and reports ``dropped_after_s`` (null
when it survived), how it ended, and for a drop the heartbeat that would have
kept it alive.
"""

from __future__ import annotations

import math

from ..probes import ProbeContext
from ..probes import hold as probe
from ..probes.timeline import HoldTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase

_NOUN = {"ws": "WebSocket", "sse": "SSE stream"}


def suggested_heartbeat_s(dropped_after_s: float) -> int:
    """A heartbeat comfortably inside the measured timeout (80 %, at least 1 s)."""
    return max(1, math.floor(dropped_after_s * 0.8))


def _metrics(tl: HoldTimeline) -> dict[str, object]:
    metrics: dict[str, object] = {
        "max_hold_s": tl.max_hold_s,
        "dropped_after_s": tl.dropped_after_s,
        "close_code": tl.close_code,
        "ended_by": tl.how,
    }
    if tl.heartbeat_s:
        metrics["heartbeat_s"] = tl.heartbeat_s
    if tl.kind == "sse":
        metrics["events_received"] = tl.events
    if tl.kind == "ws" and tl.ended_at is not None:
        metrics["origin_side_closed"] = tl.origin_end is not None
    return metrics


def _how(tl: HoldTimeline) -> str:
    """How the connection ended and, for a WebSocket, what became of the origin's side."""
    if tl.kind != "ws":
        return tl.how or "ended"
    if tl.origin_end is not None:
        return f"{tl.how}; the proxy closed the origin's side too"
    return f"{tl.how}; the origin's side stayed open"


def _not_open(tl: HoldTimeline) -> Outcome | None:
    if tl.opened_at is not None:
        return None
    if tl.kind == "ws":
        what = f"status {tl.status} from proxy" if tl.status else (tl.error or "no answer")
        return Outcome(
            Verdict.FAIL,
            f"no WebSocket: {what} (see ws.upgrade)",
            {"status": tl.status},
            failure=Failure.UPGRADE,
        )
    what = f"status {tl.status}" if tl.status and tl.status != 200 else (tl.error or "no event")
    return Outcome(
        Verdict.FAIL, f"no stream to hold: {what}", {"status": tl.status}, failure=Failure.STATUS
    )


def evaluate_idle(tl: HoldTimeline, ctx: EvalContext) -> Outcome:
    """ws.idle and sse.idle: silent both ways; pass = survived max-hold."""
    early = _not_open(tl)
    if early:
        return early
    metrics = _metrics(tl)
    noun = _NOUN[tl.kind]
    dropped = tl.dropped_after_s
    if dropped is None:
        return Outcome(
            Verdict.PASS,
            f"idle {noun} held for {tl.max_hold_s:g} s (max-hold), silent both ways",
            metrics,
        )
    beat = suggested_heartbeat_s(dropped)
    metrics["suggested_heartbeat_s"] = beat
    remedy = "ping" if tl.kind == "ws" else "send a `:` comment"
    return Outcome(
        Verdict.FAIL,
        f"dropped after {dropped:.1f} s of silence: {_how(tl)}; {remedy} every ≤ {beat} s, "
        "or raise the proxy's idle timeout",
        metrics,
        failure=Failure.IDLE,
    )


def evaluate_kept(tl: HoldTimeline, ctx: EvalContext) -> Outcome:
    """ws.keepalive and sse.heartbeat: with a heartbeat; pass = survived max-hold."""
    early = _not_open(tl)
    if early:
        return early
    metrics = _metrics(tl)
    noun = _NOUN[tl.kind]
    what = "pings both ways" if tl.kind == "ws" else "`:` comments"
    every = tl.heartbeat_s or 0
    dropped = tl.dropped_after_s
    if dropped is None and every >= tl.max_hold_s:
        # No heartbeat was due within the hold: this measured an idle connection.
        return Outcome(
            Verdict.SKIP,
            f"the heartbeat ({every:g} s) is not shorter than max-hold ({tl.max_hold_s:g} s): "
            "no heartbeat was sent, so this says nothing about one; lower --heartbeat or "
            "raise --max-hold",
            metrics,
        )
    if dropped is None:
        return Outcome(
            Verdict.PASS,
            f"{noun} held for {tl.max_hold_s:g} s with {what} every {every:g} s: "
            f"a {every:g} s heartbeat works behind this proxy",
            metrics,
        )
    if dropped < every:
        beat = suggested_heartbeat_s(dropped)
        metrics["suggested_heartbeat_s"] = beat
        return Outcome(
            Verdict.FAIL,
            f"dropped after {dropped:.1f} s, before the first heartbeat ({every:g} s): "
            f"{_how(tl)}; send them every ≤ {beat} s",
            metrics,
            failure=Failure.IDLE,
        )
    return Outcome(
        Verdict.FAIL,
        f"dropped after {dropped:.1f} s despite {what} every {every:g} s: {_how(tl)}; "
        "a limit on total duration, or one that heartbeats do not reset",
        metrics,
        failure=Failure.LIFETIME,
    )


def evaluate_lifetime(tl: HoldTimeline, ctx: EvalContext) -> Outcome:
    """sse.lifetime: one event a second for max-hold; pass = all arrived, stream intact."""
    early = _not_open(tl)
    if early:
        return early
    metrics = _metrics(tl)
    metrics["events_expected"] = tl.expected_events
    dropped = tl.dropped_after_s
    if dropped is None:
        return Outcome(
            Verdict.PASS,
            f"{tl.events} events over {tl.max_hold_s:g} s, one a second: no limit on "
            "stream duration",
            metrics,
        )
    sent = tl.origin_sent
    stalled = "stalled" in (tl.how or "")
    if stalled and sent is not None and tl.events >= sent and sent < tl.expected_events:
        # Every event the origin sent arrived: the tool's own origin fell behind
        # its schedule, which is no finding about the proxy.
        metrics["origin_sent"] = sent
        return Outcome(
            Verdict.ERROR,
            f"the test origin itself fell behind: it had sent {sent} of "
            f"{tl.expected_events} events when the client gave up, and all arrived; "
            "the machine was too busy to judge the stream's lifetime",
            metrics,
        )
    return Outcome(
        Verdict.FAIL,
        f"cut after {dropped:.1f} s while events flowed ({tl.events}/{tl.expected_events} "
        f"events): {tl.how}; a limit on total stream duration",
        metrics,
        failure=Failure.LIFETIME,
    )


async def probe_ws_idle(ctx: ProbeContext, check: str) -> HoldTimeline:
    return await probe.hold_ws(ctx, check, ping_every=None)


async def probe_ws_keepalive(ctx: ProbeContext, check: str) -> HoldTimeline:
    return await probe.hold_ws(ctx, check, ping_every=ctx.settings.heartbeat_s)


async def probe_sse_idle(ctx: ProbeContext, check: str) -> HoldTimeline:
    return await probe.hold_sse(ctx, check)


async def probe_sse_heartbeat(ctx: ProbeContext, check: str) -> HoldTimeline:
    return await probe.hold_sse(ctx, check, comment_every=ctx.settings.heartbeat_s)


async def probe_sse_lifetime(ctx: ProbeContext, check: str) -> HoldTimeline:
    return await probe.hold_sse(ctx, check, lifetime=True)


_IDLE = "an idle timeout on the path closed the connection: raise it, or heartbeat more often"
_LIFETIME = "a limit on total connection or response duration: raise or disable it for streams"

CHECKS = (
    Check("ws.idle", "an idle WebSocket is held up to max-hold; measures when it is dropped",
          probe_ws_idle, evaluate_idle, {Failure.IDLE: _IDLE}, phase=Phase.LONG),
    Check("ws.keepalive", "with pings both ways every N s, a WebSocket survives max-hold",
          probe_ws_keepalive, evaluate_kept, {Failure.IDLE: _IDLE, Failure.LIFETIME: _LIFETIME},
          phase=Phase.LONG),
    Check("sse.idle", "an SSE stream with no events is held up to max-hold; measures the drop",
          probe_sse_idle, evaluate_idle, {Failure.IDLE: _IDLE}, phase=Phase.LONG),
    Check("sse.heartbeat", "with `:` comments every N s, a quiet SSE stream survives max-hold",
          probe_sse_heartbeat, evaluate_kept, {Failure.IDLE: _IDLE, Failure.LIFETIME: _LIFETIME},
          phase=Phase.LONG),
    Check("sse.lifetime", "a stream with an event every second lasts max-hold (no total limit)",
          probe_sse_lifetime, evaluate_lifetime, {Failure.LIFETIME: _LIFETIME}, phase=Phase.LONG),
)  # fmt: skip
