"""Verdict boundaries of the security checks (checks/security.py), on synthetic timelines."""

from __future__ import annotations

from proxytest.checks import CHECKS, EvalContext
from proxytest.checks.security import (
    evaluate_handshake_strict,
    evaluate_hop_by_hop,
    evaluate_smuggling,
    evaluate_upgrade_unrequested,
)
from proxytest.probes.security import (
    END_TO_END,
    HOP_BY_HOP,
    Attempt,
    HopTimeline,
    SecurityTimeline,
)
from proxytest.results import Failure, Verdict

CTX = EvalContext()
VARIANTS = ("status_426", "status_200", "status_403", "version_mismatch", "with_body")


def smuggling(second: str = "parsed", **overrides: str) -> SecurityTimeline:
    attempts = [
        Attempt(v, int(v[-3:]) if v[-3:].isdigit() else 426, "origin", overrides.get(v, second))
        for v in VARIANTS
    ]
    attempts.append(
        Attempt("bad_accept_101", 101, "origin", overrides.get("bad_accept_101", second))
    )
    return SecurityTimeline(tuple(attempts))


def test_smuggling_passes_when_every_second_request_is_parsed_closed_or_answered() -> None:
    for second in ("parsed", "closed", "refused", "silent"):
        out = evaluate_smuggling(smuggling(second), CTX)
        assert out.verdict == Verdict.PASS, (second, out.summary)
        assert out.metrics["status_426_second_request"] == second
    mixed = smuggling("parsed", status_200="closed", with_body="silent")
    assert evaluate_smuggling(mixed, CTX).verdict == Verdict.PASS


def test_smuggling_fails_on_one_tunnel_after_a_refused_upgrade() -> None:
    for variant in VARIANTS:
        out = evaluate_smuggling(smuggling("parsed", **{variant: "tunnel"}), CTX)
        assert out.verdict == Verdict.FAIL and out.failure == Failure.SMUGGLED, variant
        assert variant in out.summary


def test_smuggling_reports_a_tunnel_on_the_origins_101_without_judging_it() -> None:
    out = evaluate_smuggling(smuggling("parsed", bad_accept_101="tunnel"), CTX)
    assert out.verdict == Verdict.PASS
    assert "wrong Sec-WebSocket-Accept was tunnelled" in out.summary
    assert out.metrics["bad_accept_101_second_request"] == "tunnel"
    assert out.metrics["trusts_origin_101"] is True
    assert evaluate_smuggling(smuggling("parsed"), CTX).metrics["trusts_origin_101"] is False


def test_smuggling_without_any_answer_is_an_error_and_direct_is_a_skip() -> None:
    silent = SecurityTimeline(tuple(Attempt(v, None, "none") for v in VARIANTS))
    assert evaluate_smuggling(silent, CTX).verdict == Verdict.ERROR
    assert evaluate_smuggling(SecurityTimeline((), "direct"), CTX).verdict == Verdict.SKIP


def strict(*statuses: tuple[int | None, str]) -> SecurityTimeline:
    names = ("no_key", "bad_version", "http10", "no_connection_upgrade")
    return SecurityTimeline(
        tuple(
            Attempt(n, s, by, reached_origin=by == "origin")
            for n, (s, by) in zip(names, statuses, strict=True)
        )
    )


def test_handshake_strict_passes_when_the_proxy_or_origin_refuses_each() -> None:
    tl = strict((400, "proxy"), (400, "proxy"), (426, "proxy"), (200, "origin"))
    out = evaluate_handshake_strict(tl, CTX)
    assert out.verdict == Verdict.PASS
    assert "no_key: 400 from proxy" in out.summary and "200 from origin" in out.summary
    assert out.metrics["no_connection_upgrade_reached_origin"] is True
    assert out.metrics["no_key_answered_by"] == "proxy"


def test_handshake_strict_fails_on_one_101() -> None:
    tl = strict((400, "proxy"), (400, "proxy"), (101, "origin"), (200, "origin"))
    out = evaluate_handshake_strict(tl, CTX)
    assert out.verdict == Verdict.FAIL and out.failure == Failure.LAX_HANDSHAKE
    assert "(http10)" in out.summary


def test_handshake_strict_with_no_answer_at_all_is_an_error() -> None:
    tl = strict((None, "none"), (None, "none"), (None, "none"), (None, "none"))
    assert evaluate_handshake_strict(tl, CTX).verdict == Verdict.ERROR


def unrequested(status: int | None, second: str, raw: bool = False) -> SecurityTimeline:
    by = "none" if status is None else "proxy"
    return SecurityTimeline((Attempt("plain_get", status, by, second, raw_to_client=raw),))


def test_upgrade_unrequested_boundaries() -> None:
    assert evaluate_upgrade_unrequested(unrequested(502, "parsed"), CTX).verdict == Verdict.PASS
    assert evaluate_upgrade_unrequested(unrequested(200, "closed"), CTX).verdict == Verdict.PASS
    # A 101 relayed without a tunnel: the client got what it never asked for.
    relayed = evaluate_upgrade_unrequested(unrequested(101, "parsed", raw=True), CTX)
    assert relayed.verdict == Verdict.DEGRADED
    assert relayed.failure == Failure.UNREQUESTED_SWITCH
    assert relayed.metrics["raw_bytes_to_client"] is True
    # The raw bytes alone (a proxy that rewrote the status) are the same finding.
    raw = evaluate_upgrade_unrequested(unrequested(200, "parsed", raw=True), CTX)
    assert raw.verdict == Verdict.DEGRADED
    tunnel = evaluate_upgrade_unrequested(unrequested(101, "tunnel", raw=True), CTX)
    assert tunnel.verdict == Verdict.FAIL and tunnel.failure == Failure.UNREQUESTED_SWITCH
    assert evaluate_upgrade_unrequested(unrequested(None, "not_sent"), CTX).verdict == (
        Verdict.ERROR
    )


SENT = (("Connection", "keep-alive, X-Proxytest-Hop"), *HOP_BY_HOP, END_TO_END)
CLEAN_SEEN = (("Host", "127.0.0.1:1"), END_TO_END, ("X-Forwarded-For", "127.0.0.1"))


def test_hop_by_hop_passes_when_none_arrives_and_shows_what_the_origin_saw() -> None:
    out = evaluate_hop_by_hop(HopTimeline(200, SENT, CLEAN_SEEN, "1.1"), CTX)
    assert out.verdict == Verdict.PASS
    assert out.metrics["forwarded_hop_by_hop"] == []
    assert out.metrics["x_forwarded_for"] == "127.0.0.1"
    assert out.metrics["x_forwarded_proto"] is None
    assert out.metrics["origin_headers"]["Host"] == "127.0.0.1:1"
    assert out.metrics["end_to_end_kept"] is True
    assert "X-Forwarded-For=127.0.0.1" in out.summary


def test_hop_by_hop_fails_on_each_forwarded_header() -> None:
    # A well-known name has a config fix (hop_by_hop); a name only the client's
    # Connection header made hop-by-hop has none (connection_named).
    for name, value in HOP_BY_HOP:
        seen = (*CLEAN_SEEN, (name.lower(), value))
        out = evaluate_hop_by_hop(HopTimeline(200, SENT, seen, "1.1"), CTX)
        kind = Failure.CONNECTION_NAMED if name == "X-Proxytest-Hop" else Failure.HOP_BY_HOP
        assert out.verdict == Verdict.FAIL and out.failure == kind, name
        assert out.metrics["forwarded_hop_by_hop"] == [name]


def test_a_well_known_name_beside_a_connection_named_one_is_the_fixable_kind() -> None:
    seen = (*CLEAN_SEEN, ("X-Proxytest-Hop", "named-in-connection"),
            ("Proxy-Authorization", "Basic x"))  # fmt: skip
    out = evaluate_hop_by_hop(HopTimeline(200, SENT, seen, "1.1"), CTX)
    assert out.failure == Failure.HOP_BY_HOP
    assert out.metrics["forwarded_hop_by_hop"] == ["X-Proxytest-Hop", "Proxy-Authorization"]


def test_hop_by_hop_that_never_reached_the_origin_is_an_error() -> None:
    out = evaluate_hop_by_hop(HopTimeline(403, SENT, None), CTX)
    assert out.verdict == Verdict.ERROR and "status 403" in out.summary
    skipped = evaluate_hop_by_hop(HopTimeline(None, SENT, None, skipped="direct"), CTX)
    assert skipped.verdict == Verdict.SKIP


def test_the_security_checks_are_in_the_catalogue_with_a_hint_for_their_failure() -> None:
    kinds = {
        "ws.smuggling": {Failure.SMUGGLED},
        "ws.handshake-strict": {Failure.LAX_HANDSHAKE},
        "ws.upgrade-unrequested": {Failure.UNREQUESTED_SWITCH},
        "http.hop-by-hop": {Failure.HOP_BY_HOP, Failure.CONNECTION_NAMED},
    }
    for check, kind in kinds.items():
        assert set(CHECKS[check].hints) == kind
    assert CHECKS["http.hop-by-hop"].family == "http"
