"""The launcher interface: what to run, and the handle of what runs."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["LaunchSpec", "Running"]


@dataclass(frozen=True)
class LaunchSpec:
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
    """A started proxy: where it listens, whether it lives, what it said."""

    host: str
    port: int

    @property
    def alive(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    def log_tail(self, lines: int = 30) -> str: ...

    def send_signal(self, sig: int, *, group: bool = True) -> None: ...
