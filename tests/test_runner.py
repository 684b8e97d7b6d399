"""Runner behaviour that needs no particular proxy: skips, errors, cleanup."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from proxytest.adapters.haproxy import HAProxy
from proxytest.errors import BinaryNotFound
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.results import TargetStatus, Verdict
from proxytest.runner import run_targets

from .conftest import nginx_on_a_busy_port

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_binary_is_a_skip_with_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert run.exit_code == 0  # not installed is not a broken proxy


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
