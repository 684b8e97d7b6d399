"""Runner behaviour that needs no particular proxy: skips, errors, cleanup."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest

from proxytest.adapters.haproxy import HAProxy
from proxytest.errors import BinaryNotFound
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.reports import run_from_json
from proxytest.reports.badges import overall_badge, target_badge
from proxytest.reports.junit import render_junit
from proxytest.results import TargetStatus, Verdict
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
