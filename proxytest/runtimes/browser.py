"""A headless Chromium as a local process, for the ``browser.*`` checks and the report test.

Chromium is started like every other process of proxytest (:func:`local.spawn`):
the leader of its own process group, recorded in the marker of a run dir of its
own (the profile, ``--user-data-dir``), killed with the tool by the
parent-death signal and reaped by the next run's sweep should this one be
killed outright. :func:`launch_chromium` yields once Chromium listens for the
DevTools protocol; the protocol itself is spoken in probes/cdp.py.

The flags (docs: KNOWLEDGE "HTTP/2, TLS and browsers"): headless, no GPU, no
QUIC (the listener under test speaks TCP), no first-run, background
networking, component updates or sync (nothing but the page's own traffic), no
proxy, a fresh profile, and trust in exactly one certificate: the run's, by the
hash of its public key (``--ignore-certificate-errors-spki-list``), never
``--ignore-certificate-errors``. ``--no-sandbox`` only as root, where
Chromium's sandbox refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._aio import finish
from . import local

__all__ = [
    "CANDIDATES",
    "INSTALL_HINT",
    "Chromium",
    "chromium_argv",
    "chromium_binary",
    "launch_chromium",
]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install Chromium: apt-get install chromium (or scripts/dev.sh browser), "
    "or name one with PROXYTEST_CHROMIUM"
)
LOG_NAME = "chromium.log"


def chromium_binary() -> str | None:
    """``$PROXYTEST_CHROMIUM``, else the first Chromium on PATH (Debian: /usr/bin/chromium)."""
    chosen = os.environ.get("PROXYTEST_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_argv(
    binary: str,
    profile: Path,
    *,
    spki_sha256: Sequence[str] = (),
    width: int = 1280,
    height: int = 900,
) -> list[str]:
    """The command line of a headless Chromium with a fresh profile in ``profile``."""
    argv = [
        binary,
        "--headless=new",
        "--remote-debugging-port=0",  # the port it picks is written to DevToolsActivePort
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--hide-scrollbars",
        "--mute-audio",
    ]
    if spki_sha256:
        argv.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_sha256))
    if os.geteuid() == 0:
        argv.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    argv.append("about:blank")
    return argv


@dataclass(frozen=True)
class Chromium:
    """A running Chromium: where its DevTools protocol listens, and its log."""

    process: asyncio.subprocess.Process
    port: int
    browser_path: str  # /devtools/browser/<id>: the browser-wide protocol endpoint
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    @property
    def browser_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.browser_path}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_bytes()[-32 * 1024 :].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def _devtools_port(
    profile: Path, process: asyncio.subprocess.Process, limit: float
) -> tuple[int, str]:
    """Chromium writes its port and browser endpoint into DevToolsActivePort once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"chromium exited with code {process.returncode} at start")
        with contextlib.suppress(OSError, ValueError, IndexError):
            port, path = marker.read_text().splitlines()[:2]
            return int(port), path
        await asyncio.sleep(0.05)
    raise RuntimeError(f"chromium did not open its DevTools port within {limit:g} s")


@contextlib.asynccontextmanager
async def launch_chromium(
    binary: str,
    *,
    spki_sha256: Sequence[str] = (),
    width: int = 1280,
    height: int = 900,
    start_timeout_s: float = 30.0,
    stop_grace_s: float = 5.0,
) -> AsyncIterator[Chromium]:
    """Start ``binary`` headless in a run dir of its own; stop it and remove the dir on exit.

    Raises RuntimeError (with the tail of Chromium's output) when it does not start.
    """
    run_dir = local.make_run_dir("chromium")
    profile = run_dir / "profile"
    profile.mkdir()
    log_path = run_dir / LOG_NAME
    process: asyncio.subprocess.Process | None = None
    try:
        argv = chromium_argv(binary, profile, spki_sha256=spki_sha256, width=width, height=height)
        with log_path.open("ab") as log:
            # Chromium's own scratch files (org.chromium.Chromium.*) go to $TMPDIR:
            # into the run dir, so they are removed with it.
            scratch = run_dir / "tmp"
            scratch.mkdir()
            process = await local.spawn(
                argv, cwd=run_dir, env={"TMPDIR": str(scratch)}, stdout=log, stderr=log
            )
        try:
            port, path = await _devtools_port(profile, process, start_timeout_s)
        except RuntimeError as exc:
            tail = Chromium(process, 0, "", log_path).log_tail()
            raise RuntimeError(f"{exc}; its output ends:\n{tail}" if tail else str(exc)) from None
        yield Chromium(process, port, path, log_path)
    finally:
        if process is not None:
            await finish(local.stop(process, grace_s=stop_grace_s))
        await finish(asyncio.to_thread(local.remove_run_dir, run_dir))
