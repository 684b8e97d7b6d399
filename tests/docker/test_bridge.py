"""The docker runtime's bridge mode against a real engine with a bridge network.

This machine's test engine has no bridge (host networking only) and the host
network must stay untouched, so this module starts a second engine in a
network namespace of its own (scripts/docker-engine.sh with
PROXYTEST_DOCKER_NETNS=1): docker0, the published ports and the gateway exist
only in there. proxytest runs in that namespace too (nsenter), as the CLI a
user runs: once with local proxies, once with `--runtime docker
--docker-network bridge`, and both must agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS, Phase
from proxytest.matrix import TargetSpec
from proxytest.results import TargetStatus

from ..conftest import ROOT, Cli, signal_once_running
from .conftest import DockerSetup, _unavailable

pytestmark = pytest.mark.integration
LABEL = "proxytest.tool"
ENGINE_DIR = Path(
    os.environ.get("PROXYTEST_DOCKER_BRIDGE_DIR", "/tmp/proxytest-docker-bridge-tests")
)
SCRIPT = ROOT / "scripts" / "docker-engine.sh"
# Quick checks and both lifecycle checks: every path a bridge changes (ready
# wait, published port, gateway, reload helper, a second origin process);
# long holds behave as with host networking and are tested there.
CHECK_IDS = [c.id for c in CHECKS.values() if c.phase in (Phase.QUICK, Phase.LIFECYCLE)]
# Every proxy's default and realtime setup, and one behind TLS (its certificate
# files mounted with the run dir): the default matrix's other targets add load,
# not kinds of container.
TARGETS = [*(f"{p}/{s}" for p in ADAPTERS for s in ("default", "realtime")), "nginx/tls"]
RUN_ARGS = [
    "run", "--max-hold", "2", "--concurrency", "3", *(f"--checks={c}" for c in CHECK_IDS),
    *(f"--only={t}" for t in TARGETS),
]  # fmt: skip


@dataclass(frozen=True)
class BridgeEngine:
    host: str  # DOCKER_HOST
    pid: int  # dockerd: its network namespace is the engine's
    images: dict[str, str]

    def enter(self, *argv: str) -> list[str]:
        """``argv`` run in the engine's network namespace."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *argv]

    @contextlib.contextmanager
    def client(self) -> Iterator[docker.DockerClient]:
        client = docker.DockerClient(base_url=self.host, timeout=30)
        try:
            yield client
        finally:
            client.close()


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROXYTEST_DOCKER_NETNS": "1", "PROXYTEST_DOCKER_DIR": str(ENGINE_DIR)}
    return subprocess.run(
        ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def bridge_engine() -> Iterator[BridgeEngine]:
    if os.geteuid() != 0:
        _unavailable("an engine in its own network namespace needs root")
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not found (util-linux, iproute2)")
    started = _script("status", 30).returncode != 0  # one already running is left running
    try:
        if started:
            begun = time.monotonic()
            done = _script("start", 600)
            if done.returncode != 0:
                _unavailable(f"docker-engine.sh start (netns) failed: {done.stderr[-800:]}")
            print(f"bridge engine started in {time.monotonic() - begun:.1f} s", file=sys.stderr)
        pid = int((ENGINE_DIR / "docker.pid").read_text().strip())
        host = f"unix://{ENGINE_DIR}/docker.sock"
        out = ENGINE_DIR / f"images-{os.getpid()}.json"
        begun = time.monotonic()
        built = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "docker-images.py"), "--json", str(out)],
            env={**os.environ, "DOCKER_HOST": host}, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if built.returncode != 0 or not out.exists():
            pytest.fail(f"building the proxy images failed:\n{built.stdout}\n{built.stderr}")
        print(f"images ready in {time.monotonic() - begun:.1f} s", file=sys.stderr)
        images = json.loads(out.read_text())
        out.unlink()
        yield BridgeEngine(host, pid, images)
    finally:
        if started:
            _script("stop", 120)


def containers(engine: BridgeEngine) -> list[str]:
    """IDs of proxytest's containers in the engine (sparse: no race with removals)."""
    with engine.client() as client:
        found = client.containers.list(all=True, sparse=True, filters={"label": LABEL})
        return [c.id for c in found]


def proxytest(engine: BridgeEngine, *args: str) -> list[str]:
    """The command line of proxytest run in the engine's namespace."""
    return engine.enter(sys.executable, "-m", "proxytest", *args)


def env(engine: BridgeEngine, cli: Cli) -> dict[str, str]:
    # Both runs share two cores with an engine, its userland proxies and each
    # other's leftovers: twice the patience for timing verdicts, in both runs alike.
    return {**cli.env(), "DOCKER_HOST": engine.host,
            "PROXYTEST_TIME_SCALE": os.environ.get("PROXYTEST_TIME_SCALE", "2")}  # fmt: skip


@dataclass(frozen=True)
class Runs:
    local: dict[str, Any]
    bridge: dict[str, Any]
    bridge_output: str
    events: list[dict[str, Any]]  # the engine's container and network events of the bridge run
    left: list[str]  # proxytest containers right after the bridge run
    leftovers: list[str]  # files left in the runs' TMPDIR


@pytest.fixture(scope="module")
def runs(bridge_engine: BridgeEngine, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folder = tmp_path_factory.mktemp("bridge")
    cli = Cli(folder / "tmpdir")
    reports = {}
    output = ""
    images = [f"--image={p}={i}" for p, i in bridge_engine.images.items()]
    for name, extra in (
        ("local", ["--runtime", "local"]),
        ("bridge", ["--runtime", "docker", "--docker-network", "bridge", *images]),
    ):
        report = folder / f"{name}.json"
        since = time.time()
        began = time.monotonic()
        done = subprocess.run(
            proxytest(bridge_engine, *RUN_ARGS, *extra, "--json", str(report)),
            cwd=ROOT, env=env(bridge_engine, cli), capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"{name} run: {time.monotonic() - began:.1f} s", file=sys.stderr)
        assert report.exists(), done.stdout + done.stderr
        reports[name] = json.loads(report.read_text())
        output = done.stdout + done.stderr
    with bridge_engine.client() as client:
        events = list(
            client.events(
                since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                filters={"type": ["container", "network"]},
            )
        )  # fmt: skip
    return Runs(
        reports["local"], reports["bridge"], output, events, containers(bridge_engine),
        cli.leftovers(),
    )  # fmt: skip


def verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(t["id"], r["check"]): r["verdict"] for t in report["targets"] for r in t["results"]}


def test_every_setup_runs_in_a_container_on_the_bridge(runs: Runs) -> None:
    assert [t["id"] for t in runs.bridge["targets"]] == [t["id"] for t in runs.local["targets"]]
    assert sorted(t["id"] for t in runs.bridge["targets"]) == sorted(TARGETS)
    for target in runs.bridge["targets"]:
        assert target["runtime"] == "docker", target["id"]  # the network is not reported
        assert target["status"] == "ok", (target["id"], target["reason"], runs.bridge_output)
        assert target["proxy_version"], target["id"]
    connected = [
        e["Actor"]["Attributes"].get("name")
        for e in runs.events
        if e.get("Type") == "network" and e.get("Action") == "connect"
    ]
    # Main and lifecycle instances of every target. The engine replays only its last
    # 256 events to a `since` query, and a run makes more (create, start, connect,
    # die, destroy… per container): the count is a floor, the network is exact.
    assert len(connected) >= len(runs.bridge["targets"]), connected
    assert set(connected) == {"bridge"}


def test_bridge_gives_the_same_verdicts_as_local(runs: Runs) -> None:
    local, bridge = verdicts(runs.local), verdicts(runs.bridge)
    summaries = {
        (t["id"], r["check"]): r["summary"]
        for report in (runs.local, runs.bridge) for t in report["targets"] for r in t["results"]
    }  # fmt: skip
    assert local.keys() == bridge.keys()
    # An error because the tool itself was late judges nothing: not compared, but rare.
    late = {
        (t["id"], r["check"])
        for report in (runs.local, runs.bridge) for t in report["targets"] for r in t["results"]
        if r["summary"].startswith("too busy to judge timing")
    }  # fmt: skip
    assert len(late) <= 2, late
    differ = {
        k: (v, bridge[k], summaries[k])
        for k, v in local.items()
        if bridge[k] != v and k not in late
    }
    assert differ == {}
    # Not vacuous: failures, a degradation and both lifecycle checks are in there.
    assert bridge["nginx/default", "ws.upgrade"] == "fail"
    assert bridge["haproxy/default", "sse.stream"] == "degraded"
    assert bridge["caddy/default", "lifecycle.reload"] == "degraded"
    for proxy in ("nginx", "haproxy", "traefik", "caddy"):
        assert bridge[f"{proxy}/realtime", "lifecycle.reload"] == "pass"
    for target in {t for t, _ in bridge}:
        assert bridge[target, "lifecycle.origin-restart"] == "pass", target


def test_no_container_and_no_run_dir_is_left(runs: Runs, bridge_engine: BridgeEngine) -> None:
    assert runs.left == []
    assert runs.leftovers == []
    created = {e["id"] for e in runs.events if e.get("Type") == "container"
               and e.get("Action") == "create"}  # fmt: skip
    destroyed = {e["id"] for e in runs.events if e.get("Type") == "container"
                 and e.get("Action") == "destroy"}  # fmt: skip
    assert created and created <= destroyed
    assert containers(bridge_engine) == []


def test_interrupt_removes_every_container_on_the_bridge(
    bridge_engine: BridgeEngine, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "tmpdir")
    images = [f"--image={p}={i}" for p, i in bridge_engine.images.items()]
    with subprocess.Popen(
        proxytest(bridge_engine, "run", "--runtime", "docker", "--docker-network", "bridge",
                  *images, "--only", "nginx/realtime", "--only", "caddy/realtime",
                  "--checks", "lifecycle.*", "--checks", "sse.stream", "--max-hold", "30"),
        cwd=ROOT, env=env(bridge_engine, cli), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        _, err = signal_once_running(
            process, lambda: len(containers(bridge_engine)), signal.SIGINT,
            want=3, within_s=60, settle_s=0.5, end_s=60, what="container",
        )  # fmt: skip
    assert process.returncode == 130, err
    assert containers(bridge_engine) == []
    assert cli.leftovers() == []
    assert "Traceback" not in err


def test_an_engine_without_a_bridge_skips_with_the_reason(docker_setup: DockerSetup) -> None:
    # The host-networking test engine runs with --bridge=none.
    import asyncio

    from proxytest.options import RunOptions
    from proxytest.runner import run_targets

    target = TargetSpec(
        "caddy", "default", (ROOT / "proxies/caddy/default.Caddyfile",), runtime="docker"
    )
    run = asyncio.run(run_targets([target], RunOptions.from_matrix(
        checks=["ws.upgrade"], images=docker_setup.images, docker_network="bridge",
    )))  # fmt: skip
    (result,) = run.targets
    assert result.status == TargetStatus.SKIPPED
    assert "no `bridge` network" in (result.reason or "")
    assert "--docker-network host" in (result.reason or "")
    assert result.runtime == "docker"
    assert result.not_run and run.exit_code == 1
