"""The local runtime: the proxy as a child process in its own process group.

Every process this module starts (a proxy, a short command, the test origin's
own process) gets a process group of its own, remembered until the process is
reaped, so an interrupted run (Ctrl-C, SIGTERM, an exception, interpreter exit)
still ends every group it started and only those: by process group, never by
name. :func:`spawn` starts one, :func:`kill` ends one; nothing else does.

A run killed outright (SIGKILL, the OOM killer) runs none of that, so:

* every child gets the parent-death signal (SIGKILL when the thread that started
  it ends: the event loop's thread, which outlives what it starts). It covers
  the tool's own children only; a proxy's workers (nginx, HAProxy) live on.
* every run dir (:func:`make_run_dir`: private, 0700, under the temp folder) holds
  a marker naming its owner (runtimes/owner.py) and the process groups started
  in it. At the start of every run :func:`sweep_run_dirs` reaps what a dead
  owner left: the processes of those groups that are ours for sure (the group's
  leader is the very process recorded, or the process works inside that run
  dir), then the dir, unless it was kept (``--keep-run-dirs``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._aio import finish
from .base import LaunchSpec, Runtime
from .owner import RUN_ID, Owner, ProcStat, proc_stat

if TYPE_CHECKING:
    from ..adapters.base import Adapter

__all__ = [
    "MARKER",
    "RUN_DIR_PREFIX",
    "LocalProcess",
    "LocalRuntime",
    "kill",
    "kill_all_started",
    "launch_local",
    "make_run_dir",
    "remove_run_dir",
    "run_command",
    "spawn",
    "stop",
    "sweep_run_dirs",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED: set[int] = set()  # process groups started and not yet reaped

Process = asyncio.subprocess.Process
_Stream = int | IO[Any] | None


# -- the parent-death signal -----------------------------------------------------------
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A preexec function: SIGKILL this child when the thread that forked it ends.

    Runs in the child between fork and exec. Were the parent gone already (it
    died in between), the signal would never come: the child ends itself then.
    """
    libc = _LIBC
    if libc is None:
        return None

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: _Stream = asyncio.subprocess.DEVNULL,
    stderr: _Stream = asyncio.subprocess.DEVNULL,
    run_dir: Path | None = None,
) -> Process:
    """Start ``argv`` as the leader of a new process group, remembered until reaped.

    ``env`` is added to this process's environment. stdin is never inherited.
    The child dies with the thread that calls this (the event loop's): see the
    module docstring. Its group is recorded in the marker of ``run_dir``, or of
    ``cwd`` when that is a run dir of this run.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=_dies_with(os.getpid()),
    )
    _STARTED.add(process.pid)
    where = run_dir or cwd
    if where is not None:
        _record_group(where, process.pid)
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
    """Pids of the live processes in group ``pgid``; None where /proc is not there."""
    if not Path("/proc").is_dir():
        return None
    return frozenset(p.pid for p in _processes() if p.pgid == pgid)


def kill_all_started() -> None:
    """SIGKILL every process group this process started and did not reap (at exit)."""
    for pgid in list(_STARTED):
        _signal_group(pgid, signal.SIGKILL)
        _STARTED.discard(pgid)


atexit.register(kill_all_started)


# -- run dirs, their markers, and the sweep ----------------------------------------------
RUN_DIR_PREFIX = "proxytest-"
MARKER = ".proxytest-run.json"
_RUN_DIRS: dict[Path, dict[str, Any]] = {}  # this run's live run dirs -> their markers
_MARKS = threading.Lock()  # the event loop records groups; threads remove dirs, sweep


def make_run_dir(name: str, *, keep: bool = False) -> Path:
    """A new private (0700) folder ``proxytest-<name>-…`` in the temp folder, marked as ours.

    ``keep``: :func:`remove_run_dir` leaves it (without its marker), and no sweep
    removes it should this run die first.
    """
    path = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{name}-"))  # mode 0700
    marker = {"tool": "proxytest", "run": RUN_ID, "owner": Owner.current().to_json(),
              "keep": keep, "groups": []}  # fmt: skip
    with _MARKS:
        _RUN_DIRS[path] = marker
        _write_marker(path, marker)
    return path


def remove_run_dir(path: Path) -> None:
    """Remove a run dir made by :func:`make_run_dir`; a kept one loses only its marker."""
    with _MARKS:
        marker = _RUN_DIRS.pop(path, None)
    if marker is not None and marker["keep"]:
        with contextlib.suppress(OSError):
            (path / MARKER).unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _write_marker(path: Path, marker: Mapping[str, Any]) -> None:
    """Write the marker whole or not at all: a sweep may read it at any moment."""
    temporary = path / f"{MARKER}.new"
    with contextlib.suppress(OSError):
        temporary.write_text(json.dumps(marker), encoding="utf-8")
        os.replace(temporary, path / MARKER)


def _record_group(path: Path, pgid: int) -> None:
    """Add process group ``pgid`` (just started) to the marker of run dir ``path``."""
    started = proc_stat(pgid)
    if started is None:
        return  # gone already, and with it the group
    with _MARKS:
        marker = _RUN_DIRS.get(path)
        if marker is not None:
            marker["groups"].append({"pgid": pgid, "start": started.start})
            _write_marker(path, marker)


def _read_marker(path: Path) -> dict[str, Any] | None:
    """The marker of ``path`` when it is a folder of ours with a marker of ours, else None."""
    uid = os.geteuid()
    try:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            return None
        marker_file = path / MARKER
        if marker_file.lstat().st_uid != uid or not marker_file.is_file():
            return None
        data = json.loads(marker_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("tool") == "proxytest"
    return data if ok and isinstance(data.get("groups"), list) else None


def _owner_of(marker: Mapping[str, Any]) -> Owner | None:
    recorded = marker.get("owner")
    return Owner.from_json(recorded) if isinstance(recorded, dict) else None


def _groups(marker: Mapping[str, Any]) -> dict[int, int]:
    """The marker's process groups: pgid -> start time of the leader it recorded."""
    groups = {}
    for group in marker["groups"]:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            groups[int(group["pgid"])] = int(group["start"])
    return groups


def _processes() -> list[ProcStat]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            process = proc_stat(int(entry.name))
            if process is not None:
                found.append(process)
    return found


def _works_inside(pid: int, folder: Path) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == str(folder) or cwd.startswith(f"{folder}{os.sep}")


def _ours(process: ProcStat, folder: Path, groups: Mapping[int, int]) -> bool:
    """Is ``process`` one that a dead run started in run dir ``folder``?

    Its process group must be one the marker recorded, and either that group's
    leader is still the very process recorded (pid and start time: the group id
    was not reused), or the process works inside ``folder`` (a proxy's worker,
    whose master is gone).
    """
    if process.pgid not in groups:
        return False
    leader = proc_stat(process.pgid)
    if leader is not None and leader.start == groups[process.pgid]:
        return True
    return _works_inside(process.pid, folder)


def _kill_if_still(process: ProcStat, folder: Path, groups: Mapping[int, int]) -> None:
    """SIGKILL ``process`` if it is still the process judged ours (no pid reuse in between)."""
    try:
        handle = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd here (Linux < 5.3): a check then a kill, as close as can be
        if proc_stat(process.pid) == process and _ours(process, folder, groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        return
    try:
        if proc_stat(process.pid) == process and _ours(process, folder, groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(handle, signal.SIGKILL)
    finally:
        os.close(handle)


def _reap(folder: Path, groups: Mapping[int, int]) -> None:
    """Kill what is ours of ``groups`` (leaders first: they fork no more), until none is left."""
    if not groups:
        return
    for _ in range(20):
        victims = [p for p in _processes() if _ours(p, folder, groups)]
        if not victims:
            return
        for process in sorted(victims, key=lambda p: p.pid != p.pgid):
            _kill_if_still(process, folder, groups)
        time.sleep(0.05)


def sweep_run_dirs(folder: Path | None = None) -> list[Path]:
    """Reap what dead runs left in ``folder`` (the temp folder); return the dirs swept.

    Only folders named ``proxytest-…``, owned by this user, with a marker whose
    owner is gone for sure (runtimes/owner.py): never a live run's, nor one
    whose owner cannot be judged from here. Their processes that are ours for
    sure are killed (:func:`_ours`), then the folder is removed, or only its
    marker when it was kept. Folders without a marker are not touched.
    """
    folder = Path(tempfile.gettempdir()) if folder is None else folder
    swept: list[Path] = []
    try:
        entries = sorted(folder.glob(f"{RUN_DIR_PREFIX}*"))
    except OSError:
        return swept
    for path in entries:
        with _MARKS:
            if path in _RUN_DIRS:
                continue  # this run's own
        marker = _read_marker(path)
        owner = _owner_of(marker) if marker is not None else None
        if marker is None or owner is None:
            continue
        if owner.rebooted():
            pass  # nothing it started can still run
        elif owner.gone():
            _reap(path.resolve(), _groups(marker))
        else:
            continue
        if marker.get("keep"):
            with contextlib.suppress(OSError):
                (path / MARKER).unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        swept.append(path)
    return swept


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

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0

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
