"""ws.deflate and ws.frames: each fails through the relay fault it detects and passes
through the clean relay, the origin itself, and real proxies (issue 15, frames part).

One run per path (module-scoped), asserted by several tests: the whole module
costs a few seconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Failure, TargetStatus, Verdict
from proxytest.runner import run_checks, run_targets
from proxytest.timing import Thresholds

from .relay import Fault, Relay
from .test_probe_mode import PREFIX, TOKEN, probe

ROOT = Path(__file__).resolve().parents[1]
IDS = ("ws.deflate", "ws.frames")


async def _through(kind: str | None) -> dict[str, CheckResult]:
    th = Thresholds()
    async with Origin() as origin, LagMonitor() as lag, new_session() as session:
        if kind is None:
            ctx = ProbeContext(origin.host, origin.port, origin, session, th, lag)
            results = await run_checks(ctx, select(IDS), baseline={})
        else:
            async with Relay(origin.host, origin.port, Fault(kind)) as relay:
                ctx = ProbeContext(relay.host, relay.port, origin, session, th, lag)
                results = await run_checks(ctx, select(IDS), baseline={})
    return {r.check: r for r in results}


PATHS = ("origin", "clean", "mangle_extensions", "corrupt_fragment", "launder_frames")


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, CheckResult]]:
    async def all_paths() -> dict[str, dict[str, CheckResult]]:
        return {p: await _through(None if p == "origin" else p) for p in PATHS}

    return asyncio.run(all_paths())


@pytest.mark.parametrize("path", ["origin", "clean"])
def test_both_pass_directly_and_through_the_clean_relay(
    runs: dict[str, dict[str, CheckResult]], path: str
) -> None:
    deflate, frames = runs[path]["ws.deflate"], runs[path]["ws.frames"]
    assert deflate.verdict == Verdict.PASS, deflate.summary
    assert deflate.metrics["deflate"] == "negotiated"
    assert deflate.metrics["messages_ok"] == deflate.metrics["messages_expected"] == 12
    assert frames.verdict == Verdict.PASS, frames.summary
    assert frames.metrics["max_message_bytes"] == 16 * 1024 * 1024
    assert frames.metrics["burst_messages_ok"] == 10_000
    assert frames.metrics["burst_p50_ms"] is not None and frames.metrics["burst_p99_ms"] is not None
    assert frames.metrics["invalid_bad_utf8"] == "closed 1007"
    for case in ("reserved_opcode", "fragmented_control", "rsv_bits"):
        assert frames.metrics[f"invalid_{case}"] == "closed 1002"
    assert frames.metrics["invalid_refused_by"] == "origin"  # the relay is a byte tunnel


def test_a_relay_that_drops_the_extension_from_the_101_fails_deflate(
    runs: dict[str, dict[str, CheckResult]],
) -> None:
    result = runs["mangle_extensions"]["ws.deflate"]
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.failure == Failure.EXTENSION
    assert "the origin answered 'permessage-deflate', the client got 'none'" in result.summary
    assert result.metrics["deflate"] is None
    assert result.hint and "Sec-WebSocket-Extensions" in result.hint
    # frames offer no extension: untouched by this fault
    assert runs["mangle_extensions"]["ws.frames"].verdict == Verdict.PASS


def test_a_relay_that_corrupts_continuation_frames_fails_frames(
    runs: dict[str, dict[str, CheckResult]],
) -> None:
    result = runs["corrupt_fragment"]["ws.frames"]
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.failure == Failure.FRAGMENTS
    assert "text split inside UTF-8 sequences" in result.summary
    assert result.metrics["fragments_ok"] is False
    # deflate's messages are single frames: untouched
    assert runs["corrupt_fragment"]["ws.deflate"].verdict == Verdict.PASS


def test_a_relay_that_makes_invalid_frames_valid_fails_frames(
    runs: dict[str, dict[str, CheckResult]],
) -> None:
    result = runs["launder_frames"]["ws.frames"]
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.failure == Failure.INVALID_FRAME
    for case in ("bad_utf8", "reserved_opcode", "fragmented_control", "rsv_bits"):
        assert result.metrics[f"invalid_{case}"] == "delivered"
        assert case in result.summary
    # clearing RSV1 breaks every compressed message: deflate fails on the messages
    deflate = runs["launder_frames"]["ws.deflate"]
    assert deflate.verdict == Verdict.FAIL and deflate.failure == Failure.ECHO


@pytest.mark.parametrize("proxy", ["haproxy", "caddy"])
def test_real_proxies_that_tunnel_frames_pass(proxy: str) -> None:
    config = {"haproxy": "realtime.cfg", "caddy": "realtime.Caddyfile"}[proxy]
    target = TargetSpec(proxy, "realtime", (ROOT / "proxies" / proxy / config,))
    run = asyncio.run(run_targets([target], RunOptions.from_matrix(checks=list(IDS))))
    (done,) = run.targets
    if done.status == TargetStatus.SKIPPED:
        pytest.skip(done.reason or f"{proxy} is not installed")
    got = {r.check: r for r in done.results}
    assert got["ws.deflate"].verdict == Verdict.PASS, got["ws.deflate"].summary
    assert got["ws.deflate"].metrics["deflate"] == "negotiated"
    assert got["ws.frames"].verdict == Verdict.PASS, got["ws.frames"].summary
    assert got["ws.frames"].metrics["max_message_bytes"] == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("line", "verdict", "deflate"),
    [
        # the clean way to turn compression off: the offer never reaches the origin
        ('proxy_set_header Sec-WebSocket-Extensions "";', Verdict.PASS, "stripped"),
        # the wrong way: the origin compresses, the client was not told
        ("proxy_hide_header Sec-WebSocket-Extensions;", Verdict.FAIL, None),
    ],
)
def test_nginx_stripping_the_offer_passes_hiding_the_answer_fails(
    tmp_path: Path, line: str, verdict: Verdict, deflate: str | None
) -> None:
    text = (ROOT / "proxies/nginx/realtime.conf").read_text()
    anchor = "proxy_set_header Host $host;"
    assert anchor in text
    config = tmp_path / "nginx.conf"
    config.write_text(text.replace(anchor, f"{anchor}\n            {line}", 1))
    run = asyncio.run(
        run_targets(
            [TargetSpec("nginx", "strip", (config,))],
            RunOptions.from_matrix(checks=["ws.deflate"]),
        )
    )
    (done,) = run.targets
    if done.status == TargetStatus.SKIPPED:
        pytest.skip(done.reason or "nginx is not installed")
    (result,) = done.results
    assert result.verdict == verdict, result.summary
    assert result.metrics["deflate"] == deflate
    if verdict == Verdict.FAIL:
        assert result.failure == Failure.EXTENSION
        assert result.hint and "proxy_set_header Sec-WebSocket-Extensions" in result.hint


@pytest.mark.asyncio
async def test_probe_mode_runs_both_through_a_prefix_with_a_token() -> None:
    # A deployed origin (token, prefix) read through its records API: the digests and
    # the extension it answered travel in the records' JSON.
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("launder_frames")) as relay,
    ):
        results = await probe(relay.port, list(IDS))
    assert results["ws.frames"].verdict == Verdict.FAIL, results["ws.frames"].summary
    assert results["ws.frames"].failure == Failure.INVALID_FRAME
    assert "the origin received it" in results["ws.frames"].summary
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("clean")) as relay,
    ):
        results = await probe(relay.port, list(IDS))
    for check in IDS:
        assert results[check].verdict == Verdict.PASS, results[check].summary
    assert results["ws.deflate"].metrics["deflate"] == "negotiated"
