"""Verdict boundaries of the WebSocket checks, on synthetic timelines."""

from __future__ import annotations

from proxytest.checks import EvalContext
from proxytest.checks.ws import (
    evaluate_close,
    evaluate_echo,
    evaluate_ping,
    evaluate_push,
    evaluate_subprotocol,
    evaluate_upgrade,
)
from proxytest.probes import (
    CloseTimeline,
    EchoExchange,
    EchoTimeline,
    HandshakeTimeline,
    PingTimeline,
    SubprotocolTimeline,
)
from proxytest.probes.ws import accept_for
from proxytest.results import Verdict

from ..timelines import stream

CTX = EvalContext(baseline={"ws": 0.5})
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def handshake(
    status: int | None,
    *,
    accept: str | None = None,
    error: str | None = None,
    origin_saw_upgrade: bool | None = True,
    origin_requests: int = 1,
    upgrade: str = "websocket",
) -> HandshakeTimeline:
    headers = []
    if status == 101:
        headers = [
            ("Upgrade", upgrade),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept or accept_for(KEY)),
        ]
    return HandshakeTimeline(
        url="http://x/ws/echo",
        requested_at=1.0,
        status=status,
        reason="",
        headers=tuple(headers),
        responded_at=None if status is None else 1.002,
        key=KEY,
        expected_accept=accept_for(KEY),
        error=error,
        origin_requests=origin_requests,
        origin_saw_upgrade=origin_saw_upgrade,
        origin_upgraded=status == 101,
    )


def test_accept_for_matches_rfc6455_example() -> None:
    assert accept_for(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_101_with_valid_accept_passes() -> None:
    outcome = evaluate_upgrade(handshake(101), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["status"] == 101


def test_upgrade_400_fails_and_says_the_origin_saw_a_plain_get() -> None:
    outcome = evaluate_upgrade(handshake(400, origin_saw_upgrade=False), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.summary.startswith("status 400 from proxy, expected 101")
    assert "plain GET" in outcome.summary
    assert outcome.failure == "upgrade"


def test_upgrade_403_that_never_reached_the_origin() -> None:
    outcome = evaluate_upgrade(handshake(403, origin_saw_upgrade=None, origin_requests=0), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "never reached the origin" in outcome.summary


def test_upgrade_with_a_wrong_accept_fails() -> None:
    outcome = evaluate_upgrade(handshake(101, accept="bm90IHRoZSByaWdodCBvbmU="), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "accept"


def test_upgrade_with_a_wrong_upgrade_header_fails() -> None:
    outcome = evaluate_upgrade(handshake(101, upgrade="h2c"), CTX)
    assert outcome.verdict == Verdict.FAIL


def test_upgrade_never_answered_is_a_failed_upgrade_not_a_harness_error() -> None:
    tl = handshake(None, error="no answer to the upgrade request within 5 s")
    outcome = evaluate_upgrade(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "silent"


def sizes() -> tuple[int, ...]:
    return CTX.thresholds.echo_sizes


def test_echo_all_byte_exact_passes() -> None:
    ex = tuple(EchoExchange(k, s, True, 1.0) for s in sizes() for k in ("text", "binary"))
    outcome = evaluate_echo(EchoTimeline(101, None, ex), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["messages_ok"] == 14


def test_echo_of_a_large_message_lost_fails_with_its_size() -> None:
    ex = [EchoExchange(k, s, True, 1.0) for s in sizes()[:-1] for k in ("text", "binary")]
    ex.append(EchoExchange("text", 1 << 20, False, None, "no echo in time"))
    outcome = evaluate_echo(EchoTimeline(101, None, tuple(ex)), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "1048576 bytes" in outcome.summary
    assert outcome.failure == "size"


def test_echo_corrupted_fails() -> None:
    ex = (
        EchoExchange("binary", 0, True, 1.0),
        EchoExchange("binary", 1, False, 1.0, "content differs"),
    )
    assert evaluate_echo(EchoTimeline(101, None, ex), CTX).verdict == Verdict.FAIL


def test_every_ws_check_fails_without_an_upgrade() -> None:
    for outcome in (
        evaluate_echo(EchoTimeline(400, "handshake failed", ()), CTX),
        evaluate_ping(PingTimeline(400, "x", None, False, False, False), CTX),
        evaluate_push(stream(received=0, status=400, end="status", kind="ws"), CTX),
        evaluate_subprotocol(SubprotocolTimeline(403, "x", (), (), None, None, None), CTX),
        evaluate_close(
            CloseTimeline(400, "x", (4001, "a"), (None, None), (4002, "b"), (None, None)), CTX
        ),
    ):
        assert outcome.verdict == Verdict.FAIL
        assert outcome.failure == "upgrade"
        assert "(see ws.upgrade)" in outcome.summary


def test_push_delayed_is_degraded() -> None:
    outcome = evaluate_push(stream([300.0] * 20, kind="ws", status=101), CTX)
    assert outcome.verdict == Verdict.DEGRADED


def test_ping_both_ways_passes() -> None:
    outcome = evaluate_ping(PingTimeline(101, None, 0.8, True, True, True), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "answered by the origin" in outcome.summary


def test_ping_answered_by_the_proxy_still_passes_and_says_so() -> None:
    outcome = evaluate_ping(PingTimeline(101, None, 0.8, True, True, False), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "answered by the proxy" in outcome.summary


def test_ping_dropped_fails() -> None:
    outcome = evaluate_ping(PingTimeline(101, None, None, False, False, False), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "no pong" in outcome.summary


def test_close_codes_intact_pass() -> None:
    tl = CloseTimeline(101, None, (4001, "a"), (4001, "a"), (4002, "b"), (4002, "b"), 101)
    assert evaluate_close(tl, CTX).verdict == Verdict.PASS


def test_close_replaced_by_tcp_close_fails() -> None:
    tl = CloseTimeline(101, None, (4001, "a"), (None, None), (4002, "b"), (1006, None), 101)
    outcome = evaluate_close(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "no close frame (1006)" in outcome.summary


def test_subprotocol_passes_when_both_ends_agree() -> None:
    tl = SubprotocolTimeline(101, None, ("b", "a"), ("a",), "a", ("b", "a"), "a")
    assert evaluate_subprotocol(tl, CTX).verdict == Verdict.PASS


def test_subprotocol_stripped_on_the_way_in_fails() -> None:
    tl = SubprotocolTimeline(101, None, ("b", "a"), ("a",), None, (), None)
    outcome = evaluate_subprotocol(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "request"


def test_subprotocol_stripped_on_the_way_out_fails() -> None:
    tl = SubprotocolTimeline(101, None, ("b", "a"), ("a",), None, ("b", "a"), "a")
    outcome = evaluate_subprotocol(tl, CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "response"
