"""Probe mode against proxies started by hand, as a deployed path would be.

The test renders a config of proxies/ (or tests/configs/) itself, starts nginx
and HAProxy with subprocess (not through proxytest's harness), puts an origin
with a token and a path prefix behind them, and runs ``probe_path`` through
them. ``proxytest check`` on the same configs (``run_targets``) must give the
same verdicts for every check both can run, and the same idle drop time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxytest.adapters import ADAPTERS
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.pathprobe import DeployedPath, probe_path
from proxytest.results import CheckResult, TargetStatus
from proxytest.runner import run_targets

from ..conftest import ROOT

pytestmark = pytest.mark.integration

TOKEN = "deployed-path-token"
PREFIX = "/rt"
CHECKS = [
    "ws.upgrade", "ws.echo", "ws.push", "ws.ping", "ws.close", "ws.subprotocol",
    "ws.idle", "ws.keepalive", "sse.headers", "sse.stream", "sse.last-event-id",
    "sse.reconnect", "sse.compression", "sse.idle", "sse.heartbeat", "sse.lifetime",
    "sse.stream@h2c",
]  # fmt: skip
IDLE = ("ws.idle", "sse.idle")
CONFIGS = {
    "nginx/realtime": ("nginx", ROOT / "proxies" / "nginx" / "realtime.conf", tuple(CHECKS)),
    "haproxy/realtime": ("haproxy", ROOT / "proxies" / "haproxy" / "realtime.cfg", tuple(CHECKS)),
    # 3 s timeouts: the idle drop both modes measure.
    "nginx/short": ("nginx", ROOT / "tests" / "configs" / "nginx-short.conf", IDLE),
    "haproxy/short": ("haproxy", ROOT / "tests" / "configs" / "haproxy-short.cfg", IDLE),
}
MAX_HOLD, HEARTBEAT = 5.0, 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _render(template: Path, run_dir: Path, listen: int, upstream: int) -> Path:
    text = template.read_text()
    for name, value in {
        "listen_host": "127.0.0.1",
        "listen_port": str(listen),
        "upstream_host": "127.0.0.1",
        "upstream_port": str(upstream),
        "run_dir": str(run_dir),
    }.items():
        for form in (f"{{{{ {name} }}}}", f"{{{{{name}}}}}"):
            text = text.replace(form, value)
    assert "{{" not in text, template
    out = run_dir / template.name
    out.write_text(text)
    return out


@contextlib.asynccontextmanager
async def by_hand(proxy: str, config: Path, run_dir: Path, upstream: int) -> AsyncIterator[int]:
    """The proxy started with subprocess from a config rendered here; yields its port."""
    port = _free_port()
    rendered = _render(config, run_dir, port, upstream)
    binary = str(ADAPTERS[proxy].find_binary())
    if proxy == "nginx":
        extra = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        argv = [binary, "-p", f"{run_dir}/", "-c", str(rendered), "-e", "stderr", "-g", extra]
    else:
        argv = [binary, "-db", "-f", str(rendered)]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        ready = f"http://127.0.0.1:{port}{PREFIX}/__proxytest/ready?token={TOKEN}"
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession() as session:
            while True:
                assert process.returncode is None, f"{proxy} exited {process.returncode}"
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(ready) as response:
                        if response.status == 200:
                            break
                assert time.monotonic() < deadline, f"{proxy} not ready in 10 s"
                await asyncio.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)


async def _probe_all(tmp: Path) -> dict[str, dict[str, CheckResult]]:
    async with Origin(token=TOKEN, prefix=PREFIX) as origin:

        async def one(name: str) -> tuple[str, dict[str, CheckResult]]:
            proxy, config, checks = CONFIGS[name]
            run_dir = tmp / name.replace("/", "-")
            run_dir.mkdir(mode=0o700)
            async with by_hand(proxy, config, run_dir, origin.port) as port:
                path = DeployedPath.parse(f"http://127.0.0.1:{port}{PREFIX}", token=TOKEN)
                options = RunOptions.from_matrix(
                    checks=list(checks), max_hold=MAX_HOLD, heartbeat=HEARTBEAT
                )
                result = await probe_path(path, options)
            (target,) = result.targets
            assert target.status == TargetStatus.OK, target.reason
            return name, {r.check: r for r in target.results}

        return dict(await asyncio.gather(*(one(n) for n in CONFIGS)))


@pytest.fixture(scope="module")
def verdicts(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, dict[str, CheckResult]], dict[str, dict[str, CheckResult]]]:
    targets = [
        TargetSpec(proxy, name.split("/")[1], (config,), id=name, checks=checks)
        for name, (proxy, config, checks) in CONFIGS.items()
    ]
    options = RunOptions.from_matrix(checks=CHECKS, max_hold=MAX_HOLD, heartbeat=HEARTBEAT)
    checked = asyncio.run(run_targets(targets, options))
    by_check = {}
    for target in checked.targets:
        assert target.status == TargetStatus.OK, target.reason
        by_check[target.id] = {r.check: r for r in target.results}
    probed = asyncio.run(_probe_all(tmp_path_factory.mktemp("by-hand")))
    return by_check, probed


@pytest.mark.parametrize("name", list(CONFIGS))
def test_probe_gives_the_verdicts_of_check(verdicts, name: str) -> None:  # type: ignore[no-untyped-def]
    checked, probed = verdicts
    differ = {
        check: (checked[name][check].summary, probed[name][check].summary)
        for check in CONFIGS[name][2]
        if checked[name][check].verdict != probed[name][check].verdict
    }
    assert differ == {}


@pytest.mark.parametrize("name", ["nginx/short", "haproxy/short"])
@pytest.mark.parametrize("check", IDLE)
def test_probe_measures_the_idle_drop_as_check_does(verdicts, name: str, check: str) -> None:  # type: ignore[no-untyped-def]
    checked, probed = verdicts
    dropped = probed[name][check].metrics["dropped_after_s"]
    assert dropped == pytest.approx(3.0, abs=0.5), probed[name][check].summary
    assert dropped == pytest.approx(checked[name][check].metrics["dropped_after_s"], abs=0.5)
