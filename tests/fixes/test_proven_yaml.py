"""The proof on real proxies: the default setup's expected failures, planned, patched and
checked again with `proxytest check` (real proxy, real traffic). Every check the plan
addresses passes after, and none that passed before regresses.

The findings are built by hand (the JSON has no failure kind yet); each is asserted
against the real "before" run, so a finding the proxy does not show fails the test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxytest.fixes.base import Finding, Plan
from proxytest.fixes.envoy import PLANNER as ENVOY
from proxytest.fixes.traefik import PLANNER as TRAEFIK
from proxytest.results import Failure

from ..conftest import ROOT, Cli
from .helpers import patched
from .test_envoy import DEFAULT_FINDINGS


@pytest.fixture
def cli() -> Iterator[Cli]:
    """The CLI with a short TMPDIR: Envoy's admin socket lives in the run dir, and a unix
    socket path has at most 108 bytes (pytest's tmp_path is too deep)."""
    folder = Path(tempfile.mkdtemp(prefix="pt-fix-", dir="/tmp"))
    try:
        yield Cli(folder / "t")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    SUMMARIES.update({r["check"]: r["summary"] for r in target["results"]})
    METRICS.update({r["check"]: r["metrics"] for r in target["results"]})
    return {r["check"]: r["verdict"] for r in target["results"]}


SUMMARIES: dict[str, str] = {}
METRICS: dict[str, dict] = {}


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
    failed_before = METRICS["lb.failover"]["failed_attempts"]
    planner = ENVOY if proxy == "envoy" else TRAEFIK
    plan = planner.plan(originals, [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)])
    assert not plan.empty
    after = verdicts(
        cli, patched(tmp_path, originals, plan), tmp_path / "after.json", LB_CHECKS, proxy
    )
    print("before → after:", {c: f"{before[c]} → {after[c]}" for c in LB_CHECKS})
    if proxy == "envoy":
        assert after["lb.failover"] == "pass", SUMMARIES["lb.failover"]
    else:
        # Traefik 3.7.15 with the retry middleware: 12 of 15 runs passed; in the other
        # three one reconnect got a 502 within 3 ms, not retried at all (measured). The
        # fix must at least leave fewer reconnects answered 502 than without it.
        assert after["lb.failover"] in ("pass", "degraded"), SUMMARIES["lb.failover"]
        failed_after = METRICS["lb.failover"]["failed_attempts"]
        print("502s before → after:", failed_before, "→", failed_after)
        assert failed_after < failed_before, SUMMARIES["lb.failover"]
    for check, verdict in before.items():
        if verdict == "pass":
            assert after[check] == "pass", (check, "regressed")


def test_traefik_without_the_buffering_middleware_streams_sse_again(
    tmp_path: Path, cli: Cli
) -> None:
    """A router for /sse with the buffering middleware (tests/fixes/test_traefik.py's
    BUFFERED): held before, one by one after the planner drops it from that router."""
    from .test_traefik import DYNAMIC, STATIC, buffered

    checks = ("sse.stream", "sse.headers", "ws.echo")
    originals = buffered()
    (tmp_path / "before").mkdir()
    sources = patched(tmp_path / "before", originals, Plan(files={}))
    before = verdicts(cli, sources, tmp_path / "before.json", checks, "traefik")
    assert before["sse.stream"] == "fail", SUMMARIES["sse.stream"]
    plan = TRAEFIK.plan(originals, [Finding("sse.stream", Failure.HELD)])
    assert set(plan.files) == {DYNAMIC} and STATIC in originals
    after = verdicts(
        cli, patched(tmp_path, originals, plan), tmp_path / "after.json", checks, "traefik"
    )
    print("before → after:", {c: f"{before[c]} → {after[c]}" for c in checks})
    assert after["sse.stream"] == "pass", SUMMARIES["sse.stream"]
    for check, verdict in before.items():
        if verdict == "pass":
            assert after[check] == "pass", (check, "regressed")
