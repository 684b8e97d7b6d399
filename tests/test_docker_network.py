"""The docker network modes' decisions, without an engine: what is rendered, published, bound.

host: the proxy listens on loopback and reaches the origin there. bridge: it
listens on 0.0.0.0 in its container, its port is published on 127.0.0.1 only,
and it reaches the origin through the bridge's gateway, where the origin then
listens too. The real thing runs in tests/docker/test_bridge.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxytest import cli
from proxytest.adapters import ADAPTERS
from proxytest.checks import select
from proxytest.errors import LaunchError, MatrixError
from proxytest.harness import Harness
from proxytest.matrix import parse_matrix
from proxytest.options import RunOptions
from proxytest.origin import Origin, OriginProcess
from proxytest.origin.server import READY_PATH
from proxytest.probes.context import new_session
from proxytest.results import RunResult
from proxytest.runtimes import DOCKER_NETWORKS, LocalRuntime, choose
from proxytest.runtimes import docker as docker_runtime
from proxytest.runtimes.docker import DockerRuntime, Network, bridge_gateway
from proxytest.templates import render_files
from proxytest.timing import Thresholds

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = "172.17.0.1"
BRIDGE = Network("bridge", GATEWAY)


class FakeEngine:
    """Answers like an engine whose bridge network is ``network`` (a Network or why not)."""

    def __init__(self, network: Network | str = BRIDGE) -> None:
        self._network = network
        self.asked: list[str] = []

    def unavailable(self) -> str | None:
        return None

    def network(self, mode: str) -> Network | str:
        self.asked.append(mode)
        return Network() if mode == "host" else self._network

    def image_present(self, image: str) -> bool:
        return True

    def ensure_image(self, image: str) -> str | None:
        return None


def harness(runtime: Any) -> Harness:
    return Harness(
        ADAPTERS["envoy"], Path("/usr/local/bin/envoy"), (), Thresholds(), None,  # type: ignore[arg-type]
        runtime=runtime,
    )  # fmt: skip


# -- what the container is started with ---------------------------------------------------
def test_host_mode_shares_the_engine_network_and_publishes_nothing() -> None:
    host = Network()
    assert host.container_options(publish=("127.0.0.1", 4000)) == {"network_mode": "host"}
    assert host.listen_host is None and host.upstream_host is None
    assert host.published_port({}, "127.0.0.1", 4000) == 4000


def test_bridge_mode_publishes_on_loopback_only() -> None:
    options = BRIDGE.container_options(publish=("127.0.0.1", 4000))
    assert options["network_mode"] == "bridge"
    # The config's port inside; the engine picks a free port on the host, at 127.0.0.1.
    assert options["ports"] == {"4000/tcp": ("127.0.0.1",)}
    assert all(binding[0] == "127.0.0.1" for binding in options["ports"].values())
    assert options["extra_hosts"] == {"host.docker.internal": "host-gateway"}
    assert BRIDGE.listen_host == "0.0.0.0"
    assert BRIDGE.upstream_host == GATEWAY


def test_bridge_helpers_publish_nothing_and_old_engines_get_no_host_gateway() -> None:
    assert "ports" not in BRIDGE.container_options()
    old = Network("bridge", GATEWAY, host_gateway=False)
    assert "extra_hosts" not in old.container_options(publish=("127.0.0.1", 4000))


def test_the_published_port_is_read_from_the_loopback_binding() -> None:
    attrs = {"NetworkSettings": {"Ports": {"4000/tcp": [
        {"HostIp": "::1", "HostPort": "41000"}, {"HostIp": "127.0.0.1", "HostPort": "49153"},
    ]}}}  # fmt: skip
    assert BRIDGE.published_port(attrs, "127.0.0.1", 4000) == 49153
    assert BRIDGE.published_port({"NetworkSettings": {"Ports": {}}}, "127.0.0.1", 4000) is None


def test_a_network_is_validated_on_construction() -> None:
    with pytest.raises(ValueError, match="overlay"):
        Network("overlay")
    with pytest.raises(ValueError, match="gateway"):
        Network("bridge")
    assert DOCKER_NETWORKS == ("host", "bridge")


# -- the gateway, from the network's IPAM config ------------------------------------------
@pytest.mark.parametrize(
    ("configs", "gateway"),
    [
        ([{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}], "172.17.0.1"),
        ([{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.254/24"}], "10.9.0.254"),
        # An engine that created docker0 itself records only the subnet (Docker 20.10).
        ([{"Subnet": "172.17.0.0/16"}], "172.17.0.1"),
        (
            [{"Subnet": "fd00::/64", "Gateway": "fd00::1"}, {"Subnet": "172.18.0.0/16"}],
            "172.18.0.1",
        ),
        ([{"Subnet": "fd00::/64", "Gateway": "fd00::1"}], None),
        ([], None),
    ],
)
def test_bridge_gateway(configs: list[dict[str, str]], gateway: str | None) -> None:
    assert bridge_gateway({"IPAM": {"Driver": "default", "Config": configs}}) == gateway


def test_a_network_without_ipam_has_no_gateway() -> None:
    assert bridge_gateway({"IPAM": None}) is None
    assert bridge_gateway({}) is None


# -- what the config is rendered with -----------------------------------------------------
def test_bridge_renders_listen_on_all_and_upstream_on_the_gateway(tmp_path: Path) -> None:
    bridged = harness(DockerRuntime(FakeEngine(), "envoy:test", BRIDGE))  # type: ignore[arg-type]
    values = bridged.placeholders("127.0.0.1", 8080, tmp_path, 4000)
    assert (values.listen_host, values.listen_port) == ("0.0.0.0", 4000)
    assert (values.upstream_host, values.upstream_port) == (GATEWAY, 8080)
    assert bridged.runtime.origin_hosts("127.0.0.1") == ("127.0.0.1", GATEWAY)
    (main,) = render_files((ROOT / "proxies/envoy/realtime.yaml",), values)
    text = main.read_text()
    assert "address: 0.0.0.0" in text and f"address: {GATEWAY}" in text
    assert "127.0.0.1" not in text


def test_bridge_renders_every_backend_of_a_two_backend_config_on_the_gateway(
    tmp_path: Path,
) -> None:
    bridged = harness(DockerRuntime(FakeEngine(), "envoy:test", BRIDGE))  # type: ignore[arg-type]
    values = bridged.placeholders("127.0.0.1", 8080, tmp_path, 4000, [("127.0.0.1", 8081)])
    assert values.backends == ((GATEWAY, 8080), (GATEWAY, 8081))
    (main,) = render_files((ROOT / "proxies/envoy/lb-sticky.yaml",), values)
    text = main.read_text()
    assert text.count(f"address: {GATEWAY}") == 2
    assert "port_value: 8080" in text and "port_value: 8081" in text
    assert "127.0.0.1" not in text


@pytest.mark.parametrize("runtime", [LocalRuntime(), "docker-host"])
def test_host_and_local_render_loopback_both_ways(runtime: Any, tmp_path: Path) -> None:
    if runtime == "docker-host":
        runtime = DockerRuntime(FakeEngine(), "envoy:test", Network())  # type: ignore[arg-type]
    plain = harness(runtime)
    values = plain.placeholders("127.0.0.1", 8080, tmp_path, 4000)
    assert (values.listen_host, values.upstream_host) == ("127.0.0.1", "127.0.0.1")
    assert plain.runtime.origin_hosts("127.0.0.1") == ("127.0.0.1",)
    assert runtime.beside(object()) == runtime.run  # no container: helpers run as before


# -- the origin listens where the proxy reaches it ----------------------------------------
async def _ready(session: aiohttp.ClientSession, host: str, port: int) -> str:
    async with session.get(f"http://{host}:{port}{READY_PATH}") as response:
        return await response.text()


def test_the_origin_also_listens_where_the_proxy_reaches_it() -> None:
    # 127.0.0.2 stands for the gateway: another address, still loopback.
    async def main() -> None:
        runtime = DockerRuntime(FakeEngine(), "x", Network("bridge", "127.0.0.2"))  # type: ignore[arg-type]
        async with Origin("127.0.0.1") as origin, new_session() as session:
            await runtime.reach(origin)
            await runtime.reach(origin)  # once is enough; again is harmless
            assert origin.hosts == ("127.0.0.1", "127.0.0.2")
            for host in origin.hosts:
                assert await _ready(session, host, origin.port) == origin.id

    asyncio.run(main())


def test_an_origin_that_cannot_listen_at_the_gateway_is_a_clear_error() -> None:
    if Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip() != "0":
        pytest.skip("this machine lets any address be bound (ip_nonlocal_bind)")

    async def main() -> LaunchError:
        # 192.0.2.1 (TEST-NET-1) is no address of this machine, as a Docker Desktop gateway.
        runtime = DockerRuntime(FakeEngine(), "x", Network("bridge", "192.0.2.1"))  # type: ignore[arg-type]
        async with Origin("127.0.0.1") as origin:
            with pytest.raises(LaunchError) as info:
                await runtime.reach(origin)
            assert origin.hosts == ("127.0.0.1",)
            return info.value

    error = asyncio.run(main())
    assert "cannot listen on 192.0.2.1" in error.problem
    assert "--docker-network host" in error.detail


def test_the_origin_process_listens_on_every_host_given() -> None:
    async def main() -> None:
        async with OriginProcess(("127.0.0.1", "127.0.0.2")) as origin, new_session() as session:
            assert origin.alive and origin.port
            for host in origin.hosts:
                assert await _ready(session, host, origin.port) == origin.id
        assert not origin.alive

    asyncio.run(main())


# -- choosing the runtime -------------------------------------------------------------------
def _choose(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine, runtime: str, network: str) -> Any:
    monkeypatch.setattr(docker_runtime, "engine", lambda: engine)
    return asyncio.run(choose(runtime, ADAPTERS["caddy"], image=None, network=network))


def test_bridge_runtime_is_chosen_with_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    chosen = _choose(monkeypatch, engine, "docker", "bridge")
    assert isinstance(chosen, DockerRuntime)
    assert chosen.name == "docker"  # what the reports see: no word of the network
    assert (chosen.listen_host, chosen.upstream_host) == ("0.0.0.0", GATEWAY)
    assert engine.asked == ["bridge"]


def test_an_engine_without_the_bridge_skips_docker_and_falls_back_for_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    why = "the Docker engine has no `bridge` network (a dockerd started with --bridge=none?)"
    assert _choose(monkeypatch, FakeEngine(why), "docker", "bridge") == why
    assert isinstance(_choose(monkeypatch, FakeEngine(why), "auto", "bridge"), LocalRuntime)
    assert isinstance(_choose(monkeypatch, FakeEngine(why), "docker", "host"), DockerRuntime)


# -- matrix key and command line ----------------------------------------------------------
MATRIX = """\
docker_network: {value}
targets:
  - proxy: caddy
    configs: [{config}]
"""


def test_the_matrix_key_is_parsed_and_validated(tmp_path: Path) -> None:
    config = ROOT / "proxies/caddy/default.Caddyfile"
    path = tmp_path / "matrix.yaml"
    matrix = parse_matrix(MATRIX.format(value="bridge", config=config), path, tuple(ADAPTERS))
    assert matrix.docker_network == "bridge"
    default = MATRIX.format(value="host", config=config).replace("docker_network: host\n", "")
    assert parse_matrix(default, path, tuple(ADAPTERS)).docker_network == "host"
    with pytest.raises(MatrixError) as info:
        parse_matrix(MATRIX.format(value="overlay", config=config), path, tuple(ADAPTERS))
    assert info.value.line == 1
    assert "unknown docker_network 'overlay'" in str(info.value)
    assert "host, bridge" in str(info.value)


def test_the_command_line_flag_wins_over_the_matrix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[RunOptions] = []

    async def fake_run(targets: Any, options: RunOptions, progress: Any = None) -> RunResult:
        seen.append(options)
        return RunResult("0", "now", 0.0, ())

    monkeypatch.setattr(cli, "run_targets", fake_run)
    matrix = tmp_path / "matrix.yaml"
    config = ROOT / "proxies/caddy/default.Caddyfile"
    matrix.write_text(MATRIX.format(value="bridge", config=config))
    assert cli.main(["run", str(matrix), "--checks", "ws.upgrade"]) == 0
    assert cli.main(["run", str(matrix), "--docker-network", "host"]) == 0
    assert cli.main(["check", "--proxy", "caddy", "--config", str(config)]) == 0
    assert cli.main(["check", "--proxy", "caddy", "--config", str(config),
                     "--docker-network", "bridge"]) == 0  # fmt: skip
    assert [o.docker_network for o in seen] == ["bridge", "host", "host", "bridge"]
    assert seen[0].checks == select(["ws.upgrade"])


def test_an_unknown_network_on_the_command_line_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--docker-network", "overlay"])
    assert info.value.code == 2
    assert "choose from 'host', 'bridge'" in capsys.readouterr().err
