"""The HTTP/2 checks (ws.*@h2, h2.streams) through tests/h2relay.py: each fails against
the fault it detects, passes through the clean relay, and skips where browsers would
not speak HTTP/2. Real sockets, real origin, real probes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace

import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Verdict
from proxytest.runner import run_checks
from proxytest.timing import Thresholds

from .h2relay import H2Fault, H2Relay
from .relay import Fault, Relay

pytestmark = pytest.mark.asyncio

WS_H2 = ["ws.upgrade@h2", "ws.echo@h2", "ws.close@h2"]
ALL = [*WS_H2, "h2.streams"]
# A stalled stream is waited for this long (the default, 5 s, is for real proxies).
QUICK_TH = replace(Thresholds(), h2_stream_wait_s=1.0, h2_beyond_wait_s=1.0)
DEFAULT = Thresholds()
# One attempt: a degraded verdict is not measured again (the retries are held by
# tests/test_checks_through_relay.py's stall tests).
ONCE = Thresholds(timing_retries=0)


async def through(
    fault: H2Fault,
    patterns: Sequence[str] = ALL,
    *,
    tls: bool = True,
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
) -> dict[str, CheckResult]:
    async with (
        Origin() as origin,
        H2Relay(origin.host, origin.port, fault, tls=tls, alpn=alpn) as relay,
        LagMonitor() as lag,
        new_session() as session,
    ):
        ctx = ProbeContext(relay.host, relay.port, origin, session, QUICK_TH, lag, tls=tls)
        results = await run_checks(ctx, select(patterns), baseline={})
    return {r.check: r for r in results}


async def test_every_h2_check_passes_through_the_clean_relay() -> None:
    results = await through(H2Fault("clean"))
    assert {k: r.verdict for k, r in results.items()} == dict.fromkeys(ALL, Verdict.PASS), {
        k: r.summary for k, r in results.items()
    }
    upgrade = results["ws.upgrade@h2"]
    assert upgrade.metrics["extended_connect"] is True
    assert upgrade.metrics["status"] == 200
    assert upgrade.metrics["origin_saw_upgrade"] is True
    assert results["ws.echo@h2"].metrics["largest_ok_bytes"] == max(Thresholds().echo_sizes)
    assert results["ws.close@h2"].metrics["origin_close_code"] == 4001
    assert results["ws.close@h2"].metrics["client_close_code"] == 4002
    streams = results["h2.streams"]
    assert streams.metrics["advertised_max_streams"] == 128
    assert streams.metrics["measured_streams"] == 128
    assert streams.metrics["beyond_refused"] is True
    assert streams.summary.startswith(
        "128 concurrent streams per connection: a browser's 129th EventSource to this host waits"
    )
    assert "REFUSED_STREAM" in streams.summary


async def test_extended_connect_not_advertised_is_a_pass_with_the_fact() -> None:
    results = await through(H2Fault("no_connect"), WS_H2)
    for check in WS_H2:
        assert results[check].verdict == Verdict.PASS
        assert results[check].metrics["extended_connect"] is False
        assert results[check].summary == (
            "extended CONNECT not advertised: browsers will use HTTP/1.1 WebSockets here"
        )


async def test_a_websocket_reset_after_200_fails_echo_and_close() -> None:
    results = await through(H2Fault("connect_reset"), WS_H2)
    assert results["ws.upgrade@h2"].verdict == Verdict.PASS  # the handshake itself worked
    echo, close = results["ws.echo@h2"], results["ws.close@h2"]
    assert echo.verdict == close.verdict == Verdict.FAIL
    assert "stream reset by the proxy: CANCEL" in echo.summary
    assert "RFC 8441" in (echo.hint or "")
    assert "no close frame (1006)" in close.summary


async def test_a_connect_reset_at_once_fails_every_ws_h2_check() -> None:
    results = await through(H2Fault("connect_reset", reset_after_200=False), WS_H2)
    for check in WS_H2:
        assert results[check].verdict == Verdict.FAIL
        assert "stream reset by the proxy: INTERNAL_ERROR" in results[check].summary
        assert "browsers do not fall back" in results[check].summary
    assert results["ws.upgrade@h2"].metrics["origin_saw_upgrade"] is None  # never reached it


async def test_cleartext_h2c_skips_websockets_and_measures_streams() -> None:
    results = await through(H2Fault("clean"), tls=False)
    for check in WS_H2:
        assert results[check].verdict == Verdict.SKIP
        assert "browsers speak HTTP/2 only over TLS" in results[check].summary
    assert results["h2.streams"].verdict == Verdict.PASS
    assert results["h2.streams"].metrics["transport"] == "h2c"


async def test_a_tls_listener_without_h2_skips_with_the_reason() -> None:
    results = await through(H2Fault("clean"), alpn=("http/1.1",))
    assert {r.verdict for r in results.values()} == {Verdict.SKIP}
    assert "ALPN chose http/1.1" in results["ws.upgrade@h2"].summary
    assert "at most 6 connections per host" in results["h2.streams"].summary


async def test_a_cleartext_http1_proxy_skips_h2_streams() -> None:
    th = QUICK_TH
    async with (
        Origin() as origin,
        Relay(origin.host, origin.port, Fault("clean")) as relay,
        new_session() as session,
    ):
        ctx = ProbeContext(relay.host, relay.port, origin, session, th)
        (result,) = await run_checks(ctx, select(["h2.streams"]), baseline={})
    assert result.verdict == Verdict.SKIP
    assert "no h2c" in result.summary
    assert "at most 6 connections per host" in result.summary


@pytest.mark.parametrize("stall", [True, False], ids=["stalled", "refused"])
async def test_streams_stalled_or_refused_below_the_advertised_limit_fail(stall: bool) -> None:
    results = await through(H2Fault("cap_streams", serve_streams=10, stall=stall), ["h2.streams"])
    streams = results["h2.streams"]
    assert streams.verdict == Verdict.FAIL
    assert streams.metrics["measured_streams"] == 10
    assert streams.summary.startswith("stream 11 of 128 on one connection (128 advertised)")
    assert ("no response headers" if stall else "REFUSED_STREAM") in streams.summary
    assert "11th EventSource to this host hangs" in streams.summary
    assert streams.hint is not None and "advertises more concurrent streams" in streams.hint


async def test_few_advertised_streams_are_degraded() -> None:
    results = await through(H2Fault("clean", max_streams=20), ["h2.streams"])
    streams = results["h2.streams"]
    assert streams.verdict == Verdict.DEGRADED
    assert streams.metrics["measured_streams"] == 20
    assert streams.summary.startswith("only 20 concurrent streams per connection")
    assert streams.hint is not None and "at least 100" in streams.hint


async def test_hold_headers_still_delivers_everything() -> None:
    """hold_headers only delays HEADERS to the first DATA: the lead's sse.headers@h2
    test uses it with a late first event; with prompt events every check passes."""
    results = await through(H2Fault("hold_headers"), ALL)
    assert {r.verdict for r in results.values()} == {Verdict.PASS}


SSE_H2 = ["sse.headers@h2", "sse.stream@h2", "sse.last-event-id@h2", "sse.compression@h2"]
SSE_H2C = [c.replace("@h2", "@h2c") for c in SSE_H2]


async def _sse_through(
    fault: H2Fault,
    patterns: Sequence[str],
    *,
    tls: bool,
    backend: Fault | None = None,
    th: Thresholds = DEFAULT,
) -> dict[str, CheckResult]:
    """Like ``through``, with the direct baseline the timing checks are judged against.

    ``backend``: the HTTP/2 relay's upstream is tests/relay.py with this fault (an h2
    front whose backend hop has the fault), not the origin itself.
    """
    from proxytest.measure import measure_baseline

    async with contextlib.AsyncExitStack() as stack:
        origin = await stack.enter_async_context(Origin())
        upstream: Origin | Relay = origin
        if backend is not None:
            upstream = await stack.enter_async_context(Relay(origin.host, origin.port, backend))
        relay = await stack.enter_async_context(
            H2Relay(upstream.host, upstream.port, fault, tls=tls)
        )
        lag = await stack.enter_async_context(LagMonitor())
        session = await stack.enter_async_context(new_session())
        direct = ProbeContext(origin.host, origin.port, origin, session, th, lag)
        baseline = await measure_baseline(direct)
        ctx = ProbeContext(relay.host, relay.port, origin, session, th, lag, tls=tls)
        results = await run_checks(ctx, select(patterns), baseline=baseline)
    return {r.check: r for r in results}


async def test_sse_over_h2_passes_through_the_clean_relay_and_h2c_skips_on_tls() -> None:
    results = await _sse_through(H2Fault("clean"), [*SSE_H2, *SSE_H2C], tls=True)
    verdicts = {k: r.verdict for k, r in results.items()}
    assert verdicts == {
        **dict.fromkeys(SSE_H2, Verdict.PASS),
        **dict.fromkeys(SSE_H2C, Verdict.SKIP),
    }, {k: r.summary for k, r in results.items()}
    assert all(results[c].metrics["transport"] == "h2" for c in SSE_H2)
    assert results["sse.last-event-id@h2"].metrics["origin_last_event_id"] == "3"
    assert "h2c is HTTP/2 in cleartext" in results["sse.stream@h2c"].summary


async def test_sse_over_h2c_in_cleartext_and_h2_skips() -> None:
    results = await _sse_through(H2Fault("clean"), [*SSE_H2, *SSE_H2C], tls=False)
    verdicts = {k: r.verdict for k, r in results.items()}
    assert verdicts == {
        **dict.fromkeys(SSE_H2C, Verdict.PASS),
        **dict.fromkeys(SSE_H2, Verdict.SKIP),
    }, {k: r.summary for k, r in results.items()}
    assert "cleartext listener" in results["sse.stream@h2"].summary


async def test_sse_headers_held_until_the_first_data_frame_fail_over_h2() -> None:
    """caddy#4247: an h2 proxy that sends the response HEADERS only with the first
    DATA frame; a late first event makes EventSource.onopen fire late."""
    results = await _sse_through(H2Fault("hold_headers"), ["sse.headers@h2"], tls=True)
    headers = results["sse.headers@h2"]
    assert headers.verdict == Verdict.FAIL, headers.summary
    assert "held until the first event" in headers.summary
    assert headers.hint is not None


@pytest.mark.parametrize(
    ("fault", "check", "verdicts"),
    [
        (Fault("hold"), "sse.stream@h2", {Verdict.FAIL}),
        (Fault("coalesce", delay_ms=300), "sse.stream@h2", {Verdict.DEGRADED}),
        (
            Fault("strip_headers", headers=("Last-Event-ID",)),
            "sse.last-event-id@h2",
            {Verdict.FAIL},
        ),
        (Fault("gzip", flush=False), "sse.compression@h2", {Verdict.FAIL, Verdict.DEGRADED}),
    ],
    ids=["held", "coalesced", "no-last-event-id", "gzip-buffered"],
)
async def test_each_sse_check_over_h2_fails_against_its_fault(
    fault: Fault, check: str, verdicts: set[Verdict]
) -> None:
    results = await _sse_through(H2Fault("clean"), [check], tls=True, backend=fault, th=ONCE)
    assert results[check].verdict in verdicts, results[check].summary
    assert results[check].metrics["transport"] == "h2"
    assert results[check].hint


async def test_sse_over_h2_passes_behind_a_clean_backend_hop() -> None:
    results = await _sse_through(H2Fault("clean"), SSE_H2, tls=True, backend=Fault("clean"))
    assert {k: r.verdict for k, r in results.items()} == dict.fromkeys(SSE_H2, Verdict.PASS), {
        k: r.summary for k, r in results.items()
    }
    assert results["sse.compression@h2"].metrics["compressed"] is False
