"""The browser.* checks with a real Chromium: pass on clean paths, fail against their faults.

Real sockets, the real origin, Debian's Chromium (skipped without it unless
``PROXYTEST_REQUIRE_BROWSER=1``). The "proxy" is tests/relay.py (HTTP/1.1,
cleartext): the checks run over http:// there, so Chromium uses HTTP/1.1 and
its 6-connections-per-host limit applies. A short max-hold keeps
browser.eventsource to a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes.cdp import Browsers
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Verdict
from proxytest.runner import run_checks
from proxytest.settings import Settings
from proxytest.timing import Thresholds

from .browser import browser_or_skip
from .relay import Fault, Relay

pytestmark = pytest.mark.asyncio

SETTINGS = Settings(max_hold_s=3.0)
ALL = ["browser.*"]


async def run(
    patterns: Sequence[str], fault: Fault | None, browsers: Browsers
) -> dict[str, CheckResult]:
    """Run ``patterns`` through a relay with ``fault`` (None: the origin itself)."""
    async with Origin() as origin, LagMonitor() as lag, new_session() as session:

        async def checks(host: str, port: int) -> tuple[CheckResult, ...]:
            ctx = ProbeContext(
                host, port, origin, session, Thresholds(), lag,
                settings=SETTINGS, browsers=browsers,
            )  # fmt: skip
            return await run_checks(ctx, select(patterns))

        if fault is None:
            results = await checks(origin.host, origin.port)
        else:
            async with Relay(origin.host, origin.port, fault) as relay:
                results = await checks(relay.host, relay.port)
    return {r.check: r for r in results}


async def test_every_browser_check_passes_directly_and_through_the_clean_relay() -> None:
    browser_or_skip()
    async with Browsers() as browsers:
        direct = await run(ALL, None, browsers)
        relayed = await run(ALL, Fault("clean"), browsers)
        assert browsers.starts == 1  # one Chromium for every check of both runs
        chromium = browsers.chromium
        assert chromium is not None
    assert not chromium.alive  # closed with the provider
    for results in (direct, relayed):
        assert {k: r.verdict for k, r in results.items()} == {
            "browser.eventsource": Verdict.PASS,
            "browser.websocket": Verdict.PASS,
            "browser.connection-limit": Verdict.PASS,
        }, {k: r.summary for k, r in results.items()}
        es = results["browser.eventsource"].metrics
        assert (es["lost"], es["duplicated"], es["reconnects"]) == (0, 0, 1)
        assert es["last_event_id_resumed"] is True
        ws = results["browser.websocket"].metrics
        assert (ws["websocket_over_h2"], ws["page_protocol"]) == (False, "http/1.1")
        limit = results["browser.connection-limit"]
        assert limit.metrics["opened"] == 6 and limit.metrics["waiting_opened_after_close"]
        assert "Chromium allows 6 connections per host" in limit.summary
        assert "cleartext" in limit.summary


async def test_each_browser_check_fails_against_its_fault() -> None:
    browser_or_skip()
    async with Browsers() as browsers:
        # Each fault behind its own relay and origin, at once, in one Chromium (a
        # browser context per check), as the runner runs every target's browser checks.
        stripped, limited, no_upgrade, no_close = await asyncio.gather(
            run(
                ["browser.eventsource"],
                Fault("strip_headers", headers=("Last-Event-ID",)),
                browsers,
            ),
            run(["browser.connection-limit"], Fault("max_connections", connections=3), browsers),
            run(["browser.websocket"], Fault("strip_headers", headers=("Upgrade",)), browsers),
            run(["browser.websocket"], Fault("drop_ws_close"), browsers),
        )
    es = stripped["browser.eventsource"]
    assert es.verdict == Verdict.FAIL, es.summary
    assert es.metrics["last_event_id_resumed"] is False and es.metrics["lost"] > 0
    assert "Last-Event-ID" in (es.hint or "")

    limit = limited["browser.connection-limit"]
    assert limit.verdict == Verdict.FAIL, limit.summary
    assert limit.metrics["opened"] < 6

    upgrade = no_upgrade["browser.websocket"]
    assert upgrade.verdict == Verdict.FAIL, upgrade.summary
    assert upgrade.metrics["close_code"] == 1006
    assert "do not fall back" in (upgrade.hint or "")

    close = no_close["browser.websocket"]
    assert close.verdict == Verdict.FAIL, close.summary
    assert close.metrics["close_code"] == 1006


async def test_no_chromium_is_a_skip_or_under_require_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROXYTEST_CHROMIUM", "/nonexistent/chromium")
    for required, verdict in ((False, Verdict.SKIP), (True, Verdict.ERROR)):
        async with Browsers(required=required) as browsers:
            results = await run(ALL, None, browsers)
        assert {r.verdict for r in results.values()} == {verdict}
        assert all("apt-get install chromium" in r.summary for r in results.values())
        # A skip for a missing browser is not as expected: the run is not green.
        assert not any(r.as_expected for r in results.values())
