"""Runner behaviour that needs no particular proxy: skips, errors, cleanup."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest

from proxytest.adapters.haproxy import HAProxy
from proxytest.errors import BinaryNotFound
from proxytest.harness import ask_ready
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.reports import run_from_json
from proxytest.reports.badges import overall_badge, target_badge
from proxytest.reports.junit import render_junit
from proxytest.results import CheckResult, TargetStatus, Verdict
from proxytest.runner import run_targets

from .conftest import nginx_on_a_busy_port

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_binary_is_not_run_with_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Green means measured: a proxy that is not installed fails the run as 'not run'."""
    monkeypatch.setattr(HAProxy, "executables", ("proxytest-no-such-haproxy",))
    with pytest.raises(BinaryNotFound) as info:
        HAProxy().find_binary()
    assert "apt-get install haproxy" in str(info.value)
    target = TargetSpec("haproxy", "default", (ROOT / "proxies/haproxy/default.cfg",))
    run = asyncio.run(run_targets([target], RunOptions.from_matrix(checks=["sse.*"])))
    (result,) = run.targets
    assert result.status == TargetStatus.SKIPPED
    assert "apt-get install haproxy" in (result.reason or "")
    assert {r.verdict for r in result.results} == {Verdict.SKIP}
    assert all(r.not_run and not r.as_expected for r in result.results)
    assert result.not_run
    assert run.exit_code == 1  # nothing was measured: never green
    assert target_badge(result).message == "not run"
    assert overall_badge(run).message == "no target ran" and overall_badge(run).color == "red"
    assert "<error" in render_junit(run)
    # Read back from its JSON, the run says the same.
    again = run_from_json(json.loads(json.dumps(run.to_json())))
    assert again.exit_code == 1 and again.targets[0].not_run


@pytest.mark.parametrize("how", ["optional", "skip_missing"])
def test_an_optional_target_or_skip_missing_keeps_the_run_green(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(HAProxy, "executables", ("proxytest-no-such-haproxy",))
    target = TargetSpec(
        "haproxy", "default", (ROOT / "proxies/haproxy/default.cfg",), optional=how == "optional"
    )
    options = RunOptions.from_matrix(checks=["sse.*"], skip_missing=how == "skip_missing")
    run = asyncio.run(run_targets([target], options))
    (result,) = run.targets
    assert result.status == TargetStatus.SKIPPED and not result.not_run
    assert run.exit_code == 0
    assert target_badge(result).message == "skipped"


def test_a_proxy_that_dies_at_start_is_an_error_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with nginx_on_a_busy_port(tmp_path) as config:
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
        (tmp_path / "tmp").mkdir()
        tempfile.tempdir = None
        try:
            run = asyncio.run(
                run_targets(
                    [TargetSpec("nginx", "busy", (config,))],
                    RunOptions.from_matrix(checks=["ws.upgrade"]),
                )
            )
        finally:
            tempfile.tempdir = None
    (result,) = run.targets
    assert result.status == TargetStatus.ERROR
    assert "exited with code" in (result.reason or "") or "did not pass" in (result.reason or "")
    assert "bind()" in (result.reason or "")
    assert "in use" in (result.reason or "")
    assert result.results[0].verdict == Verdict.ERROR
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_evaluation_that_raises_is_that_checks_error_and_the_rest_go_on() -> None:
    from dataclasses import replace as changed

    from proxytest.checks import CHECKS
    from proxytest.lag import LagMonitor
    from proxytest.origin import Origin
    from proxytest.probes import ProbeContext
    from proxytest.probes.context import new_session
    from proxytest.runner import run_checks
    from proxytest.timing import Thresholds

    def broken(timeline: object, ctx: object) -> object:
        raise ValueError("invalid literal for int() with base 10: 'evt-3'")

    async def main() -> dict[str, CheckResult]:
        async with Origin() as origin, LagMonitor() as lag, new_session() as session:
            ctx = ProbeContext(origin.host, origin.port, origin, session, Thresholds(), lag)
            checks = [changed(CHECKS["ws.upgrade"], evaluate=broken), CHECKS["ws.echo"]]
            return {r.check: r for r in await run_checks(ctx, checks, baseline={})}

    results = asyncio.run(main())
    upgrade = results["ws.upgrade"]
    assert upgrade.verdict == Verdict.ERROR
    assert "the evaluation failed on what was measured: ValueError" in upgrade.summary
    assert "evt-3" in upgrade.summary
    assert results["ws.echo"].verdict == Verdict.PASS


def test_a_proxy_whose_master_died_is_not_judged_by_what_its_workers_answer() -> None:
    """SIGKILL to nginx's master: its workers still serve, but nothing can be judged."""
    import os
    import signal

    from proxytest.adapters import ADAPTERS
    from proxytest.checks import select as chosen
    from proxytest.harness import Harness
    from proxytest.lag import LagMonitor
    from proxytest.origin import Origin
    from proxytest.probes import ProbeContext
    from proxytest.probes.context import new_session
    from proxytest.runner import run_checks
    from proxytest.timing import Thresholds

    adapter = ADAPTERS["nginx"]
    config = ROOT / "proxies/nginx/realtime.conf"

    async def main() -> tuple[dict[str, CheckResult], bool]:
        th = Thresholds()
        async with Origin() as origin, LagMonitor() as lag, new_session() as session:
            harness = Harness(adapter, adapter.find_binary(), (config,), th, session)
            async with harness.instance(origin.host, origin.port, origin.id) as inst:
                process = inst.process
                os.kill(process.pid, signal.SIGKILL)  # the master only
                for _ in range(100):
                    if not process.alive:
                        break
                    await asyncio.sleep(0.02)
                ctx = ProbeContext(inst.host, inst.port, origin, session, th, lag)
                workers_answer = (await ask_ready(session, inst.base_url))[0] == 200
                results = await run_checks(
                    ctx, chosen(["ws.upgrade", "sse.headers"]), baseline={}, alive=process
                )
        return {r.check: r for r in results}, workers_answer

    results, workers_answer = asyncio.run(main())
    assert workers_answer  # the workers did answer: a pass would have been believed
    for result in results.values():
        assert result.verdict == Verdict.ERROR, result.summary
        assert "exited (code -9) before the check ended" in result.summary


def test_a_reload_the_proxy_ignores_is_not_observed_and_not_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nginx sent a signal it ignores (SIGCONT) instead of SIGHUP: every stream 'survives'."""
    import signal

    from proxytest.adapters.base import SignalReload
    from proxytest.adapters.nginx import Nginx

    monkeypatch.setattr(
        Nginx, "reload", lambda self, binary, config: SignalReload(signal.SIGCONT, "SIGCONT")
    )
    target = TargetSpec("nginx", "realtime", (ROOT / "proxies/nginx/realtime.conf",))
    options = RunOptions.from_matrix(checks=["lifecycle.reload"], max_hold=3)
    (result,) = asyncio.run(run_targets([target], options)).targets
    (reload,) = result.results
    assert reload.verdict == Verdict.ERROR, reload.summary
    assert reload.summary.startswith("reload not observed: after SIGCONT")


def test_a_run_whose_targets_skipped_every_check_measured_nothing_and_fails() -> None:
    """Envoy has no reload to drive: a run of nothing but that skip is not green."""
    target = TargetSpec("envoy", "realtime", (ROOT / "proxies/envoy/realtime.yaml",))
    run = asyncio.run(run_targets([target], RunOptions.from_matrix(checks=["lifecycle.reload"])))
    assert [r.verdict for t in run.targets for r in t.results] == [Verdict.SKIP]
    assert not run.measured
    assert run.exit_code == 1
    assert overall_badge(run).message == "nothing measured"
    # With one measured check beside it, the same skip is neutral again.
    both = RunOptions.from_matrix(checks=["lifecycle.reload", "ws.upgrade"])
    assert asyncio.run(run_targets([target], both)).exit_code == 0
