"""The docker runtime: the proxy in a container, behind the same interface as local.

This is the only module that imports ``docker`` (the SDK). Containers run the adapter's
own argv with the entrypoint overridden (official and locally built images
behave the same) and the target's run dir bind-mounted at the same path, so
rendered configs need no rewriting. The :class:`Network` decides how a
container meets this machine:

``host`` (the default)
    The container shares the engine's network: the proxy listens on the same
    loopback address and reaches the origin as a local process would.
``bridge``
    For engines where host networking is not available or not allowed. The
    container joins the engine's default ``bridge`` network; the proxy listens
    on ``0.0.0.0`` inside it, and its port is published on this machine at
    ``127.0.0.1`` only, so clients connect exactly as they do to a local proxy.
    The proxy reaches the origin through the bridge's gateway (an IP: Envoy's
    STATIC clusters and ``FROM scratch`` images have no resolver for a name),
    where the origin then listens too. ``host.docker.internal`` is mapped to
    the gateway as well, for configs a person brings.

Every container carries labels: the tool, this run's id (``proxytest.session``,
unique on any host: runtimes/owner.py), the owner (``proxytest.owner``,
host:pid for people, and ``proxytest.owner.{host,boot,pidns,pid,start}`` for
the sweep) and the target. Leaving the context manager removes the container;
:func:`remove_session` removes all of this run's containers (Ctrl-C, SIGTERM,
interpreter exit) and :meth:`Engine.sweep` removes those of dead runs at start:
only where the owner's liveness can be seen from here (same host, boot and pid
namespace) and the owner is gone, so runners sharing an engine never remove
each other's containers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from .._aio import finish
from ..errors import LaunchError
from .base import DEFAULT_NETWORK, DOCKER_NETWORKS, LOOPBACK, LaunchSpec, NetworkMode, Run, Runtime
from .owner import RUN_ID, Owner

if TYPE_CHECKING:
    from ..adapters.base import Adapter

__all__ = [
    "ContainerProcess",
    "DockerRuntime",
    "Engine",
    "Network",
    "bridge_gateway",
    "close_engine",
    "engine",
    "labels",
    "launch_docker",
    "owner_of",
    "remove_session",
]

LABEL = "proxytest.tool"
SESSION = RUN_ID
OWNER_LABEL = "proxytest.owner"
BRIDGE: NetworkMode = (
    "bridge"  # the engine's default bridge network: always there, nothing to create
)
_ENGINES: list[Engine] = []


@dataclass(frozen=True)
class Network:
    """How a container meets this machine's network (see the module docstring)."""

    mode: NetworkMode = DEFAULT_NETWORK
    gateway: str | None = None  # bridge: where containers reach this machine
    host_gateway: bool = True  # the engine knows `host-gateway` (API 1.41, Docker 20.10)

    def __post_init__(self) -> None:
        if self.mode not in DOCKER_NETWORKS:
            raise ValueError(
                f"unknown docker network {self.mode!r}: use one of {', '.join(DOCKER_NETWORKS)}"
            )
        if self.mode == BRIDGE and not self.gateway:
            raise ValueError("a bridge network needs its gateway address")

    @property
    def listen_host(self) -> str | None:
        """Where the rendered config listens; None: where clients connect (loopback)."""
        return "0.0.0.0" if self.mode == BRIDGE else None

    @property
    def upstream_host(self) -> str | None:
        """Where the proxy reaches the origin; None: where the origin listens (loopback)."""
        return self.gateway if self.mode == BRIDGE else None

    def container_options(self, publish: tuple[str, int] | None = None) -> dict[str, Any]:
        """``containers.create`` options.

        ``publish``: (host address, port the config listens on in the container).
        The engine picks the port on the host: it retries when one is taken meanwhile,
        where a port chosen in advance could be lost to another socket first.
        """
        if self.mode != BRIDGE:
            return {"network_mode": "host"}
        options: dict[str, Any] = {"network_mode": BRIDGE}
        if self.host_gateway:
            options["extra_hosts"] = {"host.docker.internal": "host-gateway"}
        if publish is not None:
            host, port = publish
            options["ports"] = {f"{port}/tcp": (host,)}
        return options

    def published_port(self, attrs: Mapping[str, Any], host: str, port: int) -> int | None:
        """The host port the engine published ``port`` on at ``host``, from inspect data."""
        if self.mode != BRIDGE:
            return port
        ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
        for binding in ports.get(f"{port}/tcp") or ():
            if binding.get("HostIp") == host and str(binding.get("HostPort", "")).isdigit():
                return int(binding["HostPort"])
        return None


def bridge_gateway(attrs: Mapping[str, Any]) -> str | None:
    """The IPv4 gateway of a network, from its inspect data (IPAM config); None if none.

    An engine that created its default bridge itself may record only the subnet;
    its IPAM driver then gave the bridge the subnet's first address.
    """
    for config in (attrs.get("IPAM") or {}).get("Config") or ():
        gateway, subnet = config.get("Gateway"), config.get("Subnet")
        with contextlib.suppress(ValueError):
            if gateway and ipaddress.ip_address(gateway.split("/")[0]).version == 4:
                return str(gateway.split("/")[0])
            if subnet and not gateway:
                network = ipaddress.ip_network(subnet, strict=False)
                if network.version == 4 and network.num_addresses > 2:
                    return str(network.network_address + 1)
    return None


class Engine:
    """A Docker engine, reached through DOCKER_HOST or the default socket."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self._client: docker.DockerClient | None = None
        self._problem: str | None = None
        self._networks: dict[NetworkMode, Network | str] = {}
        _ENGINES.append(self)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            if self.base_url:
                self._client = docker.DockerClient(base_url=self.base_url, timeout=30)
            else:
                self._client = docker.from_env(timeout=30)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._networks.clear()

    def unavailable(self) -> str | None:
        """None when the engine answers, else why not (for a skip reason)."""
        if self._problem is None and self._client is None:
            try:
                self.client.ping()
            except Exception as exc:
                self._problem = f"no Docker engine answers ({_short(exc)})"
                self._client = None
        return self._problem

    def image_present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def ensure_image(self, image: str) -> str | None:
        """None when ``image`` is present (pulling it if needed), else why it is not."""
        if self.image_present(image):
            return None
        try:
            self.client.images.pull(image)
        except Exception as exc:
            return f"image {image} is not in the engine and the pull failed: {_short(exc)}"
        return None

    def network(self, mode: NetworkMode) -> Network | str:
        """The :class:`Network` for ``mode`` (host | bridge), or why not (a skip reason)."""
        if mode != BRIDGE:
            return Network()
        if mode not in self._networks:
            self._networks[mode] = self._bridge()
        return self._networks[mode]

    def _bridge(self) -> Network | str:
        try:
            attrs = self.client.networks.get(BRIDGE).attrs
        except docker.errors.NotFound:
            return (
                f"the Docker engine has no `{BRIDGE}` network (a dockerd started with "
                "--bridge=none?): give it one, or use --docker-network host"
            )
        gateway = bridge_gateway(attrs)
        if gateway is None:
            subnets = [c.get("Subnet") for c in (attrs.get("IPAM") or {}).get("Config") or ()]
            return (
                f"the engine's `{BRIDGE}` network has no IPv4 gateway (subnets: "
                f"{', '.join(map(str, subnets)) or 'none'}): use --docker-network host"
            )
        try:
            api = str(self.client.version().get("ApiVersion", "0"))
            host_gateway = tuple(int(x) for x in api.split(".")[:2]) >= (1, 41)
        except Exception:
            host_gateway = False
        return Network(BRIDGE, gateway, host_gateway)

    def run_once(
        self,
        image: str,
        argv: Sequence[str],
        *,
        mounts: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
        network: Network | None = None,
        joined: str | None = None,
    ) -> tuple[int, str]:
        """Run ``argv`` in a throwaway container; return (exit code, output).

        It runs on ``network``, or in the network namespace of the container
        ``joined`` (an ID) when given.
        """
        options = (
            {"network_mode": f"container:{joined}"}
            if joined
            else (network or Network()).container_options()
        )
        container = self.client.containers.create(
            image,
            entrypoint=[argv[0]],
            command=list(argv[1:]),
            volumes={str(m): {"bind": str(m), "mode": "rw"} for m in mounts},
            working_dir=str(cwd) if cwd else None,
            environment=dict(env or {}),
            labels=labels("one-off"),
            **options,
        )
        try:
            try:
                container.start()
            except docker.errors.APIError as exc:  # exit code 125, as `docker run` says
                why = exc.explanation or _short(exc)
                return 125, f"the Docker engine could not start the container: {why}"
            try:
                status = container.wait(timeout=timeout)
            except Exception:
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                return 124, f"timed out after {timeout:g} s"
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
            return int(status.get("StatusCode", 1)), output
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def sweep(self) -> int:
        """Remove containers of proxytest runs whose owner is gone for sure (see above).

        A container whose owner cannot be judged from here (another host or pid
        namespace, or labels of an older proxytest without the owner's start
        time) is left alone.
        """
        removed = 0
        # ignore_removed: another session may remove its containers while we list them.
        listed = self.client.containers.list(
            all=True, filters={"label": LABEL}, ignore_removed=True
        )
        for container in listed:
            owner = owner_of(container.labels)
            if owner is None or container.labels.get("proxytest.session") == SESSION:
                continue
            if not owner.gone():
                continue
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed += 1
        return removed

    def session_containers(self) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True,
                filters={"label": [LABEL, f"proxytest.session={SESSION}"]},
                ignore_removed=True,
            )
        )


def labels(target: str) -> dict[str, str]:
    """The labels of a container this run starts for ``target``."""
    owner = Owner.current()
    return {
        LABEL: "proxytest",
        "proxytest.session": SESSION,
        OWNER_LABEL: f"{owner.host}:{owner.pid}",
        **{f"{OWNER_LABEL}.{key}": str(value) for key, value in owner.to_json().items()},
        "proxytest.target": target,
    }


def owner_of(container_labels: Mapping[str, str]) -> Owner | None:
    """The owner that :func:`labels` recorded; None for labels without one."""
    prefix = f"{OWNER_LABEL}."
    return Owner.from_json(
        {k.removeprefix(prefix): v for k, v in container_labels.items() if k.startswith(prefix)}
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def remove_session() -> None:
    """Force-remove every container this session started (any engine). Synchronous."""
    for engine in _ENGINES:
        if engine._client is None:
            continue
        with contextlib.suppress(Exception):
            for container in engine.session_containers():
                with contextlib.suppress(Exception):
                    container.remove(force=True)


atexit.register(remove_session)


class ContainerProcess:
    """A running container, with the same surface as a local proxy process.

    ``port`` is where clients connect: on a bridge network, the published port.
    """

    def __init__(self, spec: LaunchSpec, container: Any, port: int | None = None) -> None:
        self.spec = spec
        self.container = container
        self.host = spec.host
        self.port = port or spec.port
        self.pid = 0
        self._exit_code: int | None = None
        loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] = loop.create_future()
        # A thread of its own blocks in `wait` for the container's whole life: the
        # shared to_thread pool (6 threads on 2 cores) must stay free for calls.
        threading.Thread(target=self._wait, args=(loop,), daemon=True).start()

    def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            status = self.container.wait()
            code = int(status.get("StatusCode", 1))
        except Exception:  # removed underneath us: it is gone
            code = -1
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(self._exited, code)

    def _exited(self, code: int) -> None:
        self._exit_code = code
        if not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def alive(self) -> bool:
        return self._exit_code is None

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    def log_tail(self, lines: int = 30) -> str:
        try:
            raw = self.container.logs(stdout=True, stderr=True, tail=lines)
        except Exception:
            return ""
        return str(raw.decode(errors="replace"))

    def send_signal(self, sig: int, *, group: bool = True) -> None:
        """Signal the container's main process (the proxy: the entrypoint is the proxy)."""
        if self.alive:
            with contextlib.suppress(docker.errors.APIError):
                self.container.kill(signal=int(sig))

    def processes(self) -> frozenset[int] | None:
        """The container's processes (host pids, from the engine); None if it cannot say."""
        try:
            top = self.container.top(ps_args="-e -o pid")
        except Exception:
            try:
                top = self.container.top()
            except Exception:
                return None
        titles = [str(t).upper() for t in top.get("Titles") or ()]
        if "PID" not in titles:
            return None
        column = titles.index("PID")
        pids = set()
        for row in top.get("Processes") or ():
            with contextlib.suppress(ValueError, IndexError):
                pids.add(int(row[column]))
        return frozenset(pids)

    async def stop(self) -> None:
        """Graceful stop (the adapter's signal, then SIGKILL after the grace), then remove."""
        try:
            if self.alive:
                self.send_signal(self.spec.stop_signal)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.spec.stop_grace_s):
                        await asyncio.shield(self._waiter)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(self.container.remove, force=True)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._waiter), 5)


def _start(engine: Engine, spec: LaunchSpec, image: str, network: Network) -> tuple[Any, int]:
    """Create and start the container; if the start fails, remove it and say why.

    Returns the container and the port clients connect to.
    """
    argv = list(spec.argv)
    container = engine.client.containers.create(
        image,
        entrypoint=[argv[0]],
        command=argv[1:],
        volumes={str(spec.run_dir): {"bind": str(spec.run_dir), "mode": "rw"}},
        working_dir=str(spec.run_dir),
        environment=dict(spec.env),
        labels=labels(spec.label),
        stop_signal=str(int(spec.stop_signal)),
        **network.container_options(publish=(spec.host, spec.port)),
    )
    port = spec.port
    try:
        container.start()
        if network.mode == BRIDGE:
            container.reload()
            settings = container.attrs.get("NetworkSettings") or {}
            actual = ((settings.get("Networks") or {}).get(BRIDGE) or {}).get("Gateway")
            if actual and actual != network.gateway:
                raise LaunchError(
                    f"the container's gateway is {actual}, but the config was rendered for "
                    f"{network.gateway} (read from the `{BRIDGE}` network's IPAM config)",
                    detail="use --docker-network host, or give the bridge an explicit gateway "
                    "(dockerd --bip)",
                )
            published = network.published_port(container.attrs, spec.host, spec.port)
            if published is None:
                raise LaunchError(
                    f"the engine did not publish the container's port {spec.port} on "
                    f"{spec.host}: {settings.get('Ports')}"
                )
            port = published
    except BaseException as exc:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        if isinstance(exc, docker.errors.APIError):
            raise LaunchError(
                f"the Docker engine could not start the container: {exc.explanation or exc}"
            ) from None
        raise
    return container, port


async def _discard(starting: asyncio.Future[tuple[Any, int]]) -> None:
    with contextlib.suppress(Exception):
        container, _ = await starting
        await asyncio.to_thread(container.remove, force=True)


@contextlib.asynccontextmanager
async def launch_docker(
    spec: LaunchSpec, *, engine: Engine, image: str, network: Network | None = None
) -> AsyncIterator[ContainerProcess]:
    """Run ``spec.argv`` (argv[0]: the binary's path in the image) in a container.

    On a bridge network, ``spec.port`` (in the container) is published on a port
    of ``spec.host`` (loopback) that the engine picks: the handle's ``port``.
    """
    starting = asyncio.ensure_future(
        asyncio.to_thread(_start, engine, spec, image, network or Network())
    )
    try:
        container, port = await asyncio.shield(starting)
    except asyncio.CancelledError:  # the start goes on in its thread: remove what it makes
        await finish(_discard(starting))
        raise
    running = ContainerProcess(spec, container, port)
    try:
        yield running
    finally:
        await finish(running.stop())


class DockerRuntime(Runtime):
    """Proxies in containers of ``image`` on ``engine``, meeting this machine by ``network``."""

    name = "docker"
    # The entrypoint is overridden, the user is not: the images proxytest runs (the
    # official ones, and scripts/docker-images.py's) start their proxy as root.
    as_root = True

    def __init__(self, engine: Engine, image: str, network: Network | None = None) -> None:
        self.engine = engine
        self.image: str | None = image
        self.network = network or Network()
        self.listen_host = self.network.listen_host or LOOPBACK
        self.upstream_host = self.network.upstream_host
        self.upstream_note = (
            "the gateway of the Docker engine's bridge network; it must be an address of "
            "this machine, which it is not with an engine in a VM (Docker Desktop), in "
            "rootless mode or on another machine: use --docker-network host there"
            if self.upstream_host
            else ""
        )

    def binary(self, adapter: Adapter, host_binary: Path | None) -> Path:
        return Path(adapter.container_binary)

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """A throwaway container of the image, on the runtime's network."""
        return await self._throwaway(None)(argv, timeout=timeout, cwd=cwd, env=env)

    def beside(self, process: Any) -> Run:
        """Throwaway containers in the proxy container's own network namespace.

        A helper then reaches what the proxy listens on inside (an admin API on its
        loopback) on any network, and joining needs no network set-up: on a busy
        bridge, a new endpoint per helper made reloads lag by seconds.
        """
        container = getattr(process, "container", None)
        return self.run if container is None else self._throwaway(container.id)

    def _throwaway(self, joined: str | None) -> Run:
        """Run commands in throwaway containers: on the runtime's network, or ``joined``'s."""
        image = self.image
        assert image is not None

        async def run(
            argv: Sequence[str],
            *,
            timeout: float,
            cwd: Path | None = None,
            env: Mapping[str, str] | None = None,
        ) -> tuple[int, str]:
            return await asyncio.to_thread(
                self.engine.run_once, image, argv, mounts=[cwd] if cwd else [], env=env,
                cwd=cwd, timeout=timeout, network=self.network, joined=joined,
            )  # fmt: skip

        return run

    def launch(self, spec: LaunchSpec) -> contextlib.AbstractAsyncContextManager[ContainerProcess]:
        assert self.image is not None
        return launch_docker(spec, engine=self.engine, image=self.image, network=self.network)


_ENGINE: Engine | None = None


def engine() -> Engine:
    """The run's Docker engine (DOCKER_HOST or the default socket), created once."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine()
    return _ENGINE


def close_engine() -> None:
    """Forget the engine connection (the next :func:`engine` reads DOCKER_HOST again)."""
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.close()
    _ENGINE = None


async def choose(requested: str, image: str, network: NetworkMode) -> Runtime | str:
    """The runtime for ``requested`` (docker | auto), or why it cannot run (a skip reason).

    ``auto`` picks docker when an engine answers, has the network asked for and
    the image, else local; ``docker`` pulls a missing image and skips when that
    fails, or when the engine lacks the network.
    """
    from .local import LocalRuntime

    docker_engine = engine()
    unanswered = await asyncio.to_thread(docker_engine.unavailable)
    chosen: Network | str = (
        f"{unanswered}; start one or set DOCKER_HOST (or use --runtime local)"
        if unanswered
        else await asyncio.to_thread(docker_engine.network, network)
    )
    if requested == "auto":
        if isinstance(chosen, str) or not await asyncio.to_thread(
            docker_engine.image_present, image
        ):
            return LocalRuntime()
        return DockerRuntime(docker_engine, image, chosen)
    if isinstance(chosen, str):  # no engine, or not the network asked for
        return chosen
    missing = await asyncio.to_thread(docker_engine.ensure_image, image)
    return missing or DockerRuntime(docker_engine, image, chosen)


async def sweep() -> None:
    """Remove containers left by proxytest runs on this host that died (best effort)."""
    docker_engine = engine()
    if await asyncio.to_thread(docker_engine.unavailable) is None:
        await asyncio.to_thread(docker_engine.sweep)
