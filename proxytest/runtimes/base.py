"""The runtime interface: where a proxy runs, and how it meets this machine's network.

A runtime (``local.py``: a child process; ``docker.py``: a container) says what
argv[0] is, runs short commands where the proxy runs (its version, its config
checker, a reload helper) and launches the proxy as an async context manager
that yields a :class:`Running` handle and stops the proxy on the way out. It
also says where the rendered config listens (clients always connect to
:data:`LOOPBACK`) and where the proxy reaches an origin that listens on
loopback. Nothing outside this package starts or ends a process; see
docs/architecture.md ("Runtimes").
"""

from __future__ import annotations

import random
import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from ..errors import LaunchError

if TYPE_CHECKING:
    from ..adapters.base import Adapter
    from ..origin import Origin

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_RUNTIME",
    "DOCKER_NETWORKS",
    "LOOPBACK",
    "RUNTIMES",
    "LaunchSpec",
    "NetworkMode",
    "Run",
    "Running",
    "Runtime",
    "RuntimeName",
    "free_port",
]

LOOPBACK = "127.0.0.1"

# Where targets run: `auto` picks docker when an engine answers and has the image.
RuntimeName = Literal["local", "docker", "auto"]
RUNTIMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
DEFAULT_RUNTIME: RuntimeName = "local"

# How containers meet this machine (runtimes/docker.py explains both).
NetworkMode = Literal["host", "bridge"]
DOCKER_NETWORKS: tuple[NetworkMode, ...] = get_args(NetworkMode)
DEFAULT_NETWORK: NetworkMode = "host"


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch: the proxy's argv in its run dir, listening at ``host:port``."""

    argv: Sequence[str]
    run_dir: Path
    host: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = 5.0
    label: str = "proxy"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "proxy.log"


class Running(Protocol):
    """A started proxy: where clients connect, whether it lives, what it said."""

    host: str
    port: int

    @property
    def alive(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    def log_tail(self, lines: int = 30) -> str: ...

    def send_signal(self, sig: int, *, group: bool = True) -> None:
        """Signal the proxy's process group, or only its main process (a master's reload)."""
        ...

    def processes(self) -> frozenset[int] | None:
        """The pids of the proxy's processes now (master and workers); None if unknown."""
        ...


class Run(Protocol):
    """Runs a short command where the proxy runs; returns (exit code, output)."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Awaitable[tuple[int, str]]: ...


class Runtime(ABC):
    """Where a proxy runs. The runner, checks and reports never know which one ran."""

    name: str
    image: str | None = None
    # Where the rendered config listens (`listen_host`); clients connect to LOOPBACK.
    listen_host: str = LOOPBACK
    # Where the proxy reaches an origin on this machine's loopback; None: right there.
    # When set, the origin listens there too (reach), and `upstream_note` says what
    # that address is, for the error when it cannot.
    upstream_host: str | None = None
    upstream_note: str = ""
    # The proxy starts as root where it runs: told so (RenderedConfig.as_root), a
    # proxy that would hand its workers to another user keeps them as root, who can
    # enter the private (0700) run dir.
    as_root: bool = False

    @abstractmethod
    def binary(self, adapter: Adapter, host_binary: Path | None) -> Path:
        """argv[0] of the proxy where it runs: the host binary, or its path in the image."""

    @abstractmethod
    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """Run a short command where the proxy runs; (exit code, output)."""

    @abstractmethod
    def launch(self, spec: LaunchSpec) -> AbstractAsyncContextManager[Running]:
        """Start the proxy; leaving the context stops it, whatever happened inside."""

    def beside(self, process: Running) -> Run:
        """``run`` for commands that talk to ``process`` (a reload): in its network."""
        return self.run

    async def version(self, adapter: Adapter, binary: Path) -> str | None:
        """The proxy's version from its own version command; None if it says none."""
        _code, output = await self.run(adapter.version_argv(binary), timeout=60)
        return adapter.parse_version(output)

    def origin_hosts(self, host: str) -> tuple[str, ...]:
        """Where an origin on ``host`` (loopback) must listen for these proxies to reach it."""
        extra = self.upstream_host
        return (host,) if extra is None or extra == host else (host, extra)

    async def reach(self, origin: Origin) -> None:
        """Make the in-process ``origin`` listen wherever these proxies reach it."""
        for host in self.origin_hosts(origin.host)[1:]:
            try:
                await origin.listen_also(host)
            except OSError as exc:
                raise LaunchError(
                    f"the origin cannot listen on {host}:{origin.port}, where the proxy reaches "
                    f"it: {exc.strerror or exc}",
                    detail=f"{host} is {self.upstream_note}",
                ) from None


# -- ports -------------------------------------------------------------------------------
_RESERVED: set[int] = set()

# Listening ports come from below the kernel's ephemeral range: a port picked there
# and bound a moment later by the proxy cannot meanwhile become the local port of
# one of the tool's own client connections (thousands of which come and go while
# targets start); a port 0 bind would pick from that very range.
_LISTEN_FLOOR = 10000
# Browsers refuse to load from these ports (the Fetch standard's "bad ports", which
# Chromium enforces: net::ERR_UNSAFE_PORT): a proxy given one fails every
# browser.* check. Those above 1024; the pool above holds only 10080, the ephemeral
# range none.
BROWSER_BLOCKED_PORTS = frozenset(
    {1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, *range(6665, 6670)}
    | {6697, 10080}
)


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux), else its default."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = LOOPBACK) -> int:
    """A free TCP port on ``host`` that this process has not handed out before.

    Drawn from below the kernel's ephemeral range when it leaves room, so no
    client socket takes it before the proxy (or the origin process) binds it;
    never one a browser refuses (``BROWSER_BLOCKED_PORTS``).
    """
    low, _ = _ephemeral_ports()
    pool = range(_LISTEN_FLOOR, low) if low - _LISTEN_FLOOR >= 1000 else None
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, random.choice(pool) if pool else 0))
            except OSError:
                continue  # in use: draw again
            port: int = sock.getsockname()[1]
        if port not in _RESERVED and port not in BROWSER_BLOCKED_PORTS:
            _RESERVED.add(port)
            return port
    raise LaunchError(f"no free port found on {host} after 200 tries")
