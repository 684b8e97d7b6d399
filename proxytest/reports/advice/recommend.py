"""The recommendation: sentences built from the rows (and the results they cite) alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .model import RANK, Answer, Choice, Row
from .read import Result, Results, cite, num, secs, whole
from .rows import NAMES

# -- the recommendation --------------------------------------------------------------------
_SSE_CHECKS = (
    "sse.headers",
    "sse.stream",
    "sse.headers@h2",
    "sse.stream@h2",
    "sse.headers@h2c",
    "sse.stream@h2c",
    "sse.compression",
)
_WS_CHECKS = ("ws.upgrade", "ws.upgrade@h2", "browser.websocket", "ws.push")
# Cut even with a heartbeat: it works, with reconnects (cited after the checks above).
_HOLDING = ("sse.lifetime", "sse.heartbeat", "sse.idle", "ws.keepalive", "ws.idle")
_SSE_ALL = (*_SSE_CHECKS, *_HOLDING[:3])
_WS_ALL = (*_WS_CHECKS, *_HOLDING[3:])


def _usable(*answers: Answer | None) -> str:
    """'works', 'degraded', 'broken' or 'unknown': how a protocol opens and streams,
    from what was measured of it (a passing stream shows that it opened; what was
    not measured is named by ``_unweighed``)."""
    states = [a.state for a in answers if a is not None]
    if "bad" in states:
        return "broken"
    measured = [s for s in states if s in RANK]
    if not measured:
        return "unknown"
    return "degraded" if "caveat" in measured else "works"


def _unweighed(rows: Mapping[str, Row], choice: Choice) -> str | None:
    """The sentence naming what a choice could not weigh: half of a protocol measured."""
    up, stream = rows["upgrade"], rows["stream"]
    gaps = []
    for noun, pair in (("SSE", (up.sse, stream.sse)), ("WebSocket", (up.ws, stream.ws))):
        states = [a.state for a in pair if a is not None]
        if not any(s in RANK for s in states):
            continue  # nothing of it measured: the choice sentence says so
        gaps += [
            f"{noun}'s {what} ({a.text.removeprefix('not measured (').removesuffix(')')})"
            for a, what in zip(pair, ("opening", "streaming"), strict=True)
            if a is not None and a.state == "not-measured"
        ]
    if not gaps or choice == "not measured":
        return None
    return "Not weighed, as not measured: " + "; ".join(gaps) + "."


def _fix(r: Results, checks: Sequence[str]) -> str:
    """'; fix: <hint>' of the first of ``checks`` that did not pass and has a hint."""
    hint = _hint(r, checks)
    return f"; fix: {hint}" if hint else ""


def _hint(r: Results, checks: Sequence[str]) -> str:
    for check in checks:
        found = r.ran(check)
        if found is not None and found.verdict != "pass" and found.hint:
            return " ".join(found.hint.split()).rstrip(".")
    return ""


def _worst(r: Results, checks: Sequence[str]) -> Result | None:
    """The first of ``checks`` that failed, else the first that was degraded; the
    checks of how a protocol opens and streams before those of how long it holds."""
    for group in (
        [c for c in checks if c not in _HOLDING],
        [c for c in checks if c in _HOLDING],
    ):
        ran = [found for c in group if (found := r.ran(c)) is not None]
        worst = next((f for f in ran if f.verdict == "fail"), None) or next(
            (f for f in ran if f.verdict == "degraded"), None
        )
        if worst is not None:
            return worst
    return None


def _because(r: Results, checks: Sequence[str]) -> str:
    worst = _worst(r, checks)
    return "" if worst is None else cite(worst)


def _to_use(r: Results, noun: str, checks: Sequence[str]) -> str:
    """'To use SSE: <hint>.' for the worst of ``checks``, where it has a hint; else ''."""
    worst = _worst(r, checks)
    hint = _hint(r, [worst.check]) if worst is not None else ""
    return f"To use {noun}: {hint}." if hint else ""


def _cost(r: Results, noun: str, checks: Sequence[str]) -> list[str]:
    """'SSE works with a cost (…).', then its fix."""
    worst = _worst(r, checks)
    hint = _hint(r, [worst.check]) if worst is not None else ""
    return [f"{noun} works with a cost ({_because(r, checks)}).", f"Fix: {hint}." if hint else ""]


def _phrase(
    r: Results, state: str, up: Answer | None, stream: Answer | None, checks: Sequence[str]
) -> str:
    """How one protocol stands, for the sentence that cannot choose."""
    if state == "broken":
        return f"fails ({_because(r, checks)})"
    if state == "degraded":
        return f"works with a cost ({_because(r, checks)})"
    if state == "works":
        return "works"
    if up is not None and up.state in RANK and stream is not None:
        return f"opens, but its streaming is {stream.text}"
    return next(a.text for a in (up, stream) if a is not None and a.state == "not-measured")


def _choose(r: Results, rows: Mapping[str, Row]) -> tuple[Choice, list[str]]:
    """The choice, in a first sentence short enough for one line, then what it costs."""
    up, stream, binary = rows["upgrade"], rows["stream"], rows["binary"]
    sse, ws = _usable(up.sse, stream.sse), _usable(up.ws, stream.ws)
    # A protocol that opens and streams well but is cut even with a heartbeat works,
    # with reconnects: degraded. Its cost is then told by the sentence on holding.
    core = {"sse": sse, "ws": ws}
    if rows["idle"].sse.state == "bad" and sse == "works":
        sse = "degraded"
    if rows["idle"].ws is not None and rows["idle"].ws.state == "bad" and ws == "works":
        ws = "degraded"
    if sse == "works" and ws == "works":
        resumes = rows["resume"].sse.state == "good"
        why = (
            "no upgrade, and EventSource resumes by itself with Last-Event-ID"
            if resumes
            else ("no upgrade")
        )
        echo = binary.ws.state if binary.ws else "not-measured"
        checked = {"good": "", "bad": f" (but {_because(r, ['ws.echo', 'ws.echo@h2'])})"}.get(
            echo, " (binary not measured)"
        )
        return "either", [
            f"Either works here: SSE is simpler where traffic is server-to-client text ({why}); "
            f"WebSocket where the client sends too, or sends binary{checked}."
        ]
    sse_cost = _cost(r, "SSE", _SSE_CHECKS) if core["sse"] == "degraded" else []
    ws_cost = _cost(r, "WebSocket", _WS_CHECKS) if core["ws"] == "degraded" else []
    usable = ("works", "degraded")
    if sse in usable and ws == "broken":
        return "SSE", [
            f"SSE: WebSocket fails here ({_because(r, _WS_CHECKS)}).",
            _to_use(r, "WebSocket", _WS_CHECKS),
            *sse_cost,
        ]
    if ws in usable and sse == "broken":
        return "WebSocket", [
            f"WebSocket: SSE fails here ({_because(r, _SSE_CHECKS)}).",
            _to_use(r, "SSE", _SSE_CHECKS),
            *ws_cost,
        ]
    if sse == "works" and ws == "degraded":
        return "SSE", [
            f"SSE: WebSocket works, but worse than a direct connection ({_because(r, _WS_ALL)}).",
            _to_use(r, "WebSocket", _WS_ALL),
        ]
    if ws == "works" and sse == "degraded":
        return "WebSocket", [
            f"WebSocket: SSE works, but worse than a direct connection ({_because(r, _SSE_ALL)}).",
            _to_use(r, "SSE", _SSE_ALL),
        ]
    if sse == "degraded" and ws == "degraded":
        return "either", ["Either, each with a cost.", *sse_cost, *ws_cost]
    fixes = [
        _to_use(r, "SSE", _SSE_CHECKS) if sse == "broken" else "",
        _to_use(r, "WebSocket", _WS_CHECKS) if ws == "broken" else "",
    ]
    if sse == "broken" and ws == "broken":
        return "neither", [
            f"Neither as configured: SSE fails ({_because(r, _SSE_CHECKS)}), and "
            f"WebSocket fails ({_because(r, _WS_CHECKS)}).",
            *fixes,
        ]
    sse_says = _phrase(r, sse, up.sse, stream.sse, _SSE_CHECKS)
    ws_says = _phrase(r, ws, up.ws, stream.ws, _WS_CHECKS)
    if sse in usable:
        return "SSE", [f"SSE {sse_says}; WebSocket {ws_says}.", *fixes]
    if ws in usable:
        return "WebSocket", [f"WebSocket {ws_says}; SSE {sse_says}.", *fixes]
    return "not measured", [
        f"Not measured enough to choose: SSE {sse_says}; WebSocket {ws_says}.",
        *fixes,
    ]


def _hold_sentence(r: Results, noun: str, ids: tuple[str, str], beat: str) -> str | None:
    """What a chosen protocol needs to stay open: a heartbeat, or reconnects."""
    idle, kept = r.ran(ids[0]), r.ran(ids[1])
    life = r.ran("sse.lifetime") if noun == "SSE" else None
    cut = life.metric("dropped_after_s") if life is not None and life.verdict != "pass" else None
    if isinstance(cut, int | float):
        resume = r.ran("browser.eventsource") or r.ran("sse.last-event-id")
        recovers = ""
        if resume is not None and resume.verdict != "fail":
            recovers = f", and resume after Last-Event-ID ({resume.check})"
        return (
            f"SSE streams are cut after {whole(cut)} s even while events flow (sse.lifetime): "
            f"clients must reconnect{recovers}{_fix(r, ['sse.lifetime'])}."
        )
    if idle is None or idle.metric("dropped_after_s") is None:
        return None
    dropped = idle.metric("dropped_after_s")
    if kept is not None and kept.verdict == "pass":
        return (
            f"{noun}: idle connections are dropped after {whole(dropped)} s ({ids[0]}): send "
            f"{beat} every {secs(kept.metric('heartbeat_s'))} (with them it survived "
            f"{secs(kept.metric('max_hold_s'))}, {ids[1]})."
        )
    if kept is not None:
        return (
            f"{noun}: dropped after {whole(dropped)} s idle ({ids[0]}), and {beat} do not keep "
            f"it ({cite(kept)}){_fix(r, [ids[1]])}."
        )
    return (
        f"{noun}: idle connections are dropped after {whole(dropped)} s ({ids[0]}): send {beat} "
        f"every ≤ {num(idle.metric('suggested_heartbeat_s'))} s ({r.why_not(ids[1])})."
    )


def _brief(r: Results, rows: Mapping[str, Row], choice: Choice) -> str:
    """The choice in one short line: what stands against each protocol, by check ID."""
    up, stream, idle = rows["upgrade"], rows["stream"], rows["idle"]
    sides = [
        ("SSE", (up.sse, stream.sse), idle.sse, _SSE_ALL),
        ("WebSocket", (up.ws, stream.ws), idle.ws, _WS_ALL),
    ]
    if choice == "SSE":
        sides.reverse()  # first why not the other
    parts = []
    for noun, answers, held, every in sides:
        state = _usable(*answers)
        worst = _worst(r, every)
        if state == "broken" and worst is not None:
            parts.append(f"{noun} fails: {worst.check}")
        elif state == "unknown":
            opens = answers[0] is not None and answers[0].state in RANK
            parts.append(
                f"{noun} opens, streaming not measured" if opens else f"{noun} not measured"
            )
        elif worst is not None and worst.check not in ("sse.idle", "ws.idle"):
            parts.append(f"{noun} works with a cost: {worst.check} {worst.verdict}")
        chosen = choice in ("either", noun)
        kept = r.ran("sse.heartbeat" if noun == "SSE" else "ws.keepalive")
        if chosen and held is not None and held.state == "caveat" and kept is not None:
            beat = "`:` comments" if noun == "SSE" else "pings"
            parts.append(f"{noun} needs {beat} every {secs(kept.metric('heartbeat_s'))}")
    for key, words, check in (
        ("sticky", "not sticky across backends", "lb.sticky"),
        ("failover", "failover", "lb.failover"),
        ("fanout", "fan-out", "load.fanout"),
    ):
        found = r.ran(check)
        if rows[key].status in ("bad", "mixed") and found is not None:
            parts.append(f"{words}: {check} {found.verdict}")
    head = "neither as configured" if choice == "neither" else choice
    if choice == "either" and not parts:
        return "either: SSE for server-to-client text, WebSocket for client-to-server or binary"
    return f"{head} ({'; '.join(parts)})" if parts else head


def recommend(r: Results, rows: Mapping[str, Row]) -> tuple[Choice, str, list[str]]:
    """The choice, its one-line form, and the sentences of the recommendation."""
    choice, chosen = _choose(r, rows)
    sentences: list[str | None] = [*chosen, _unweighed(rows, choice)]
    uses_sse, uses_ws = choice in ("SSE", "either"), choice in ("WebSocket", "either")
    if uses_sse:
        sentences.append(_hold_sentence(r, "SSE", ("sse.idle", "sse.heartbeat"), "`:` comments"))
    if uses_ws:
        sentences.append(_hold_sentence(r, "WebSocket", ("ws.idle", "ws.keepalive"), "pings"))
    if uses_sse and rows["resume"].sse.state == "bad":
        sentences.append(f"EventSource does not resume cleanly here ({_because(r, _RESUME)}).")
    limit = r.ran("browser.connection-limit")
    if (
        uses_sse
        and limit is not None
        and limit.metric("page_protocol") not in ("h2", "h3")
        and isinstance(limit.metric("opened"), int)
        and isinstance(limit.metric("streams"), int)
        and limit.metric("opened") < limit.metric("streams")
    ):
        sentences.append(
            f"Over HTTP/1.1 a browser opened only {limit.metric('opened')} "
            "EventSources to this host (browser.connection-limit): serve HTTP/2 "
            "where a page opens more."
        )
    sentences.append(_load_sentence(r, uses_sse, uses_ws))
    sentences += _backend_advice(r, rows)
    undecided = choice in ("neither", "not measured")  # then what fan-out measured, for both
    sentences.append(
        _fanout_sentence(r, rows["fanout"], uses_sse or undecided, uses_ws or undecided)
    )
    missing = [NAMES[row.key] for row in rows.values() if row.status == "not-measured"]
    if missing:
        sentences.append("Not measured: " + ", ".join(missing) + ".")
    return choice, _brief(r, rows, choice), [s for s in sentences if s]


def _fanout_sentence(r: Results, fan: Row, uses_sse: bool, uses_ws: bool) -> str | None:
    """Fan-out for the chosen protocol(s) that it measured (the live-comments case)."""
    parts = [
        f"{noun} {side.text.removesuffix(' (load.fanout)')}"
        for noun, side, used in (("SSE", fan.sse, uses_sse), ("WebSocket", fan.ws, uses_ws))
        if used and side is not None and side.state in RANK and not side.text.startswith("no ")
    ]
    if not parts:
        return None
    fix = _fix(r, ["load.fanout"]) if fan.status in ("bad", "mixed") else ""
    return f"Fan-out to many subscribers (load.fanout): {'; '.join(parts)}{fix}."


def _load_sentence(r: Results, uses_sse: bool, uses_ws: bool) -> str | None:
    load = r.ran("load.concurrency")
    if load is None or load.verdict == "pass":
        return None
    wanted = load.metric("connections_attempted")
    short = []
    if uses_sse and load.metric("sse_delivered") != wanted:
        short.append(f"{num(load.metric('sse_delivered'))} of {num(wanted)} concurrent SSE streams")
    if uses_ws and load.metric("ws_upgraded") != wanted:
        short.append(f"{num(load.metric('ws_upgraded'))} of {num(wanted)} concurrent WebSockets")
    if not short:
        return None
    return (
        f"Under load the proxy carried only {' and '.join(short)} (load.concurrency)"
        f"{_fix(r, ['load.concurrency'])}."
    )


_RESUME = ("sse.last-event-id", "sse.reconnect", "browser.eventsource")


def _backend_advice(r: Results, rows: Mapping[str, Row]) -> list[str]:
    out = []
    sticky = r.ran("lb.sticky")
    if sticky is not None and rows["sticky"].status in ("bad", "mixed"):
        n = sticky.metric("backends")
        several = (
            f"with {num(n)} backends" if isinstance(n, int | float) else "with several backends"
        )
        out.append(
            f"Not sticky {several} (lb.sticky): reconnects and long polling (socket.io's "
            "fallback) need sticky sessions, or session state shared between backends"
            f"{_fix(r, ['lb.sticky'])}."
        )
    elif sticky is not None and rows["sticky"].status == "good":
        out.append(
            f"Sticky sessions hold across {num(sticky.metric('backends'))} backends (lb.sticky)."
        )
    failover = r.ran("lb.failover")
    if failover is not None and rows["failover"].status in ("bad", "mixed"):
        out.append(f"When a backend dies: {rows['failover'].sse.text}{_fix(r, ['lb.failover'])}.")
    return out
