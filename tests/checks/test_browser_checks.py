"""browser.* evaluations at their boundaries, on timelines built by hand (no browser)."""

from __future__ import annotations

from dataclasses import replace

from proxytest.checks import CHECKS, EvalContext
from proxytest.checks.browser import (
    evaluate_connection_limit,
    evaluate_eventsource,
    evaluate_websocket,
)
from proxytest.probes.timeline import (
    BrowserSocketTimeline,
    ConnectionLimitTimeline,
    EventSourceTimeline,
)
from proxytest.results import Failure, Verdict

CTX = EvalContext()
IDS = tuple(str(i) for i in range(1, 13))
RESUMED = EventSourceTimeline(
    tls=True, page_protocol="h2", end="complete", expected_last=12, cut_at=3,
    created_ms=10.0, opens_ms=(40.0, 400.0), event_ids=IDS, errors=((90.0, "3", 0),),
    origin_last_event_ids=(None, "3"),
)  # fmt: skip


def test_the_family_runs_in_the_browser_phase_after_the_others() -> None:
    ids = [i for i in CHECKS if i.startswith("browser.")]
    assert ids == ["browser.eventsource", "browser.websocket", "browser.connection-limit"]
    assert list(CHECKS)[-3:] == ids
    assert {CHECKS[i].phase.value for i in ids} == {"browser"}


def test_eventsource_that_resumed_after_the_cut_passes() -> None:
    out = evaluate_eventsource(RESUMED, CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics["reconnects"] == 1 and out.metrics["onopen_ms"] == 30.0
    assert out.metrics["last_event_id_resumed"] is True
    assert out.metrics["resumed_after_id"] == "3"


def test_eventsource_restarted_without_last_event_id_fails_on_the_header() -> None:
    looped = replace(
        RESUMED,
        event_ids=("1", "2", "3") * 4,
        opens_ms=(40.0, 400.0, 800.0, 1200.0),
        origin_last_event_ids=(None, None, None, None),
        end="timeout",
    )
    out = evaluate_eventsource(looped, CTX)
    assert (out.verdict, out.failure) == (Verdict.FAIL, Failure.HEADER)
    assert out.metrics["lost"] == 9 and out.metrics["duplicated"] == 9
    assert out.metrics["last_event_id_resumed"] is False


def test_eventsource_that_never_reconnected_after_the_cut_fails_as_truncated() -> None:
    out = evaluate_eventsource(
        replace(RESUMED, event_ids=IDS[:3], opens_ms=(40.0,), origin_last_event_ids=(None,)),
        CTX,
    )
    assert (out.verdict, out.failure) == (Verdict.FAIL, Failure.TRUNCATED)
    assert out.metrics["last_event_id_resumed"] is None


def test_eventsource_that_never_opened_fails_and_says_the_browser_gave_up() -> None:
    out = evaluate_eventsource(
        replace(RESUMED, opens_ms=(), event_ids=(), end="gave-up", origin_last_event_ids=()),
        CTX,
    )
    assert (out.verdict, out.failure) == (Verdict.FAIL, Failure.STATUS)
    assert "gave up" in out.summary


def test_duplicates_without_loss_are_degraded() -> None:
    out = evaluate_eventsource(replace(RESUMED, event_ids=(*IDS[:3], "3", *IDS[3:])), CTX)
    assert (out.verdict, out.failure) == (Verdict.DEGRADED, Failure.ORDER)


def test_a_proxy_that_cuts_the_stream_itself_is_degraded_when_nothing_was_lost() -> None:
    cut = replace(
        RESUMED,
        opens_ms=(40.0, 400.0, 15_500.0),
        errors=((90.0, "3", 0), (15_400.0, "60", 0)),
        origin_last_event_ids=(None, "3", "60"),
    )
    out = evaluate_eventsource(cut, CTX)
    assert (out.verdict, out.failure) == (Verdict.DEGRADED, Failure.LIFETIME)
    assert out.metrics["proxy_cuts"] == 1 and out.metrics["proxy_cut_after_s"] == 15.0


def test_a_reconnect_the_origin_cut_again_is_not_the_proxys_cut() -> None:
    # CI37, CI40 (nginx/tls under load): the reset of the origin's cut destroyed the
    # first connection's events in flight, so the page reconnected without
    # Last-Event-ID and the origin cut that request too (cut_once); the third resumed.
    twice = replace(
        RESUMED,
        opens_ms=(40.0, 400.0, 900.0),
        errors=((90.0, None, 0), (850.0, "3", 0)),
        origin_last_event_ids=(None, None, "3"),
        origin_cuts=2,
    )
    out = evaluate_eventsource(twice, CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics["proxy_cuts"] == 0 and out.metrics["origin_cuts"] == 2
    assert "the origin cut 2 times" in out.summary
    # A cut more than the origin's is still the proxy's, timed from its reconnect.
    more = replace(
        twice,
        opens_ms=(*twice.opens_ms, 5_000.0),
        errors=(*twice.errors, (4_900.0, "20", 0)),
        origin_last_event_ids=(*twice.origin_last_event_ids, "20"),
    )
    out = evaluate_eventsource(more, CTX)
    assert (out.verdict, out.failure) == (Verdict.DEGRADED, Failure.LIFETIME)
    assert out.metrics["proxy_cuts"] == 1 and out.metrics["proxy_cut_after_s"] == 4.0


SOCKET = BrowserSocketTimeline(
    tls=True, page_protocol="h2", end="closed", created_ms=5.0, opened_ms=25.0,
    text_echoed=True, binary_echoed=True, binary_size=65536, close_code=1000,
    close_reason="done", was_clean=True, handshake_status=200, sent_key=False,
    origin_upgraded=True,
)  # fmt: skip


def test_websocket_over_h2_is_told_from_the_handshake_chromium_saw() -> None:
    h2 = evaluate_websocket(SOCKET, CTX)
    assert h2.verdict == Verdict.PASS and h2.metrics["websocket_over_h2"] is True
    assert "RFC 8441" in h2.summary
    h1 = evaluate_websocket(replace(SOCKET, handshake_status=101, sent_key=True), CTX)
    assert h1.verdict == Verdict.PASS and h1.metrics["websocket_over_h2"] is False
    assert "did not advertise extended CONNECT" in h1.summary


def test_websocket_failures() -> None:
    never = replace(SOCKET, opened_ms=None, close_code=1006, was_clean=False, text_echoed=None)
    # Refused over h2 (no Sec-WebSocket-Key: RFC 8441): the proxy's RFC 8441 support.
    refused_h2 = evaluate_websocket(replace(never, handshake_status=400), CTX)
    assert refused_h2.failure == Failure.H2_WEBSOCKET
    assert "over HTTP/2" in refused_h2.summary
    assert "ws.upgrade@h2" in CHECKS["browser.websocket"].hints[Failure.H2_WEBSOCKET]
    # Refused over HTTP/1.1: the upgrade itself.
    refused_h1 = replace(never, handshake_status=403, sent_key=True)
    assert evaluate_websocket(refused_h1, CTX).failure == Failure.UPGRADE
    assert "do not fall back" in CHECKS["browser.websocket"].hints[Failure.UPGRADE]
    # No handshake reported at all: Chromium's rule (h2 page + advertised) tells it.
    unseen = replace(never, handshake_status=None, sent_key=None, extended_connect=True)
    assert unseen.over_h2 is True
    assert replace(unseen, extended_connect=False).over_h2 is False
    assert replace(unseen, extended_connect=None).over_h2 is None
    assert evaluate_websocket(replace(SOCKET, binary_echoed=False), CTX).failure == Failure.ECHO
    cut = evaluate_websocket(replace(SOCKET, close_code=1006, was_clean=False), CTX)
    assert (cut.verdict, cut.failure) == (Verdict.FAIL, Failure.CLOSE)


LIMIT = ConnectionLimitTimeline(
    tls=False, page_protocol="http/1.1", end="complete", streams=7,
    opened_ms=(10.0, 11.0, 12.0, 13.0, 14.0, 15.0, None), reopened=True,
)  # fmt: skip


def test_six_of_seven_over_http1_pass_and_name_the_limit() -> None:
    out = evaluate_connection_limit(LIMIT, CTX)
    assert out.verdict == Verdict.PASS
    assert "over HTTP/1.1 a 7th EventSource to this host waits" in out.summary
    assert "Chromium allows 6 connections per host" in out.summary
    assert "serve HTTP/2 to lift it" in out.summary
    assert "cleartext" in out.summary
    assert out.metrics["opened"] == 6


def test_fewer_than_the_protocol_allows_fail_on_the_limit() -> None:
    h1 = evaluate_connection_limit(
        replace(LIMIT, opened_ms=(1.0, 2.0, None, None, None, None, None)), CTX
    )
    assert (h1.verdict, h1.failure) == (Verdict.FAIL, Failure.LIMIT)
    h2 = evaluate_connection_limit(replace(LIMIT, page_protocol="h2", tls=True), CTX)
    assert (h2.verdict, h2.metrics["allowed"]) == (Verdict.FAIL, 7)
    all7 = replace(LIMIT, page_protocol="h2", tls=True, opened_ms=(1.0,) * 7, reopened=None)
    assert evaluate_connection_limit(all7, CTX).verdict == Verdict.PASS


def test_no_browser_is_a_skip_with_the_install_command_or_an_error_when_required() -> None:
    reason = (
        "no Chromium found: install Chromium: apt-get install chromium (or scripts/dev.sh browser)"
    )
    for evaluate, tl in (
        (evaluate_eventsource, RESUMED),
        (evaluate_websocket, SOCKET),
        (evaluate_connection_limit, LIMIT),
    ):
        skipped = evaluate(replace(tl, unavailable=reason), CTX)  # type: ignore[operator]
        assert skipped.verdict == Verdict.SKIP and "apt-get install chromium" in skipped.summary
        assert skipped.not_run  # nothing measured: the run is not green for it
        required = evaluate(replace(tl, unavailable=reason, required=True), CTX)  # type: ignore[operator]
        assert required.verdict == Verdict.ERROR
        assert "PROXYTEST_REQUIRE_BROWSER=1" in required.summary


def test_a_page_that_did_not_load_through_the_proxy_fails() -> None:
    out = evaluate_websocket(
        replace(SOCKET, page_error="the test page did not run (status 502)"), CTX
    )
    assert (out.verdict, out.failure) == (Verdict.FAIL, Failure.STATUS)
