"""`proxytest fix` end to end: real proxies, the user's files, the proof, --write.

The acceptance on every default setup of the matrix is tests/fixes/test_fix_defaults.py;
these cover the command's rules on quick checks: a proven patch is written only with
--write (a backup beside it, the file changed in the diff's lines only), an unproven
one never, a deliberate value is proposed and not forced, nothing to fix changes
nothing, and bad input is exit 2 before anything runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from proxytest import cli as command
from proxytest import fixing
from proxytest.fixes.base import Finding, Plan

from .conftest import (
    ROOT,
    Cli,
    changed_lines,
    patch_lines,
    processes_under,
    signal_once_running,
)

pytestmark = pytest.mark.integration

CADDY = ROOT / "proxies" / "caddy" / "default.Caddyfile"
# Caddy's default setup degrades lifecycle.reload (stream_close_delay 0); one that passes.
CADDY_CHECKS = ("lifecycle.reload", "ws.upgrade")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short folder: Caddy's and Envoy's admin sockets live in the run dir (under TMPDIR,
    here inside it), and a unix socket path has at most 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="pt-fix-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "t")


def checks(*ids: str) -> list[str]:
    return [arg for check in ids for arg in ("--checks", check)]


def fix_json(path: Path) -> dict[str, Any]:
    (fix,) = json.loads(path.read_text())["fixes"]
    assert isinstance(fix, dict)
    return fix


def test_a_proven_patch_is_written_only_with_write_and_then_there_is_nothing_to_fix(
    tmp_path: Path, cli: Cli
) -> None:
    config = tmp_path / "site.Caddyfile"
    shutil.copyfile(CADDY, config)
    original = config.read_text()
    report = tmp_path / "fix.json"
    args = ("fix", "--proxy", "caddy", "--config", str(config), *checks(*CADDY_CHECKS))

    shown = cli(*args, "--json", str(report), cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-2000:]
    fix = fix_json(report)
    assert fix["status"] == "proven", fix["summary"]
    assert config.read_text() == original  # without --write nothing of the user's changes
    assert not list(tmp_path.glob("*.bak*"))
    outcomes = {
        row["check"]: (row["before"], row["after"], row["outcome"]) for row in fix["checks"]
    }
    assert outcomes == {
        "lifecycle.reload": ("degraded", "pass", "fixed"),
        "ws.upgrade": ("pass", "pass", "kept"),
    }
    (change,) = fix["changes"]
    assert change["knob"] == "stream_close_delay 1h" and change["proven"] is True
    assert "+\t\tstream_close_delay 1h" in fix["patch"] and "--- a/site.Caddyfile" in fix["patch"]
    assert "stream_close_delay 1h" in shown.stdout and "--write" in shown.stdout
    assert cli.leftovers() == []  # the patched copy was removed

    written = cli(*args, "--write", "--json", str(report), cwd=tmp_path)
    assert written.returncode == 0, written.stdout[-3000:]
    fix = fix_json(report)
    backup = tmp_path / "site.Caddyfile.bak"
    assert fix["written"] == ["site.Caddyfile"] and fix["backups"] == ["site.Caddyfile.bak"]
    assert backup.read_text() == original
    # The file differs from the original in exactly the lines the reported patch shows.
    assert changed_lines(original, config.read_text()) == patch_lines(fix["patch"])
    assert fix["files"] == [{"path": "site.Caddyfile", "text": config.read_text()}]

    again = cli(*args, "--write", "--json", str(report), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    fix = fix_json(report)
    assert fix["status"] == "nothing_to_fix" and fix["patch"] == "" and fix["written"] == []
    assert sorted(p.name for p in tmp_path.glob("*.bak*")) == ["site.Caddyfile.bak"]
    assert "nothing to fix" in again.stdout


_REAL = fixing.PLANNERS["caddy"]


class _Faulty:
    """Caddy's planner with a patch that does not work: the reload knob set to its
    default, and the stream's Content-Type rewritten (a fix that breaks what worked).
    Asked again about what the re-run showed, it has nothing to add (one run of the copy)."""

    def __init__(self) -> None:
        self.asked = 0

    def plan(self, files: Mapping[Path, str], findings: Sequence[Finding]) -> Plan:
        self.asked += 1
        if self.asked > 1:
            return Plan({})
        plan = _REAL.plan(files, findings)
        bad = "stream_close_delay 0\n\t\theader_down Content-Type text/plain"
        broken = {p: t.replace("stream_close_delay 1h", bad) for p, t in plan.files.items()}
        return Plan(broken, plan.changes, plan.refusals)


def test_an_unproven_patch_is_reported_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "site.Caddyfile"
    shutil.copyfile(CADDY, config)
    original = config.read_text()
    report = tmp_path / "fix.json"
    faulty = _Faulty()
    monkeypatch.setattr(fixing, "PLANNERS", {**fixing.PLANNERS, "caddy": faulty})
    code = command.main([
        "fix", "--proxy", "caddy", "--config", str(config),
        *checks(*CADDY_CHECKS, "sse.headers"), "--write", "--json", str(report),
    ])  # fmt: skip
    out = capsys.readouterr().out
    fix = fix_json(report)
    assert code == 1, out[-3000:]
    assert fix["status"] == "unproven", fix["summary"]
    outcomes = {row["check"]: row["outcome"] for row in fix["checks"]}
    assert outcomes["lifecycle.reload"] == "not fixed"
    assert outcomes["sse.headers"] == "regressed" and outcomes["ws.upgrade"] == "kept"
    assert [c["proven"] for c in fix["changes"]] == [False]
    assert faulty.asked == 2  # the re-run's failures were put to the planner, once
    assert config.read_text() == original and not list(tmp_path.glob("*.bak*"))
    assert fix["written"] == [] and "UNPROVEN" in out and "never written" in out


NGINX = ROOT / "proxies" / "nginx" / "realtime.conf"


def test_a_deliberate_timeout_is_proposed_not_forced(tmp_path: Path, cli: Cli) -> None:
    """The realtime setup with its read timeout set to 4 s on purpose: sse.idle fails, and
    fix proposes the change instead of overriding a value the user chose."""
    config = tmp_path / "short.conf"
    text = NGINX.read_text()
    assert text.count("proxy_read_timeout 3600s;") == 1
    config.write_text(text.replace("proxy_read_timeout 3600s;", "proxy_read_timeout 4s;"))
    original = config.read_text()
    report = tmp_path / "fix.json"
    done = cli(
        "fix", "--proxy", "nginx", "--config", str(config), *checks("sse.idle", "ws.upgrade"),
        "--max-hold", "8", "--write", "--json", str(report), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    fix = fix_json(report)
    assert fix["status"] == "no_config_change", fix["summary"]
    (refusal,) = fix["refusals"]
    assert refusal["check"] == "sse.idle" and "proxy_read_timeout" in (refusal["proposal"] or "")
    assert fix["patch"] == "" and fix["written"] == []
    assert config.read_text() == original and not list(tmp_path.glob("*.bak*"))
    assert "Proposed, not made" in done.stdout


def test_bad_input_is_exit_2_before_anything_runs(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "site.Caddyfile"
    shutil.copyfile(CADDY, config)
    cases = [
        (("fix", "--proxy", "caddy"), "needs --config"),
        (("fix", "--config", str(config)), "needs --proxy"),
        (("fix", "matrix.yaml", "--proxy", "caddy", "--config", str(config)), "not both"),
    ]
    config.chmod(0o444)
    if os.geteuid() != 0:  # root writes a read-only file anyway
        cases.append(
            (("fix", "--proxy", "caddy", "--config", str(config), "--write"), "not writable")
        )
    try:
        for args, said in cases:
            done = cli(*args, cwd=tmp_path)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert said in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr
    finally:
        config.chmod(0o644)
    assert cli.leftovers() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_fix_stopped_while_it_proves_leaves_nothing_and_writes_nothing(
    tmp_path: Path, cli: Cli, sig: int
) -> None:
    """Stopped while the patched copy runs: the user's file is untouched, no backup; after
    SIGTERM nothing is left, after SIGKILL the next run sweeps the copy and its proxy."""
    config = tmp_path / "site.Caddyfile"
    shutil.copyfile(CADDY, config)
    original = config.read_text()
    args = ("fix", "--proxy", "caddy", "--config", str(config), *checks(*CADDY_CHECKS))
    process = subprocess.Popen(
        [sys.executable, "-m", "proxytest", *args, "--write"],
        cwd=tmp_path, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def copies_running() -> int:
        """Caddy processes while a patched copy exists (the first run's are gone then)."""
        if not list(cli.tmp.glob("proxytest-fix-*")):
            return 0
        return sum(len(processes_under(d)) for d in cli.tmp.glob("proxytest-caddy-*"))

    _, err = signal_once_running(process, copies_running, sig, want=1, within_s=60, settle_s=1)
    assert config.read_text() == original and not list(tmp_path.glob("*.bak*"))
    if sig == signal.SIGTERM:
        assert process.returncode == 143 and "terminated" in err, err
    else:
        assert cli.leftovers() != []  # a SIGKILL runs no clean-up ...
        cli(*args[:5], "--checks", "ws.upgrade", cwd=tmp_path)  # ... the next run sweeps
    deadline = time.monotonic() + 10
    while cli.leftovers() and time.monotonic() < deadline:  # processes end, then dirs go
        time.sleep(0.1)
    assert cli.leftovers() == []
    assert not processes_under(cli.tmp)
