"""Shared fixtures: the project root, and a runner for the CLI in a clean temp dir."""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# pytester runs pytest with the proxytest plugin in a temp dir (tests/test_plugin.py).
pytest_plugins = ("pytester",)


def running_in_ci() -> bool:
    return bool(os.environ.get("CI"))


def processes_under(folder: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(str(folder) + os.sep):
            found.append(int(entry.name))
    return found


def signal_once_running(
    process: subprocess.Popen[str],
    running: Callable[[], int],
    sig: int,
    *,
    want: int = 2,
    within_s: float = 30,
    settle_s: float = 0.3,
    end_s: float = 30,
    what: str = "proxy",
) -> tuple[str, str]:
    """Once ``running()`` counts ``want`` things (at least one within ``within_s``),
    let them settle, send ``sig`` and return the process's (stdout, stderr).

    A process that does not end within ``end_s`` is killed (and the test fails).
    """
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and running() < want:
            time.sleep(0.05)
        assert running(), f"no {what} started within {within_s:g} s"
        time.sleep(settle_s)
        process.send_signal(sig)
        out, err = process.communicate(timeout=end_s)
        return out or "", err or ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@contextlib.contextmanager
def nginx_on_a_busy_port(folder: Path) -> Iterator[Path]:
    """An nginx config that passes `nginx -t` but cannot start: its port is taken."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = folder / "busy.conf"
        template = (
            "pid {{ run_dir }}/n.pid;\nevents {}\nhttp { server { listen 127.0.0.1:PORT; "
            "location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; } } }\n"
        )
        config.write_text(template.replace("PORT", str(port)))
        yield config


class Cli:
    """Runs ``python -m proxytest`` with TMPDIR set to a private folder.

    Every run dir the tool makes lands in that folder, so a test can assert that
    nothing was left behind: no folder, no process working inside one.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmp), "COLUMNS": "160"}

    def __call__(
        self, *args: str, cwd: Path = ROOT, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxytest", *args],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "tmpdir")


def patch_lines(patch: str) -> list[str]:
    """The -/+ lines of a unified diff (file headers and context left out)."""
    return [
        line
        for line in patch.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))
    ]


def changed_lines(before: str, after: str) -> list[str]:
    """The -/+ lines of a diff from ``before`` to ``after``: what a patch between them shows."""
    return patch_lines(
        "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm=""))
    )
