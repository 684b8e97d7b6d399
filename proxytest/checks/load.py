"""load.concurrency: how many concurrent WebSockets and SSE streams a setup holds."""

from __future__ import annotations

from ..probes import ProbeContext
from ..probes import load as probe
from ..probes.timeline import LoadTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase


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
)
