"""Load checks, one target at a time after every other phase.

load.concurrency: how many concurrent WebSockets and SSE streams a setup holds.
load.fanout: one publisher to N subscribers, SSE and WebSocket side by side, N
stepping up: delivery latency against the direct path, losses, and the knee.
"""

from __future__ import annotations

from typing import Any

from ..probes import ProbeContext
from ..probes import fanout as fanout_probe
from ..probes import load as probe
from ..probes.timeline import FanoutSide, FanoutStep, FanoutTimeline, LoadTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase, fmt_ms


def evaluate_load(tl: LoadTimeline, ctx: EvalContext) -> Outcome:
    """N at once: a pass at N, a proxy's limit, or the tool's own limit (never the proxy's)."""
    if tl.error:
        return Outcome(Verdict.ERROR, f"could not set up the load: {tl.error}")
    n = tl.attempted
    metrics: dict[str, object] = {
        "connections_requested": tl.requested,
        "connections_attempted": n,
        "loop_lag_ms": tl.loop_lag_ms,
        "origin_process": tl.origin_process,
        "ws_upgraded": tl.ws_ok,
        "sse_delivered": tl.sse_ok,
        "still_open": tl.still_open,
        "setup_s": tl.setup_s,
        "failures": dict(tl.failures),
        "fd_limit": tl.fd_limit,
        "tool_rss_mb": tl.tool_rss_mb,
    }
    note = f" ({tl.tool_limit})" if tl.tool_limit else ""
    if n == 0:
        return Outcome(Verdict.ERROR, f"the tool could not open any connection{note}", metrics)
    ws_failures = [(what, count) for what, count in tl.failures if what.startswith("ws:")]
    # Every upgrade refused with the same 4xx: WebSocket is not proxied at all
    # (ws.upgrade reports it); judge the SSE streams alone.
    not_proxied = (
        tl.ws_ok == 0
        and len(ws_failures) == 1
        and ws_failures[0][0].startswith("ws: status 4")
        and ws_failures[0][1] == n
    )
    wanted_ws = 0 if not_proxied else n
    lost_later = tl.ws_ok + tl.sse_ok - tl.still_open
    prefix = (
        f"WebSocket not proxied ({ws_failures[0][0][4:]}, see ws.upgrade); "
        if (not_proxied)
        else ""
    )
    if tl.ws_ok < wanted_ws or tl.sse_ok < n or lost_later:
        timeouts = sum(count for what, count in tl.failures if "in time" in what)
        if timeouts and tl.loop_lag_ms >= ctx.thresholds.load_tool_lag_limit_ms:
            # Connections that timed out while the tool's own loop stalled that long
            # may have been the tool's: no finding about the proxy.
            return Outcome(
                Verdict.ERROR,
                f"{timeouts} connections got no answer in time while the tool's own event "
                f"loop was {tl.loop_lag_ms / 1000:.1f} s late: the tool was overloaded, "
                f"not necessarily the proxy{note}",
                metrics,
            )
        shown = [(w, c) for w, c in tl.failures if not (not_proxied and w.startswith("ws:"))]
        kinds = ", ".join(f"{count} {what}" for what, count in shown[:4])
        later = f"; {lost_later} dropped once all were open" if lost_later else ""
        ws_part = "" if not_proxied else f"{tl.ws_ok}/{n} WebSockets upgraded and echoed, "
        return Outcome(
            Verdict.FAIL,
            f"{prefix}{ws_part}{tl.sse_ok}/{n} SSE streams delivered"
            f"{f' ({kinds})' if kinds else ''}{later}: a connection limit on the path{note}",
            metrics,
            failure=Failure.LIMIT,
        )
    what = f"{n} SSE streams" if not_proxied else f"{n} WebSockets and {n} SSE streams"
    if n < tl.requested:
        # All that could be tested held, but not the number asked for: the tool's
        # own limit, which says nothing about the proxy at the requested N.
        return Outcome(
            Verdict.ERROR,
            f"{prefix}{what} held, but {tl.requested} were asked for{note}: raise the tool's "
            "open-files limit (ulimit -n) to test them",
            metrics,
        )
    return Outcome(
        Verdict.PASS,
        f"{prefix}{what} open at once, all working, set up in {tl.setup_s:.1f} s{note}",
        metrics,
    )


async def probe_load(ctx: ProbeContext, check: str) -> LoadTimeline:
    return await probe.load(ctx, check)


_NAMES = {"sse": "SSE", "ws": "WebSocket"}


def _side(step: FanoutStep, kind: str, *, direct: bool = False) -> FanoutSide | None:
    return getattr(step, f"direct_{kind}" if direct else kind)  # type: ignore[no-any-return]


def _slow(side: FanoutSide, knee_ms: float) -> bool:
    return side.p99_ms is None or side.p99_ms > knee_ms


def _direct_ok(step: FanoutStep, knee_ms: float) -> bool:
    """The direct path delivered everything, within the knee: the tool kept up at this N."""
    return all(
        s.delivered and not _slow(s, knee_ms) and step.direct_publish_error is None
        for s in (step.direct_sse, step.direct_ws)
    )


def _shortfall(side: FanoutSide) -> str:
    """What went wrong with one protocol's delivery at one N, in words."""
    parts = []
    if side.connected < side.subscribers:
        why = ", ".join(f"{count} {what}" for what, count in side.refused[:3])
        parts.append(f"{side.connected}/{side.subscribers} subscribed{f' ({why})' if why else ''}")
    if side.dropped:
        parts.append(f"{side.dropped} connections dropped")
    if side.lost:
        parts.append(f"{side.lost} of {side.expected} messages lost")
    return ", ".join(parts) or "nothing delivered"


def _curve(tl: FanoutTimeline) -> list[dict[str, Any]]:
    return [
        {
            "n": s.n,
            "sse_p50_ms": s.sse.p50_ms,
            "sse_p99_ms": s.sse.p99_ms,
            "ws_p50_ms": s.ws.p50_ms if s.ws else None,
            "ws_p99_ms": s.ws.p99_ms if s.ws else None,
            "sse_lost": s.sse.lost,
            "ws_lost": s.ws.lost if s.ws else None,
            "direct_sse_p99_ms": s.direct_sse.p99_ms,
            "direct_ws_p99_ms": s.direct_ws.p99_ms,
            "origin_write_ms": s.sse.origin_write_ms,
            "direct_origin_write_ms": s.direct_sse.origin_write_ms,
            "loop_lag_ms": s.loop_lag_ms,
        }
        for s in tl.steps
    ]


def evaluate_fanout(tl: FanoutTimeline, ctx: EvalContext) -> Outcome:
    """The fan-out curve against the direct one: pass, slower (degraded), or losing (fail)."""
    th = ctx.thresholds
    knee_ms, margin = th.fanout_knee_ms, th.delay_degraded_ms
    if tl.error:
        return Outcome(Verdict.ERROR, f"could not set up the fan-out: {tl.error}")
    kinds = ("sse",) if tl.ws_refused else ("sse", "ws")
    steps = tl.steps
    # The steps judged: those where the direct path kept up (the probe stops at the
    # first where it did not: the tool's own limit, never the proxy's).
    judged = [s for s in steps if _direct_ok(s, knee_ms)]
    knees: dict[str, FanoutStep | None] = {}
    for kind in kinds:
        knees[kind] = next(
            (s for s in judged if (side := _side(s, kind)) is not None
             and (not side.delivered or _slow(side, knee_ms))),
            None,
        )  # fmt: skip
    # Metrics at the largest N where every protocol judged delivered everything.
    best = next(
        (s for s in reversed(judged)
         if all((side := _side(s, k)) is not None and side.delivered for k in kinds)),
        None,
    )  # fmt: skip
    ws_best = best.ws if best is not None and not tl.ws_refused else None
    metrics: dict[str, Any] = {
        "sse_p50_ms": best.sse.p50_ms if best else None,
        "sse_p99_ms": best.sse.p99_ms if best else None,
        "sse_max_ms": best.sse.max_ms if best else None,
        "ws_p50_ms": ws_best.p50_ms if ws_best else None,
        "ws_p99_ms": ws_best.p99_ms if ws_best else None,
        "ws_max_ms": ws_best.max_ms if ws_best else None,
        "sse_lost": sum(s.sse.lost for s in steps),
        "ws_lost": None if tl.ws_refused else sum(s.ws.lost for s in steps if s.ws),
        "sse_knee_n": knees["sse"].n if knees["sse"] else None,
        "ws_knee_n": (k.n if (k := knees.get("ws")) else None),
        "max_n": steps[-1].n if steps else 0,
        "direct_sse_p99_ms": best.direct_sse.p99_ms if best else None,
        "direct_ws_p99_ms": best.direct_ws.p99_ms if best else None,
        "at_n": best.n if best else None,
        "requested_max_n": tl.requested_max_n,
        "interval_ms": tl.interval_ms,
        "messages_per_step": tl.messages_per_step,
        "loop_lag_ms": max((max(s.loop_lag_ms, s.direct_loop_lag_ms) for s in steps), default=0.0),
        "origin_process": tl.origin_process,
        "fd_limit": tl.fd_limit,
        "curve": _curve(tl),
    }
    notes = []
    if tl.ws_refused:
        notes.append(f"WebSocket not proxied ({tl.ws_refused}, see ws.upgrade): SSE alone judged")
    if tl.tool_limit:
        notes.append(tl.tool_limit)
    note = f" ({'; '.join(notes)})" if notes else ""
    if not steps:
        return Outcome(Verdict.ERROR, f"the tool measured no step{note}", metrics)
    if not judged or judged[0] is not steps[0]:
        first = steps[0]
        what = "; ".join(
            f"{_NAMES[k]} "
            + (_shortfall(side) if not side.delivered else f"p99 {fmt_ms(side.p99_ms)}")
            for k in ("sse", "ws")
            if (side := _side(first, k, direct=True)) is not None
        )
        publisher = f"; {first.direct_publish_error}" if first.direct_publish_error else ""
        return Outcome(
            Verdict.ERROR,
            f"the direct baseline could not be measured: at N={first.n} directly, "
            f"{what}{publisher}{note}",
            metrics,
        )
    # Losses: the knee of a protocol is a delivery failure where the direct path delivered.
    lost = {k: s for k, s in knees.items() if s is not None and not _side(s, k).delivered}  # type: ignore[union-attr]
    if lost:
        first_n = min(s.n for s in lost.values())
        where = [
            f"{_NAMES[k]} at N={s.n}: {_shortfall(_side(s, k))}"  # type: ignore[arg-type]
            for k, s in lost.items()
        ]
        step = next(s for s in lost.values() if s.n == first_n)
        if step.loop_lag_ms > th.fanout_drain_s * 1000:
            return Outcome(
                Verdict.ERROR,
                f"{'; '.join(where)}, while the tool's own event loop was "
                f"{fmt_ms(step.loop_lag_ms)} late: the tool was overloaded, not necessarily "
                f"the proxy{note}",
                metrics,
            )
        if step.publish_error:
            why, failure = f"the publisher's request failed ({step.publish_error})", Failure.STATUS
        elif any(
            (side := _side(s, k)) is not None
            and (side.connected < side.subscribers or side.dropped)
            for k, s in lost.items()
        ):
            why, failure = "a connection limit on the path", Failure.LIMIT
        else:
            why, failure = "messages lost on open connections", Failure.FANOUT_LOST
        small = " (already at a small N)" if first_n <= th.fanout_small_n else ""
        return Outcome(
            Verdict.FAIL,
            f"{'; '.join(where)}{small}, where the direct path delivered every message: "
            f"{why}{note}",
            metrics,
            failure=failure,
        )
    # Latency: slower than the direct path by more than the margin at some N judged.
    slower = [
        (s, k, side, direct)
        for s in judged
        for k in kinds
        if (side := _side(s, k)) is not None
        and (direct := _side(s, k, direct=True)) is not None
        and side.p99_ms is not None
        and direct.p99_ms is not None
        and side.p99_ms > direct.p99_ms + margin
        and (knees[k] is None or s.n <= knees[k].n)  # type: ignore[union-attr]
    ]
    knee_text = ", ".join(f"{_NAMES[k]} at N={s.n}" for k, s in knees.items() if s is not None)
    if slower:
        step, kind, side, direct = slower[0]
        excess = (side.p99_ms or 0.0) - (direct.p99_ms or 0.0)
        lag_excess = step.loop_lag_ms - step.direct_loop_lag_ms
        discard = None
        if lag_excess > th.loop_lag_limit_ms and step.loop_lag_ms >= excess / 2:
            discard = (
                f"the tool's own event loop was {fmt_ms(step.loop_lag_ms)} late during the "
                f"burst at N={step.n} (directly {fmt_ms(step.direct_loop_lag_ms)})"
            )
        return Outcome(
            Verdict.DEGRADED,
            f"fan-out slower than directly from N={step.n}: {_NAMES[kind]} p99 "
            f"{fmt_ms(side.p99_ms)} against {fmt_ms(direct.p99_ms)} directly"
            f"{f'; p99 past {fmt_ms(knee_ms)} (the knee): {knee_text}' if knee_text else ''}"
            f"; nothing lost{note}",
            metrics,
            failure=Failure.FANOUT_SLOW,
            discard=discard,
        )
    top = judged[-1]
    parts = [
        f"{_NAMES[k]} p99 {fmt_ms(side.p99_ms)} ({fmt_ms(direct.p99_ms)} directly)"
        for k in kinds
        if (side := _side(top, k)) is not None and (direct := _side(top, k, direct=True))
    ]
    tail = (
        f"; p99 past {fmt_ms(knee_ms)} ({knee_text}), as directly within "
        f"{fmt_ms(margin)}: the machine's limit, not the proxy's"
        if knee_text
        else f"; no knee up to N={top.n}"
    )
    return Outcome(
        Verdict.PASS,
        f"one publisher to {top.n} subscribers per protocol, every message delivered: "
        f"{', '.join(parts)}{tail}{note}",
        metrics,
    )


async def probe_fanout(ctx: ProbeContext, check: str) -> FanoutTimeline:
    return await fanout_probe.fanout(ctx, check)


CHECKS = (
    Check(
        "load.concurrency",
        "N concurrent WebSockets and N SSE streams: how many upgrade and deliver",
        probe_load,
        evaluate_load,
        {
            Failure.LIMIT: "raise the proxy's connection limits (each proxied stream holds two "
            "connections: client side and origin side)"
        },
        phase=Phase.LOAD,
    ),
    Check(
        "load.fanout",
        "one publisher to N SSE and N WebSocket subscribers: p99 vs direct, losses, "
        "N where p99 > 100 ms",
        probe_fanout,
        evaluate_fanout,
        {
            Failure.FANOUT_SLOW: "a broadcast reaching many subscribers late is usually "
            "buffering on the path (response buffering, small writes coalesced) or a proxy "
            "with too few workers for the connections it holds",
            Failure.FANOUT_LOST: "messages lost on connections that stay open: something on "
            "the path drops data under load (a buffer limit, a queue that overflows)",
            Failure.LIMIT: "raise the proxy's connection limits (each subscriber holds two "
            "connections: client side and origin side)",
            Failure.STATUS: "the publisher's POST did not get through: the path must accept "
            "POST requests to the origin as it does GET",
        },
        timing=True,
        phase=Phase.LOAD,
    ),
)
