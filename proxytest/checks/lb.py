"""Several backends behind one proxy: lb.sticky.

A session held in one backend's memory (a socket.io long-polling session, a
WebSocket's server-side state, an SSE stream's position) survives a reconnect
only if the proxy sends the client back to that backend. The evaluation reads
one client's requests in order (probes/lb.py) and counts the ones that reached
another backend.
"""

from __future__ import annotations

from ..probes import ProbeContext
from ..probes import lb as probe
from ..probes.timeline import LbHop, StickyTimeline
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase

__all__ = ["CHECKS", "evaluate_sticky"]

ONE_BACKEND = "one backend: nothing to balance"


def _reconnects(hops: list[LbHop]) -> tuple[int, int, set[str], str | None]:
    """(connections judged, connections on another backend than the first, the
    backends seen, why none could be judged)."""
    judged = [h for h in hops if h.backend is not None and h.status in (101, 200)]
    if not judged:
        failed = next((h for h in hops if h.backend is None), None)
        why = None
        if failed is not None:
            why = failed.error or f"status {failed.status}"
        return 0, 0, set(), why or "no connection"
    first = judged[0].backend
    return (
        len(judged),
        sum(h.backend != first for h in judged),
        {h.backend for h in judged if h.backend},
        None,
    )


def evaluate_sticky(tl: StickyTimeline, ctx: EvalContext) -> Outcome:
    """Pass when every poll and every reconnect reached the backend of the first."""
    if tl.error:
        return Outcome(Verdict.ERROR, f"could not probe the backends: {tl.error}")
    if tl.backends <= 1:
        return Outcome(Verdict.SKIP, ONE_BACKEND, {"backends": tl.backends})
    hops = list(tl.hops)
    seen = {h.backend for h in hops if h.backend is not None}
    problems: list[str] = []  # what moved
    unjudged: list[str] = []  # what could not be judged, and why
    judged: list[str] = []  # what stayed

    # (a) the long-polling session: its polls must reach the handshake's backend
    handshake = next((h for h in hops if h.part == "handshake"), None)
    polls = [h for h in hops if h.part == "poll"]
    sticky_polling: bool | None = None
    moved_polls = 0
    if handshake is None or handshake.backend is None or handshake.status != 200 or not polls:
        why = (
            "no handshake"
            if handshake is None
            else (handshake.error or f"handshake status {handshake.status}")
        )
        unjudged.append(f"long polling not judged ({why})")
    else:
        answered = [p for p in polls if p.status is not None]
        moved = [p for p in answered if p.status != 200 or p.backend != handshake.backend]
        moved_polls = len(moved)
        if not answered:
            unjudged.append(f"long polling not judged (polls unanswered: {polls[0].error})")
        else:
            sticky_polling = not moved
            unknown = sum(p.status == 400 for p in moved)
            if moved:
                problems.append(
                    f"polls {len(moved)}/{len(answered)} on another backend"
                    + (f" ({unknown} × 400 unknown session)" if unknown else "")
                )
            else:
                judged.append(f"a long-polling session ({len(answered)} polls)")

    # (b), (c) WebSocket and SSE reconnects: every one on the first's backend
    stuck: dict[str, bool | None] = {}
    for part, name in (("ws", "WebSocket"), ("sse", "SSE")):
        count, moved_n, backends, lost = _reconnects([h for h in hops if h.part == part])
        if lost is not None:
            stuck[part] = None
            unjudged.append(f"{name} reconnects not judged ({lost})")
        elif moved_n:
            stuck[part] = False
            problems.append(
                f"{name} reconnects on {len(backends)} backends ({moved_n}/{count - 1} moved)"
            )
        else:
            stuck[part] = True
            judged.append(f"{count - 1} {name} reconnects")

    metrics: dict[str, object] = {
        "backends": tl.backends,
        "sticky_polling": sticky_polling,
        "sticky_ws": stuck["ws"],
        "sticky_sse": stuck["sse"],
        "moved_polls": moved_polls,
        "backends_seen": len(seen),
    }
    tail = f"; {'; '.join(unjudged)}" if unjudged else ""
    if problems:
        return Outcome(
            Verdict.FAIL,
            f"{'; '.join(problems)}: sessions do not stay on their backend "
            f"(one client reached {len(seen)} of {tl.backends}){tail}",
            metrics,
            failure=Failure.NOT_STICKY,
        )
    if not judged:
        return Outcome(Verdict.ERROR, f"nothing could be judged{tail}", metrics)
    return Outcome(
        Verdict.PASS,
        f"{', '.join(judged)} stayed on one backend of {tl.backends}{tail}",
        metrics,
    )


async def probe_sticky(ctx: ProbeContext, check: str) -> StickyTimeline:
    return await probe.sticky(ctx, check)


CHECKS = (
    Check(
        "lb.sticky",
        "sessions stay on the backend that holds them across reconnects (WebSocket, SSE, "
        "long polling)",
        probe_sticky,
        evaluate_sticky,
        {
            Failure.NOT_STICKY: "make the proxy's load balancing sticky: the same client back "
            "to the same backend (a cookie the proxy sets, or a hash of the client address), "
            "or share the session state between backends (socket.io's Redis adapter does "
            "not share long-polling sessions: they still need stickiness)"
        },
        phase=Phase.QUICK,
    ),
)
