"""Frame depth: ws.deflate (permessage-deflate, RFC 7692) and ws.frames (what real
apps send: fragments, control frames between them, 16 MiB, a burst of 10,000
messages, and invalid frames that must never pass as valid). Probes in
probes/frames.py, the origin's routes in origin/frames.py."""

from __future__ import annotations

from ..probes import ProbeContext
from ..probes import frames as probe
from ..probes.frames import (
    BURST_MESSAGES,
    DEFLATE_SIZES,
    LARGE_SIZES,
    DeflateTimeline,
    FramesTimeline,
    InvalidCase,
)
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase, fmt_ms
from .ws import NO_WEBSOCKET_HINTS, no_websocket

__all__ = ["CHECKS", "evaluate_deflate", "evaluate_frames", "same_extensions"]

# An invalid frame answered as RFC 6455 says: a close with 1002 (protocol error) or
# 1007 (bad UTF-8 in a text message), or the connection dropped.
FAIL_CODES = (1002, 1007)


# -- ws.deflate ------------------------------------------------------------------
async def probe_deflate(ctx: ProbeContext, check: str) -> DeflateTimeline:
    return await probe.deflate(ctx, check)


def same_extensions(a: str | None, b: str | None) -> bool:
    """Whether two Sec-WebSocket-Extensions values say the same (case, spaces and the
    order of an extension's parameters aside)."""

    def norm(value: str | None) -> list[tuple[str, ...]]:
        out = []
        for ext in (value or "").lower().replace(" ", "").replace("\t", "").split(","):
            if ext:
                name, *params = ext.split(";")
                out.append((name, *sorted(p for p in params if p)))
        return out

    return norm(a) == norm(b)


def evaluate_deflate(tl: DeflateTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    expected = len(DEFLATE_SIZES) * 4
    good = [e for e in tl.exchanges if e.ok]
    negotiated = tl.client_got is not None and same_extensions(tl.client_got, tl.origin_selected)
    metrics = {
        "deflate": "negotiated" if negotiated else "stripped" if tl.client_got is None else None,
        "client_extensions": tl.client_got,
        "origin_extensions": tl.origin_selected,
        "origin_offered": tl.origin_offered,
        "messages_expected": expected,
        "messages_ok": len(good),
    }
    if not same_extensions(tl.client_got, tl.origin_selected):
        metrics["deflate"] = None
        return Outcome(
            Verdict.FAIL,
            f"Sec-WebSocket-Extensions mangled: the origin answered "
            f"{tl.origin_selected or 'none'!r}, the client got {tl.client_got or 'none'!r}",
            metrics,
            failure=Failure.EXTENSION,
        )
    if tl.client_refused is not None:
        return Outcome(
            Verdict.FAIL,
            f"the client refused the 101: {tl.client_refused}",
            metrics,
            failure=Failure.EXTENSION,
        )
    bad = next((e for e in tl.exchanges if not e.ok), None)
    if bad is not None or len(good) < expected:
        what = (
            f"{bad.kind} message of {bad.size} bytes "
            f"({'compressible' if bad.compressible else 'random'}): {bad.error}"
            if bad is not None
            else "messages missing"
        )
        return Outcome(
            Verdict.FAIL,
            f"{what} ({len(good)}/{expected} intact, deflate {metrics['deflate']})",
            metrics,
            failure=Failure.ECHO,
        )
    how = (
        f"permessage-deflate negotiated end to end ({tl.client_got})"
        if negotiated
        else "the offer was stripped cleanly (neither side compresses)"
        if tl.origin_offered is None
        else "the origin declined the offer, and the client was told so"
    )
    return Outcome(
        Verdict.PASS,
        f"{how}; {expected} text and binary messages up to {max(DEFLATE_SIZES) // 1024} KiB intact",
        metrics,
    )


# -- ws.frames -------------------------------------------------------------------
async def probe_frames(ctx: ProbeContext, check: str) -> FramesTimeline:
    return await probe.frames(ctx, check)


def _said(case: InvalidCase) -> str:
    if case.outcome == "closed":
        return f"closed {case.code}" if case.code is not None else "closed (no code)"
    return case.outcome


def _refused_by(cases: tuple[InvalidCase, ...]) -> str | None:
    """Who refused the invalid frames: "origin" (the proxy passed them through as
    bytes), "proxy" (none reached the origin's reader), "both", None (none refused)."""
    refused = [c for c in cases if c.outcome in ("closed", "dropped")]
    if not refused:
        return None
    by_origin = {c.origin_refused for c in refused}
    return "both" if len(by_origin) == 2 else "origin" if True in by_origin else "proxy"


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size} B"


def evaluate_frames(tl: FramesTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    ok_sizes = [s for s in tl.sizes if s.ok]
    burst = tl.burst
    metrics: dict[str, object] = {
        "fragments_ok": all(f.ok for f in tl.fragments) and bool(tl.fragments),
        "ping_between_fragments": all(f.pong for f in tl.fragments) and bool(tl.fragments),
        "max_message_bytes": max((s.size for s in ok_sizes), default=None),
        "largest_message_ms": ok_sizes[-1].took_ms if ok_sizes else None,
        "burst_messages_ok": burst.intact if burst else None,
        "burst_p50_ms": burst.p50_ms if burst else None,
        "burst_p99_ms": burst.p99_ms if burst else None,
        "burst_ms": burst.took_ms if burst else None,
        **{f"invalid_{case.name}": _said(case) for case in tl.invalid},
        "invalid_refused_by": _refused_by(tl.invalid),
    }
    if not tl.accept_ok:
        return Outcome(
            Verdict.FAIL,
            "101 with a wrong Sec-WebSocket-Accept (see ws.upgrade)",
            metrics,
            failure=Failure.ACCEPT,
        )
    delivered = [c for c in tl.invalid if c.outcome == "delivered"]
    if delivered:
        return Outcome(
            Verdict.FAIL,
            "invalid frames passed on as valid: "
            + "; ".join(f"{c.name} ({c.detail})" for c in delivered),
            metrics,
            failure=Failure.INVALID_FRAME,
        )
    broken = next((f for f in tl.fragments if not f.ok), None)
    if broken is not None:
        return Outcome(
            Verdict.FAIL,
            f"fragmented message ({broken.name}): {broken.error}",
            metrics,
            failure=Failure.FRAGMENTS,
        )
    unanswered = next((f for f in tl.fragments if not f.pong), None)
    if unanswered is not None:
        return Outcome(
            Verdict.FAIL,
            f"the ping sent between fragments ({unanswered.name}) got no pong",
            metrics,
            failure=Failure.PING,
        )
    failed = next((s for s in tl.sizes if not s.ok), None)
    if failed is not None or len(ok_sizes) < len(LARGE_SIZES):
        size = failed.size if failed is not None else LARGE_SIZES[len(ok_sizes)]
        why = failed.error if failed is not None else "not sent"
        corrupt = failed is not None and "differs" in (failed.error or "")
        largest = metrics["max_message_bytes"]
        return Outcome(
            Verdict.FAIL,
            f"a message of {_mib(size)}: {why} (largest through: "
            f"{_mib(largest) if isinstance(largest, int) else 'none of 1 MiB or more'})",
            metrics,
            failure=Failure.ECHO if corrupt else Failure.SIZE,
        )
    if burst is not None:
        if burst.intact < burst.echoed:
            return Outcome(
                Verdict.FAIL,
                f"burst: {burst.echoed - burst.intact} of {burst.echoed} echoes corrupted",
                metrics,
                failure=Failure.ECHO,
            )
        if not burst.in_order:
            return Outcome(
                Verdict.FAIL,
                f"burst: {burst.echoed} echoes out of order or duplicated",
                metrics,
                failure=Failure.ORDER,
            )
        if burst.echoed < burst.sent:
            slow = burst.error == "no answer in time" and burst.echoed > 0
            return Outcome(
                Verdict.DEGRADED if slow else Verdict.FAIL,
                f"burst: {burst.echoed} of {burst.sent} messages echoed in "
                f"{fmt_ms(burst.took_ms)} ({burst.error})",
                metrics,
                failure=Failure.DELAYED if slow else Failure.ECHO,
            )
    unclean = [
        c
        for c in tl.invalid
        if not (c.outcome == "dropped" or (c.outcome == "closed" and c.code in FAIL_CODES))
    ]
    if unclean:
        return Outcome(
            Verdict.DEGRADED,
            "invalid frames not refused (none passed as valid): "
            + "; ".join(f"{c.name}: {_said(c)}" for c in unclean),
            metrics,
            failure=Failure.INVALID_FRAME,
        )
    refused = ", ".join(f"{c.name} {_said(c)}" for c in tl.invalid)
    p50, p99 = (burst.p50_ms, burst.p99_ms) if burst else (None, None)
    return Outcome(
        Verdict.PASS,
        f"fragments and pings between them intact; {_mib(LARGE_SIZES[-1])} in "
        f"{fmt_ms(ok_sizes[-1].took_ms)}; {BURST_MESSAGES} messages in order "
        f"(p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}); "
        f"invalid frames refused ({refused})",
        metrics,
    )


_EXTENSION_HINT = (
    "pass Sec-WebSocket-Extensions through unchanged both ways, or remove it from the "
    "request so that the origin never compresses; never remove or rewrite only the answer"
)

CHECKS = (
    Check(
        "ws.deflate",
        "permessage-deflate is negotiated end to end or stripped cleanly; messages intact",
        probe_deflate,
        evaluate_deflate,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.EXTENSION: _EXTENSION_HINT,
            Failure.ECHO: "compressed frames (RSV1 set) were corrupted or lost: the tunnel "
            "must forward frames byte-exact",
        },
    ),
    Check(
        "ws.frames",
        "fragments, pings between them, 16 MiB, a 10,000-message burst; invalid frames refused",
        probe_frames,
        evaluate_frames,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.ACCEPT: "the proxy must pass the origin's handshake answer unchanged",
            Failure.FRAGMENTS: "continuation frames must be forwarded unchanged; a proxy that "
            "re-frames messages must reassemble them exactly (UTF-8 split across fragments is "
            "valid)",
            Failure.PING: "control frames between a message's fragments must be forwarded",
            Failure.SIZE: "a message or frame size limit on the path: raise it above your "
            "largest message (16 MiB tested)",
            Failure.ECHO: "the tunnel corrupted or lost messages",
            Failure.ORDER: "messages arrived out of order or twice: the tunnel must pass frames "
            "as they come",
            Failure.DELAYED: "10,000 small messages took longer than the wait: something on the "
            "path handles each message slowly or rate-limits them",
            Failure.INVALID_FRAME: "a proxy that parses frames must fail the connection on an "
            "invalid frame (1002; 1007 for bad UTF-8), never pass it on as valid; a byte tunnel "
            "leaves that to the origin",
        },
        phase=Phase.LOAD,
    ),
)
