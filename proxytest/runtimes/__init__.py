"""Runtimes: where a proxy runs, a local process or a container, behind one interface.

``base.py`` is the interface (and the names of runtimes and network modes),
``local.py`` and ``docker.py`` are the two siblings. This package owns launching,
short helper commands, choosing a runtime, sweeping leftovers and ending
process groups; no other module starts or ends a process, and only
``docker.py`` imports the Docker SDK (loaded only when a target asks for it).
See docs/architecture.md ("Runtimes").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .base import (
    DEFAULT_NETWORK,
    DEFAULT_RUNTIME,
    DOCKER_NETWORKS,
    LOOPBACK,
    RUNTIMES,
    LaunchSpec,
    NetworkMode,
    Run,
    Running,
    Runtime,
    RuntimeName,
    free_port,
)
from .local import LocalRuntime, make_run_dir, remove_run_dir, sweep_run_dirs

if TYPE_CHECKING:
    from ..adapters.base import Adapter

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_RUNTIME",
    "DOCKER_NETWORKS",
    "LOOPBACK",
    "RUNTIMES",
    "LaunchSpec",
    "LocalRuntime",
    "NetworkMode",
    "Run",
    "Running",
    "Runtime",
    "RuntimeName",
    "choose",
    "free_port",
    "make_run_dir",
    "remove_run_dir",
    "sweep",
]


async def choose(
    requested: RuntimeName, adapter: Adapter, *, image: str | None, network: NetworkMode
) -> Runtime | str:
    """The runtime for a target, or why it cannot run there (a skip reason).

    ``local`` is always there (a missing binary is found out later); ``docker``
    and ``auto`` ask the engine (runtimes/docker.py). ``image``: the one asked
    for, else the adapter's pinned official image.
    """
    if requested == "local":
        return LocalRuntime()
    from . import docker

    return await docker.choose(requested, image or adapter.default_image, network)


async def sweep(*, containers: bool = False) -> None:
    """Reap what dead proxytest runs on this host left behind (best effort).

    Their containers when ``containers`` (docker.py, which asks the engine), then
    their processes and run dirs (local.py: :func:`sweep_run_dirs`) always.
    """
    if containers:
        from . import docker

        await docker.sweep()
    await asyncio.to_thread(sweep_run_dirs)
