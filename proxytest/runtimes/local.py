"""The local runtime: the proxy as a child process in its own process group.

Every process this module starts (a proxy, a short command, the test origin's
own process) gets a process group of its own, remembered until the process is
reaped, so an interrupted run (Ctrl-C, SIGTERM, an exception, interpreter exit)
still ends every group it started and only those: by process group, never by
name. :func:`spawn` starts one, :func:`kill` ends one; nothing else does.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._aio import finish
from .base import LaunchSpec, Runtime

if TYPE_CHECKING:
    from ..adapters.base import Adapter

__all__ = [
    "LocalProcess",
    "LocalRuntime",
    "kill",
    "kill_all_started",
    "launch_local",
    "run_command",
    "spawn",
    "stop",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED: set[int] = set()  # process groups started and not yet reaped

Process = asyncio.subprocess.Process
_Stream = int | IO[Any] | None


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: _Stream = asyncio.subprocess.DEVNULL,
    stderr: _Stream = asyncio.subprocess.DEVNULL,
) -> Process:
    """Start ``argv`` as the leader of a new process group, remembered until reaped.

    ``env`` is added to this process's environment. stdin is never inherited.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    _STARTED.add(process.pid)
    return process


def _signal_group(pgid: int, sig: int) -> None:
    """``sig`` to every process of group ``pgid`` (one this module started); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill(process: Process) -> None:
    """SIGKILL ``process``'s whole group (leftover workers too) and reap it."""
    try:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
    finally:
        _STARTED.discard(process.pid)


async def stop(process: Process, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
    """``sig`` to the group, SIGKILL to what is left after ``grace_s``; reaped either way."""
    if process.returncode is None:
        _signal_group(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await process.wait()
    await kill(process)


def group_members(pgid: int) -> frozenset[int] | None:
    """Pids of the live processes in group ``pgid`` (from /proc); None where /proc is not."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    found = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            found.add(int(entry.name))
    return frozenset(found)


def kill_all_started() -> None:
    """SIGKILL every process group this process started and did not reap (at exit)."""
    for pgid in list(_STARTED):
        _signal_group(pgid, signal.SIGKILL)
        _STARTED.discard(pgid)


atexit.register(kill_all_started)


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run a short command in its own process group; return (exit code, output).

    A timeout or a cancellation kills its group before the exception goes on.
    """
    process = await spawn(
        argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except BaseException:
        await finish(kill(process))
        raise
    _STARTED.discard(process.pid)
    return process.returncode or 0, out.decode(errors="replace")


class LocalProcess:
    """A proxy running as a local process group: the :class:`Running` handle."""

    def __init__(self, spec: LaunchSpec, process: Process) -> None:
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
        if not self.alive:
            return
        if group:
            _signal_group(self.pid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def processes(self) -> frozenset[int] | None:
        """Every live process of the proxy's group (a reload's new workers show here)."""
        return group_members(self.pid)

    async def stop(self) -> None:
        """The adapter's stop signal to the group, then SIGKILL after the grace period."""
        await stop(self.process, self.spec.stop_signal, self.spec.stop_grace_s)


@contextlib.asynccontextmanager
async def launch_local(spec: LaunchSpec) -> AsyncIterator[LocalProcess]:
    """Start ``spec.argv`` in ``spec.run_dir``, output to its log; stop it on the way out."""
    with spec.log_path.open("ab") as log:
        process = await spawn(spec.argv, cwd=spec.run_dir, env=spec.env, stdout=log, stderr=log)
    running = LocalProcess(spec, process)
    try:
        yield running
    finally:
        await finish(running.stop())


class LocalRuntime(Runtime):
    """Proxies as child processes of this one; they listen on loopback like the origin."""

    name = "local"

    def binary(self, adapter: Adapter, host_binary: Path | None) -> Path:
        if host_binary is None:
            raise ValueError("the local runtime runs a binary found on this machine")
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

    def launch(self, spec: LaunchSpec) -> contextlib.AbstractAsyncContextManager[LocalProcess]:
        return launch_local(spec)
