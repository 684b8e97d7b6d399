"""The docker launcher: the proxy in a container, behind the same interface as local.

This is the only module that imports ``docker``. Containers run the adapter's
own argv with the entrypoint overridden (official and locally built images
behave the same), host networking (the proxy listens on the same loopback
address and reaches the origin as a local process would), and the target's run
dir bind-mounted at the same path, so rendered configs need no rewriting.

Every container carries labels: the tool, this run's session id, the owner
(host and pid) and the target. Leaving the context manager removes the
container; :func:`remove_session` removes all of this session's containers
(Ctrl-C, SIGTERM, interpreter exit) and :meth:`Engine.sweep` removes those of
dead sessions on this host at start.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors

from .base import LaunchSpec

__all__ = ["ContainerProcess", "Engine", "launch_docker", "remove_session"]

LABEL = "proxytest.tool"
SESSION = uuid.uuid4().hex[:12]
OWNER = f"{socket.gethostname()}:{os.getpid()}"
_ENGINES: list[Engine] = []


class Engine:
    """A Docker engine, reached through DOCKER_HOST or the default socket."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self._client: docker.DockerClient | None = None
        self._problem: str | None = None
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

    def run_once(
        self,
        image: str,
        argv: Sequence[str],
        *,
        mounts: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> tuple[int, str]:
        """Run ``argv`` in a throwaway container; return (exit code, output)."""
        container = self.client.containers.run(
            image,
            entrypoint=[argv[0]],
            command=list(argv[1:]),
            detach=True,
            network_mode="host",
            volumes={str(m): {"bind": str(m), "mode": "rw"} for m in mounts},
            working_dir=str(cwd) if cwd else None,
            environment=dict(env or {}),
            labels=_labels("one-off"),
        )
        try:
            try:
                status = container.wait(timeout=timeout)
            except Exception:
                container.kill()
                return 124, f"timed out after {timeout:g} s"
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
            return int(status.get("StatusCode", 1)), output
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def sweep(self) -> int:
        """Remove containers of proxytest runs on this host whose process is gone."""
        removed = 0
        host = socket.gethostname()
        for container in self.client.containers.list(all=True, filters={"label": LABEL}):
            owner = container.labels.get("proxytest.owner", "")
            owner_host, _, pid = owner.partition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed += 1
        return removed

    def session_containers(self) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": [LABEL, f"proxytest.session={SESSION}"]}
            )
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _labels(target: str) -> dict[str, str]:
    return {LABEL: "proxytest", "proxytest.session": SESSION, "proxytest.owner": OWNER,
            "proxytest.target": target}  # fmt: skip


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
    """A running container, with the same surface as a local proxy process."""

    def __init__(self, spec: LaunchSpec, container: Any) -> None:
        self.spec = spec
        self.container = container
        self.host = spec.host
        self.port = spec.port
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


@contextlib.asynccontextmanager
async def launch_docker(
    spec: LaunchSpec, *, engine: Engine, image: str
) -> AsyncIterator[ContainerProcess]:
    """Run ``spec.argv`` (argv[0]: the binary's path in the image) in a container."""
    argv = list(spec.argv)
    container = await asyncio.to_thread(
        engine.client.containers.run,
        image,
        entrypoint=[argv[0]],
        command=argv[1:],
        detach=True,
        network_mode="host",
        volumes={str(spec.run_dir): {"bind": str(spec.run_dir), "mode": "rw"}},
        working_dir=str(spec.run_dir),
        environment=dict(spec.env),
        labels=_labels(spec.label),
        stop_signal=str(int(spec.stop_signal)),
    )
    running = ContainerProcess(spec, container)
    try:
        yield running
    finally:
        from .._aio import finish

        await finish(running.stop())
