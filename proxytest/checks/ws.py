"""WebSocket checks: upgrade, echo, push, ping, close, subprotocol."""

from __future__ import annotations

from ..probes import (
    CloseTimeline,
    EchoTimeline,
    HandshakeTimeline,
    PingTimeline,
    ProbeContext,
    StreamTimeline,
    SubprotocolTimeline,
)
from ..probes import ws as probe
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, fmt_ms
from .delivery import judge_stream

_UPGRADE_HINT = (
    "forward the Upgrade and Connection request headers to the origin (they are "
    "hop-by-hop and dropped by default) and speak HTTP/1.1 to it"
)


_SILENT_HINT = (
    "something on the path waits for a request body that never ends (a buffering "
    "filter): keep it off WebSocket routes"
)

# The hints of every WebSocket check whose handshake can fail (no_websocket's kinds).
NO_WEBSOCKET_HINTS = {Failure.UPGRADE: _UPGRADE_HINT, Failure.SILENT: _SILENT_HINT}


def no_websocket(status: int | None, error: str | None) -> Outcome:
    """The verdict of every WebSocket check whose handshake did not succeed."""
    what = f"status {status} from proxy" if status else (error or "no answer")
    silent = status is None and "no answer" in (error or "")
    return Outcome(
        Verdict.FAIL,
        f"no WebSocket: {what} (see ws.upgrade)",
        {"status": status},
        failure=Failure.SILENT if silent else Failure.UPGRADE,
    )


# -- ws.upgrade ------------------------------------------------------------------
async def probe_upgrade(ctx: ProbeContext, check: str) -> HandshakeTimeline:
    return await probe.handshake(ctx, check)


def evaluate_upgrade(tl: HandshakeTimeline, ctx: EvalContext) -> Outcome:
    took = None if tl.responded_at is None else (tl.responded_at - tl.requested_at) * 1000
    metrics = {
        "status": tl.status,
        "handshake_ms": None if took is None else round(took, 2),
        "origin_saw_upgrade": tl.origin_saw_upgrade,
    }
    if tl.status is None:
        silent = "no answer" in (tl.error or "")
        return Outcome(
            Verdict.FAIL,
            f"{tl.error}: the proxy never answered the upgrade" if silent else f"{tl.error}",
            metrics,
            failure=Failure.SILENT if silent else Failure.UPGRADE,
        )
    if tl.status != 101:
        seen = ""
        if tl.origin_saw_upgrade is False:
            seen = "; the origin got a plain GET (Upgrade not forwarded)"
        elif tl.origin_requests == 0:
            seen = "; the request never reached the origin"
        return Outcome(
            Verdict.FAIL,
            f"status {tl.status} from proxy, expected 101{seen}",
            metrics,
            failure=Failure.UPGRADE,
        )
    accept = tl.header("Sec-WebSocket-Accept")
    if accept != tl.expected_accept:
        return Outcome(
            Verdict.FAIL,
            f"101 with Sec-WebSocket-Accept {accept!r}, expected {tl.expected_accept!r}",
            metrics,
            failure=Failure.ACCEPT,
        )
    upgrade = (tl.header("Upgrade") or "").lower()
    if upgrade != "websocket":
        return Outcome(
            Verdict.FAIL,
            f"101 with Upgrade {upgrade!r}, expected 'websocket'",
            metrics,
            failure=Failure.ACCEPT,
        )
    return Outcome(
        Verdict.PASS, f"101 with a valid Sec-WebSocket-Accept in {fmt_ms(took)}", metrics
    )


# -- ws.echo ---------------------------------------------------------------------
async def probe_echo(ctx: ProbeContext, check: str) -> EchoTimeline:
    return await probe.echo(ctx, check)


def evaluate_echo(tl: EchoTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    wanted = 2 * len(ctx.thresholds.echo_sizes)
    good = [e for e in tl.exchanges if e.ok]
    rtts = [e.rtt_ms for e in good if e.rtt_ms is not None]
    metrics = {
        "messages_expected": wanted,
        "messages_ok": len(good),
        "largest_ok_bytes": max((e.size for e in good), default=None),
        "max_rtt_ms": round(max(rtts), 2) if rtts else None,
    }
    bad = next((e for e in tl.exchanges if not e.ok), None)
    if bad is not None:
        return Outcome(
            Verdict.FAIL,
            f"{bad.kind} message of {bad.size} bytes: {bad.error} "
            f"({len(good)}/{wanted} echoed before it)",
            metrics,
            failure=Failure.SIZE if bad.size > 65536 else Failure.ECHO,
        )
    if len(good) < wanted:
        return Outcome(
            Verdict.FAIL,
            f"only {len(good)}/{wanted} messages echoed",
            metrics,
            failure=Failure.ECHO,
        )
    largest = max(ctx.thresholds.echo_sizes)
    return Outcome(
        Verdict.PASS,
        f"{wanted} text and binary messages, 0 B to {largest // 1024} KiB, byte-exact "
        f"(max round trip {fmt_ms(metrics['max_rtt_ms'])})",
        metrics,
    )


# -- ws.push ---------------------------------------------------------------------
async def probe_push(ctx: ProbeContext, check: str) -> StreamTimeline:
    th = ctx.thresholds
    return await probe.push(ctx, check, count=th.stream_count, interval_ms=th.stream_interval_ms)


def evaluate_push(tl: StreamTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    return judge_stream(tl, ctx, noun="messages")


# -- ws.ping ---------------------------------------------------------------------
async def probe_ping(ctx: ProbeContext, check: str) -> PingTimeline:
    return await probe.ping(ctx, check)


def evaluate_ping(tl: PingTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    metrics = {
        "client_pong_ms": tl.client_pong_ms,
        "origin_ping_delivered": tl.origin_ping_seen,
        "client_pong_delivered": tl.origin_pong_seen,
        "client_ping_delivered": tl.origin_got_client_ping,
    }
    broken = []
    if tl.client_pong_ms is None:
        broken.append("our ping got no pong")
    if not tl.origin_ping_seen:
        broken.append("the origin's ping never reached the client")
    elif not tl.origin_pong_seen:
        broken.append("the client's pong never reached the origin")
    if broken:
        ended = f" ({tl.error})" if tl.error else ""
        return Outcome(Verdict.FAIL, "; ".join(broken) + ended, metrics, failure=Failure.PING)
    answered_by = "the origin" if tl.origin_got_client_ping else "the proxy"
    return Outcome(
        Verdict.PASS,
        f"pings both ways: ours answered by {answered_by} in {fmt_ms(tl.client_pong_ms)}, "
        "the origin's answered",
        metrics,
    )


# -- ws.close --------------------------------------------------------------------
async def probe_close(ctx: ProbeContext, check: str) -> CloseTimeline:
    return await probe.close(ctx, check)


def _code(pair: tuple[int | None, str | None]) -> str:
    code, reason = pair
    if code is None:
        return "no close frame (1006)"
    return f"{code} {reason!r}" if reason else str(code)


def evaluate_close(tl: CloseTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    if tl.second_status != 101:
        return no_websocket(tl.second_status, tl.second_error)
    metrics = {
        "origin_close_code": tl.origin_got[0],
        "client_close_code": tl.client_got[0],
    }
    wrong = []
    if tuple(tl.origin_got) != tuple(tl.client_sent):
        wrong.append(f"client sent {_code(tl.client_sent)}, origin got {_code(tl.origin_got)}")
    if tuple(tl.client_got) != tuple(tl.origin_sent):
        wrong.append(f"origin sent {_code(tl.origin_sent)}, client got {_code(tl.client_got)}")
    if wrong:
        return Outcome(Verdict.FAIL, "; ".join(wrong), metrics, failure=Failure.CLOSE)
    return Outcome(
        Verdict.PASS,
        f"close codes and reasons intact both ways ({tl.client_sent[0]} and {tl.origin_sent[0]})",
        metrics,
    )


# -- ws.subprotocol --------------------------------------------------------------
async def probe_subprotocol(ctx: ProbeContext, check: str) -> SubprotocolTimeline:
    return await probe.subprotocol(ctx, check)


def evaluate_subprotocol(tl: SubprotocolTimeline, ctx: EvalContext) -> Outcome:
    if tl.status != 101:
        return no_websocket(tl.status, tl.error)
    metrics = {
        "offered": list(tl.offered),
        "client_got": tl.client_got,
        "origin_selected": tl.origin_selected,
    }
    if tl.origin_offered is not None and tuple(tl.origin_offered) != tuple(tl.offered):
        return Outcome(
            Verdict.FAIL,
            f"client offered {', '.join(tl.offered)}; the origin saw "
            f"{', '.join(tl.origin_offered) or 'none'}",
            metrics,
            failure=Failure.REQUEST,
        )
    if tl.client_got != tl.origin_selected:
        return Outcome(
            Verdict.FAIL,
            f"the origin selected {tl.origin_selected!r}, the client got {tl.client_got!r}",
            metrics,
            failure=Failure.RESPONSE,
        )
    if tl.client_got is None:
        return Outcome(
            Verdict.FAIL, "no subprotocol was negotiated", metrics, failure=Failure.REQUEST
        )
    return Outcome(Verdict.PASS, f"{tl.client_got} negotiated end to end", metrics)


_SUBPROTOCOL_HINT = "forward Sec-WebSocket-Protocol both ways unchanged"

CHECKS = (
    Check(
        "ws.upgrade",
        "the upgrade gets 101 with a valid Sec-WebSocket-Accept",
        probe_upgrade,
        evaluate_upgrade,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.ACCEPT: "the proxy must pass the origin's handshake answer unchanged",
        },
    ),
    Check(
        "ws.echo",
        "text and binary messages from 0 B to 1 MiB come back byte-exact",
        probe_echo,
        evaluate_echo,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.SIZE: "a message or frame size limit on the path: raise it above your largest "
            "message",
            Failure.ECHO: "the tunnel corrupts or drops frames",
        },
    ),
    Check(
        "ws.push",
        "messages the server sends unprompted arrive promptly, one by one",
        probe_push,
        evaluate_push,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.HELD: "the proxy buffers the tunnel: flush each frame",
            Failure.DELAYED: "the proxy batches small writes (Nagle): enable no-delay on the "
            "tunnel",
            Failure.TRUNCATED: "the tunnel was cut: look for a timeout or size limit",
            Failure.ORDER: "messages arrived out of order or twice: the tunnel must pass frames "
            "as they come",
        },
        timing=True,
    ),
    Check(
        "ws.ping",
        "pings from either end are answered with pongs",
        probe_ping,
        evaluate_ping,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.PING: "the proxy must forward control frames",
        },
    ),
    Check(
        "ws.close",
        "close codes and reasons propagate both ways",
        probe_close,
        evaluate_close,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.CLOSE: "the proxy must forward close frames instead of dropping the TCP "
            "connection",
        },
    ),
    Check(
        "ws.subprotocol",
        "Sec-WebSocket-Protocol is negotiated end to end",
        probe_subprotocol,
        evaluate_subprotocol,
        {
            **NO_WEBSOCKET_HINTS,
            Failure.REQUEST: _SUBPROTOCOL_HINT,
            Failure.RESPONSE: _SUBPROTOCOL_HINT,
        },
    ),
)
