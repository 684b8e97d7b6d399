"""The test origin in a process of its own, for checks where it must die for real.

``lifecycle.origin-restart`` kills it mid-stream (SIGKILL: no goodbye on any
socket) and starts it again on the same port::

    async with OriginProcess(runtime.origin_hosts(LOOPBACK)) as origin:
        ...                         # a proxy in front of origin.port
        await origin.kill()
        await origin.start(origin.port)

The process is started and ended through the local runtime (its own process
group, remembered until reaped, recorded in a run dir of its own that a later
run sweeps should this one be killed outright); leaving the context ends it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from .._aio import finish
from ..errors import HarnessError
from ..runtimes import LOOPBACK, free_port, local
from ..timing import Thresholds

__all__ = ["OriginProcess"]


class OriginProcess:
    """``python -m proxytest.origin`` on ``hosts`` (same port on each)."""

    def __init__(
        self,
        hosts: tuple[str, ...] = (LOOPBACK,),
        port: int | None = None,
        *,
        start_timeout_s: float = Thresholds.origin_start_timeout_s,
    ) -> None:
        self.hosts = hosts  # where it listens: loopback, and where the proxy reaches it
        self.start_timeout_s = start_timeout_s
        self.id = ""
        # None: a port from below the ephemeral range, which must still be free when
        # the origin comes back after seconds of client connections coming and going.
        self.port = port
        self._process: asyncio.subprocess.Process | None = None
        self._run_dir: Path | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def __aenter__(self) -> OriginProcess:
        try:
            await self.start(free_port() if self.port is None else self.port)
        except BaseException:  # a failed or interrupted start leaves no process or run dir
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await finish(self.kill())
        finally:
            run_dir, self._run_dir = self._run_dir, None
            if run_dir is not None:
                await finish(asyncio.to_thread(local.remove_run_dir, run_dir))

    async def start(self, port: int) -> None:
        """Start it on ``port`` (0: the kernel picks) and read its id and port."""
        if self._process is not None:
            raise RuntimeError("the origin process is running already: kill it first")
        hosts = [arg for host in self.hosts for arg in ("--host", host)]
        argv = [sys.executable, "-m", "proxytest.origin", *hosts, "--port", str(port)]
        # stderr to an unnamed temp file: a pipe nobody reads could fill and stall it.
        if self._run_dir is None:
            self._run_dir = local.make_run_dir("origin")
        with tempfile.TemporaryFile() as errors:
            process = self._process = await local.spawn(
                argv, stdout=asyncio.subprocess.PIPE, stderr=errors, run_dir=self._run_dir
            )
            assert process.stdout is not None
            try:
                async with asyncio.timeout(self.start_timeout_s):
                    line = (await process.stdout.readline()).decode()
            except TimeoutError:
                line = ""
            info = json.loads(line) if line.startswith("{") else {}
            if "port" not in info:
                await self.kill()
                errors.seek(0)
                said = line.strip() or errors.read().decode(errors="replace")[-500:].strip()
                raise HarnessError(f"the origin process did not start: {said!r}")
        self.id, self.port = str(info["id"]), int(info["port"])

    async def kill(self) -> None:
        """SIGKILL it (its sockets close without a goodbye); nothing if it is not running."""
        process, self._process = self._process, None
        if process is not None:
            await local.kill(process)
