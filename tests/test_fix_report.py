"""A `proxytest fix` report from a hand-made result (no proxies): JSON round trip, the
console, summary.md and report.html show the patch and before -> after; the exit code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from proxytest import cli
from proxytest.reports import run_from_json, write_reports
from proxytest.reports.console import print_report
from proxytest.results import (
    CheckResult,
    ConfigFile,
    FixChange,
    FixRefusal,
    FixRow,
    FixStatus,
    RunResult,
    TargetFix,
    TargetResult,
    TargetStatus,
    Verdict,
)

PATCH = (
    "--- a/site.conf\n+++ b/site.conf\n@@ -3,2 +3,4 @@\n     location / {\n"
    "+        # events are sent as they come, not when a buffer fills\n"
    "+        proxy_buffering off;\n         proxy_pass http://origin;\n"
)


def target(*results: tuple[str, Verdict]) -> TargetResult:
    checks = tuple(CheckResult(c, v, f"{c} was {v.value}") for c, v in results)
    return TargetResult("nginx/site.conf", "nginx", "site.conf", "local", "1.31.3",
                        TargetStatus.OK, None, checks)  # fmt: skip


def fixed_run(status: FixStatus = FixStatus.PROVEN) -> RunResult:
    before = target(("sse.stream", Verdict.FAIL), ("ws.upgrade", Verdict.PASS),
                    ("sse.idle", Verdict.FAIL))  # fmt: skip
    after = target(("sse.stream", Verdict.PASS), ("ws.upgrade", Verdict.PASS))
    fix = TargetFix(
        "nginx/site.conf", status, "proven: 1 check(s) fixed by 1 change(s)",
        patch=PATCH,
        files=(ConfigFile("site.conf", "events {}\n"),),
        changes=(FixChange("site.conf", 4, "proxy_buffering off;", ("sse.stream",),
                           "nginx buffers the response", proven=True),),
        refusals=(FixRefusal("sse.idle", "proxy_read_timeout 5s is set here on purpose.",
                             "Decide how long a quiet stream may live.",
                             proposal="proxy_read_timeout 1h;"),),
        rows=(FixRow("sse.stream", Verdict.FAIL, Verdict.PASS, True, "20/20 one by one"),
              FixRow("ws.upgrade", Verdict.PASS, Verdict.PASS, False, "101"),
              FixRow("sse.idle", Verdict.FAIL, None, False, "cut after 5 s")),
        after=after,
    )  # fmt: skip
    return RunResult("0.1.0", "2026-11-28T12:00:00+00:00", 9.5, (before,), fixes=(fix,))


def test_the_json_form_reads_back_whole() -> None:
    run = fixed_run()
    data = json.loads(json.dumps(run.to_json()))
    assert data["fixes"][0]["patch"] == PATCH
    assert data["fixes"][0]["checks"][0]["outcome"] == "fixed"
    assert run_from_json(data) == run
    assert "fixes" not in replace(run, fixes=()).to_json()  # additive: only on a fix report


def test_a_check_fixed_in_part_reads_back_and_shows_as_such(tmp_path: Path) -> None:
    run = fixed_run(FixStatus.PROVEN_IN_PART)
    said = "hop-by-hop headers reached the origin: X-Proxytest-Hop"
    part = FixRow("http.hop-by-hop", Verdict.FAIL, Verdict.FAIL, True, said, cause_gone=True)
    run = replace(run, fixes=(replace(run.fixes[0], rows=(*run.fixes[0].rows, part)),))
    data = json.loads(json.dumps(run.to_json()))
    assert data["fixes"][0]["checks"][-1]["outcome"] == "fixed in part"
    assert run_from_json(data) == run
    write_reports(run, tmp_path)
    assert (
        "| `http.hop-by-hop` | fail | fail | 🟡 fixed in part |"
        in (tmp_path / "summary.md").read_text()
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [(FixStatus.PROVEN, 0), (FixStatus.NOTHING, 0), (FixStatus.PROVEN_IN_PART, 1),
     (FixStatus.UNPROVEN, 1), (FixStatus.NO_CONFIG_CHANGE, 1), (FixStatus.NOT_MEASURED, 1)],
)  # fmt: skip
def test_the_exit_code_is_0_only_when_nothing_is_left_to_fix(status: FixStatus, code: int) -> None:
    run = fixed_run(status)
    assert run.exit_code == code
    assert replace(run, interrupted=True).exit_code == 1


def test_every_report_shows_the_patch_the_table_and_what_was_left_alone(tmp_path: Path) -> None:
    run = fixed_run()
    console = Console(width=160, record=True, color_system=None)
    print_report(console, run)
    text = console.export_text()
    assert "+        proxy_buffering off;" in text and "PROVEN" in text
    assert "Proposed, not made: proxy_read_timeout 1h;" in text
    assert "fix: 1 proven" in text and "--write" in text
    write_reports(run, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("## ✅ proxytest: fix: 1 proven")
    assert "```diff\n" + PATCH.rstrip("\n") + "\n```" in summary
    assert "| `sse.stream` | fail | pass | ✅ fixed |" in summary
    assert "`proxy_read_timeout 1h;`" in summary
    page = (tmp_path / "report.html").read_text()
    assert 'id="fixes"' in page and 'data-status="proven"' in page
    assert '<span class="diff-add">+        proxy_buffering off;</span>' in page
    assert 'data-check="sse.stream" data-outcome="fixed"' in page
    # `proxytest report` redraws the same from results.json, with the fix's exit code.
    assert cli.main(["report", str(tmp_path / "results.json")]) == 0
    unproven = replace(run, fixes=(replace(run.fixes[0], status=FixStatus.UNPROVEN),))
    write_reports(unproven, tmp_path / "u")
    assert (
        (tmp_path / "u" / "summary.md").read_text().startswith("## ❌ proxytest: fix: 1 unproven")
    )
    assert cli.main(["report", str(tmp_path / "u" / "results.json")]) == 1
