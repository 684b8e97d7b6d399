"""Probe mode (``proxytest probe URL``) on loopback: an origin with a token and a
prefix, the fault relay as "the deployed path", and what answers when the path
leads somewhere else. The hand-started nginx and HAProxy comparison with
``proxytest check`` is in tests/integration/test_probe_deployed.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.pathprobe import DeployedPath, probe_path
from proxytest.probes.context import new_session
from proxytest.probes.remote import ClockOffset, confirm
from proxytest.results import CheckResult, Verdict
from proxytest.settings import SettingError, parse_setting
from proxytest.tls import Trust

from .relay import Fault, Relay

TOKEN = "probe-test-token"
PREFIX = "/rt"


async def probe(
    port: int,
    checks: Sequence[str],
    *,
    token: str | None = TOKEN,
    prefix: str = PREFIX,
    max_hold: float = 2,
) -> dict[str, CheckResult]:
    path = DeployedPath.parse(f"http://127.0.0.1:{port}{prefix}", token=token)
    options = RunOptions.from_matrix(None, checks=checks, max_hold=max_hold)
    result = await probe_path(path, options)
    (target,) = result.targets
    assert target.id == "probe/127.0.0.1" and target.runtime == "remote"
    return {r.check: r for r in target.results}


# -- units -----------------------------------------------------------------------------
def test_durations_with_a_unit() -> None:
    assert parse_setting("max_hold", "2h") == 7200
    assert parse_setting("max_hold", "90m") == 5400
    assert parse_setting("max_hold", "45s") == parse_setting("max_hold", "45") == 45
    assert parse_setting("max_hold", 30) == 30
    for bad in ("25h", "2d", "h", "nanm", "-1m"):
        with pytest.raises(SettingError):
            parse_setting("max_hold", bad)
    with pytest.raises(SettingError):  # a count takes no unit
        parse_setting("load_connections", "2h")


def test_clock_offset_takes_the_fastest_round_trip() -> None:
    # (sent, origin clock, received): the 2 ms round trip wins over the 40 ms one.
    clock = ClockOffset.estimate([(10.0, 1010.5, 10.040), (20.0, 1020.001, 20.002)])
    assert clock.rtt_s == pytest.approx(0.002)
    assert clock.uncertainty_s == pytest.approx(0.001)
    assert clock.offset_s == pytest.approx(1000.0)


def test_deployed_path_parsing() -> None:
    path = DeployedPath.parse(
        "https://rt.example.com/app/", token="T", headers=["Authorization: Bearer x", "X-A:1"]
    )
    assert (path.scheme, path.host, path.port, path.prefix) == (
        "https",
        "rt.example.com",
        443,
        "/app",
    )
    assert path.request_headers == (
        ("Authorization", "Bearer x"),
        ("X-A", "1"),
        ("X-Proxytest-Token", "T"),
    )
    assert path.trust == Trust(system=True)
    assert path.target.id == "probe/rt.example.com"
    from proxytest.errors import UsageError

    for bad in ("ftp://x", "http://", "http://x/?a=1"):
        with pytest.raises(UsageError):
            DeployedPath.parse(bad)
    with pytest.raises(UsageError):
        DeployedPath.parse("http://x", headers=["no colon"])


def test_run_and_check_still_trust_the_run_ca_only() -> None:
    from proxytest.tls import authority

    assert Trust().client_context() is authority().client_context()
    system = Trust(system=True).client_context()
    assert system.cert_store_stats()["x509_ca"] > 0 or not os.path.exists("/etc/ssl/certs")
    assert authority().client_context().cert_store_stats()["x509_ca"] == 1


# -- through the relay -------------------------------------------------------------------
@pytest.mark.asyncio
async def test_offset_is_about_zero_on_one_machine() -> None:
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        new_session(headers=(("X-Proxytest-Token", TOKEN),)) as session,
    ):
        found = await confirm(session, f"http://127.0.0.1:{origin.port}", prefix=PREFIX)
        assert not isinstance(found, str), found
        assert found.id == origin.id
        assert abs(found.clock.offset_s) < 0.005, found.clock
        assert found.clock.uncertainty_s < 0.005


@pytest.mark.asyncio
async def test_clean_path_passes_and_states_what_delays_include() -> None:
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("clean")) as relay,
    ):
        results = await probe(
            relay.port,
            ["ws.upgrade", "ws.echo", "ws.push", "ws.close", "sse.stream", "sse.last-event-id",
             "lifecycle.*", "load.*"],
        )  # fmt: skip
    for check in ("ws.upgrade", "ws.echo", "ws.push", "ws.close", "sse.last-event-id"):
        assert results[check].verdict == Verdict.PASS, results[check].summary
    assert results["sse.stream"].verdict == Verdict.PASS, results["sse.stream"].summary
    assert "no direct baseline" in results["sse.stream"].summary
    assert "one-way time" in results["sse.stream"].summary
    for check in (
        "lifecycle.reload",
        "lifecycle.origin-restart",
        "load.concurrency",
        "load.fanout",
    ):
        assert results[check].verdict == Verdict.SKIP
        assert "needs control of the proxy" in results[check].summary


@pytest.mark.asyncio
async def test_idle_drop_time_is_measured_within_half_a_second() -> None:
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("close_after_idle", idle_s=3)) as relay,
    ):
        results = await probe(relay.port, ["ws.idle", "sse.idle"], max_hold=6)
    for check in ("ws.idle", "sse.idle"):
        result = results[check]
        assert result.verdict == Verdict.FAIL, result.summary
        assert abs(result.metrics["dropped_after_s"] - 3.0) <= 0.5, result.metrics


async def _login_page(request: web.Request) -> web.Response:
    return web.Response(
        text="<html><title>Sign in</title><form>password: <input type=password></form></html>",
        content_type="text/html",
        headers={"Server": "nginx/1.25.3"},
    )


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="404 page not found", headers={"Server": "envoy"})


@pytest_asyncio.fixture
async def stranger() -> AsyncIterator[dict[str, int]]:
    """Two plain aiohttp apps that are not a proxytest origin: a login page, a 404."""
    ports: dict[str, int] = {}
    runners = []
    for name, handler in (("login", _login_page), ("404", _not_found)):
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        ports[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        runners.append(runner)
    yield ports
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_something_else_answering_is_an_error_naming_it(stranger: dict[str, int]) -> None:
    checks = ["ws.upgrade", "sse.stream", "ws.idle"]
    async with Relay("127.0.0.1", stranger["login"], Fault("clean")) as relay:
        login = await probe(relay.port, checks)
    async with Relay("127.0.0.1", stranger["404"], Fault("clean")) as relay:
        missing = await probe(relay.port, checks)
    async with Origin(token=TOKEN, prefix=PREFIX) as origin:
        wrong = await probe(origin.port, checks, token="not-the-token")
        none = await probe(origin.port, checks, token=None)
        no_prefix = await probe(origin.port, checks, prefix="")
    for results, words in (
        (login, ("a login page: 200 text/html from nginx/1.25.3", "Sign in")),
        (missing, ("a 404", "from envoy", "404 page not found")),
        (wrong, ("401: the origin's token was not accepted", "--origin-token")),
        (none, ("401", "pass --origin-token")),
        (no_prefix, ("a 404", "prefix")),
    ):
        assert set(results) == set(checks)
        for result in results.values():
            assert result.verdict == Verdict.ERROR, result.summary
            for word in words:
                assert word in result.summary, result.summary


@pytest.mark.asyncio
async def test_sigterm_during_a_long_probe_leaves_what_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    async with Origin(token=TOKEN, prefix=PREFIX) as origin:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxytest", "probe", f"http://127.0.0.1:{origin.port}{PREFIX}",
            "--checks", "ws.echo", "--checks", "ws.idle", "--max-hold", "1h", "--json", str(out),
            env={**os.environ, "PROXYTEST_ORIGIN_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        saved: dict[str, object] = {}
        while time.monotonic() < deadline and not saved:
            await asyncio.sleep(0.2)
            if out.exists():
                saved = json.loads(out.read_text())
        assert saved, "no JSON was saved after ws.echo finished"
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 143, stderr.decode()
    assert "what was measured is in" in stderr.decode()
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    (target,) = data["targets"]
    results = {r["check"]: r for r in target["results"]}
    assert results["ws.echo"]["verdict"] == "pass"
    assert results["ws.idle"]["verdict"] == "error"
    assert "interrupted" in results["ws.idle"]["summary"]


def test_the_live_display_shows_the_time_held_so_far() -> None:
    import io

    from rich.console import Console

    from proxytest.reports.console import LiveProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    path = DeployedPath.parse("https://rt.example.com/rt")
    live = LiveProgress(console, [path.target], 3)
    live.started("ws.idle")
    live.running["ws.idle"] -= 3725  # started 1 h 2 min 5 s ago
    live.started("ws.echo")  # just started: not shown yet
    console.print(live._render())
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "ws.idle" in shown and "held 1:02:05" in shown
    assert "ws.echo" not in shown


@pytest.mark.asyncio
async def test_https_path_with_a_private_ca(tmp_path: Path) -> None:
    import ssl

    from proxytest.tls import authority

    files = authority().write(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert, files.key)
    options = RunOptions.from_matrix(None, checks=["ws.echo", "sse.stream"], max_hold=1)
    async with Origin("localhost", token=TOKEN, prefix=PREFIX, ssl_context=server) as origin:
        url = f"https://localhost:{origin.port}{PREFIX}"
        # The system's CAs alone do not know the private CA: an error naming --ca.
        refused = await probe_path(DeployedPath.parse(url, token=TOKEN), options)
        trusted = await probe_path(
            DeployedPath.parse(url, token=TOKEN, trust=Trust(system=True, ca_file=files.ca)),
            options,
        )
    for result in refused.targets[0].results:
        assert result.verdict == Verdict.ERROR
        assert "certificate" in result.summary and "--ca" in result.summary, result.summary
    assert trusted.targets[0].tls
    for result in trusted.targets[0].results:
        assert result.verdict == Verdict.PASS, result.summary


@pytest.mark.asyncio
async def test_browser_checks_send_the_token_and_use_the_prefix() -> None:
    from .browser import browser_or_skip

    browser_or_skip()
    async with (
        Origin(token=TOKEN, prefix=PREFIX) as origin,
        Relay(origin.host, origin.port, Fault("clean")) as relay,
    ):
        results = await probe(relay.port, ["browser.eventsource", "browser.websocket"])
    for result in results.values():
        assert result.verdict == Verdict.PASS, result.summary
