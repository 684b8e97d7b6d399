"""Long-lived checks against real proxies with short, known timeouts (3 s)."""

from __future__ import annotations

import asyncio

import pytest

from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.results import TargetStatus, Verdict
from proxytest.runner import run_targets

from ..conftest import ROOT

pytestmark = pytest.mark.integration
CONFIGS = ROOT / "tests" / "configs"


@pytest.fixture(scope="module")
def short_run() -> dict[str, dict[str, object]]:
    targets = [
        TargetSpec("nginx", "short", (CONFIGS / "nginx-short.conf",)),
        TargetSpec("haproxy", "short", (CONFIGS / "haproxy-short.cfg",)),
    ]
    options = RunOptions.from_matrix(
        checks=["ws.idle", "ws.keepalive", "sse.idle", "sse.heartbeat", "sse.lifetime"],
        max_hold=6.0,
        heartbeat=1.0,
    )
    run = asyncio.run(run_targets(targets, options))
    out: dict[str, dict[str, object]] = {}
    for t in run.targets:
        assert t.status == TargetStatus.OK, t.reason
        out[t.proxy] = {r.check: r for r in t.results}
    return out


@pytest.mark.parametrize("proxy", ["nginx", "haproxy"])
@pytest.mark.parametrize("check", ["ws.idle", "sse.idle"])
def test_idle_connections_drop_at_the_3s_timeout(short_run, proxy: str, check: str) -> None:
    result = short_run[proxy][check]
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.metrics["dropped_after_s"] == pytest.approx(3.0, abs=0.6)
    assert result.metrics["suggested_heartbeat_s"] == 2
    assert "timeout" in result.hint


@pytest.mark.parametrize("proxy", ["nginx", "haproxy"])
@pytest.mark.parametrize("check", ["ws.keepalive", "sse.heartbeat", "sse.lifetime"])
def test_heartbeats_faster_than_the_timeout_keep_it_alive(
    short_run, proxy: str, check: str
) -> None:
    result = short_run[proxy][check]
    assert result.verdict == Verdict.PASS, result.summary
    assert result.metrics["dropped_after_s"] is None
