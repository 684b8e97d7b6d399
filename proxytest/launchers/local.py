"""The local launcher: the proxy as a child process in its own process group.

Every started group is remembered until it is stopped, so an interrupted run
(Ctrl-C, SIGTERM, an exception, interpreter exit) still ends every proxy it
started and only those: by process group, never by name.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator

from .._aio import finish
from .base import LaunchSpec

__all__ = ["LocalProcess", "kill_all_started", "launch_local"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED: set[int] = set()  # process groups started and not yet stopped


def track(pgid: int) -> None:
    """Remember a process group this process started (killed at exit if still there)."""
    _STARTED.add(pgid)


def untrack(pgid: int) -> None:
    _STARTED.discard(pgid)


def kill_all_started() -> None:
    """SIGKILL every process group this process started and did not stop."""
    for pgid in list(_STARTED):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _STARTED.discard(pgid)


atexit.register(kill_all_started)


class LocalProcess:
    def __init__(self, spec: LaunchSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process
        self.host = spec.host
        self.port = spec.port
        self.pid = process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            with self.spec.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])

    def send_signal(self, sig: int, *, group: bool = True) -> None:
        """Signal the proxy's process group, or only its main process (a master's reload)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)

    async def stop(self) -> None:
        """Stop signal to the group, then SIGKILL after the grace period."""
        try:
            if self.alive:
                self.send_signal(self.spec.stop_signal)
                try:
                    async with asyncio.timeout(self.spec.stop_grace_s):
                        await self.process.wait()
                except TimeoutError:
                    pass
            # Leftovers of the group (workers of a killed master) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            await self.process.wait()
        finally:
            untrack(self.pid)


@contextlib.asynccontextmanager
async def launch_local(spec: LaunchSpec) -> AsyncIterator[LocalProcess]:
    """Start ``spec.argv`` in ``spec.run_dir``; stop it on the way out."""
    with spec.log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            cwd=spec.run_dir,
            env={**os.environ, **spec.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    track(process.pid)
    running = LocalProcess(spec, process)
    try:
        yield running
    finally:
        await finish(running.stop())
