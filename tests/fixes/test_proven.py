"""The planners' proof on the default matrix's `default` setups (real proxies, real traffic).

Each default setup runs the checks the matrix expects to fail plus some that
pass; the failures (with the `failure` kind the run reports) become Findings;
the planner's patched config runs the same checks. Every check a change
addresses must pass, and no check that passed may regress. ``max_hold`` is
just above the longest idle timeout (nginx's 60 s), so the long checks take
about a minute per run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxytest.fixes import caddy, haproxy, nginx
from proxytest.fixes.base import Finding, Planner
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.results import CheckResult, Failure, RunResult, TargetStatus, Verdict
from proxytest.runner import run_targets

from ..conftest import ROOT
from .helpers import assert_smallest

pytestmark = pytest.mark.integration

DEFAULTS = {
    "nginx": ("default.conf", nginx.PLANNER),
    "haproxy": ("default.cfg", haproxy.PLANNER),
    "caddy": ("default.Caddyfile", caddy.PLANNER),
}
# The default matrix's expected failures of each default setup (browser.* aside: they
# need Chromium), then checks that pass before and must still pass after.
EXPECTED = {
    "nginx": ["ws.upgrade", "ws.echo", "ws.idle", "sse.headers", "sse.idle",
              "load.concurrency", "load.fanout"],
    "haproxy": ["sse.stream", "sse.compression", "load.fanout", "ws.idle", "sse.idle"],
    "caddy": ["lifecycle.reload"],
}  # fmt: skip
PASSING = ["ws.upgrade", "ws.echo", "sse.stream", "sse.last-event-id", "sse.headers"]
CHECKS = sorted({c for checks in EXPECTED.values() for c in checks} | set(PASSING))
MAX_HOLD = 66.0  # above nginx's 60 s proxy_read_timeout and HAProxy's 30 s


def run(configs: dict[str, Path]) -> dict[str, dict[str, CheckResult]]:
    targets = [TargetSpec(proxy, "default", (path,)) for proxy, path in configs.items()]
    result: RunResult = asyncio.run(
        run_targets(targets, RunOptions.from_matrix(checks=CHECKS, max_hold=MAX_HOLD))
    )
    out = {}
    for target in result.targets:
        if target.status == TargetStatus.SKIPPED:
            pytest.skip(f"{target.proxy}: {target.reason}")
        assert target.status == TargetStatus.OK, target.reason
        out[target.proxy] = {r.check: r for r in target.results}
    return out


def findings(results: dict[str, CheckResult]) -> list[Finding]:
    return [
        Finding(r.check, Failure(r.failure), r.metrics)
        for r in results.values()
        if r.verdict in (Verdict.FAIL, Verdict.DEGRADED) and r.failure
    ]


def test_each_default_setups_failures_are_fixed_and_nothing_regresses(tmp_path: Path) -> None:
    sources = {p: ROOT / "proxies" / p / name for p, (name, _) in DEFAULTS.items()}
    before = run(sources)
    patched: dict[str, Path] = {}
    addressed: dict[str, set[str]] = {}
    for proxy, results in before.items():
        failed = {c for c, r in results.items() if r.verdict in (Verdict.FAIL, Verdict.DEGRADED)}
        summaries = {c: r.summary for c, r in results.items()}
        assert failed >= set(EXPECTED[proxy]), (proxy, summaries)
        planner: Planner = DEFAULTS[proxy][1]
        files = {sources[proxy]: sources[proxy].read_text()}
        plan = planner.plan(files, findings(results))
        assert plan.refusals == (), plan.refusals
        assert_smallest(plan, files)
        addressed[proxy] = {c for change in plan.changes for c in change.checks}
        assert addressed[proxy] == failed
        dest = tmp_path / proxy / sources[proxy].name
        dest.parent.mkdir()
        dest.write_text(plan.files[sources[proxy]])
        patched[proxy] = dest
    after = run(patched)
    table = []
    for proxy, results in after.items():
        for check, result in sorted(results.items()):
            was = before[proxy][check]
            table.append(f"{proxy:8} {check:20} {was.verdict.value:>8} -> {result.verdict.value}")
            if check in addressed[proxy] or was.verdict == Verdict.PASS:
                assert result.verdict == Verdict.PASS, (proxy, check, result.summary)
    print("\n" + "\n".join(table))


LB = {"nginx": "lb-round-robin.conf", "haproxy": "lb-round-robin.cfg",
      "caddy": "lb-round-robin.Caddyfile"}  # fmt: skip
LB_CHECKS = ["lb.sticky", "lb.failover", "ws.upgrade", "ws.echo", "sse.stream", "sse.last-event-id"]


def test_the_round_robin_setups_get_stickiness_and_failover(tmp_path: Path) -> None:
    """Caddy's `lb_policy round_robin` is stated in its file: a deliberate choice, so its
    lb.sticky is proposed (a Refusal), not fixed; every other failure is fixed."""
    sources = {p: ROOT / "proxies" / p / name for p, name in LB.items()}
    options = RunOptions.from_matrix(checks=LB_CHECKS)

    def run_lb(configs: dict[str, Path]) -> dict[str, dict[str, CheckResult]]:
        targets = [TargetSpec(p, "lb-round-robin", (path,)) for p, path in configs.items()]
        result = asyncio.run(run_targets(targets, options))
        for target in result.targets:
            if target.status == TargetStatus.SKIPPED:
                pytest.skip(f"{target.proxy}: {target.reason}")
        return {t.proxy: {r.check: r for r in t.results} for t in result.targets}

    before = run_lb(sources)
    patched, addressed = {}, {}
    for proxy, results in before.items():
        files = {sources[proxy]: sources[proxy].read_text()}
        plan = DEFAULTS[proxy][1].plan(files, findings(results))
        refused = {r.check for r in plan.refusals}
        assert refused == ({"lb.sticky"} if proxy == "caddy" else set()), plan.refusals
        addressed[proxy] = {c for change in plan.changes for c in change.checks}
        dest = tmp_path / proxy / sources[proxy].name
        dest.parent.mkdir()
        dest.write_text(plan.files[sources[proxy]])
        patched[proxy] = dest
    after = run_lb(patched)
    for proxy, results in after.items():
        for check, result in results.items():
            if check in addressed[proxy] or before[proxy][check].verdict == Verdict.PASS:
                assert result.verdict == Verdict.PASS, (proxy, check, result.summary)
