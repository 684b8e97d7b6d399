"""Console grid and JSON report from a hand-made RunResult (no proxies needed)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from proxytest.checks import CHECKS
from proxytest.reports import write_json
from proxytest.reports.console import print_report
from proxytest.results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict


def run_result() -> RunResult:
    def results(fail: set[str], expected: set[str]) -> tuple[CheckResult, ...]:
        out = []
        for check in CHECKS:
            verdict = Verdict.FAIL if check in fail else Verdict.PASS
            out.append(
                CheckResult(
                    check,
                    verdict,
                    "status 400 from proxy, expected 101" if check in fail else "fine",
                    expected=Verdict.FAIL if check in expected else None,
                    hint="forward Upgrade" if check in fail else None,
                    metrics={"status": 400} if check in fail else {},
                )
            )
        return tuple(out)

    targets = (
        TargetResult("nginx/default", "nginx", "default", "local", "1.31.3", TargetStatus.OK,
                     None, results({"ws.upgrade"}, {"ws.upgrade"})),
        TargetResult("envoy/mine", "envoy", "mine", "local", "1.40.0", TargetStatus.OK, None,
                     results({"ws.upgrade"}, set())),
        TargetResult("haproxy/default", "haproxy", "default", "local", None,
                     TargetStatus.SKIPPED, "haproxy binary not found; apt-get install haproxy",
                     tuple(CheckResult(c, Verdict.SKIP, "not installed") for c in CHECKS)),
    )  # fmt: skip
    return RunResult("0.1.0", "2026-11-23T12:00:00+00:00", 3.2, targets)


def rendered(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    print_report(console, run_result())
    return console.export_text()


def test_exit_code_counts_only_unexpected_results() -> None:
    run = run_result()
    assert not run.as_expected  # envoy/mine fails without an expectation
    assert run.exit_code == 1
    nginx = run.targets[0]
    assert nginx.as_expected


def test_wide_grid_shows_every_check_and_the_details() -> None:
    text = rendered(260)
    for header in ("upgrade", "echo", "subproto", "last-id", "gzip"):
        assert header in text
    assert "fail*" in text  # expected failure
    assert "envoy/mine ws.upgrade FAIL: status 400 from proxy, expected 101" in text
    assert "nginx/default ws.upgrade FAIL (expected)" in text
    assert "fix: forward Upgrade" in text
    assert "haproxy/default: skipped: haproxy binary not found" in text
    assert "UNEXPECTED RESULTS" in text


def test_narrow_terminals_get_compact_grids_that_fit() -> None:
    text = rendered(80)
    grid = text.split("✓ pass")[0]
    assert all(len(line) <= 80 for line in grid.splitlines())
    assert grid.count("target") >= 2  # split into several tables
    for header in ("upgr", "gzip", "keep", "span", "rlod", "conc"):
        assert header in grid
    assert "✗*" in grid and "✗ " in grid and "·" in grid


def test_json_report_has_the_design_shape(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.json"
    write_json(run_result(), path)
    data = json.loads(path.read_text())
    assert data["tool"] == {"name": "proxytest", "version": "0.1.0"}
    assert data["started_at"] == "2026-11-23T12:00:00+00:00"
    target = data["targets"][0]
    assert list(target) == ["id", "proxy", "setup", "runtime", "proxy_version", "status",
                            "reason", "results"]  # fmt: skip
    result = target["results"][0]
    assert result == {
        "check": "ws.upgrade",
        "verdict": "fail",
        "expected": "fail",
        "summary": "status 400 from proxy, expected 101",
        "hint": "forward Upgrade",
        "metrics": {"status": 400},
        "duration_s": 0.0,
    }
    assert data["targets"][2]["status"] == "skipped"
    assert list(tmp_path.glob("sub/.proxytest-*")) == []  # written atomically
