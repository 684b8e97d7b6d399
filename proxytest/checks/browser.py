"""Browser checks: what a real Chromium gets through the proxy (EventSource, WebSocket, limits).

The HTTP-level checks (ws.*, sse.*) drive the protocol with proxytest's own
clients; these load a page through the proxy in Chromium and let the browser
decide what it would decide for a user: whether to use HTTP/2, when and how to
reconnect an EventSource (with ``Last-Event-ID``), how many connections to open
to one host. Probes: probes/browser.py; the page: origin/page.py.

Verdicts:

* ``browser.eventsource``: fail when it never opens or events are lost (a
  reconnect that did not resume); degraded when the browser recovered but
  events came twice, or the proxy cut the stream itself (each cut costs the
  user a reconnect and its retry delay; Envoy's 15 s route timeout is one).
* ``browser.websocket``: fail when it does not open, echo or close cleanly
  (over HTTP/2 Chromium does not fall back to HTTP/1.1). ``websocket_over_h2``
  says which one Chromium used.
* ``browser.connection-limit``: pass when Chromium opens what its protocol
  allows (7 of 7 over h2; 6 of 7 over HTTP/1.1, and the summary names the
  limit), fail when fewer open.

Without a Chromium each is a skip saying how to install one, or an error where
``PROXYTEST_REQUIRE_BROWSER=1`` requires it.
"""

from __future__ import annotations

from collections import Counter

from ..probes import browser as probe
from ..probes.timeline import (
    BrowserSocketTimeline,
    BrowserTimeline,
    ConnectionLimitTimeline,
    EventSourceTimeline,
)
from ..results import Failure, Outcome, Verdict
from .base import Check, EvalContext, Phase, fmt_ms

HTTP1_CONNECTIONS = 6  # Chromium's HTTP/1.1 connections per host (and per browser context)
_H2 = ("h2", "h3")


def _unusable(tl: BrowserTimeline) -> Outcome | None:
    """A skip or error when no browser ran; a fail when the page did not run through the proxy."""
    if tl.unavailable is not None:
        if tl.required:
            return Outcome(Verdict.ERROR, f"PROXYTEST_REQUIRE_BROWSER=1 but {tl.unavailable}")
        # Not measured because the machine lacks Chromium: never green as if it had been.
        return Outcome(Verdict.SKIP, tl.unavailable, not_run=True)
    if tl.page_error is not None:
        return Outcome(
            Verdict.FAIL,
            tl.page_error,
            {"page_protocol": tl.page_protocol},
            failure=Failure.STATUS,
        )
    return None


def _transport(tl: BrowserTimeline) -> str:
    """How the page came: 'over h2', or why not h2."""
    if tl.page_protocol in _H2:
        return f"page over {tl.page_protocol}"
    if not tl.tls:
        return "page over HTTP/1.1 (cleartext listener: browsers speak HTTP/2 only over TLS)"
    return f"page over {tl.page_protocol or 'an unknown protocol'} (the proxy offered no h2)"


# -- browser.eventsource -------------------------------------------------------------------
def evaluate_eventsource(tl: EventSourceTimeline, ctx: EvalContext) -> Outcome:
    if (unusable := _unusable(tl)) is not None:
        return unusable
    received = Counter(tl.event_ids)
    expected = {str(i) for i in range(1, tl.expected_last + 1)}
    lost = sorted((expected - set(received)), key=int)
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    reconnects = max(0, len(tl.opens_ms) - 1)
    # The origin cuts once, after event cut_at; again when a reconnect carried no
    # Last-Event-ID because no event of the first connection reached the page (CI37,
    # CI40: nginx/tls under load sent the headers late and then ended the stream without
    # an event; likely it read the events together with the origin's close and reset
    # the h2 stream without sending them).
    origin_cuts = tl.origin_cuts if tl.origin_cuts is not None else 1
    proxy_cuts = max(0, reconnects - origin_cuts)
    resent = tl.origin_last_event_ids[1:]
    resumed = None if not resent else all(i is not None for i in resent)
    onopen_ms = tl.opens_ms[0] - tl.created_ms if tl.opens_ms else None
    metrics = {
        "page_protocol": tl.page_protocol,
        "onopen_ms": None if onopen_ms is None else round(onopen_ms, 1),
        "events": len(tl.event_ids),
        "lost": len(lost),
        "duplicated": duplicated,
        "reconnects": reconnects,
        "proxy_cuts": proxy_cuts,
        "origin_cuts": origin_cuts,
        "last_event_id_resumed": resumed,
        # What the first reconnect resumed after (the origin cut after event cut_at).
        "resumed_after_id": resent[0] if resent else None,
    }
    how = _transport(tl)
    if not tl.opens_ms:
        gave_up = tl.end == "gave-up"
        why = (
            "Chromium gave up (a status other than 200, or a Content-Type other than "
            "text/event-stream)"
            if gave_up
            else f"{len(tl.errors)} error(s) within the probe's wait"
        )
        return Outcome(
            Verdict.FAIL, f"the EventSource never opened: {why}; {how}", metrics,
            failure=Failure.STATUS,
        )  # fmt: skip
    if lost:
        shown = ", ".join(lost[:5]) + (", …" if len(lost) > 5 else "")
        if resumed is False:
            return Outcome(
                Verdict.FAIL,
                f"{len(lost)} of {tl.expected_last} events lost (ids {shown}): a reconnect "
                f"reached the origin without Last-Event-ID, so the stream started over "
                f"({duplicated} duplicates); {how}",
                metrics,
                failure=Failure.HEADER,
            )
        if reconnects == 0:
            return Outcome(
                Verdict.FAIL,
                f"{len(lost)} of {tl.expected_last} events lost (ids {shown}): after the "
                f"origin cut the stream at event {tl.cut_at}, Chromium never reconnected "
                f"(the proxy did not pass the cut on, or held the stream); {how}",
                metrics,
                failure=Failure.TRUNCATED,
            )
        return Outcome(
            Verdict.FAIL,
            f"{len(lost)} of {tl.expected_last} events lost (ids {shown}) across "
            f"{reconnects} reconnect(s); {how}",
            metrics,
            failure=Failure.RESUME,
        )
    if duplicated:
        return Outcome(
            Verdict.DEGRADED,
            f"all {tl.expected_last} events arrived, {duplicated} of them twice: a reconnect "
            f"did not resume after the last event it had; {how}",
            metrics,
            failure=Failure.ORDER,
        )
    opened = f"opened in {fmt_ms(onopen_ms)}"
    if proxy_cuts:
        # When the proxy cut: the first error after the origin's cuts.
        k = origin_cuts
        cut = (
            tl.errors[k][0] - tl.opens_ms[k] if min(len(tl.errors), len(tl.opens_ms)) > k else None
        )
        metrics["proxy_cut_after_s"] = None if cut is None else round(cut / 1000, 1)
        after = "" if cut is None else f" {cut / 1000:.1f} s after it reconnected"
        return Outcome(
            Verdict.DEGRADED,
            f"{opened}; nothing lost, but the proxy cut the stream {proxy_cuts} time(s) "
            f"itself{after} (besides the origin's cut): Chromium reconnected with "
            f"Last-Event-ID each time, and each cut costs a reconnect; {how}",
            metrics,
            failure=Failure.LIFETIME,
        )
    again = (
        f" (the origin cut {origin_cuts} times: the events before its first cut never "
        "arrived, so the reconnect had no Last-Event-ID and was cut again)"
        if origin_cuts > 1
        else ""
    )
    return Outcome(
        Verdict.PASS,
        f"{opened}; {tl.expected_last} events, none lost or duplicated; after the origin's "
        f"cut Chromium reconnected with Last-Event-ID and resumed{again}; {how}",
        metrics,
    )


# -- browser.websocket ---------------------------------------------------------------------
def evaluate_websocket(tl: BrowserSocketTimeline, ctx: EvalContext) -> Outcome:
    if (unusable := _unusable(tl)) is not None:
        return unusable
    over_h2 = tl.over_h2
    open_ms = None if tl.opened_ms is None else round(tl.opened_ms - tl.created_ms, 1)
    metrics = {
        "page_protocol": tl.page_protocol,
        "websocket_over_h2": over_h2,
        "handshake_status": tl.handshake_status,
        "open_ms": open_ms,
        "close_code": tl.close_code,
    }
    how = _transport(tl)
    if over_h2 is None:
        carried = "over a protocol Chromium did not report"
    elif over_h2:
        carried = "over HTTP/2 (RFC 8441 extended CONNECT)"
    else:
        carried = "over HTTP/1.1" + (
            " (the proxy did not advertise extended CONNECT)" if tl.page_protocol in _H2 else ""
        )
    if tl.opened_ms is None:
        seen = (
            f", handshake answered with status {tl.handshake_status}"
            if tl.handshake_status is not None
            else ""
        )
        return Outcome(
            Verdict.FAIL,
            f"the WebSocket did not open (close code {tl.close_code}{seen}; origin "
            f"{'upgraded' if tl.origin_upgraded else 'saw no upgrade'}); tried {carried}; {how}",
            metrics,
            # Over h2 the knob is the proxy's RFC 8441 support (see ws.upgrade@h2).
            failure=Failure.H2_WEBSOCKET if over_h2 else Failure.UPGRADE,
        )
    if not (tl.text_echoed and tl.binary_echoed):
        missing = [
            kind
            for kind, ok in (
                ("text", tl.text_echoed),
                (f"{tl.binary_size} B binary", tl.binary_echoed),
            )
            if not ok
        ]
        return Outcome(
            Verdict.FAIL,
            f"opened {carried}, but the {' and '.join(missing)} echo did not come back intact "
            f"(close code {tl.close_code}); {how}",
            metrics,
            failure=Failure.ECHO,
        )
    if tl.close_code != 1000 or not tl.was_clean:
        return Outcome(
            Verdict.FAIL,
            f"opened {carried} and echoed, but the close ended with code {tl.close_code} "
            f"({'clean' if tl.was_clean else 'no close handshake'}), expected a clean 1000; "
            f"{how}",
            metrics,
            failure=Failure.CLOSE,
        )
    return Outcome(
        Verdict.PASS,
        f"opened {carried} in {fmt_ms(open_ms)}, echoed text and "
        f"{tl.binary_size} B binary, closed cleanly with 1000; {how}",
        metrics,
    )


# -- browser.connection-limit --------------------------------------------------------------
def evaluate_connection_limit(tl: ConnectionLimitTimeline, ctx: EvalContext) -> Outcome:
    if (unusable := _unusable(tl)) is not None:
        return unusable
    h2 = tl.page_protocol in _H2
    allowed = tl.streams if h2 else min(tl.streams, HTTP1_CONNECTIONS)
    metrics = {
        "opened": tl.opened,
        "streams": tl.streams,
        "allowed": allowed,
        "page_protocol": tl.page_protocol,
        "waiting_opened_after_close": tl.reopened,
    }
    how = _transport(tl)
    if tl.opened < allowed:
        return Outcome(
            Verdict.FAIL,
            f"only {tl.opened} of {tl.streams} EventSources to one host opened, where "
            f"Chromium opens {allowed} over {'HTTP/2' if h2 else 'HTTP/1.1'}: a connection "
            f"or stream limit on the path; {how}",
            metrics,
            failure=Failure.LIMIT,
        )
    if tl.opened < tl.streams:
        then = " (it opened once another closed)" if tl.reopened else ""
        return Outcome(
            Verdict.PASS,
            f"{tl.opened} of {tl.streams} EventSources opened: over HTTP/1.1 a "
            f"{tl.opened + 1}th EventSource to this host waits (Chromium allows "
            f"{HTTP1_CONNECTIONS} connections per host){then}; serve HTTP/2 to lift it; {how}",
            metrics,
        )
    return Outcome(
        Verdict.PASS,
        f"all {tl.streams} EventSources to one host opened ({how}"
        + ("" if h2 else f"; Chromium's limit of {HTTP1_CONNECTIONS} did not apply")
        + ")",
        metrics,
    )


_NO_FALLBACK = (
    "Over HTTP/2 (RFC 8441) browsers do not fall back to HTTP/1.1: a proxy that "
    "advertises extended CONNECT must also proxy WebSockets on it (or stop advertising it); "
    "over HTTP/1.1 forward Upgrade and Connection to the origin."
)

CHECKS = (
    Check(
        "browser.eventsource",
        "Chromium's EventSource opens and after a cut reconnects with Last-Event-ID, "
        "losing nothing",
        probe.probe_eventsource,
        evaluate_eventsource,
        {
            Failure.STATUS: "The stream must reach the browser as 200 with Content-Type "
            "text/event-stream and its headers before the first event: a browser gives up on "
            "anything else and never reconnects.",
            Failure.HEADER: "Forward the Last-Event-ID request header to the origin: without it "
            "a reconnecting browser's stream starts over (lost and repeated events).",
            Failure.TRUNCATED: "A stream cut at the origin must reach the browser as a cut "
            "(an ended response), or it never reconnects: do not hold or buffer the response.",
            Failure.RESUME: "Reconnects lost events: check that the proxy forwards Last-Event-ID "
            "and does not buffer or drop the end of a stream.",
            Failure.ORDER: "Events came twice after a reconnect: the Last-Event-ID that reached "
            "the origin was older than the last event the browser had.",
            Failure.LIFETIME: "The proxy cuts long streams itself (a total-duration timeout "
            "such as Envoy's 15 s route timeout): raise or disable it for event streams.",
        },
        phase=Phase.BROWSER,
    ),
    Check(
        "browser.websocket",
        "Chromium's WebSocket opens, echoes and closes cleanly; records whether it used HTTP/2",
        probe.probe_websocket,
        evaluate_websocket,
        {
            Failure.UPGRADE: _NO_FALLBACK,
            Failure.H2_WEBSOCKET: "Chromium opened the WebSocket as an HTTP/2 stream (the proxy "
            "advertises RFC 8441 extended CONNECT) and the proxy did not carry it; Chromium does "
            "not fall back to HTTP/1.1 (see ws.upgrade@h2 for the knob).",
            Failure.ECHO: "Messages were lost or altered between the browser and the origin: "
            "the proxy must tunnel WebSocket frames byte for byte.",
            Failure.CLOSE: "The close handshake did not complete (1006): the proxy tore the "
            "tunnel down instead of forwarding the close frame.",
            Failure.STATUS: "The test page itself did not load through the proxy.",
        },
        phase=Phase.BROWSER,
    ),
    Check(
        "browser.connection-limit",
        "7 EventSources in one Chromium page: as many open as the protocol allows (6 on HTTP/1.1)",
        probe.probe_connection_limit,
        evaluate_connection_limit,
        {
            Failure.LIMIT: "Fewer streams opened than the browser allows: raise the proxy's "
            "connection limit (maxconn, worker_connections) or its HTTP/2 "
            "max concurrent streams.",
            Failure.STATUS: "The test page itself did not load through the proxy.",
        },
        phase=Phase.BROWSER,
    ),
)
