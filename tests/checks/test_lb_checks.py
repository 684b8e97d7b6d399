"""lb.sticky's evaluation on hand-made timelines: every verdict boundary, no sockets."""

from __future__ import annotations

import pytest

from proxytest.checks.base import EvalContext
from proxytest.checks.lb import evaluate_sticky
from proxytest.probes.timeline import LbHop, StickyTimeline
from proxytest.results import Failure, Verdict

CTX = EvalContext()


def hops(
    handshake: str | None = "a",
    polls: str = "aaaaaaaa",
    ws: str = "aaaaaaa",
    sse: str = "aaaaaaa",
) -> tuple[LbHop, ...]:
    """One client's requests: each letter is the backend that answered ("-": none).

    A poll on another backend than the handshake's is a 400 (unknown session).
    """
    out = []
    if handshake is not None:
        out.append(LbHop("handshake", handshake, 200))
    for b in polls:
        if b == "-":
            out.append(LbHop("poll", None, None, "ClientOSError"))
        else:
            out.append(LbHop("poll", b, 200 if b == handshake else 400))
    out += [
        LbHop("ws", None, 403, "handshake failed") if b == "-" else LbHop("ws", b, 101) for b in ws
    ]
    out += [
        LbHop("sse", None, None, "TimeoutError") if b == "-" else LbHop("sse", b, 200) for b in sse
    ]
    return tuple(out)


def test_everything_on_one_backend_passes() -> None:
    out = evaluate_sticky(StickyTimeline(2, hops()), CTX)
    assert out.verdict == Verdict.PASS
    assert out.summary == (
        "a long-polling session (8 polls), 6 WebSocket reconnects, 6 SSE reconnects stayed on "
        "one backend of 2"
    )
    assert out.metrics == {
        "backends": 2,
        "sticky_polling": True,
        "sticky_ws": True,
        "sticky_sse": True,
        "moved_polls": 0,
        "backends_seen": 1,
    }


def test_one_poll_on_another_backend_fails() -> None:
    out = evaluate_sticky(StickyTimeline(2, hops(polls="aaaabaaa")), CTX)
    assert out.verdict == Verdict.FAIL
    assert out.failure == Failure.NOT_STICKY
    assert out.summary.startswith("polls 1/8 on another backend (1 × 400 unknown session)")
    assert out.metrics["sticky_polling"] is False and out.metrics["moved_polls"] == 1
    assert out.metrics["sticky_ws"] is True and out.metrics["backends_seen"] == 2


def test_round_robin_fails_with_counts_of_each_part() -> None:
    out = evaluate_sticky(StickyTimeline(2, hops("a", "babababa", "abababa", "bababab")), CTX)
    assert out.verdict == Verdict.FAIL
    assert out.summary == (
        "polls 4/8 on another backend (4 × 400 unknown session); WebSocket reconnects on 2 "
        "backends (3/6 moved); SSE reconnects on 2 backends (3/6 moved): sessions do not stay "
        "on their backend (one client reached 2 of 2)"
    )
    assert (out.metrics["sticky_ws"], out.metrics["sticky_sse"]) == (False, False)


def test_a_reconnect_that_moves_once_fails_even_when_polling_stays() -> None:
    out = evaluate_sticky(StickyTimeline(3, hops(sse="aaaaaac")), CTX)
    assert out.verdict == Verdict.FAIL
    assert out.metrics["sticky_polling"] is True and out.metrics["sticky_sse"] is False
    assert out.summary.startswith("SSE reconnects on 2 backends (1/6 moved)")
    assert "one client reached 2 of 3" in out.summary


def test_a_poll_on_the_right_backend_but_refused_counts_as_moved() -> None:
    # the session's own backend forgot it (a 400 there): the session was lost all the same
    tl = StickyTimeline(2, (LbHop("handshake", "a", 200), LbHop("poll", "a", 400)))
    out = evaluate_sticky(tl, CTX)
    assert out.verdict == Verdict.FAIL and out.metrics["moved_polls"] == 1


def test_one_backend_is_a_skip() -> None:
    out = evaluate_sticky(StickyTimeline(1), CTX)
    assert out.verdict == Verdict.SKIP
    assert out.summary == "one backend: nothing to balance"


def test_nothing_judged_is_an_error_with_why() -> None:
    out = evaluate_sticky(StickyTimeline(2, hops(None, "", "-------", "-------")), CTX)
    assert out.verdict == Verdict.ERROR
    assert "nothing could be judged" in out.summary
    assert "long polling not judged (no handshake)" in out.summary
    assert "WebSocket reconnects not judged (handshake failed)" in out.summary
    assert "SSE reconnects not judged (TimeoutError)" in out.summary


def test_a_probe_error_is_an_error() -> None:
    out = evaluate_sticky(StickyTimeline(2, error="boom"), CTX)
    assert out.verdict == Verdict.ERROR and "boom" in out.summary


@pytest.mark.parametrize("part", ["ws", "sse"])
def test_a_part_that_could_not_run_is_said_and_the_rest_judged(part: str) -> None:
    # e.g. WebSocket not proxied at all (ws.upgrade says why): polling and SSE still judged
    parts = {"ws": "aaaaaaa", "sse": "aaaaaaa", part: "-------"}
    out = evaluate_sticky(StickyTimeline(2, hops(ws=parts["ws"], sse=parts["sse"])), CTX)
    assert out.verdict == Verdict.PASS
    assert out.metrics[f"sticky_{part}"] is None
    assert "reconnects not judged" in out.summary


def test_polls_that_got_no_answer_are_not_judged_as_moved() -> None:
    out = evaluate_sticky(StickyTimeline(2, hops(polls="--------")), CTX)
    assert out.verdict == Verdict.PASS
    assert out.metrics["sticky_polling"] is None and out.metrics["moved_polls"] == 0
    assert "long polling not judged (polls unanswered: ClientOSError)" in out.summary
