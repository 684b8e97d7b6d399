"""report.html in a real browser: Debian's Chromium, headless, over the DevTools protocol.

Skipped when no Chromium is installed (``scripts/dev.sh browser`` installs it),
except with ``PROXYTEST_REQUIRE_BROWSER=1`` (CI), where a missing browser fails.
The screenshot is kept under ``$PROXYTEST_ARTIFACTS`` (else the test's tmp_path).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from proxytest.reports import write_reports

from .browser import Page, browser_or_skip, headless_chromium
from .report_fixtures import sample_run

pytestmark = pytest.mark.asyncio

CELL = 'td.cell[data-target="{}"][data-check="{}"]'
VISIBLE_DETAILS = (
    "[...document.querySelectorAll('.detail')].filter(d => d.offsetHeight > 0).map(d => d.id)"
)


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PROXYTEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def open_cell(page: Page, target: str, check: str) -> str:
    """Click a grid cell like a person; return the id of the details that opened."""
    selector = CELL.format(target, check)
    detail_id = await page.js(f"document.querySelector('{selector}').dataset.detail")
    await page.click(selector)
    shown = await page.wait_for(
        f"document.getElementById('{detail_id}').offsetHeight > 0 && '{detail_id}'"
    )
    assert shown == detail_id, f"clicking {target} {check} did not open its details"
    assert await page.js(VISIBLE_DETAILS) == [detail_id]
    # The script marks the chosen cell on hashchange, a moment after :target shows it.
    assert await page.wait_for(
        f"document.querySelector('{selector}').classList.contains('selected')"
    )
    return str(detail_id)


async def test_html_report_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = browser_or_skip()
    started = time.monotonic()
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = tmp_path / "reports"
    write_reports(sample_run(), out)
    data = json.loads((out / "results.json").read_text())
    results = [r for t in data["targets"] for r in t["results"]]

    async with headless_chromium(binary, width=1280, height=900) as page:
        await page.goto((out / "report.html").as_uri())

        # The grid: one visible, non-empty cell per result.
        sizes = await page.js(
            "[...document.querySelectorAll('td.cell')].map(c => { const r ="
            " c.getBoundingClientRect(); const s = getComputedStyle(c);"
            " return [r.width, r.height, s.visibility, s.display]; })"
        )
        assert len(sizes) == len(results) == 24
        for width, height, visibility, display in sizes:
            assert width > 20 and height > 20 and visibility == "visible" and display != "none"
        assert await page.js(VISIBLE_DETAILS) == []  # nothing open before a click

        # A degraded WebSocket push: details, hint, config text and the ladder chart.
        detail = await open_cell(page, "haproxy/realtime", "ws.push")
        text = await page.js(f"document.getElementById('{detail}').innerText")
        assert "messages coalesced: 15 of 19 arrived together" in text
        assert "option http-no-delay" in text and "651.2" in text and "2.6.12" in text
        assert "global" in text  # the setup's config file, copied into the panel
        push = next(
            r for t in data["targets"] if t["id"] == "haproxy/realtime"
            for r in t["results"] if r["check"] == "ws.push"
        )  # fmt: skip
        chart = await page.js(
            f"(() => {{ const svg = document.querySelector('#{detail} svg.timeline');"
            " const box = svg.getBoundingClientRect();"
            " const marks = [...svg.querySelectorAll('g.event')];"
            " return [box.width, box.height, marks.length,"
            " marks.filter(m => m.getBoundingClientRect().height > 0).length,"
            " [...svg.querySelectorAll('text')].map(t => t.textContent)]; })()"
        )
        width, height, marks, drawn, labels = chart
        assert width > 400 and height > 80
        assert marks == drawn == len(push["timeline"]["events"]) == 20
        assert "origin send time (s)" in labels and "client arrival time (s)" in labels
        shot = await page.screenshot(artifacts(tmp_path) / "report-html-ws-push.png")

        # Another cell closes the first: the resumed SSE stream, both connections drawn.
        detail = await open_cell(page, "nginx/default", "sse.last-event-id")
        assert await page.js(f"document.querySelectorAll('#{detail} g.event').length") == 6
        assert await page.js(f"!!document.querySelector('#{detail} g.reconnect')")
        # A cell without a chart, expected by the matrix.
        detail = await open_cell(page, "nginx/default", "ws.upgrade")
        text = await page.js(f"document.getElementById('{detail}').innerText")
        assert "The matrix expects fail here" in text
        assert await page.js(f"document.querySelectorAll('#{detail} svg.timeline').length") == 0

        assert page.exceptions == []
        assert {url.partition(":")[0] for url in page.requests} <= {"file", "data", "about"}

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"\nscreenshot: {shot} (browser test took {time.monotonic() - started:.1f} s)")
