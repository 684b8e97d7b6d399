"""Nothing left behind when the tool dies outright, and nothing misjudged when sweeping.

A SIGKILL runs no clean-up: the tool's own children die with it (the
parent-death signal), and the next run reaps what remains (a proxy's workers,
the run dirs) by the markers in the run dirs, touching only what is ours for
sure. Containers carry labels that tell runs apart on any host.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxytest.runtimes import docker as docker_runtime
from proxytest.runtimes import local
from proxytest.runtimes.local import MARKER, sweep_run_dirs
from proxytest.runtimes.owner import RUN_ID, Owner, ProcStat, proc_stat

from .conftest import ROOT, Cli, processes_under

Identity = tuple[int, int]  # pid, start time: a process, not a reusable number


def alive(identity: Identity) -> bool:
    stat = proc_stat(identity[0])
    return stat is not None and stat.start == identity[1]


def descendants(root: int) -> list[ProcStat]:
    table = [s for s in map(proc_stat, _pids()) if s is not None]
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        for stat in table:
            if stat.ppid == parent:
                found.append(stat)
                todo.append(stat.pid)
    return found


def _pids() -> Iterator[int]:
    return (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(condition: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def kill_all(identities: list[Identity]) -> None:
    for identity in identities:
        if alive(identity):
            os.kill(identity[0], signal.SIGKILL)


# -- SIGKILL of the tool mid-run ----------------------------------------------------------
@pytest.fixture
def short_cli() -> Iterator[Cli]:
    """A CLI whose temp folder has a short path: unix sockets in run dirs (HAProxy's stats
    socket, Caddy's admin socket) must fit in 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="pt-", dir="/tmp"))
    try:
        yield Cli(folder / "t")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_sigkill_mid_run_children_die_at_once_and_the_next_run_reaps_the_rest(
    short_cli: Cli,
) -> None:
    """nginx (workers: grandchildren), HAProxy (master-worker) and the origin's own process."""
    cli = short_cli
    argv = [sys.executable, "-m", "proxytest", "run", "--only", "nginx/default",
            "--only", "haproxy/realtime", "--checks", "lifecycle.origin-restart",
            "--checks", "ws.idle", "--max-hold", "30"]  # fmt: skip
    tool = subprocess.Popen(argv, cwd=ROOT, env=cli.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:

        def everything_runs() -> bool:
            kids = descendants(tool.pid)
            origin = any("proxytest.origin" in cmdline(k.pid) for k in kids if k.ppid == tool.pid)
            in_run_dirs = set(processes_under(cli.tmp))
            masters = {k.ppid for k in kids if k.pid in in_run_dirs and k.ppid != tool.pid}
            return origin and len(masters) >= 2  # nginx's and HAProxy's workers

        assert wait_until(everything_runs, 60), "the origin process and proxy workers never ran"
        started = descendants(tool.pid)
        tool.kill()
        tool.wait()
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait()
    children = [(s.pid, s.start) for s in started if s.ppid == tool.pid]
    everyone = [(s.pid, s.start) for s in started]
    try:
        assert wait_until(lambda: not any(map(alive, children)), 5), [
            cmdline(pid) for pid, start in children if alive((pid, start))
        ]
        assert cli.leftovers(), "the run dirs stay until a run sweeps them"
        done = cli("run", "--only", "nginx/realtime", "--checks", "ws.upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
        assert wait_until(lambda: not any(map(alive, everyone)), 5), [
            cmdline(pid) for pid, start in everyone if alive((pid, start))
        ]
        assert processes_under(cli.tmp) == []
        assert cli.leftovers() == []
    finally:
        kill_all(everyone)


def test_sigkill_of_pytest_takes_the_plugins_proxies_along_and_the_next_run_reaps_the_rest(
    short_cli: Cli,
) -> None:
    """The plugin starts its proxies from its service thread (the parent-death signal
    is tied to the thread that forked): they still die with pytest."""
    cli = short_cli
    cli.tmp.mkdir(parents=True, exist_ok=True)
    matrix = cli.tmp.parent / "matrix.yaml"
    matrix.write_text(
        "checks: [ws.idle]\nmax_hold: 30\ntargets:\n"
        + "".join(
            f"  - {{proxy: {p}, setup: realtime, configs: ['{ROOT}/proxies/{p}/realtime.{e}']}}\n"
            for p, e in (("nginx", "conf"), ("haproxy", "cfg"))
        )
    )
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--proxytest-matrix",
            str(matrix), "--rootdir", str(matrix.parent), str(matrix)]  # fmt: skip
    pytest_run = subprocess.Popen(argv, cwd=matrix.parent, env=cli.env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:

        def workers_run() -> bool:
            kids = descendants(pytest_run.pid)
            in_run_dirs = set(processes_under(cli.tmp))
            return (
                len({k.ppid for k in kids if k.pid in in_run_dirs and k.ppid != pytest_run.pid})
                >= 2
            )

        assert wait_until(workers_run, 60), "the proxies' workers never ran"
        started = descendants(pytest_run.pid)
        pytest_run.kill()
        pytest_run.wait()
    finally:
        if pytest_run.poll() is None:
            pytest_run.kill()
            pytest_run.wait()
    children = [(s.pid, s.start) for s in started if s.ppid == pytest_run.pid]
    everyone = [(s.pid, s.start) for s in started]
    try:
        assert children
        assert wait_until(lambda: not any(map(alive, children)), 5), [
            cmdline(pid) for pid, start in children if alive((pid, start))
        ]
        assert any(name.startswith("proxytest-pytest-") for name in cli.leftovers())
        done = cli("run", "--only", "nginx/realtime", "--checks", "ws.upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
        assert wait_until(lambda: not any(map(alive, everyone)), 5)
        assert processes_under(cli.tmp) == []
        assert cli.leftovers() == []
    finally:
        kill_all(everyone)


# -- the sweep's judgement ----------------------------------------------------------------
# An owner that starts processes the way the tool does (local.spawn in run dirs) and
# then waits to be killed: a worker-like grandchild in each dir outlives its leader.
OWNER = """\
import asyncio, json, sys
from proxytest.runtimes import local

async def main():
    plain = local.make_run_dir("test")
    kept = local.make_run_dir("test", keep=True)
    for where in (plain, kept):
        await local.spawn(["sh", "-c", "sleep 300 & sleep 300"], cwd=where)
    print(json.dumps({"plain": str(plain), "kept": str(kept)}), flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


class Started:
    """Processes a test starts: all killed (and reaped) at the end, whatever happened."""

    def __init__(self) -> None:
        self.identities: list[Identity] = []
        self.popens: list[subprocess.Popen[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True, **kwargs)
        self.popens.append(process)
        stat = proc_stat(process.pid)
        assert stat is not None
        self.identities.append((process.pid, stat.start))
        return process

    def identity(self, process: subprocess.Popen[str]) -> Identity:
        return self.identities[self.popens.index(process)]

    def end(self) -> None:
        kill_all(self.identities)
        for process in self.popens:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def started() -> Iterator[Started]:
    processes = Started()
    yield processes
    processes.end()


def run_owner(tmp: Path, start: Started) -> tuple[subprocess.Popen[str], dict[str, str]]:
    owner = start([sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE,
                  env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip
    assert owner.stdout is not None
    dirs = json.loads(owner.stdout.readline())

    def sleepers() -> list[ProcStat]:
        return [d for d in descendants(owner.pid) if cmdline(d.pid).startswith("sleep")]

    assert wait_until(lambda: len(sleepers()) == 4, 10), [cmdline(d.pid) for d in sleepers()]
    start.identities.extend((d.pid, d.start) for d in descendants(owner.pid))
    return owner, dirs


def write_marker(folder: Path, owner: Owner, groups: list[dict[str, int]]) -> Path:
    folder.mkdir(mode=0o700)
    marker = {"tool": "proxytest", "run": "x", "owner": owner.to_json(), "keep": False,
              "groups": groups}  # fmt: skip
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


def a_dead_owner() -> Owner:
    """This process's host, boot and pid namespace, and a pid that has ended."""
    ended = subprocess.Popen(["sleep", "30"])
    stat = proc_stat(ended.pid)
    assert stat is not None
    ended.kill()
    ended.wait()
    here = Owner.current()
    return Owner(here.host, here.boot, here.pidns, ended.pid, stat.start)


def test_a_sweep_reaps_dead_runs_only_and_only_their_processes(
    tmp_path: Path, started: Started
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # A run that is killed outright, and one that lives on.
    dead, dead_dirs = run_owner(tmp, started)
    live, live_dirs = run_owner(tmp, started)
    dead_workers = [(d.pid, d.start) for d in descendants(dead.pid) if d.ppid != dead.pid]
    live_family = [(d.pid, d.start) for d in descendants(live.pid)]
    dead.kill()
    dead.wait()
    # Not ours: a process working in the dead run's dir, in a group the run never
    # recorded (a person's shell there), and a process whose group id a marker
    # names but with another leader (the id was reused).
    visitor = started(["sleep", "300"], cwd=dead_dirs["plain"], start_new_session=True)
    stranger = started(["sleep", "300"], cwd=tmp_path, start_new_session=True)
    wrong_start = started.identity(stranger)[1] - 1
    reused = write_marker(tmp / "proxytest-reused-1", a_dead_owner(),
                          [{"pgid": stranger.pid, "start": wrong_start}])  # fmt: skip
    # Owners that cannot be judged from here, and a folder without a marker.
    elsewhere = a_dead_owner()
    for name, owner in (
        ("proxytest-other-pidns", Owner(elsewhere.host, elsewhere.boot, "pid:[1]", 1, 1)),
        ("proxytest-other-host", Owner("elsewhere", elsewhere.boot, elsewhere.pidns, 1, 1)),
    ):
        write_marker(tmp / name, owner, [])
    (tmp / "proxytest-unmarked").mkdir()

    swept = sweep_run_dirs(tmp)

    assert sorted(swept) == sorted([Path(dead_dirs["plain"]), Path(dead_dirs["kept"]), reused])
    assert wait_until(lambda: not any(map(alive, dead_workers)), 5)
    assert not Path(dead_dirs["plain"]).exists()
    assert Path(dead_dirs["kept"]).is_dir() and not (Path(dead_dirs["kept"]) / MARKER).exists()
    assert not reused.exists()
    for process in (visitor, stranger):
        assert process.poll() is None
    assert all(map(alive, live_family))
    for folder in live_dirs.values():
        assert (Path(folder) / MARKER).is_file()
    for name in ("proxytest-other-pidns", "proxytest-other-host", "proxytest-unmarked"):
        assert (tmp / name).is_dir()
    # A second sweep finds nothing more to do; the kept dir stays.
    assert sweep_run_dirs(tmp) == []
    assert Path(dead_dirs["kept"]).is_dir()


def test_run_dirs_are_private_and_marked_with_their_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = local.make_run_dir("nginx")
    try:
        assert folder.name.startswith("proxytest-nginx-")
        assert folder.stat().st_mode & 0o777 == 0o700
        marker = json.loads((folder / MARKER).read_text())
        assert Owner.from_json(marker["owner"]) == Owner.current()
        assert marker["run"] == RUN_ID and marker["groups"] == [] and marker["keep"] is False
        assert sweep_run_dirs(tmp_path) == []  # this run's own: never swept
    finally:
        local.remove_run_dir(folder)
    assert not folder.exists()


# -- container labels ---------------------------------------------------------------------
class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name = name
        self.labels = {docker_runtime.LABEL: "proxytest", **labels}
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self._all = containers

    def list(self, **kwargs: Any) -> list[FakeContainer]:
        return [c for c in self._all if not c.removed]

    def close(self) -> None:
        pass


def owner_labels(owner: Owner, session: str = "another-run") -> dict[str, str]:
    labels = {f"proxytest.owner.{k}": str(v) for k, v in owner.to_json().items()}
    return {**labels, "proxytest.session": session, "proxytest.owner": f"{owner.host}:{owner.pid}"}


def test_labels_name_the_run_and_an_owner_that_survives_pid_reuse() -> None:
    labels = docker_runtime.labels("nginx/default")
    assert labels["proxytest.session"] == RUN_ID and len(RUN_ID) == 32
    assert labels["proxytest.target"] == "nginx/default"
    assert docker_runtime.owner_of(labels) == Owner.current()
    other = subprocess.run(
        [sys.executable, "-c",
         "from proxytest.runtimes import docker; print(docker.labels('x')['proxytest.session'])"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert other and other != RUN_ID


def test_the_container_sweep_removes_only_dead_runs_it_can_judge(started: Started) -> None:
    here = Owner.current()
    dead = a_dead_owner()
    pid, start_time = started.identity(started(["sleep", "300"]))
    live = Owner(here.host, here.boot, here.pidns, pid, start_time)
    reused = Owner(here.host, here.boot, here.pidns, pid, start_time - 1)
    containers = {
        "dead": FakeContainer("dead", owner_labels(dead)),
        "pid-reused": FakeContainer("pid-reused", owner_labels(reused)),
        "live": FakeContainer("live", owner_labels(live)),
        "other-host": FakeContainer("other-host", owner_labels(
            Owner("ci-runner-2", dead.boot, dead.pidns, dead.pid, dead.start))),
        "other-pidns": FakeContainer("other-pidns", owner_labels(
            Owner(dead.host, dead.boot, "pid:[1]", dead.pid, dead.start))),
        "hostname-pid-only": FakeContainer("hostname-pid-only", {
            "proxytest.session": "old", "proxytest.owner": f"{dead.host}:{dead.pid}"}),
        "this-run": FakeContainer("this-run", owner_labels(dead, session=RUN_ID)),
    }  # fmt: skip
    engine = docker_runtime.Engine("unix:///nonexistent")
    engine._client = FakeClient(list(containers.values()))
    try:
        assert engine.sweep() == 2
    finally:
        engine._client = None
    assert {name for name, c in containers.items() if c.removed} == {"dead", "pid-reused"}
