"""Runtimes: where a proxy runs, a local process or a container, behind one interface.

A runtime says what argv[0] is (the host binary, or its path in the image), runs
short commands (version, config check, reload) and launches the proxy. The
runner, checks and reports never know which one ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .adapters.base import Adapter, run_command
from .launchers import LaunchSpec, launch_local
from .launchers.base import Running

if TYPE_CHECKING:
    from .launchers.docker import Engine

__all__ = ["DockerRuntime", "LocalRuntime", "Runtime", "docker_engine"]


class Runtime(Protocol):
    name: str
    image: str | None

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


class LocalRuntime:
    name = "local"
    image: str | None = None

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


class DockerRuntime:
    name = "docker"

    def __init__(self, engine: Engine, image: str) -> None:
        self.engine = engine
        self.image: str | None = image

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
            cwd=cwd, timeout=timeout,
        )  # fmt: skip

    def launch(self, spec: LaunchSpec) -> AbstractAsyncContextManager[Running]:
        from .launchers.docker import launch_docker

        assert self.image is not None
        return launch_docker(spec, engine=self.engine, image=self.image)


_ENGINE: Engine | None = None


def docker_engine() -> Engine:
    """The run's Docker engine (DOCKER_HOST or the default socket), created once."""
    global _ENGINE
    if _ENGINE is None:
        from .launchers.docker import Engine

        _ENGINE = Engine()
    return _ENGINE
