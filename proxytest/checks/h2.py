"""HTTP/2 checks: WebSockets over HTTP/2 (RFC 8441) and streams per connection.

``ws.upgrade@h2``, ``ws.echo@h2`` and ``ws.close@h2`` belong to the ``ws``
family; they judge what a browser meets on an HTTP/2 connection. Browsers speak
HTTP/2 only over TLS (skip on cleartext) and use extended CONNECT only where
the server's SETTINGS advertise it (not advertised: pass, with the fact —
browsers then open HTTP/1.1 WebSockets, which the plain ``ws.*`` checks judge).
Advertised but broken is a failure: browsers do not fall back to HTTP/1.1.

``h2.streams`` counts the long-held SSE streams one connection carries at
once. Verdicts: ``fail`` when a stream within the advertised limit (or the
probe's cap when none is advertised) is stalled or refused — a browser's
EventSource hangs; ``degraded`` when fewer than ``h2_streams_degraded_below``
(100) are advertised — a page with many EventSources and fetches to one host
queues them; ``pass`` otherwise, whatever became of the one stream sent
beyond the limit (browsers never send it; its fate is reported).
"""

from __future__ import annotations

from dataclasses import replace

from ..probes import ProbeContext, streams_h2, ws_h2
from ..probes.timeline import (
    H2CloseTimeline,
    H2EchoTimeline,
    H2Offer,
    H2StreamsTimeline,
    H2UpgradeTimeline,
)
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase, fmt_ms
from .ws import evaluate_close as evaluate_ws_close
from .ws import evaluate_echo as evaluate_ws_echo

_NO_FALLBACK = "browsers do not fall back to HTTP/1.1: their WebSocket fails (close 1006)"
_H2_WEBSOCKET_HINT = (
    "the proxy advertises extended CONNECT (RFC 8441, SETTINGS_ENABLE_CONNECT_PROTOCOL) "
    "but does not carry WebSockets over it, and browsers do not fall back: let the "
    "WebSocket route accept HTTP/2 CONNECT with :protocol websocket, or stop advertising it"
)
_BROWSER_H1 = "over HTTP/1.1 a browser opens at most 6 connections per host"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _gate(offer: H2Offer) -> Outcome | None:
    """The verdict of a ws.*@h2 check that never got to send its WebSocket, if so."""
    metrics = {"extended_connect": offer.advertised}
    if not offer.tls:
        return Outcome(
            Verdict.SKIP,
            "cleartext listener: browsers speak HTTP/2 only over TLS (see ws.* for "
            "HTTP/1.1 WebSockets)",
            metrics,
        )
    if offer.not_offered is not None:
        return Outcome(
            Verdict.SKIP,
            f"no HTTP/2 on this listener ({offer.not_offered}): browsers use HTTP/1.1 "
            "WebSockets here",
            metrics,
        )
    if offer.error is not None or offer.advertised is None:
        return Outcome(Verdict.ERROR, offer.error or "no HTTP/2 connection", metrics)
    if not offer.advertised:
        return Outcome(
            Verdict.PASS,
            "extended CONNECT not advertised: browsers will use HTTP/1.1 WebSockets here",
            metrics,
        )
    return None


def _broken(status: int | None, error: str | None, metrics: dict[str, object]) -> Outcome:
    what = error or f"status {status}"
    return Outcome(
        Verdict.FAIL,
        f"extended CONNECT advertised, but {what} (see ws.upgrade@h2): {_NO_FALLBACK}",
        metrics,
        failure=Failure.H2_WEBSOCKET,
    )


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


# -- ws.upgrade@h2 ---------------------------------------------------------------
async def probe_upgrade(ctx: ProbeContext, check: str) -> H2UpgradeTimeline:
    return await ws_h2.upgrade(ctx, check)


def evaluate_upgrade(tl: H2UpgradeTimeline, ctx: EvalContext) -> Outcome:
    gate = _gate(tl.offer)
    if gate is not None:
        return gate
    took = None if tl.responded_at is None else (tl.responded_at - tl.requested_at) * 1000
    metrics: dict[str, object] = {
        "extended_connect": True,
        "status": tl.status,
        "handshake_ms": None if took is None else round(took, 2),
        "origin_saw_upgrade": tl.origin_saw_upgrade,
    }
    if not _ok(tl.status):
        seen = ""
        if tl.origin_saw_upgrade is False:
            seen = "; the origin got a plain GET (no Upgrade)"
        elif tl.origin_requests == 0:
            seen = "; the request never reached the origin"
        what = tl.error if tl.status is None else f"status {tl.status}, expected 200"
        return Outcome(
            Verdict.FAIL,
            f"extended CONNECT advertised, but {what}{seen}: {_NO_FALLBACK}",
            metrics,
            failure=Failure.H2_WEBSOCKET,
        )
    if not tl.origin_upgraded:
        return Outcome(
            Verdict.FAIL,
            f"status {tl.status} to the extended CONNECT, but the origin never upgraded "
            "(the proxy answered for it)",
            metrics,
            failure=Failure.H2_WEBSOCKET,
        )
    return Outcome(
        Verdict.PASS,
        f"extended CONNECT advertised and answered {tl.status} in {fmt_ms(took)}: browsers "
        "open WebSockets over HTTP/2 here",
        metrics,
    )


# -- ws.echo@h2 ------------------------------------------------------------------
async def probe_echo(ctx: ProbeContext, check: str) -> H2EchoTimeline:
    return await ws_h2.echo(ctx, check)


def evaluate_echo(tl: H2EchoTimeline, ctx: EvalContext) -> Outcome:
    gate = _gate(tl.offer)
    if gate is not None:
        return gate
    metrics: dict[str, object] = {"extended_connect": True}
    if tl.echo is None or not _ok(tl.echo.status):
        status, error = (None, "no answer") if tl.echo is None else (tl.echo.status, tl.echo.error)
        return _broken(status, error, {**metrics, "status": status})
    judged = evaluate_ws_echo(replace(tl.echo, status=101), ctx)
    metrics.update(judged.metrics)
    if judged.verdict == Verdict.PASS:
        return replace(judged, summary=f"over HTTP/2: {judged.summary}", metrics=metrics)
    reset = any("reset" in (e.error or "") for e in tl.echo.exchanges if not e.ok)
    return replace(
        judged,
        summary=f"over HTTP/2: {judged.summary}",
        metrics=metrics,
        failure=Failure.H2_WEBSOCKET if reset else judged.failure,
    )


# -- ws.close@h2 -----------------------------------------------------------------
async def probe_close(ctx: ProbeContext, check: str) -> H2CloseTimeline:
    return await ws_h2.close(ctx, check)


def evaluate_close(tl: H2CloseTimeline, ctx: EvalContext) -> Outcome:
    gate = _gate(tl.offer)
    if gate is not None:
        return gate
    metrics: dict[str, object] = {"extended_connect": True}
    close = tl.close
    if close is None:
        return _broken(None, "no answer", metrics)
    for status, error in ((close.status, close.error), (close.second_status, close.second_error)):
        if not _ok(status):
            return _broken(status, error, {**metrics, "status": status})
    judged = evaluate_ws_close(replace(close, status=101, second_status=101), ctx)
    metrics.update(judged.metrics)
    return replace(judged, summary=f"over HTTP/2: {judged.summary}", metrics=metrics)


# -- h2.streams ------------------------------------------------------------------
async def probe_streams(ctx: ProbeContext, check: str) -> H2StreamsTimeline:
    return await streams_h2.streams(ctx, check)


def evaluate_streams(tl: H2StreamsTimeline, ctx: EvalContext) -> Outcome:
    offer = tl.offer
    if offer.not_offered is not None:
        where = (
            "no HTTP/2 (h2c) on this cleartext listener, and browsers speak HTTP/2 only over TLS"
            if not offer.tls
            else "no HTTP/2 in this listener's ALPN"
        )
        return Outcome(
            Verdict.SKIP,
            f"{where} ({offer.not_offered}): {_BROWSER_H1}, so its 7th EventSource to this "
            "host waits",
        )
    if offer.error is not None:
        return Outcome(Verdict.ERROR, offer.error)
    limit = offer.max_streams
    metrics = {
        "transport": "h2" if offer.tls else "h2c",
        "advertised_max_streams": limit,
        "measured_streams": tl.served,
        "requested_streams": tl.requested,
        "beyond_limit": tl.beyond,
        "beyond_refused": tl.beyond_refused if tl.beyond is not None else None,
    }
    advertised = f"{limit} advertised" if limit is not None else "no limit advertised"
    if tl.served < tl.requested:
        index = tl.failure_index or tl.served + 1
        return Outcome(
            Verdict.FAIL,
            f"stream {index} of {tl.requested} on one connection ({advertised}): "
            f"{tl.failure}; {tl.served} delivered: a browser's {_ordinal(index)} EventSource "
            "to this host hangs",
            metrics,
            failure=Failure.STREAM_STALL,
        )
    if limit is None:
        return Outcome(
            Verdict.PASS,
            f"no stream limit advertised; {tl.served} concurrent streams served on one "
            "connection (the probe's cap)",
            metrics,
        )
    fact = (
        f"{limit} concurrent streams per connection: a browser's {_ordinal(limit + 1)} "
        "EventSource to this host waits"
    )
    beyond = f"; one more was {tl.beyond}" if tl.beyond is not None else ""
    floor = ctx.thresholds.h2_streams_degraded_below
    if limit < floor:
        return Outcome(
            Verdict.DEGRADED,
            f"only {fact} (fewer than {floor}, what a page with many streams to one host "
            f"needs){beyond}",
            metrics,
            failure=Failure.STREAM_LIMIT,
        )
    return Outcome(Verdict.PASS, f"{fact}{beyond}", metrics)


CHECKS = (
    Check(
        "ws.upgrade@h2",
        "a WebSocket over HTTP/2 (RFC 8441 extended CONNECT) opens where it is advertised",
        probe_upgrade,
        evaluate_upgrade,
        {Failure.H2_WEBSOCKET: _H2_WEBSOCKET_HINT},
        transport="h2",
    ),
    Check(
        "ws.echo@h2",
        "text and binary messages over an HTTP/2 WebSocket come back byte-exact",
        probe_echo,
        evaluate_echo,
        {
            Failure.H2_WEBSOCKET: _H2_WEBSOCKET_HINT,
            Failure.SIZE: "a message, frame or HTTP/2 flow-control limit on the path: raise it "
            "above your largest message",
            Failure.ECHO: "the HTTP/2 tunnel corrupts or drops WebSocket frames",
        },
        transport="h2",
    ),
    Check(
        "ws.close@h2",
        "close codes and reasons cross an HTTP/2 WebSocket both ways",
        probe_close,
        evaluate_close,
        {
            Failure.H2_WEBSOCKET: _H2_WEBSOCKET_HINT,
            Failure.CLOSE: "the proxy must forward close frames through the HTTP/2 stream "
            "instead of resetting it",
        },
        transport="h2",
    ),
    Check(
        "h2.streams",
        "how many concurrent SSE streams one HTTP/2 connection carries (browsers' per-host cap)",
        probe_streams,
        evaluate_streams,
        {
            Failure.STREAM_STALL: "the proxy advertises more concurrent streams than it serves: "
            "look for an upstream connection or request limit below its HTTP/2 "
            "max-concurrent-streams setting, or lower that setting to what it serves",
            Failure.STREAM_LIMIT: "raise the proxy's HTTP/2 max concurrent streams to at least "
            "100: a browser sends every stream to one host over one connection",
        },
        # Hundreds of streams through a pure-Python HTTP/2 client keep the tool's own
        # event loop busy: never beside a timing check (measured: up to 0.5 s of loop
        # lag in the quick phase of the default matrix).
        phase=Phase.LOAD,
    ),
)
