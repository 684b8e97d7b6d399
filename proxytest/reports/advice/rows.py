"""The rows, in order: each a claim, answered for SSE and WebSocket from named checks."""

from __future__ import annotations

from .model import RANK, Row, State
from .read import Result, Results, Side, ms, num, said, secs, size, whole

_FANOUT_MS = 100  # load.fanout's knee: where p99 passes 100 ms


# -- the rows ------------------------------------------------------------------------------
def _upgrade(r: Results) -> Row:
    sse, ws = Side(), Side()
    headers = r.ran("sse.headers")
    if headers is None:
        sse.missing = r.why_not("sse.headers")
    elif headers.verdict == "pass":
        sse.add(
            f"no upgrade needed: 200 text/event-stream in {ms(headers.metric('headers_ms'))} "
            "(sse.headers)",
            "good",
        )
    elif headers.metric("status") == 200 and str(
        headers.metric("content_type") or ""
    ).lower().startswith("text/event-stream"):
        # It opens, late: the headers wait for the first event (EventSource.onopen late).
        sse.add(f"opens, but late: {said(headers)}", "caveat")
    else:
        sse.add(f"fails: {said(headers)}", "bad")
    for variant in ("sse.headers@h2", "sse.headers@h2c"):
        over = r.ran(variant)
        if over is not None and over.verdict != "pass":
            sse.add(f"over {variant.partition('@')[2]}: {said(over)}", over.state)

    upgrade = r.ran("ws.upgrade")
    if upgrade is None:
        ws.missing = r.why_not("ws.upgrade")
    elif upgrade.verdict == "pass":
        ws.add(f"101 in {ms(upgrade.metric('handshake_ms'))} (ws.upgrade)", "good")
    else:
        ws.add(f"fails: {said(upgrade)}", upgrade.state)
    h2 = r.ran("ws.upgrade@h2")
    if h2 is not None:
        if h2.verdict == "pass" and h2.metric("extended_connect") is True:
            ws.add("over HTTP/2 too, by extended CONNECT (ws.upgrade@h2)", "good")
        elif h2.verdict == "pass":
            ws.add(
                "HTTP/2: extended CONNECT not advertised, browsers use HTTP/1.1 (ws.upgrade@h2)",
                "good",
            )
        else:
            ws.add(f"over HTTP/2 it fails: {said(h2)}", h2.state)
    elif "ws.upgrade@h2" in r.by_id and r.by_id["ws.upgrade@h2"].verdict == "error":
        ws.facts.append("HTTP/2: " + r.why_not("ws.upgrade@h2"))
    browser = r.ran("browser.websocket")
    if browser is not None:
        way = "HTTP/2" if browser.metric("websocket_over_h2") is True else "HTTP/1.1"
        if browser.verdict == "pass":
            ws.add(f"Chromium's opened over {way} (browser.websocket)", "good")
        elif "bad" in ws.states:
            ws.add("Chromium's fails too (browser.websocket)", browser.state)
        else:
            ws.add(f"Chromium's: {said(browser)}", browser.state)
    checks = (
        "sse.headers",
        "sse.headers@h2",
        "sse.headers@h2c",
        "ws.upgrade",
        "ws.upgrade@h2",
        "browser.websocket",
    )
    return Row(
        "upgrade",
        "Does the upgrade pass?",
        sse.answer(),
        ws.answer(),
        r.present(checks) or ("sse.headers", "ws.upgrade"),
    )


def _stream_clause(result: Result, noun: str) -> tuple[str, State]:
    p95, direct = result.metric("p95_delay_ms"), result.metric("baseline_p95_delay_ms")
    if result.verdict == "pass":
        return (
            f"{noun} one by one, p95 delay {ms(p95)} (direct {ms(direct)}) ({result.check})",
            "good",
        )
    if result.verdict == "degraded":
        coalesced = result.metric("coalesced_fraction")
        share = f", {coalesced:.0%} coalesced" if isinstance(coalesced, int | float) else ""
        return (
            f"delayed or coalesced: p95 {ms(p95)} vs direct {ms(direct)}{share} ({result.check})",
            "caveat",
        )
    text = said(result)
    return (text if text.startswith("no WebSocket") else f"held or cut: {text}"), "bad"


def _streaming(r: Results) -> Row:
    sse, ws = Side(), Side()
    stream = r.ran("sse.stream")
    if stream is None:
        sse.missing = r.why_not("sse.stream")
    else:
        sse.add(*_stream_clause(stream, "events"))
    for variant in ("sse.stream@h2", "sse.stream@h2c"):
        over = r.ran(variant)
        if over is None:
            continue
        way = variant.partition("@")[2]
        if over.verdict == "pass":
            sse.add(f"over {way} one by one (p95 {ms(over.metric('p95_delay_ms'))})", "good")
        else:
            text, state = _stream_clause(over, "events")
            sse.add(f"over {way}: {text}", state)
    gzip = r.ran("sse.compression")
    if gzip is not None:
        if gzip.metric("compressed") is True:
            if gzip.verdict == "pass":
                sse.add(
                    f"{gzip.metric('content_encoding') or 'gzip'}-compressed when asked, "
                    "still flushed per event (sse.compression)",
                    "good",
                )
            else:
                sse.add(f"compressed when the client accepts gzip: {said(gzip)}", gzip.state)
        elif gzip.verdict != "pass" and (stream is None or RANK[gzip.state] > RANK[stream.state]):
            sse.add(f"when the client accepts gzip: {said(gzip)}", gzip.state)
    push = r.ran("ws.push")
    if push is None:
        ws.missing = r.why_not("ws.push")
    else:
        ws.add(*_stream_clause(push, "messages"))
    checks = ("sse.stream", "sse.stream@h2", "sse.stream@h2c", "sse.compression", "ws.push")
    return Row(
        "stream",
        "Are events streamed or held?",
        sse.answer(),
        ws.answer(),
        r.present(checks) or ("sse.stream", "ws.push"),
    )


def _hold(r: Results, idle_id: str, kept_id: str, beat: str) -> Side:
    side = Side()
    idle, kept = r.ran(idle_id), r.ran(kept_id)
    if idle is not None and "see ws.upgrade" in idle.summary:
        side.add(f"no WebSocket to measure, the upgrade fails ({idle_id}, {kept_id})", "bad")
        return side
    if idle is None:
        side.missing = r.why_not(idle_id)
    else:
        dropped, hold = idle.metric("dropped_after_s"), idle.metric("max_hold_s")
        if dropped is None and idle.verdict == "pass":
            side.add(f"held idle for {secs(hold)}, the whole max-hold ({idle_id})", "good")
        elif dropped is None:
            side.add(f"idle: {said(idle)}", idle.state)
        else:
            side.add(f"dropped after {whole(dropped)} s idle ({idle_id})", "bad")
    if kept is not None:
        every, hold = kept.metric("heartbeat_s"), kept.metric("max_hold_s")
        if kept.verdict == "pass":
            if idle is not None and idle.verdict != "pass":
                side.states[-1] = "caveat"  # the idle drop is cured by the heartbeat
            side.add(
                f"with {beat} every {secs(every)} it survives {secs(hold)} ({kept_id})", "good"
            )
        else:
            dropped = kept.metric("dropped_after_s")
            if isinstance(dropped, int | float) and every is not None:
                text = f"with {beat} every {secs(every)} still dropped after {whole(dropped)} s"
                side.add(f"{text} ({kept_id})", kept.state)
            else:
                side.add(f"with {beat}: {said(kept)}", kept.state)
    elif idle is not None and idle.metric("dropped_after_s") is not None:
        # An idle timeout, and a heartbeat inside it is the usual cure: a condition.
        side.states[-1] = "caveat"
        suggested = idle.metric("suggested_heartbeat_s")
        side.facts.append(
            f"{beat} every ≤ {num(suggested)} s should keep it ({r.why_not(kept_id)})"
        )
    return side


def _idle(r: Results) -> Row:
    sse = _hold(r, "sse.idle", "sse.heartbeat", "`:` comments")
    ws = _hold(r, "ws.idle", "ws.keepalive", "pings")
    life = r.ran("sse.lifetime")
    if life is not None:
        dropped, hold = life.metric("dropped_after_s"), life.metric("max_hold_s")
        if life.verdict == "pass":
            sse.add(f"a stream with an event a second lasted {secs(hold)} (sse.lifetime)", "good")
        elif isinstance(dropped, int | float):
            sse.add(
                f"a stream with events is cut after {whole(dropped)} s: a limit on total "
                "duration (sse.lifetime)",
                "bad",
            )
        else:
            sse.add(f"lifetime: {said(life)}", life.state)
    checks = ("sse.idle", "sse.heartbeat", "sse.lifetime", "ws.idle", "ws.keepalive")
    return Row(
        "idle",
        "How long does it survive idle, with which heartbeat?",
        sse.answer(),
        ws.answer(),
        r.present(checks) or ("sse.idle", "ws.idle"),
    )


def _resume(r: Results) -> Row:
    sse = Side()
    last = r.ran("sse.last-event-id")
    if last is None:
        sse.missing = r.why_not("sse.last-event-id")
    elif last.verdict == "pass":
        sse.add(
            "Last-Event-ID reaches the origin and the stream resumes after it (sse.last-event-id)",
            "good",
        )
    else:
        sse.add(f"resume fails: {said(last)}", last.state)
    again = r.ran("sse.reconnect")
    if again is not None:
        if again.verdict == "pass":
            sse.add(
                f"{num(again.metric('events_expected'))} events over "
                f"{num(again.metric('connections'))} connections, none lost (sse.reconnect)",
                "good",
            )
        else:
            sse.add(said(again), again.state)
    browser = r.ran("browser.eventsource")
    if browser is not None:
        lost, cuts = browser.metric("lost"), browser.metric("proxy_cuts")
        if browser.verdict == "pass":
            sse.add(
                "Chromium's EventSource reconnected with Last-Event-ID and lost nothing "
                "(browser.eventsource)",
                "good",
            )
        elif browser.verdict == "degraded" and lost == 0:
            sse.add(
                f"Chromium's EventSource lost nothing, but the proxy cut the stream "
                f"{num(cuts)} time(s) itself (browser.eventsource)",
                "caveat",
            )
        else:
            sse.add(f"Chromium: {said(browser)}", browser.state)
    elif "browser.eventsource" in r.by_id:
        sse.facts.append("browser: " + r.why_not("browser.eventsource"))
    ws = Side()
    ws.facts.append(
        "no built-in resume: the application reconnects and resends what was missed itself"
    )
    checks = ("sse.last-event-id", "sse.reconnect", "browser.eventsource")
    return Row(
        "resume",
        "Does the client resume after a cut on its own?",
        sse.answer(),
        ws.answer(),
        r.present(checks) or ("sse.last-event-id",),
    )


def _connections(r: Results) -> Row:
    sse, ws = Side(), Side()
    limit = r.ran("browser.connection-limit")
    if limit is not None:
        opened, streams = limit.metric("opened"), limit.metric("streams")
        protocol = limit.metric("page_protocol")
        if limit.verdict != "pass":
            sse.add(said(limit), limit.state)
        elif protocol in ("h2", "h3"):
            sse.add(
                f"over HTTP/2 all {num(opened)} of {num(streams)} EventSources to one host "
                "opened (browser.connection-limit)",
                "good",
            )
        else:
            sse.add(
                f"over HTTP/1.1 a browser opened {num(opened)} of {num(streams)} "
                "EventSources to one host: 6 per host (browser.connection-limit)",
                "caveat" if opened != streams else "good",
            )
    streams_h2 = r.ran("h2.streams")
    if streams_h2 is not None:
        most = streams_h2.metric("advertised_max_streams")
        served = streams_h2.metric("measured_streams")
        if streams_h2.verdict == "pass":
            per = f"{num(most)} streams per connection" if most is not None else "no limit"
            sse.add(f"HTTP/2: {per}, {num(served)} served at once (h2.streams)", "good")
        else:
            sse.add(f"HTTP/2: {said(streams_h2)}", streams_h2.state)
    elif limit is None:
        sse.missing = r.why_not("browser.connection-limit")
        if "h2.streams" in r.by_id:
            sse.facts.append("HTTP/2: " + r.why_not("h2.streams"))
    load = r.ran("load.concurrency")
    if load is not None:
        wanted = load.metric("connections_attempted")
        sse.add(
            f"the proxy carried {num(load.metric('sse_delivered'))} of {num(wanted)} "
            "concurrent streams (load.concurrency)",
            "good" if load.metric("sse_delivered") == wanted else "bad",
        )
        upgraded = load.metric("ws_upgraded")
        if "see ws.upgrade" in load.summary and not upgraded:
            ws.add("no WebSocket to measure, the upgrade fails (load.concurrency)", "bad")
        else:
            ws.add(
                f"the proxy carried {num(upgraded)} of {num(wanted)} concurrent WebSockets "
                "(load.concurrency)",
                "good" if upgraded == wanted else "bad",
            )
    else:
        ws.missing = r.why_not("load.concurrency")
    ws.facts.append("a browser's 6 per host do not apply to WebSockets")
    checks = ("browser.connection-limit", "h2.streams", "load.concurrency")
    return Row(
        "connections",
        "Which connection limit does a browser meet?",
        sse.answer(),
        ws.answer(),
        r.present(checks) or ("browser.connection-limit", "h2.streams"),
    )


def _binary(r: Results) -> Row:
    sse, ws = Side(), Side()
    sse.facts.append("server-to-client text only: the client sends with separate HTTP requests")
    for check in ("ws.echo", "ws.echo@h2"):
        echo = r.ran(check)
        over = " over HTTP/2" if check.endswith("@h2") else ""
        if echo is None:
            if not over:
                ws.missing = r.why_not(check)
        elif echo.verdict == "pass" and echo.metric("extended_connect") is False:
            ws.add(
                f"HTTP/2: extended CONNECT not advertised, browsers use HTTP/1.1 ({check})", "good"
            )
        elif echo.verdict == "pass":
            largest = size(echo.metric("largest_ok_bytes"))
            ws.add(f"text and binary both ways{over}, up to {largest} byte-exact ({check})", "good")
        else:
            ws.add(f"{over.strip()}: {said(echo)}" if over else said(echo), echo.state)
    return Row(
        "binary",
        "Binary and client-to-server messages?",
        sse.answer(),
        ws.answer(),
        r.present(("ws.echo", "ws.echo@h2")) or ("ws.echo",),
    )


def _sticky(r: Results) -> Row:
    sse, ws = Side(), Side()
    sticky = r.ran("lb.sticky")
    if sticky is None:
        sse.missing = ws.missing = r.why_not("lb.sticky")
    else:
        n = num(sticky.metric("backends"))
        seen = sticky.metric("backends_seen")
        spread = f", {num(seen)} backends seen" if seen is not None else ""
        for side, key, noun in ((sse, "sticky_sse", "SSE"), (ws, "sticky_ws", "WebSocket")):
            value = sticky.metric(key)
            if value is True:
                side.add(f"{noun} reconnects stay on their backend of {n} (lb.sticky)", "good")
            elif value is False:
                side.add(
                    f"{noun} reconnects land on another of {n} backends{spread} (lb.sticky)", "bad"
                )
        polling = sticky.metric("sticky_polling")
        if polling is True:
            ws.add("a socket.io-style long-polling session keeps its backend (lb.sticky)", "good")
        elif polling is False:
            moved = sticky.metric("moved_polls")
            ws.add(
                f"long-polling session (socket.io's fallback) moved backend "
                f"{num(moved)} time(s) (lb.sticky)",
                "bad",
            )
        for side in (sse, ws):
            if not side.states:
                side.add(said(sticky), sticky.state)
    return Row(
        "sticky",
        "Do reconnects stay on their backend (sticky)?",
        sse.answer(),
        ws.answer(),
        ("lb.sticky",),
    )


def _failover(r: Results) -> Row:
    sse, ws = Side(), Side()
    over = r.ran("lb.failover")
    detected, reconnected = (
        (None, None)
        if over is None
        else (over.metric("detected_after_ms"), over.metric("reconnected_after_ms"))
    )
    if over is None:
        sse.missing = ws.missing = r.why_not("lb.failover")
    elif detected is None or reconnected is None:
        # Someone never learned, or never got a live backend: the summary says who.
        sse.add(said(over, 240), over.state)
        ws.add(said(over, 240), over.state)
    else:
        learned = (
            f"clients learned in {ms(detected)}, reconnected to a live backend in {ms(reconnected)}"
        )
        failed = over.metric("failed_attempts")
        if isinstance(failed, int) and failed:
            learned += f" after {failed} failed attempt(s)"
        lost = over.metric("events_lost")
        state: State = over.state
        if isinstance(lost, int) and lost and state == "good":
            state = "bad"
        sse.add(f"{learned}, {num(lost)} events lost (lb.failover)", state)
        ws.add(f"{learned} (lb.failover)", over.state)
    return Row(
        "failover",
        "A backend dies: do clients move on, losing nothing?",
        sse.answer(),
        ws.answer(),
        ("lb.failover",),
    )


def _fanout(r: Results) -> Row:
    sse, ws = Side(), Side()
    fan = r.ran("load.fanout")
    if fan is None:
        sse.missing = ws.missing = r.why_not("load.fanout")
    else:
        most, at = fan.metric("max_n"), fan.metric("at_n")
        for side, p, noun in ((sse, "sse", "SSE"), (ws, "ws", "WebSocket")):
            p99, direct = fan.metric(f"{p}_p99_ms"), fan.metric(f"direct_{p}_p99_ms")
            knee, lost = fan.metric(f"{p}_knee_n"), fan.metric(f"{p}_lost")
            if p == "ws" and lost is None and "see ws.upgrade" in fan.summary:
                side.add(said(fan), "bad")  # WebSocket not proxied: SSE alone was judged
                continue
            if p99 is None and knee is None and lost is None:
                side.add(said(fan), fan.state)
                continue
            # p99 at the largest N where every protocol delivered everything (at_n).
            where = f" at {num(at)} subscribers" if at is not None else ""
            text = f"p99 {ms(p99)}{where} (direct {ms(direct)})"
            state: State = "good"
            if knee is None:
                text += f", under {_FANOUT_MS} ms up to {num(most)} subscribers"
            elif fan.verdict == "fail" and f"{noun} at N={knee}:" in fan.summary:
                text += f"; delivery fails from {num(knee)} subscribers"
                state = "bad"
            else:
                text += f", past {_FANOUT_MS} ms from {num(knee)} subscribers"
                state = "caveat"
            if isinstance(lost, int) and lost:
                text += f", {lost} messages lost"
                state = "bad"
            side.add(text + " (load.fanout)", state)
    return Row(
        "fanout",
        "Fan-out: one publisher, many subscribers?",
        sse.answer(),
        ws.answer(),
        ("load.fanout",),
    )


ROWS = (_upgrade, _streaming, _idle, _resume, _connections, _binary, _sticky, _failover, _fanout)
NAMES = {
    "upgrade": "the upgrade",
    "stream": "streaming",
    "idle": "idle survival",
    "resume": "resume after a cut",
    "connections": "the connection limit",
    "binary": "binary messages",
    "sticky": "sticky sessions",
    "failover": "failover",
    "fanout": "fan-out",
}
