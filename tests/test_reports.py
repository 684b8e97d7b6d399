"""Console grid and JSON report from a hand-made RunResult (no proxies needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from proxytest.checks import CHECKS
from proxytest.matrix import TargetSpec
from proxytest.probes import HandshakeTimeline, ResumeTimeline
from proxytest.reports import write_json
from proxytest.reports.console import print_report
from proxytest.results import (
    CheckResult,
    ConfigFile,
    RunResult,
    TargetResult,
    TargetStatus,
    Verdict,
)
from proxytest.runner import config_files

from .report_fixtures import RESUME
from .timelines import stream


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
    # Wide enough for one table of every check in words (440 columns with the
    # security checks of issue 15).
    text = rendered(520)
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
                            "reason", "results", "config_files"]  # fmt: skip
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


# -- additive JSON keys: config_files, timeline -------------------------------------
def test_stream_timelines_reach_the_json_in_ms_relative_to_the_request() -> None:
    tl = stream([0.44, 250.0], count=2, interval_ms=100.0, headers_ms=1.26)
    result = CheckResult("sse.stream", Verdict.PASS, "ok", timeline=tl).to_json()
    assert result["timeline"] == {
        "kind": "sse",
        "url": "http://127.0.0.1:1/sse",
        "interval_ms": 100.0,
        "expected": 2,
        "status": 200,
        "headers_ms": 1.3,
        "end": "complete",
        "error": None,
        "events": [[1, 1.0, 1.4], [2, 101.0, 351.0]],
    }
    push = stream([0.5], count=1, kind="ws", headers_ms=None, end="status")
    data = CheckResult("ws.push", Verdict.FAIL, "x", timeline=push).to_json()["timeline"]
    assert data["kind"] == "ws" and data["headers_ms"] is None and data["end"] == "status"


def test_resume_timelines_put_both_connections_on_one_clock() -> None:
    data = CheckResult("sse.last-event-id", Verdict.PASS, "ok", timeline=RESUME).to_json()
    timeline = data["timeline"]
    assert timeline["reconnect_ms"] == 300.0
    assert [e[0] for e in timeline["events"]] == [1, 2, 3, 4, 5, 6]
    assert timeline["events"][3] == [4, 301.0, 301.5]
    alone = ResumeTimeline(RESUME.first, None, None, (None,))
    assert (
        CheckResult("x", Verdict.FAIL, "x", timeline=alone).to_json()["timeline"]["reconnect_ms"]
        is None
    )


def test_other_timelines_stay_out_of_the_json() -> None:
    handshake = HandshakeTimeline(
        "ws://x", 0.0, 400, "Bad Request", (), 0.01, "k", "a", None, 1, False, False
    )
    for timeline in (handshake, None):
        data = CheckResult("ws.upgrade", Verdict.FAIL, "x", timeline=timeline).to_json()
        assert "timeline" not in data


def test_config_files_are_the_templates_as_written(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proxies" / "nginx").mkdir(parents=True)
    inside = tmp_path / "proxies" / "nginx" / "default.conf"
    inside.write_text("listen {{ listen_port }};\n")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.conf"
    outside.write_text("x")
    try:
        spec = TargetSpec("nginx", "default", (inside, outside))
        files = config_files(spec)
    finally:
        outside.unlink()
    assert files[0] == ConfigFile("proxies/nginx/default.conf", "listen {{ listen_port }};\n")
    assert files[1].path == outside.as_posix()
    target = TargetResult("nginx/default", "nginx", "default", "local", "1.0", TargetStatus.OK,
                          None, (), config_files=files)  # fmt: skip
    assert target.to_json()["config_files"][0] == {
        "path": "proxies/nginx/default.conf",
        "text": "listen {{ listen_port }};\n",
    }
