"""Verdict boundaries of ws.deflate and ws.frames, on hand-built timelines."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxytest.checks import EvalContext
from proxytest.checks.frames import evaluate_deflate, evaluate_frames, same_extensions
from proxytest.probes.frames import (
    DEFLATE_SIZES,
    LARGE_SIZES,
    BurstResult,
    DeflateExchange,
    DeflateTimeline,
    FragmentCase,
    FramesTimeline,
    InvalidCase,
    SizeCase,
)
from proxytest.results import Failure, Verdict

CTX = EvalContext()
PMD = "permessage-deflate"
OFFER = "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15"


def _exchanges(ok: bool = True) -> tuple[DeflateExchange, ...]:
    return tuple(
        DeflateExchange(kind, size, c, ok)
        for size in DEFLATE_SIZES
        for kind in ("text", "binary")
        for c in (True, False)
    )


def deflate(**kw: object) -> DeflateTimeline:
    base = DeflateTimeline(101, None, OFFER, OFFER, PMD, PMD, None, _exchanges(), 12)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_negotiated_end_to_end_passes_and_says_so() -> None:
    out = evaluate_deflate(deflate(), CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics["deflate"] == "negotiated"
    assert "negotiated end to end" in out.summary


def test_stripped_cleanly_passes_and_says_so() -> None:
    out = evaluate_deflate(deflate(origin_offered=None, origin_selected=None, client_got=None), CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics["deflate"] == "stripped"
    assert "stripped cleanly" in out.summary


@pytest.mark.parametrize(
    ("origin", "client"),
    [(PMD, None), (None, PMD), (PMD, "permessage-deflate; server_no_context_takeover")],
)
def test_an_extension_header_that_differs_fails(origin: str | None, client: str | None) -> None:
    out = evaluate_deflate(deflate(origin_selected=origin, client_got=client), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.EXTENSION
    assert out.metrics["deflate"] is None


def test_case_spaces_and_parameter_order_do_not_count_as_mangling() -> None:
    assert same_extensions("permessage-deflate; a=1; b", "Permessage-Deflate;b;a=1")
    assert not same_extensions("permessage-deflate", None)
    assert same_extensions(None, "")


def test_a_corrupted_or_missing_message_fails_either_way() -> None:
    bad = list(_exchanges())
    bad[5] = replace(bad[5], ok=False, error="came back as 3 units, not byte-exact")
    out = evaluate_deflate(deflate(exchanges=tuple(bad)), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.ECHO
    assert "(random)" in out.summary and "11/12 intact" in out.summary
    out = evaluate_deflate(deflate(exchanges=_exchanges()[:3]), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.ECHO


def test_a_client_that_refused_the_101_fails_on_the_extension() -> None:
    out = evaluate_deflate(deflate(client_refused="unexpected extension", exchanges=()), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.EXTENSION


def test_no_upgrade_is_a_failed_upgrade() -> None:
    out = evaluate_deflate(deflate(status=400, error="status 400"), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.UPGRADE


# -- ws.frames -------------------------------------------------------------------
GOOD_INVALID = (
    InvalidCase("bad_utf8", "closed", 1007),
    InvalidCase("reserved_opcode", "closed", 1002),
    InvalidCase("fragmented_control", "dropped"),
    InvalidCase("rsv_bits", "closed", 1002),
)


def frames(**kw: object) -> FramesTimeline:
    base = FramesTimeline(
        101,
        None,
        (FragmentCase("text", True, True), FragmentCase("binary", True, True)),
        tuple(SizeCase(s, True, 10.0) for s in LARGE_SIZES),
        BurstResult(10_000, 10_000, 10_000, True, 50.0, 90.0, 100.0),
        GOOD_INVALID,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_frames_pass_with_every_metric() -> None:
    out = evaluate_frames(frames(), CTX)
    assert out.verdict == Verdict.PASS, out.summary
    assert out.metrics["max_message_bytes"] == 16 * 1024 * 1024
    assert out.metrics["burst_p50_ms"] == 50.0 and out.metrics["burst_p99_ms"] == 90.0
    assert out.metrics["invalid_bad_utf8"] == "closed 1007"
    assert out.metrics["invalid_fragmented_control"] == "dropped"


def test_an_invalid_frame_delivered_as_valid_fails_first() -> None:
    invalid = (*GOOD_INVALID[:3], InvalidCase("rsv_bits", "delivered", None, "as a valid frame"))
    broken = (FragmentCase("text", False, True, "not byte-exact"),)
    out = evaluate_frames(frames(invalid=invalid, fragments=broken), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.INVALID_FRAME
    assert out.metrics["invalid_rsv_bits"] == "delivered"


@pytest.mark.parametrize(
    "case",
    [InvalidCase("rsv_bits", "ignored"), InvalidCase("rsv_bits", "closed", 1000)],
)
def test_an_invalid_frame_not_refused_but_not_delivered_is_degraded(case: InvalidCase) -> None:
    out = evaluate_frames(frames(invalid=(*GOOD_INVALID[:3], case)), CTX)
    assert out.verdict == Verdict.DEGRADED and out.failure == Failure.INVALID_FRAME


def test_a_broken_fragmented_message_or_unanswered_ping_fails() -> None:
    out = evaluate_frames(frames(fragments=(FragmentCase("text", False, True, "x"),)), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.FRAGMENTS
    out = evaluate_frames(frames(fragments=(FragmentCase("text", True, False),)), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.PING


def test_the_largest_message_through_is_reported_when_a_larger_one_fails() -> None:
    sizes = (
        SizeCase(LARGE_SIZES[0], True, 5.0),
        SizeCase(LARGE_SIZES[1], False, None, "the connection ended"),
    )
    out = evaluate_frames(frames(sizes=sizes), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.SIZE
    assert out.metrics["max_message_bytes"] == LARGE_SIZES[0]
    assert "4 MiB" in out.summary and "largest through: 1 MiB" in out.summary
    corrupt = (SizeCase(LARGE_SIZES[0], False, 5.0, "echo of 1048576 bytes differs"),)
    out = evaluate_frames(frames(sizes=corrupt), CTX)
    assert out.failure == Failure.ECHO and out.metrics["max_message_bytes"] is None


def test_the_burst_judged_corrupted_then_order_then_lost_or_slow() -> None:
    burst = BurstResult(10_000, 10_000, 9_999, True, 1.0, 2.0, 3.0)
    assert evaluate_frames(frames(burst=burst), CTX).failure == Failure.ECHO
    burst = BurstResult(10_000, 10_000, 10_000, False, 1.0, 2.0, 3.0)
    assert evaluate_frames(frames(burst=burst), CTX).failure == Failure.ORDER
    slow = BurstResult(10_000, 4_000, 4_000, True, 1.0, 2.0, 5000.0, "no answer in time")
    out = evaluate_frames(frames(burst=slow), CTX)
    assert out.verdict == Verdict.DEGRADED and out.failure == Failure.DELAYED
    cut = BurstResult(10_000, 4_000, 4_000, True, 1.0, 2.0, 50.0, "the connection ended")
    out = evaluate_frames(frames(burst=cut), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.ECHO
    assert "4000 of 10000" in out.summary


def test_no_upgrade_fails_frames() -> None:
    out = evaluate_frames(FramesTimeline(403, "status 403"), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.UPGRADE


def test_a_wrong_accept_fails_frames() -> None:
    out = evaluate_frames(frames(accept_ok=False), CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.ACCEPT


def test_who_refused_the_invalid_frames() -> None:
    assert evaluate_frames(frames(), CTX).metrics["invalid_refused_by"] == "proxy"
    by_origin = tuple(replace(c, origin_refused=True) for c in GOOD_INVALID)
    out = evaluate_frames(frames(invalid=by_origin), CTX)
    assert out.metrics["invalid_refused_by"] == "origin"
    mixed = (*by_origin[:2], *GOOD_INVALID[2:])
    assert evaluate_frames(frames(invalid=mixed), CTX).metrics["invalid_refused_by"] == "both"
