"""Runtimes: where a proxy runs, a local process or a container, behind one interface.

A runtime says what argv[0] is (the host binary, or its path in the image), runs
short commands (version, config check, reload) and launches the proxy. It also
says where the proxy's network meets this machine: the address the rendered
config listens on (clients always connect to loopback) and the address where
the proxy reaches an origin that listens on loopback. The runner, checks and
reports never know which one ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .adapters.base import Adapter, Run, run_command
from .launchers import LaunchSpec, launch_local
from .launchers.base import Running

if TYPE_CHECKING:
    from .launchers.docker import Engine, Network

__all__ = ["LOOPBACK", "DockerRuntime", "LocalRuntime", "Runtime", "docker_engine"]

LOOPBACK = "127.0.0.1"


class Runtime(Protocol):
    name: str
    image: str | None
    # Where the rendered config listens (`listen_host`); clients connect to LOOPBACK.
    listen_host: str
    # Where the proxy reaches an origin on this machine's loopback; None: right there.
    # When set, the origin listens there too (Harness.reach), and `upstream_note`
    # says what that address is, for the error when it cannot.
    upstream_host: str | None
    upstream_note: str

    def binary(self, adapter: Adapter, host_binary: Path | None) -> Path: ...

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str]: ...

    def launch(self, spec: LaunchSpec) -> AbstractAsyncContextManager[Running]: ...

    def beside(self, process: Running) -> Run:
        """``run`` for commands that talk to ``process`` (a reload): in its network."""
        ...


class LocalRuntime:
    name = "local"
    image: str | None = None
    listen_host = LOOPBACK
    upstream_host: str | None = None
    upstream_note = ""

    def binary(self, adapter: Adapter, host_binary: Path | None) -> Path:
        assert host_binary is not None
        return host_binary

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        return await run_command(argv, timeout=timeout, cwd=cwd, env=env)

    def launch(self, spec: LaunchSpec) -> AbstractAsyncContextManager[Running]:
        return launch_local(spec)

    def beside(self, process: Running) -> Run:
        return self.run


class DockerRuntime:
    name = "docker"

    def __init__(self, engine: Engine, image: str, network: Network | None = None) -> None:
        from .launchers.docker import Network

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
        assert self.image is not None
        return await asyncio.to_thread(
            self.engine.run_once, self.image, argv, mounts=[cwd] if cwd else [], env=env,
            cwd=cwd, timeout=timeout, network=self.network,
        )  # fmt: skip

    def beside(self, process: Running) -> Run:
        """Throwaway containers in the proxy container's own network namespace.

        A helper then reaches what the proxy listens on inside (an admin API on its
        loopback) on any network, and joining needs no network set-up: on a busy
        bridge, a new endpoint per helper made reloads lag by seconds.
        """
        container = getattr(process, "container", None)
        if container is None:
            return self.run
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
                cwd=cwd, timeout=timeout, joined=container.id,
            )  # fmt: skip

        return run

    def launch(self, spec: LaunchSpec) -> AbstractAsyncContextManager[Running]:
        from .launchers.docker import launch_docker

        assert self.image is not None
        return launch_docker(spec, engine=self.engine, image=self.image, network=self.network)


_ENGINE: Engine | None = None


def docker_engine() -> Engine:
    """The run's Docker engine (DOCKER_HOST or the default socket), created once."""
    global _ENGINE
    if _ENGINE is None:
        from .launchers.docker import Engine

        _ENGINE = Engine()
    return _ENGINE
