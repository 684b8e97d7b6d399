"""Who started what: this run's identity, and whether the run that left something is gone.

A pid alone names no run: pids are reused, and a pid means something only in
its own pid namespace. An :class:`Owner` is a process as the kernel tells it
apart: the host and boot it runs on, its pid namespace, its pid and its start
time (clock ticks after boot, ``/proc/PID/stat`` field 22), which a later
process reusing the pid cannot have. Run dirs (local.py) record their owner in
a marker file, containers (docker.py) in labels; the sweeps at the start of a
run remove what an owner left only when :meth:`Owner.gone` is sure.

:data:`RUN_ID` tells this run's leftovers apart from every other run's, on any
host: containers carry it (``proxytest.session``), so a run removes its own by it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["RUN_ID", "Owner", "ProcStat", "boot_id", "proc_stat"]

RUN_ID = uuid.uuid4().hex
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """What ``/proc/PID/stat`` says of a live process that matters to a sweep."""

    pid: int
    ppid: int
    pgid: int
    start: int  # clock ticks after boot


def proc_stat(pid: int) -> ProcStat | None:
    """``pid``'s parent, process group and start time; None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = text[text.rindex(")") + 2 :].split()
    try:
        if fields[0] == "Z":  # a zombie: dead, waiting to be reaped
            return None
        return ProcStat(pid, int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    """The kernel's id of this boot ('' where it cannot be read)."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Owner:
    """A process told apart from any other, past or future (see the module docstring)."""

    host: str
    boot: str
    pidns: str
    pid: int
    start: int

    @classmethod
    def current(cls) -> Owner:
        """This process (computed again after a fork: a child is another owner)."""
        global _CURRENT
        if _CURRENT is None or _CURRENT.pid != os.getpid():
            stat = proc_stat(os.getpid())
            _CURRENT = cls(
                socket.gethostname(),
                boot_id(),
                _pid_namespace(),
                os.getpid(),
                stat.start if stat else 0,
            )
        return _CURRENT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Owner | None:
        """The owner a marker or labels recorded; None when something is missing or odd."""
        try:
            owner = cls(
                str(data["host"]),
                str(data["boot"]),
                str(data["pidns"]),
                int(data["pid"]),
                int(data["start"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return owner if owner.pid > 0 and owner.boot else None

    def judged_here(self) -> bool:
        """Whether this process can tell if the owner lives: same host, boot, pid namespace."""
        here = Owner.current()
        return (self.host, self.boot, self.pidns) == (here.host, here.boot, here.pidns)

    def rebooted(self) -> bool:
        """The owner ran on this host before its last boot: it, and all it started, are gone."""
        here = Owner.current()
        return self.host == here.host and self.boot != here.boot

    def alive(self) -> bool:
        """The owner's pid is live with the owner's start time (false after a pid reuse)."""
        stat = proc_stat(self.pid)
        return stat is not None and stat.start == self.start

    def gone(self) -> bool:
        """Sure that the owner has ended: judged from here and not alive.

        Never for an owner on another host or in another pid namespace (a runner
        sharing a remote engine or this /tmp): its liveness cannot be seen from here.
        """
        return self.judged_here() and not self.alive()


_CURRENT: Owner | None = None
