"""The "SSE or WebSocket behind this setup?" section as the console, summary.md and
report.html draw it, from hand-made runs (no proxies needed)."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

from rich.console import Console

from proxytest.reports import run_from_json
from proxytest.reports.console import print_report
from proxytest.reports.html import render_html
from proxytest.reports.markdown import render_markdown
from proxytest.results import RunResult

from .report_fixtures import sample_run
from .test_advice import BUFFER_HINT, UPGRADE_HINT, target

CLAIMS = (
    "Does the upgrade pass?",
    "Are events streamed or held?",
    "How long does it survive idle, with which heartbeat?",
    "Does the client resume after a cut on its own?",
    "Which connection limit does a browser meet?",
    "Binary and client-to-server messages?",
    "Do reconnects stay on their backend (sticky)?",
    "A backend dies: do clients move on, losing nothing?",
    "Fan-out: one publisher, many subscribers?",
)
NO_UPGRADE = {"ws.upgrade": ("fail", {"status": 400}, "status 400 from proxy", UPGRADE_HINT)}


def run_of(*targets: dict[str, Any]) -> RunResult:
    data = {"tool": {"name": "proxytest", "version": "0.1.0"}, "started_at": "2026-11-28T10:00",
            "duration_s": 1.0, "targets": list(targets)}  # fmt: skip
    return run_from_json(data)


def console_text(run: RunResult, width: int = 160) -> str:
    console = Console(width=width, record=True, color_system=None)
    print_report(console, run)
    return console.export_text()


def test_console_shows_the_whole_section_for_one_target() -> None:
    text = console_text(run_of(target(NO_UPGRADE)), width=400)
    assert "SSE or WebSocket behind this setup?  someproxy/mine" in text
    flat = " ".join(text.split())
    for claim in CLAIMS:
        assert claim in flat, claim
    assert "Recommendation" in text
    assert "• SSE: WebSocket fails here (ws.upgrade: status 400 from proxy)." in flat
    assert f"• To use WebSocket: {UPGRADE_HINT}." in flat
    assert "not measured (lb.sticky not in this run)" in flat


def test_console_gives_one_line_per_target_for_a_run_of_many() -> None:
    run = run_of(target(NO_UPGRADE, proxy="a"), target({"sse.stream": ("fail", {}, "held",
                 BUFFER_HINT)}, proxy="b"), target(proxy="c"))  # fmt: skip
    text = console_text(run)
    section = text[text.index("SSE or WebSocket behind this setup?") :]
    assert "summary.md and report.html" in section
    assert re.search(r"\n  a/mine +SSE \(WebSocket fails: ws.upgrade\)\n", section), section
    assert re.search(r"\n  b/mine +WebSocket \(SSE fails: sse.stream\)\n", section), section
    assert re.search(r"\n  c/mine +either: SSE for server-to-client text, WebSocket for", section)
    assert "Does the upgrade pass?" not in text  # the rows are in the files


def test_console_section_for_the_sample_run_with_skipped_and_error_targets() -> None:
    text = console_text(sample_run(), width=200)
    section = text[text.index("SSE or WebSocket behind this setup?") :]
    assert "traefik/default" in section and "not measured (the setup did not run)" in section
    assert "\x1b[31m" not in section


def test_markdown_has_a_details_block_per_target_with_nine_rows() -> None:
    run = run_of(target(NO_UPGRADE, proxy="a"), target(proxy="b"))
    md = render_markdown(run)
    section = md[md.index("### SSE or WebSocket behind this setup?") :]
    assert section.count("<details><summary>") == 2  # closed: the run has several targets
    assert "<details><summary><b>a/mine</b>: SSE (WebSocket fails: ws.upgrade)</summary>" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "claim" not in line]
    assert len(rows) == 2 * len(CLAIMS)
    assert (
        "| Does the upgrade pass? | ✅ no upgrade needed: 200 text/event-stream in 1.1 ms "
        "(sse.headers) | ❌ fails: status 400 from proxy (ws.upgrade); Chromium's opened over "
        "HTTP/1.1 (browser.websocket) |"
    ) in section
    # The hint's knobs stay code; Markdown in the rest is escaped.
    assert f"- To use WebSocket: {UPGRADE_HINT}." in section
    assert "| Binary and client-to-server messages? | ℹ️ server-to-client text only" in section


def test_markdown_opens_the_block_for_one_target_and_escapes_what_a_run_says() -> None:
    nasty = "status 400 <script>alert(1)</script> | pipe * star"
    md = render_markdown(run_of(target({"ws.upgrade": ("fail", {}, nasty, None)})))
    section = md[md.index("### SSE or WebSocket behind this setup?") :]
    assert "<details open><summary>" in section
    assert "<script>" not in section and r"\<script\>" in section
    assert r"\| pipe \* star" in section


class Advices(HTMLParser):
    """The advice blocks of report.html: choice, rows and side states per target."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "details" and "advice" in (a.get("class") or ""):
            self.blocks.append({"target": a["data-target"], "choice": a["data-choice"],
                                "open": "open" in a, "rows": {}})  # fmt: skip
        elif tag == "tr" and a.get("data-row") and self.blocks:
            self.blocks[-1]["rows"][a["data-row"]] = []
        elif tag == "td" and a.get("data-state") and self.blocks and self.blocks[-1]["rows"]:
            rows = self.blocks[-1]["rows"]
            rows[list(rows)[-1]].append(a["data-state"])


def test_html_has_a_block_per_target_with_its_choice_rows_and_states() -> None:
    run = run_of(target(NO_UPGRADE, proxy="a"), target(proxy="b"))
    html = render_html(run)
    parser = Advices()
    parser.feed(html)
    assert [(b["target"], b["choice"], b["open"]) for b in parser.blocks] == [
        ("a/mine", "SSE", False),
        ("b/mine", "either", False),
    ]
    first = parser.blocks[0]["rows"]
    assert list(first) == ["upgrade", "stream", "idle", "resume", "connections", "binary",
                           "sticky", "failover", "fanout"]  # fmt: skip
    assert first["upgrade"] == ["good", "bad"]
    assert first["binary"] == ["fact", "good"]  # by hand: ws.echo passed
    assert first["sticky"] == ["not-measured", "not-measured"]
    assert "<code>Upgrade</code> and <code>Connection</code>" in html  # the hint's knobs


def test_html_escapes_what_a_run_says_and_opens_a_single_target() -> None:
    nasty = 'status 400 <script>alert(1)</script> & "quotes"'
    html = render_html(run_of(target({"ws.upgrade": ("fail", {}, nasty, "`<b>knob</b>`")})))
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<code>&lt;b&gt;knob&lt;/b&gt;</code>" in html
    parser = Advices()
    parser.feed(html)
    assert [b["open"] for b in parser.blocks] == [True]


def test_a_changed_result_in_the_json_changes_every_report() -> None:
    """Acceptance, through the files: the same JSON with ws.upgrade failed redraws the
    section with another row and another recommendation."""
    good = target()
    bad = copy.deepcopy(good)
    upgrade = next(r for r in bad["results"] if r["check"] == "ws.upgrade")
    upgrade.update(verdict="fail", summary="status 403 from proxy", hint=UPGRADE_HINT)
    before, after = run_of(good), run_of(bad)
    for render in (render_markdown, render_html, console_text):
        one, other = render(before), render(after)
        assert "Either works here" in one and "Either works here" not in other
        assert "SSE: WebSocket fails here (ws.upgrade: status 403 from proxy)." in other
        assert "fails: status 403 from proxy (ws.upgrade)" in " ".join(other.split())
