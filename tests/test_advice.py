"""The "SSE or WebSocket behind this setup?" section: rows and recommendation from a
target's JSON, built by hand here (no proxies needed). A result changed by hand must
change its row and the recommendation; nothing may depend on the proxy's name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proxytest.reports.advice import Advice, advise

# A target where everything passes, with the metrics the checks really report
# (their names are the checks' own: checks/sse.py, delivery.py, ws.py, long.py,
# browser.py, h2.py, load.py).
GOOD: dict[str, tuple[str, dict[str, Any]]] = {
    "ws.upgrade": ("pass", {"status": 101, "handshake_ms": 1.2}),
    "ws.push": ("pass", {"p95_delay_ms": 0.6, "baseline_p95_delay_ms": 0.3}),
    "ws.echo": ("pass", {"messages_ok": 14, "largest_ok_bytes": 1048576}),
    "ws.idle": ("pass", {"max_hold_s": 75.0, "dropped_after_s": None}),
    "ws.keepalive": ("pass", {"max_hold_s": 75.0, "dropped_after_s": None, "heartbeat_s": 10}),
    "sse.headers": (
        "pass",
        {"status": 200, "content_type": "text/event-stream", "headers_ms": 1.1},
    ),
    "sse.stream": ("pass", {"p95_delay_ms": 0.5, "baseline_p95_delay_ms": 0.4}),
    "sse.last-event-id": ("pass", {"resumed_at": 4}),
    "sse.reconnect": ("pass", {"connections": 3, "events_expected": 12, "lost": 0}),
    "sse.compression": ("pass", {"compressed": False, "p95_delay_ms": 0.5}),
    "sse.idle": ("pass", {"max_hold_s": 75.0, "dropped_after_s": None}),
    "sse.heartbeat": ("pass", {"max_hold_s": 75.0, "dropped_after_s": None, "heartbeat_s": 10}),
    "sse.lifetime": ("pass", {"max_hold_s": 75.0, "dropped_after_s": None}),
    "browser.eventsource": (
        "pass",
        {"lost": 0, "reconnects": 1, "proxy_cuts": 0, "last_event_id_resumed": True},
    ),
    "browser.websocket": ("pass", {"websocket_over_h2": False, "page_protocol": "http/1.1"}),
    "browser.connection-limit": (
        "pass",
        {"opened": 6, "streams": 7, "allowed": 6, "page_protocol": "http/1.1"},
    ),
    "load.concurrency": (
        "pass",
        {"connections_attempted": 1000, "ws_upgraded": 1000, "sse_delivered": 1000},
    ),
}

UPGRADE_HINT = "forward `Upgrade` and `Connection` to the origin"
BUFFER_HINT = "turn `proxy_buffering off` for the stream"
STICKY_HINT = "hash on a cookie: `hash $cookie_sid consistent`"


def target(
    changes: dict[str, tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str, str | None]]
    | None = None,
    *,
    drop: tuple[str, ...] = (),
    proxy: str = "someproxy",
) -> dict[str, Any]:
    """The JSON form of a target: GOOD with ``changes`` (verdict, metrics[, summary, hint])."""
    results = {**GOOD, **(changes or {})}
    items = []
    for check, spec in results.items():
        if check in drop:
            continue
        verdict, metrics = spec[0], spec[1]
        summary = spec[2] if len(spec) > 2 else f"{check} {verdict}"
        hint = spec[3] if len(spec) > 3 else None
        items.append(
            {
                "check": check,
                "verdict": verdict,
                "expected": None,
                "summary": summary,
                "hint": hint,
                "metrics": copy.deepcopy(metrics),
                "duration_s": 0.1,
            }
        )
    return {
        "id": f"{proxy}/mine",
        "proxy": proxy,
        "setup": "mine",
        "runtime": "local",
        "proxy_version": "1.0",
        "status": "ok",
        "reason": None,
        "results": items,
        "config_files": [],
    }


def text(advice: Advice) -> str:
    return " ".join(advice.recommendation)


def test_everything_passing_gives_either_with_the_reasons_and_names_what_was_not_measured() -> None:
    advice = advise(target())
    assert advice.choice == "either"
    assert [r.key for r in advice.rows] == [
        "upgrade",
        "stream",
        "idle",
        "resume",
        "connections",
        "binary",
        "sticky",
        "failover",
        "fanout",
    ]
    for key in ("upgrade", "stream", "idle", "resume", "binary"):
        assert advice.row(key).status == "good", advice.row(key)
    assert "SSE is simpler where traffic is server-to-client text" in advice.recommendation[0]
    assert "EventSource resumes by itself with Last-Event-ID" in advice.recommendation[0]
    # The checks that did not run (lb.*, load.fanout do not exist yet) are said to be so.
    for key, check in (
        ("sticky", "lb.sticky"),
        ("failover", "lb.failover"),
        ("fanout", "load.fanout"),
    ):
        row = advice.row(key)
        assert row.status == "not-measured"
        assert row.sse.text == f"not measured ({check} not in this run)"
        assert row.checks == (check,)
    assert advice.recommendation[-1] == "Not measured: sticky sessions, failover, fan-out."


def test_each_row_cites_the_checks_it_comes_from() -> None:
    advice = advise(target())
    assert advice.row("upgrade").checks == ("sse.headers", "ws.upgrade", "browser.websocket")
    assert "(ws.upgrade)" in advice.row("upgrade").ws.text
    assert "(sse.headers)" in advice.row("upgrade").sse.text
    assert "p95 delay 0.5 ms (direct 0.4 ms) (sse.stream)" in advice.row("stream").sse.text
    assert "1 MiB byte-exact (ws.echo)" in advice.row("binary").ws.text
    assert advice.row("binary").sse.state == "fact"


def test_a_failed_upgrade_changes_its_row_and_the_recommendation() -> None:
    """Acceptance (issue 13): change a result, see the row and the recommendation change."""
    before = advise(target())
    after = advise(
        target(
            {
                "ws.upgrade": (
                    "fail",
                    {"status": 400},
                    "status 400 from proxy, expected 101",
                    UPGRADE_HINT,
                )
            }
        )
    )
    row_before, row_after = before.row("upgrade"), after.row("upgrade")
    assert (row_before.ws.state, row_after.ws.state) == ("good", "bad")
    assert (row_before.status, row_after.status) == ("good", "mixed")
    assert "fails: status 400 from proxy, expected 101 (ws.upgrade)" in row_after.ws.text
    assert (before.choice, after.choice) == ("either", "SSE")
    assert after.recommendation[0] == (
        "SSE: WebSocket fails here (ws.upgrade: status 400 from proxy, expected 101)."
    )
    assert f"To use WebSocket: {UPGRADE_HINT}." in after.recommendation
    assert after.brief == "SSE (WebSocket fails: ws.upgrade)"


def test_held_sse_changes_its_row_and_the_recommendation() -> None:
    held = (
        "fail",
        {"first_delay_ms": 1900.0, "p95_delay_ms": 1900.0},
        "20/20 events, first after 1.9 s: held until the response ended",
        BUFFER_HINT,
    )
    after = advise(target({"sse.stream": held}))
    row = after.row("stream")
    assert row.sse.state == "bad" and row.status == "mixed"
    assert "held or cut: 20/20 events, first after 1.9 s" in row.sse.text
    assert after.choice == "WebSocket"
    assert after.recommendation[0].startswith("WebSocket: SSE fails here (sse.stream: 20/20 events")
    assert f"To use SSE: {BUFFER_HINT}." in after.recommendation


def test_delayed_sse_is_a_cost_not_a_failure() -> None:
    slow = (
        "degraded",
        {"p95_delay_ms": 207.0, "baseline_p95_delay_ms": 0.4, "coalesced_fraction": 0.68},
        "coalesced",
        "option http-no-delay",
    )
    advice = advise(target({"sse.stream": slow}))
    assert advice.row("stream").sse.state == "caveat"
    assert "p95 207 ms vs direct 0.4 ms, 68% coalesced" in advice.row("stream").sse.text
    assert advice.choice == "WebSocket"
    assert advice.recommendation[0].startswith("WebSocket: SSE works, but worse than a direct")
    assert advice.brief == "WebSocket (SSE works with a cost: sse.stream degraded)"


def test_both_broken_is_neither_and_names_both_fixes() -> None:
    advice = advise(
        target(
            {
                "ws.upgrade": ("fail", {"status": 403}, "status 403", UPGRADE_HINT),
                "sse.stream": ("fail", {}, "held", BUFFER_HINT),
            }
        )
    )
    assert advice.choice == "neither"
    assert f"To use SSE: {BUFFER_HINT}." in advice.recommendation
    assert f"To use WebSocket: {UPGRADE_HINT}." in advice.recommendation


def test_an_idle_drop_names_the_heartbeat_that_keeps_it() -> None:
    dropped = ("fail", {"max_hold_s": 75.0, "dropped_after_s": 60.0, "suggested_heartbeat_s": 48})
    advice = advise(target({"sse.idle": dropped}))
    row = advice.row("idle")
    assert row.sse.state == "caveat"  # dropped idle, kept by the heartbeat
    assert row.sse.text.startswith(
        "dropped after 60 s idle (sse.idle); with `:` comments every 10 s it survives 75 s "
        "(sse.heartbeat)"
    )
    assert (
        "SSE: idle connections are dropped after 60 s (sse.idle): send `:` comments every 10 s "
        "(with them it survived 75 s, sse.heartbeat)." in advice.recommendation
    )
    assert advice.choice == "either"  # a heartbeat is a condition, not a reason to switch
    # Without a heartbeat measurement, the suggestion comes from the drop itself.
    unmeasured = advise(target({"sse.idle": dropped}, drop=("sse.heartbeat",)))
    assert "send `:` comments every ≤ 48 s (not measured (sse.heartbeat not in this run))" in (
        text(unmeasured)
    )


def test_a_cut_despite_events_makes_the_other_protocol_the_choice() -> None:
    cut = {"max_hold_s": 75.0, "dropped_after_s": 15.0, "heartbeat_s": 10}
    advice = advise(
        target(
            {
                "sse.idle": ("fail", {"max_hold_s": 75.0, "dropped_after_s": 15.0}),
                "sse.heartbeat": ("fail", cut),
                "sse.lifetime": (
                    "fail",
                    {"max_hold_s": 75.0, "dropped_after_s": 15.0},
                    "cut after 15 s while events flowed",
                    "set `timeout: 0s`",
                ),
            }
        )
    )
    row = advice.row("idle")
    assert row.sse.state == "bad"
    assert "with `:` comments every 10 s still dropped after 15 s (sse.heartbeat)" in row.sse.text
    assert "a stream with events is cut after 15 s: a limit on total duration" in row.sse.text
    assert advice.choice == "WebSocket"
    assert advice.recommendation[0].startswith(
        "WebSocket: SSE works, but worse than a direct connection (sse.lifetime: cut after 15 s"
    )


def test_resume_comes_from_the_browser_where_it_ran() -> None:
    degraded = ("degraded", {"lost": 0, "proxy_cuts": 1, "last_event_id_resumed": True})
    row = advise(target({"browser.eventsource": degraded})).row("resume")
    assert row.sse.state == "caveat"
    assert "lost nothing, but the proxy cut the stream 1 time(s) itself" in row.sse.text
    assert row.ws is not None and row.ws.state == "fact" and "no built-in resume" in row.ws.text
    lost = ("fail", {"lost": 5, "last_event_id_resumed": False}, "5 of 20 events lost", None)
    advice = advise(target({"browser.eventsource": lost}))
    assert advice.row("resume").sse.state == "bad"
    assert any(
        s.startswith("EventSource does not resume cleanly here") for s in advice.recommendation
    )


def test_the_connection_limit_over_http1_and_http2() -> None:
    h1 = advise(target())
    assert "6 of 7 EventSources to one host" in h1.row("connections").sse.text
    assert any("Over HTTP/1.1 a browser opened only 6" in s for s in h1.recommendation)
    h2 = advise(
        target(
            {
                "browser.connection-limit": (
                    "pass",
                    {"opened": 7, "streams": 7, "page_protocol": "h2"},
                ),
                "h2.streams": ("pass", {"advertised_max_streams": 100, "measured_streams": 100}),
            }
        )
    )
    row = h2.row("connections")
    assert row.sse.state == "good"
    assert "over HTTP/2 all 7 of 7 EventSources" in row.sse.text
    assert "HTTP/2: 100 streams per connection, 100 served at once (h2.streams)" in row.sse.text
    assert not any("Over HTTP/1.1" in s for s in h2.recommendation)


def test_sticky_pass_then_fail_changes_its_row_and_the_recommendation() -> None:
    """Acceptance: lb.sticky pass -> fail (two backends, round robin)."""
    sticky = {
        "backends": 2,
        "sticky_polling": True,
        "sticky_ws": True,
        "sticky_sse": True,
        "moved_polls": 0,
        "backends_seen": 1,
    }
    before = advise(target({"lb.sticky": ("pass", sticky)}))
    round_robin = {
        **sticky,
        "sticky_polling": False,
        "sticky_ws": False,
        "sticky_sse": False,
        "moved_polls": 9,
        "backends_seen": 2,
    }
    after = advise(target({"lb.sticky": ("fail", round_robin, "round robin", STICKY_HINT)}))
    assert before.row("sticky").status == "good"
    assert after.row("sticky").status == "bad"
    assert "SSE reconnects land on another of 2 backends, 2 backends seen (lb.sticky)" in (
        after.row("sticky").sse.text
    )
    assert "long-polling session (socket.io's fallback) moved backend 9 time(s)" in (
        after.row("sticky").ws.text
    )
    assert "Sticky sessions hold across 2 backends (lb.sticky)." in before.recommendation
    assert "Sticky sessions hold" not in text(after)
    assert (
        "Not sticky with 2 backends (lb.sticky): reconnects and long polling (socket.io's "
        f"fallback) need sticky sessions, or session state shared between backends; fix: "
        f"{STICKY_HINT.rstrip('.')}." in after.recommendation
    )
    assert "sticky sessions" not in after.recommendation[-1]  # measured now


def test_not_measured_says_why_for_skip_error_and_not_run() -> None:
    skipped = advise(target({"lb.sticky": ("skip", {}, "one backend", None)})).row("sticky")
    assert skipped.sse.text == "not measured (lb.sticky skip: one backend)"
    errored = advise(target({"sse.stream": ("error", {}, "too busy to judge timing", None)}))
    assert errored.row("stream").sse.text == (
        "not measured (sse.stream error: too busy to judge timing)"
    )
    assert errored.row("stream").sse.state == "not-measured"
    data = target()
    for item in data["results"]:
        item.update(verdict="skip", summary="haproxy binary not found", not_run=True)
    data["status"], data["reason"] = "skipped", "haproxy binary not found"
    advice = advise(data)
    assert advice.choice == "not measured"
    assert advice.row("upgrade").sse.text == "not measured (not run: haproxy binary not found)"
    assert all(row.status == "not-measured" for row in advice.rows)
    assert advice.recommendation == (
        "Not measured: the setup did not run (haproxy binary not found).",
    )


def test_a_long_reason_is_cut_between_words_never_inside_an_aside() -> None:
    # lb.failover's skip on one backend names the placeholder in parentheses.
    why = (
        "the target fronts one backend: failover needs two or more "
        "({{ upstream_port_2 }} in the config)"
    )
    row = advise(target({"lb.failover": ("skip", {}, why, None)})).row("failover")
    assert row.sse.text == (
        "not measured (lb.failover skip: the target fronts one backend: failover needs two or "
        "more …)"
    )


def test_failover_and_fanout_read_their_metrics() -> None:
    advice = advise(
        target(
            {
                "lb.failover": (
                    "fail",
                    {
                        "detected_after_ms": 120.0,
                        "reconnected_after_ms": 340.0,
                        "failed_attempts": 1,
                        "events_lost": 3,
                    },
                    "3 lost",
                    None,
                ),
                "load.fanout": (
                    "degraded",
                    {
                        "sse_p99_ms": 180.0,
                        "ws_p99_ms": 40.0,
                        "sse_knee_n": 1200,
                        "ws_knee_n": None,
                        "sse_lost": 0,
                        "ws_lost": 0,
                        "max_n": 4800,
                        "at_n": 4800,
                        "direct_sse_p99_ms": 20.0,
                        "direct_ws_p99_ms": 15.0,
                    },
                ),
            }
        )
    )
    failover = advice.row("failover")
    assert failover.sse.text == (
        "clients learned in 120 ms, reconnected to a live backend in 340 ms after 1 failed "
        "attempt(s), 3 events lost (lb.failover)"
    )
    assert failover.sse.state == "bad"
    fan = advice.row("fanout")
    assert (
        fan.sse.text
        == "p99 180 ms at 4800 subscribers (direct 20 ms), past 100 ms from 1200 subscribers "
        "(load.fanout)"
    )
    assert fan.ws is not None
    assert (
        fan.ws.text
        == "p99 40 ms at 4800 subscribers (direct 15 ms), under 100 ms up to 4800 subscribers "
        "(load.fanout)"
    )
    assert (fan.sse.state, fan.ws.state, fan.status) == ("caveat", "good", "mixed")
    assert any(
        s.startswith("When a backend dies: clients learned in 120 ms")
        for s in advice.recommendation
    )
    assert any(
        s.startswith("Fan-out to many subscribers (load.fanout): SSE p99 180 ms at 4800")
        for s in advice.recommendation
    )
    assert advice.recommendation[-1] == "Not measured: sticky sessions."


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"ws.upgrade": ("fail", {"status": 400}, "status 400", UPGRADE_HINT)},
        {"sse.stream": ("fail", {}, "held", BUFFER_HINT)},
    ],
)
def test_the_proxy_name_changes_nothing(change: dict[str, Any]) -> None:
    one, other = advise(target(change, proxy="nginx")), advise(target(change, proxy="envoy"))
    assert one.to_json() == other.to_json()


def test_a_partial_run_says_what_was_not_measured() -> None:
    only_ws = advise(target(drop=tuple(c for c in GOOD if not c.startswith("ws.upgrade"))))
    assert only_ws.recommendation[:2] == (
        "WebSocket works; SSE not measured (sse.headers not in this run).",
        "Not weighed, as not measured: WebSocket's streaming (ws.push not in this run).",
    )
    assert only_ws.brief == "WebSocket (SSE not measured)"
    nothing = advise(target(drop=tuple(GOOD)))
    assert nothing.choice == "not measured"
    assert nothing.recommendation[0] == (
        "Not measured enough to choose: SSE not measured (sse.headers not in this run); "
        "WebSocket not measured (ws.upgrade not in this run)."
    )


def test_the_lb_setups_checks_choose_and_name_what_they_did_not_weigh() -> None:
    """matrix.yaml's lb-* targets run lb.*, ws.upgrade, ws.echo, sse.stream and
    sse.last-event-id: a passing stream shows SSE opens; ws.push was not run."""
    sticky = {"backends": 2, "sticky_polling": False, "sticky_ws": False, "sticky_sse": False,
              "moved_polls": 4, "backends_seen": 2}  # fmt: skip
    kept = ("ws.upgrade", "ws.echo", "sse.stream", "sse.last-event-id")
    advice = advise(target(
        {"lb.sticky": ("fail", sticky, "polls 4/8 on another backend", "a sticky cookie")},
        drop=tuple(c for c in GOOD if c not in kept),
    ))  # fmt: skip
    assert advice.choice == "either"
    assert advice.recommendation[1] == (
        "Not weighed, as not measured: SSE's opening (sse.headers not in this run); "
        "WebSocket's streaming (ws.push not in this run)."
    )
    assert any(s.startswith("Not sticky with 2 backends (lb.sticky)") for s in
               advice.recommendation)  # fmt: skip
    assert advice.brief == "either (not sticky across backends: lb.sticky fail)"


@pytest.mark.parametrize("value", [None, "x", True, -1, 0, 1e9, [], {}])
@pytest.mark.parametrize("verdict", ["pass", "degraded", "fail"])
def test_odd_metric_values_never_break_the_advice(verdict: str, value: Any) -> None:
    """A report from another version may carry other types: the advice still renders."""
    names = {name for _, metrics in GOOD.values() for name in metrics} | {
        "suggested_heartbeat_s", "detected_after_ms", "sse_p99_ms", "sse_knee_n", "backends",
        "sticky_ws", "sse_lost", "events_lost", "advertised_max_streams",
    }  # fmt: skip
    checks = [*GOOD, "lb.sticky", "lb.failover", "load.fanout", "h2.streams", "ws.upgrade@h2"]
    odd = {check: (verdict, dict.fromkeys(names, value)) for check in checks}
    advice = advise(target(odd))
    assert len(advice.rows) == 9 and advice.recommendation
    assert advise({"id": "x", "results": [{"check": "ws.upgrade"}, "junk", {"verdict": 1}]}).rows


def test_an_http2_websocket_that_fails_counts_although_http1_passes() -> None:
    """Browsers use RFC 8441 where it is advertised and do not fall back: a failed
    ws.upgrade@h2 makes WebSocket fail here, whatever ws.upgrade says."""
    advertised = advise(
        target(
            {
                "ws.upgrade@h2": ("pass", {"extended_connect": True, "status": 200}),
                "ws.echo@h2": ("pass", {"extended_connect": True, "largest_ok_bytes": 1048576}),
            }
        )
    )
    assert (
        "over HTTP/2 too, by extended CONNECT (ws.upgrade@h2)" in advertised.row("upgrade").ws.text
    )
    assert "both ways over HTTP/2, up to 1 MiB byte-exact (ws.echo@h2)" in (
        advertised.row("binary").ws.text
    )
    not_advertised = advise(
        target(
            {
                "ws.echo@h2": ("pass", {"extended_connect": False}, "not advertised", None),
            },
            drop=("ws.echo",),
        )
    )
    assert not_advertised.row("binary").ws.text == (
        "not measured (ws.echo not in this run); HTTP/2: extended CONNECT not advertised, "
        "browsers use HTTP/1.1 (ws.echo@h2)"
    )
    failed = advise(
        target(
            {
                "ws.upgrade@h2": (
                    "fail",
                    {"extended_connect": True, "status": 501},
                    "extended CONNECT advertised, but status 501",
                    "unset `GODEBUG`",
                ),
            }
        )
    )
    assert failed.row("upgrade").ws.state == "bad"
    assert failed.choice == "SSE"
    assert "To use WebSocket: unset `GODEBUG`." in failed.recommendation


def test_either_says_where_binary_fails() -> None:
    big = ("fail", {"largest_ok_bytes": 65536}, "binary message of 1048576 bytes: closed 1009")
    advice = advise(target({"ws.echo": (*big, "raise the frame limit")}))
    assert advice.row("binary").ws is not None and advice.row("binary").ws.state == "bad"
    assert advice.recommendation[0].endswith(
        "or sends binary (but ws.echo: binary message of 1048576 bytes: closed 1009)."
    )
    unmeasured = advise(target(drop=("ws.echo",)))
    assert unmeasured.recommendation[0].endswith("or sends binary (binary not measured).")


def test_a_delay_is_cited_before_an_idle_drop_that_a_heartbeat_cures() -> None:
    """haproxy/default in the default run: coalesced SSE (http-no-delay) and a 30 s idle
    timeout that `:` comments cure; the recommendation names the delay and its knob."""
    advice = advise(target({
        "sse.stream": ("degraded", {"p95_delay_ms": 207.0, "baseline_p95_delay_ms": 0.4},
                       "20/20 events, p95 delay 207 ms", "add `option http-no-delay`"),
        "sse.idle": ("fail", {"max_hold_s": 75.0, "dropped_after_s": 29.7},
                     "dropped after 29.7 s of silence", "heartbeat more often"),
        "ws.idle": ("fail", {"max_hold_s": 75.0, "dropped_after_s": 30.0},
                    "dropped after 30.0 s", "`timeout tunnel 1h`"),
    }))  # fmt: skip
    assert advice.choice == "WebSocket"
    assert advice.recommendation[:2] == (
        "WebSocket: SSE works, but worse than a direct connection (sse.stream: 20/20 events, "
        "p95 delay 207 ms).",
        "To use SSE: add `option http-no-delay`.",
    )
    assert advice.recommendation[2] == (
        "WebSocket: idle connections are dropped after 30 s (ws.idle): send pings every 10 s "
        "(with them it survived 75 s, ws.keepalive)."
    )
    assert advice.brief == (
        "WebSocket (SSE works with a cost: sse.stream degraded; WebSocket needs pings every 10 s)"
    )


def test_fanout_as_the_fanout_branch_reports_it() -> None:
    """Metrics and summaries as load.fanout reported them on the fanout branch (nginx/default:
    WebSocket not proxied, SSE subscriptions refused at N=250; haproxy/default: SSE past
    100 ms from N=10, WebSocket under it)."""
    refused = {
        "sse_p99_ms": 2.57, "ws_p99_ms": None, "sse_lost": 0, "ws_lost": None, "sse_knee_n": 250,
        "ws_knee_n": None, "max_n": 250, "direct_sse_p99_ms": 2.6, "direct_ws_p99_ms": 2.67,
        "at_n": 100,
    }  # fmt: skip
    summary = (
        "SSE at N=250: 241/250 subscribed (9 connection closed before it subscribed), where the "
        "direct path delivered every message: a connection limit on the path (WebSocket not "
        "proxied (status 400, see ws.upgrade): SSE alone judged)"
    )
    row = advise(target({"load.fanout": ("fail", refused, summary, "raise it")})).row("fanout")
    assert row.sse.text == (
        "p99 2.6 ms at 100 subscribers (direct 2.6 ms); delivery fails from 250 subscribers "
        "(load.fanout)"
    )
    assert row.ws is not None and row.ws.state == row.sse.state == "bad"
    assert row.ws.text == "no WebSocket to measure, the upgrade fails (load.fanout)"
    coalesced = {
        "sse_p99_ms": 222.82, "ws_p99_ms": 10.61, "sse_lost": 0, "ws_lost": 0, "sse_knee_n": 10,
        "ws_knee_n": None, "max_n": 250, "direct_sse_p99_ms": 11.04, "direct_ws_p99_ms": 10.83,
        "at_n": 250,
    }  # fmt: skip
    advice = advise(target({"load.fanout": ("degraded", coalesced, "fan-out slower", None)}))
    fan = advice.row("fanout")
    assert (fan.sse.state, fan.ws and fan.ws.state) == ("caveat", "good")
    assert (
        "Fan-out to many subscribers (load.fanout): SSE p99 223 ms at 250 subscribers (direct "
        "11 ms), past 100 ms from 10 subscribers; WebSocket p99 11 ms at 250 subscribers "
        "(direct 11 ms), under 100 ms up to 250 subscribers." in advice.recommendation
    )
