"""Every proxy's default and realtime setup, for real, against documented behaviour.

The expectations here are written from the proxies' documentation and
KNOWLEDGE.md, independently of matrix.yaml; the last test checks that the two
agree (the default matrix runs as expected).
"""

from __future__ import annotations

import asyncio
import fnmatch

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS
from proxytest.matrix import load_matrix
from proxytest.results import RunResult, TargetResult, TargetStatus, Verdict
from proxytest.runner import RunOptions, run_targets

from ..conftest import ROOT, running_in_ci

pytestmark = pytest.mark.integration

F, D = Verdict.FAIL, Verdict.DEGRADED
DOCUMENTED: dict[str, dict[str, Verdict]] = {
    # Upgrade/Connection are hop-by-hop and not forwarded; proxy_buffering on
    # sends the headers only with the first body bytes.
    "nginx/default": {"ws.*": F, "sse.headers": F},
    # No option http-no-delay: small writes coalesced (~200 ms).
    "haproxy/default": {"sse.stream": D, "sse.compression": D},
    # No upgrade_configs: 403.
    "envoy/default": {"ws.*": F},
    "traefik/default": {},
    "caddy/default": {},
    **{f"{p}/realtime": {} for p in ADAPTERS},
}


def documented(target: str, check: str) -> Verdict:
    for pattern, verdict in DOCUMENTED[target].items():
        if fnmatch.fnmatchcase(check, pattern):
            return verdict
    return Verdict.PASS


@pytest.fixture(scope="module")
def default_run() -> RunResult:
    matrix = load_matrix(ROOT / "matrix.yaml", tuple(ADAPTERS))
    return asyncio.run(run_targets(matrix.targets, RunOptions(concurrency=matrix.concurrency)))


def target(run: RunResult, target_id: str) -> TargetResult:
    found = next(t for t in run.targets if t.id == target_id)
    if found.status == TargetStatus.SKIPPED:
        if running_in_ci():
            pytest.fail(f"{target_id} skipped in CI: {found.reason}")
        pytest.skip(found.reason or "skipped")
    assert found.status == TargetStatus.OK, f"{target_id}: {found.reason}"
    return found


@pytest.mark.parametrize("target_id", sorted(DOCUMENTED))
def test_verdicts_match_documented_behaviour(default_run: RunResult, target_id: str) -> None:
    result = target(default_run, target_id)
    assert [r.check for r in result.results] == list(CHECKS)
    got = {r.check: r.verdict for r in result.results}
    want = {c: documented(target_id, c) for c in CHECKS}
    detail = {r.check: r.summary for r in result.results if got[r.check] != want[r.check]}
    assert got == want, detail
    assert result.proxy_version


def test_nginx_default_upgrade_is_a_400_from_a_plain_get(default_run: RunResult) -> None:
    upgrade = next(
        r for r in target(default_run, "nginx/default").results if r.check == "ws.upgrade"
    )
    assert upgrade.metrics["status"] == 400
    assert upgrade.metrics["origin_saw_upgrade"] is False
    assert "proxy_set_header Upgrade" in (upgrade.hint or "")


def test_envoy_default_upgrade_is_a_403(default_run: RunResult) -> None:
    upgrade = next(
        r for r in target(default_run, "envoy/default").results if r.check == "ws.upgrade"
    )
    assert upgrade.metrics["status"] == 403
    assert "upgrade_configs" in (upgrade.hint or "")


def test_haproxy_default_coalesces_and_the_hint_names_http_no_delay(
    default_run: RunResult,
) -> None:
    stream = next(
        r for r in target(default_run, "haproxy/default").results if r.check == "sse.stream"
    )
    assert stream.metrics["p95_delay_ms"] > 100
    assert "http-no-delay" in (stream.hint or "")


def test_realtime_setups_stream_promptly(default_run: RunResult) -> None:
    for proxy in ADAPTERS:
        stream = next(
            r for r in target(default_run, f"{proxy}/realtime").results if r.check == "sse.stream"
        )
        assert stream.metrics["events_received"] == 20
        assert stream.metrics["p95_delay_ms"] < 50, (proxy, stream.summary)


def test_the_default_matrix_runs_as_expected(default_run: RunResult) -> None:
    unexpected = [
        (t.id, r.check, r.verdict.value, r.summary)
        for t in default_run.targets
        for r in t.results
        if not r.as_expected or r.unexpected_pass
    ]
    assert unexpected == []
    assert default_run.exit_code == 0
