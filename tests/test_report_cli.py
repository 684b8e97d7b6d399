"""--report-dir on `run` and `check`, and `proxytest report RESULTS.json`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from junitparser import JUnitXml

from .conftest import ROOT, Cli
from .report_fixtures import all_pass_run, sample_run
from .test_cli import NGINX_BROKEN

KINDS = ("results.json", "junit.xml", "summary.md", "report.html", "badges/*.svg", "badges/*.json")


def assert_every_kind(folder: Path) -> None:
    for pattern in KINDS:
        assert list(folder.glob(pattern)), f"no {pattern} in {folder}"


def test_check_writes_the_report_dir_from_a_real_run(cli: Cli, tmp_path: Path) -> None:
    config = ROOT / "proxies" / "nginx" / "realtime.conf"
    out = tmp_path / "reports"
    checks = ("ws.upgrade", "ws.push", "sse.headers", "sse.stream")
    done = cli(
        "check", "--proxy", "nginx", "--config", str(config),
        *(arg for c in checks for arg in ("--checks", c)),
        "--report-dir", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Reports: {out}/" in done.stdout
    assert_every_kind(out)
    data = json.loads((out / "results.json").read_text())
    (target,) = data["targets"]
    assert target["config_files"] == [
        {"path": "proxies/nginx/realtime.conf", "text": config.read_text()}
    ]
    results = {r["check"]: r for r in target["results"]}
    assert set(results) == set(checks)
    for check in ("ws.push", "sse.headers", "sse.stream"):
        timeline = results[check]["timeline"]
        assert timeline["kind"] == check.partition(".")[0]
        assert timeline["events"], check
        for _seq, sent, arrived in timeline["events"]:
            assert 0 <= sent <= arrived
    assert "timeline" not in results["ws.upgrade"]
    assert results["sse.stream"]["timeline"]["headers_ms"] is not None
    assert len(results["sse.stream"]["timeline"]["events"]) == 20
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (4, 0, 0)
    html = (out / "report.html").read_text()
    assert html.count('<td class="cell ') == 4
    assert html.count('<svg class="timeline"') == 3
    assert cli.leftovers() == []


def test_run_writes_reports_even_when_it_exits_1(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "proxies" / "nginx").mkdir(parents=True)
    (tmp_path / "proxies" / "nginx" / "broken.conf").write_text(NGINX_BROKEN)
    (tmp_path / "matrix.yaml").write_text("targets:\n  - proxy: nginx\n    setup: broken\n")
    done = cli("run", "--checks", "ws.*", "--report-dir", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert_every_kind(tmp_path / "out")
    endpoint = json.loads((tmp_path / "out" / "badges" / "nginx-broken.json").read_text())
    assert (endpoint["message"], endpoint["color"]) == ("error", "orange")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "⚠️ **nginx/broken** error: proxies/nginx/broken.conf:7: nginx rejected" in summary


def test_a_report_dir_that_is_a_file_exits_2_before_running(cli: Cli, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    config = ROOT / "proxies" / "nginx" / "realtime.conf"
    done = cli("check", "--proxy", "nginx", "--config", str(config), "--report-dir", str(taken))
    assert done.returncode == 2
    assert f"{taken}: --report-dir is a file, not a folder" in done.stderr


def test_report_redraws_a_saved_run_and_exits_like_it(cli: Cli, tmp_path: Path) -> None:
    for run, code in ((sample_run(), 1), (all_pass_run(), 0)):
        saved = tmp_path / f"saved-{code}.json"
        saved.write_text(json.dumps(run.to_json()))
        out = tmp_path / f"out-{code}"
        done = cli("report", str(saved), "--report-dir", str(out))
        assert done.returncode == code, done.stdout + done.stderr
        assert_every_kind(out)
        assert json.loads((out / "results.json").read_text()) == run.to_json()
        assert ("UNEXPECTED RESULTS" in done.stdout) == (code == 1)
    # Without --report-dir it only prints the grid.
    done = cli("report", str(tmp_path / "saved-0.json"))
    assert done.returncode == 0
    assert "caddy/realtime" in done.stdout and "Reports:" not in done.stdout


def test_report_with_bad_input_exits_2_naming_the_file_and_the_fix(
    cli: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    broken = tmp_path / "broken.json"
    broken.write_text("{\n  not json\n}")
    wrong = tmp_path / "wrong.json"
    data = sample_run().to_json()
    data["targets"][0]["results"][0]["verdict"] = "passed"
    wrong.write_text(json.dumps(data))
    for path, problem in (
        (missing, f"{missing}: no such file"),
        (broken, f"{broken}:2: not valid JSON"),
        (wrong, f"{wrong}: targets[0].results[0].verdict: 'passed' is not one of"),
    ):
        done = cli("report", str(path), "--report-dir", str(tmp_path / "out"))
        assert done.returncode == 2, done.stdout + done.stderr
        assert problem in done.stderr
        assert "fix: pass the JSON report of a run" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
