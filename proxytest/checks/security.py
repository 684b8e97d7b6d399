"""Security checks (issue 15): what a proxy must not let through.

``ws.smuggling``, ``ws.handshake-strict`` and ``ws.upgrade-unrequested`` (family
ws) and ``http.hop-by-hop`` (family http). Probes in probes/security.py, the
origin's routes in origin/security.py; evaluations here are pure.
"""

from __future__ import annotations

from typing import Any

from ..probes.security import (
    CONNECTION_NAMED,
    END_TO_END,
    HOP_BY_HOP,
    Attempt,
    HopTimeline,
    SecurityTimeline,
    probe_handshake_strict,
    probe_hop_by_hop,
    probe_smuggling,
    probe_upgrade_unrequested,
)
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext

# The origin's 101 with a wrong accept: a proxy that trusts any 101 tunnels. The
# client, not the proxy, validates the accept (RFC 6455 4.1), so this variant is
# reported, never judged.
TRUSTED_101 = "bad_accept_101"


def _what(a: Attempt) -> str:
    if a.status is None:
        return f"{a.variant}: no answer" + (f" ({a.error})" if a.error else "")
    return f"{a.variant}: {a.status} from {a.by}"


def _per_variant(tl: SecurityTimeline, second: bool) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for a in tl.attempts:
        metrics[f"{a.variant}_status"] = a.status
        metrics[f"{a.variant}_answered_by"] = a.by
        if second:
            metrics[f"{a.variant}_second_request"] = a.second
        else:
            metrics[f"{a.variant}_reached_origin"] = a.reached_origin
            metrics[f"{a.variant}_upgrade_at_origin"] = a.upgrade_at_origin
    return metrics


def _skipped(tl: SecurityTimeline | HopTimeline) -> Outcome | None:
    return None if tl.skipped is None else Outcome(Verdict.SKIP, tl.skipped)


def _unanswered(tl: SecurityTimeline) -> bool:
    return all(a.status is None for a in tl.attempts)


# -- ws.smuggling ----------------------------------------------------------------
def evaluate_smuggling(tl: SecurityTimeline, ctx: EvalContext) -> Outcome:
    if (skip := _skipped(tl)) is not None:
        return skip
    metrics = _per_variant(tl, second=True)
    if _unanswered(tl):
        return Outcome(Verdict.ERROR, "no answer to any upgrade attempt: cannot judge", metrics)
    tunnels = [a for a in tl.attempts if a.second == "tunnel" and a.variant != TRUSTED_101]
    trusted = [a for a in tl.attempts if a.second == "tunnel" and a.variant == TRUSTED_101]
    # 0ang3el's scenario 2: a backend made to answer 101 (an SSRF) opens the tunnel.
    metrics["trusts_origin_101"] = bool(trusted)
    note = (
        "; a 101 with a wrong Sec-WebSocket-Accept was tunnelled (the proxy trusts the "
        "origin's 101; the client rejects the accept)"
        if trusted
        else ""
    )
    if tunnels:
        which = ", ".join(f"{a.variant} ({a.status})" for a in tunnels)
        return Outcome(
            Verdict.FAIL,
            f"raw tunnel after a refused upgrade: {which}; the second request reached the "
            f"origin unparsed{note}",
            metrics,
            failure=Failure.SMUGGLED,
        )
    judged = [a for a in tl.attempts if a.variant != TRUSTED_101]
    counts: dict[str, int] = {}
    for a in judged:
        counts[a.second] = counts.get(a.second, 0) + 1
    how = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    return Outcome(
        Verdict.PASS,
        f"HTTP framing kept after every refused upgrade (second request: {how}){note}",
        metrics,
    )


# -- ws.handshake-strict ---------------------------------------------------------
def evaluate_handshake_strict(tl: SecurityTimeline, ctx: EvalContext) -> Outcome:
    if (skip := _skipped(tl)) is not None:
        return skip
    metrics = _per_variant(tl, second=False)
    if _unanswered(tl):
        return Outcome(Verdict.ERROR, "no answer to any handshake: cannot judge", metrics)
    switched = [a for a in tl.attempts if a.status == 101]
    if switched:
        which = ", ".join(a.variant for a in switched)
        return Outcome(
            Verdict.FAIL,
            f"101 to a malformed handshake ({which}): the proxy forwarded it and "
            f"tunnelled on the origin's 101; " + "; ".join(_what(a) for a in tl.attempts),
            metrics,
            failure=Failure.LAX_HANDSHAKE,
        )
    return Outcome(
        Verdict.PASS,
        "no tunnel for a malformed handshake: " + "; ".join(_what(a) for a in tl.attempts),
        metrics,
    )


# -- ws.upgrade-unrequested ------------------------------------------------------
def evaluate_upgrade_unrequested(tl: SecurityTimeline, ctx: EvalContext) -> Outcome:
    if (skip := _skipped(tl)) is not None:
        return skip
    a = tl.attempts[0]
    metrics = {
        "status": a.status,
        "answered_by": a.by,
        "raw_bytes_to_client": a.raw_to_client,
        "second_request": a.second,
    }
    if a.status is None:
        return Outcome(Verdict.ERROR, _what(a) + ": cannot judge", metrics)
    if a.second == "tunnel":
        return Outcome(
            Verdict.FAIL,
            f"the proxy switched to a raw tunnel on a 101 the client never asked for: "
            f"status {a.status}, and the client's next request reached the origin unparsed",
            metrics,
            failure=Failure.UNREQUESTED_SWITCH,
        )
    if a.status == 101 or a.raw_to_client:
        after = ", then the origin's raw bytes" if a.raw_to_client else ""
        return Outcome(
            Verdict.DEGRADED,
            f"the client got the origin's 101 to a request that did not ask to upgrade"
            f"{after}; no tunnel (its next request: {a.second})",
            metrics,
            failure=Failure.UNREQUESTED_SWITCH,
        )
    return Outcome(
        Verdict.PASS,
        f"no switch on the origin's unrequested 101: the client got {a.status} from {a.by} "
        f"(second request: {a.second})",
        metrics,
    )


# -- http.hop-by-hop -------------------------------------------------------------
_SHOWN = ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Via")


def evaluate_hop_by_hop(tl: HopTimeline, ctx: EvalContext) -> Outcome:
    if (skip := _skipped(tl)) is not None:
        return skip
    metrics: dict[str, Any] = {"status": tl.status}
    if tl.seen is None:
        what = f"status {tl.status}" if tl.status else (tl.error or "no answer")
        return Outcome(
            Verdict.ERROR, f"the request never reached the origin ({what}): cannot judge", metrics
        )

    def seen(name: str) -> str | None:
        values = [v for k, v in tl.seen or () if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    forwarded = [name for name, _ in HOP_BY_HOP if seen(name) is not None]
    metrics["forwarded_hop_by_hop"] = forwarded
    metrics["end_to_end_kept"] = seen(END_TO_END[0]) == END_TO_END[1]
    for name in _SHOWN:
        metrics[name.lower().replace("-", "_")] = seen(name)
    metrics["origin_http_version"] = tl.origin_http_version
    # The request as the origin saw it (masked: nothing secret is sent).
    metrics["origin_headers"] = {k: v for k, v in tl.seen}
    xff = ", ".join(f"{n}={seen(n)}" for n in _SHOWN[1:] if seen(n) is not None) or "none"
    if forwarded:
        # The well-known names have a config fix in every proxy (remove them by name);
        # a header only the client's Connection named has none: a kind of its own, so
        # `proxytest fix` can tell the part it fixed from the part it cannot.
        named_only = all(name in CONNECTION_NAMED for name in forwarded)
        return Outcome(
            Verdict.FAIL,
            f"hop-by-hop headers reached the origin: {', '.join(forwarded)} (forwarding "
            f"headers: {xff})",
            metrics,
            failure=Failure.CONNECTION_NAMED if named_only else Failure.HOP_BY_HOP,
        )
    kept = "" if metrics["end_to_end_kept"] else f"; the end-to-end {END_TO_END[0]} was lost"
    return Outcome(
        Verdict.PASS,
        f"no hop-by-hop header forwarded; origin saw HTTP/{tl.origin_http_version}, "
        f"forwarding headers: {xff}{kept}",
        metrics,
    )


CHECKS: tuple[Check[Any], ...] = (
    Check(
        "ws.smuggling",
        "a refused upgrade (426/200/403, version mismatch, body) never opens a raw tunnel",
        probe_smuggling,
        evaluate_smuggling,
        {
            Failure.SMUGGLED: "the proxy opened a raw tunnel although the origin refused the "
            "upgrade, so a request written after it reaches the origin unparsed, past the "
            "proxy's routing and access rules (websocket request smuggling): a proxy must "
            "switch to a tunnel only on the origin's 101; upgrade it, or forward Upgrade only "
            "on WebSocket routes",
        },
    ),
    Check(
        "ws.handshake-strict",
        "malformed handshakes (no key, bad version, HTTP/1.0, no Connection: upgrade) never tunnel",
        probe_handshake_strict,
        evaluate_handshake_strict,
        {
            Failure.LAX_HANDSHAKE: "the proxy forwarded a malformed WebSocket handshake as an "
            "upgrade and tunnelled on the origin's 101: forward Upgrade only when the client "
            "sent Connection: upgrade, or make sure every backend validates the handshake "
            "(Sec-WebSocket-Key, version 13, HTTP/1.1)",
        },
    ),
    Check(
        "ws.upgrade-unrequested",
        "a 101 to a request that did not ask to upgrade does not switch protocols",
        probe_upgrade_unrequested,
        evaluate_upgrade_unrequested,
        {
            Failure.UNREQUESTED_SWITCH: "the proxy switched to a tunnel on a 101 answering a "
            "request without Upgrade: a backend can then take the client's connection over; "
            "the proxy must answer 502 to a 101 it did not ask for",
        },
    ),
    Check(
        "http.hop-by-hop",
        "headers named in Connection, Keep-Alive and Proxy-* do not reach the origin",
        probe_hop_by_hop,
        evaluate_hop_by_hop,
        {
            Failure.HOP_BY_HOP: "remove hop-by-hop headers before forwarding (those named in "
            "Connection, Keep-Alive, Proxy-Connection, Proxy-Authorization): they belong to "
            "one connection, and Proxy-Authorization carries credentials meant for the proxy",
            Failure.CONNECTION_NAMED: "the proxy forwards headers the client named in "
            "Connection (they belong to one connection): no config line removes names a "
            "client chooses; use a proxy version that drops them, or an origin that ignores "
            "them",
        },
    ),
)
