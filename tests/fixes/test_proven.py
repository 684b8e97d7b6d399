"""The proof on real proxies: the default setup's expected failures, planned, patched and
checked again with `proxytest check` (real proxy, real traffic). Every check the plan
addresses passes after, and none that passed before regresses.

The findings are built by hand (the JSON has no failure kind yet); each is asserted
against the real "before" run, so a finding the proxy does not show fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxytest.fixes.base import Finding, Plan
from proxytest.fixes.envoy import PLANNER as ENVOY
from proxytest.fixes.traefik import PLANNER as TRAEFIK
from proxytest.results import Failure

from ..conftest import ROOT, Cli
from .helpers import patched
from .test_envoy import DEFAULT_FINDINGS

# What envoy/default fails (matrix.yaml) and a few it passes, held 20 s (the 15 s route
# timeout cuts inside that).
ENVOY_CHECKS = (
    "ws.upgrade", "ws.echo", "ws.push", "ws.ping", "ws.close", "ws.subprotocol",
    "ws.idle", "ws.keepalive", "browser.websocket",
    "sse.idle", "sse.heartbeat", "sse.lifetime", "browser.eventsource",
    "sse.headers", "sse.stream", "sse.last-event-id", "sse.reconnect", "sse.compression",
)  # fmt: skip


def verdicts(
    cli: Cli,
    configs: list[Path],
    report: Path,
    checks: tuple[str, ...] = ENVOY_CHECKS,
    proxy: str = "envoy",
) -> dict[str, str]:
    globs = [arg for check in checks for arg in ("--checks", check)]
    files = [arg for config in configs for arg in ("--config", str(config))]
    done = cli(
        "check", "--proxy", proxy, *files, *globs,
        "--max-hold", "20", "--heartbeat", "5", "--json", str(report), timeout=400,
    )  # fmt: skip
    assert report.exists(), done.stderr[-2000:]
    (target,) = json.loads(report.read_text())["targets"]
    return {r["check"]: r["verdict"] for r in target["results"]}


def test_the_patched_envoy_default_passes_what_failed_and_keeps_what_passed(
    tmp_path: Path, cli: Cli
) -> None:
    source = ROOT / "proxies/envoy/default.yaml"
    originals = {source: source.read_text()}
    before = verdicts(cli, [source], tmp_path / "before.json")
    findings = [f for f in DEFAULT_FINDINGS if f.check in before]
    # the hand-built findings are what this Envoy really shows (skips: no Chromium)
    shown = {c for c, v in before.items() if v in ("fail", "degraded")}
    assert shown == {f.check for f in findings if before[f.check] != "skip"}, before

    plan: Plan = ENVOY.plan(originals, findings)
    assert not plan.empty
    after = verdicts(cli, patched(tmp_path, originals, plan), tmp_path / "after.json")

    print("before → after:", {c: f"{before[c]} → {after[c]}" for c in ENVOY_CHECKS})
    for check in shown:
        assert after[check] == "pass", (check, after[check])
    for check, verdict in before.items():
        if verdict == "pass":
            assert after[check] == "pass", (check, "regressed")
    assert cli.leftovers() == []


LB_CHECKS = ("lb.failover", "sse.stream", "ws.echo", "sse.last-event-id")


@pytest.mark.parametrize("proxy", ["envoy", "traefik"])
def test_the_retry_on_lb_round_robin_turns_failover_into_a_pass(
    tmp_path: Path, cli: Cli, proxy: str
) -> None:
    """Not a default setup, but the other half of what the planners write: the route
    retry_policy (Envoy) and the retry middleware (Traefik) for lb.failover's 502/503."""
    folder = ROOT / "proxies" / proxy
    sources = [folder / "lb-round-robin.yaml"]
    if proxy == "traefik":
        sources.append(folder / "lb-round-robin.dynamic.yaml")
    originals = {path: path.read_text() for path in sources}
    before = verdicts(cli, sources, tmp_path / "before.json", LB_CHECKS, proxy)
    assert before["lb.failover"] == "degraded", before
    planner = ENVOY if proxy == "envoy" else TRAEFIK
    plan = planner.plan(originals, [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)])
    assert not plan.empty
    after = verdicts(
        cli, patched(tmp_path, originals, plan), tmp_path / "after.json", LB_CHECKS, proxy
    )
    print("before → after:", {c: f"{before[c]} → {after[c]}" for c in LB_CHECKS})
    assert after["lb.failover"] == "pass", after
    for check, verdict in before.items():
        if verdict == "pass":
            assert after[check] == "pass", (check, "regressed")
