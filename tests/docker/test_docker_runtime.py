"""The docker runtime against a real engine: same verdicts as local, no container left."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS
from proxytest.matrix import TargetSpec, load_matrix
from proxytest.options import RunOptions
from proxytest.results import RunResult, TargetStatus, Verdict
from proxytest.runner import run_targets
from proxytest.runtimes.owner import Owner, proc_stat

from ..conftest import ROOT, Cli, nginx_on_a_busy_port, signal_once_running
from .conftest import DockerSetup

pytestmark = pytest.mark.integration
LABEL = "proxytest.tool"
# Every kind of check, with holds short enough for a test (drops at 15 s and
# more are covered by the local integration tests).
CHECK_IDS = [c.id for c in CHECKS.values()]
# 100 connections: well under nginx default's ~250, so the verdict cannot wobble.
TLS_TARGETS = ("nginx/tls", "haproxy/tls")
# Three targets in their quick phase at once (the default is 5): container starts
# of the next targets compete with the timing checks for two cores. Fan-out up to
# 50 subscribers per protocol (the origin process reached from the container, at
# two steps): the 250 of the matrix is judged locally (tests/integration/
# test_proxies.py, full_load_run) and took most of each run's load turns here.
SETTINGS: dict[str, object] = {
    "max_hold": 4.0, "heartbeat": 1.0, "load_connections": 100, "concurrency": 3,
    "fanout_max_n": 50,
}  # fmt: skip
# An error because the tool itself was late judges nothing: such results are not
# compared, but more than this many would mean the comparison measured too little.
TOO_BUSY = "too busy to judge timing"
MAX_TOO_BUSY = 2


def containers(setup: DockerSetup) -> list[str]:
    """IDs of proxytest's containers in the engine (sparse: no race with removals)."""
    client = docker.DockerClient(base_url=setup.host)
    try:
        found = client.containers.list(all=True, sparse=True, filters={"label": LABEL})
        return [c.id for c in found]
    finally:
        client.close()


def verdicts(run: RunResult) -> dict[str, dict[str, str]]:
    return {t.id: {r.check: r.verdict.value for r in t.results} for t in run.targets}


@pytest.fixture(scope="module")
def both_runs(docker_setup: DockerSetup) -> tuple[RunResult, RunResult]:
    matrix = load_matrix(ROOT / "matrix.yaml", tuple(ADAPTERS))
    # Every proxy's default and realtime setup, and two behind TLS (certificates in
    # the mounted run dir; HTTP/2 and browser checks against a container): what runs
    # differently in a container. The matrix's other targets only add load.
    chosen = {*(f"{p}/{s}" for p in ADAPTERS for s in ("default", "realtime")), *TLS_TARGETS}
    targets = [t for t in matrix.targets if t.id in chosen]
    assert len(targets) == len(chosen)
    options = RunOptions.from_matrix(matrix, checks=CHECK_IDS, **SETTINGS)
    local = asyncio.run(run_targets(targets, options))
    in_docker = asyncio.run(run_targets(
        targets,
        RunOptions.from_matrix(
            matrix, checks=CHECK_IDS, runtime="docker", images=docker_setup.images, **SETTINGS
        ),
    ))  # fmt: skip
    return local, in_docker


def test_every_setup_runs_in_a_container(both_runs: tuple[RunResult, RunResult]) -> None:
    _, in_docker = both_runs
    for target in in_docker.targets:
        assert target.runtime == "docker"
        assert target.status == TargetStatus.OK, (target.id, target.reason)
        assert target.proxy_version, target.id


def test_same_verdicts_as_local(both_runs: tuple[RunResult, RunResult]) -> None:
    local, in_docker = both_runs
    # What each side saw (summary and metrics): a difference must show both.
    seen: dict[tuple[str, str], list[object]] = {}
    for side, run in (("local", local), ("docker", in_docker)):
        for t in run.targets:
            for r in t.results:
                seen.setdefault((t.id, r.check), []).append((side, r.summary, dict(r.metrics)))
    docker_verdicts = verdicts(in_docker)
    late = {
        (t.id, r.check) for run in (local, in_docker) for t in run.targets for r in t.results
        if r.summary.startswith(TOO_BUSY)
    }  # fmt: skip
    assert len(late) <= MAX_TOO_BUSY, late
    differ = {
        (t, c): (v, docker_verdicts[t][c], seen[t, c])
        for t, checks in verdicts(local).items() for c, v in checks.items()
        if docker_verdicts[t][c] != v and (t, c) not in late
    }  # fmt: skip
    assert differ == {}
    assert verdicts(local)["nginx/default"]["ws.upgrade"] == "fail"  # not vacuous


def test_reload_and_origin_restart_work_in_containers(
    both_runs: tuple[RunResult, RunResult],
) -> None:
    _, in_docker = both_runs
    by_id = {t.id: {r.check: r for r in t.results} for t in in_docker.targets}
    for target in ("nginx/realtime", "haproxy/realtime", "traefik/realtime", "caddy/realtime"):
        reload = by_id[target]["lifecycle.reload"]
        assert reload.verdict == Verdict.PASS, (target, reload.summary)
        assert by_id[target]["lifecycle.origin-restart"].verdict == Verdict.PASS
    assert by_id["caddy/default"]["lifecycle.reload"].metrics["cut_connections"] == 2


def test_no_container_left_after_the_runs(
    both_runs: tuple[RunResult, RunResult], docker_setup: DockerSetup
) -> None:
    assert containers(docker_setup) == []


def test_a_start_failure_leaves_no_container(docker_setup: DockerSetup, tmp_path: Path) -> None:
    with nginx_on_a_busy_port(tmp_path) as config:
        run = asyncio.run(run_targets(
            [TargetSpec("nginx", "busy", (config,), runtime="docker")],
            RunOptions.from_matrix(checks=["ws.upgrade"], images=docker_setup.images),
        ))  # fmt: skip
    (target,) = run.targets
    assert target.status == TargetStatus.ERROR
    assert "in use" in (target.reason or "")
    assert containers(docker_setup) == []


def test_a_missing_image_is_a_skip_with_the_pull_error(docker_setup: DockerSetup) -> None:
    target = TargetSpec(
        "caddy",
        "default",
        (ROOT / "proxies/caddy/default.Caddyfile",),
        runtime="docker",
        image="proxytest-missing/caddy:0",
    )
    run = asyncio.run(run_targets([target], RunOptions.from_matrix(checks=["ws.upgrade"])))
    (result,) = run.targets
    assert result.status == TargetStatus.SKIPPED
    assert "pull failed" in (result.reason or "")
    assert result.not_run and run.exit_code == 1  # nothing measured: never green


def _owner_labels(owner: Owner, session: str) -> dict[str, str]:
    return {LABEL: "proxytest", "proxytest.session": session,
            **{f"proxytest.owner.{k}": str(v) for k, v in owner.to_json().items()}}  # fmt: skip


def test_leftovers_of_dead_runs_are_swept_and_only_those(docker_setup: DockerSetup) -> None:
    client = docker.DockerClient(base_url=docker_setup.host)
    ended = subprocess.Popen(["sleep", "30"])
    stat = proc_stat(ended.pid)
    assert stat is not None
    ended.kill()
    ended.wait()
    here = Owner.current()
    dead = Owner(here.host, here.boot, here.pidns, ended.pid, stat.start)
    # The same dead pid seen from another pid namespace (a runner in a container that
    # shares this engine): its owner cannot be judged from here.
    foreign = Owner(here.host, here.boot, "pid:[1]", ended.pid, stat.start)

    def leftover(owner: Owner, session: str) -> str:
        return str(client.containers.create(
            docker_setup.images["caddy"], entrypoint=["/usr/bin/caddy"], command=["version"],
            labels=_owner_labels(owner, session),
        ).id)  # fmt: skip

    swept, kept = leftover(dead, "old"), leftover(foreign, "other-runner")
    try:
        assert {swept, kept} <= set(containers(docker_setup))
        target = TargetSpec(
            "caddy", "default", (ROOT / "proxies/caddy/default.Caddyfile",), runtime="docker"
        )
        options = RunOptions.from_matrix(checks=["ws.upgrade"], images=docker_setup.images)
        asyncio.run(run_targets([target], options))
        assert containers(docker_setup) == [kept]
    finally:
        client.containers.get(kept).remove(force=True)
        client.close()


def test_sigkill_leaves_containers_that_the_next_run_removes(docker_setup: DockerSetup) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pt-", dir="/tmp"))  # short: unix socket paths
    cli = Cli(folder / "t")
    images = [f"--image={p}={i}" for p, i in docker_setup.images.items()]
    env = {**cli.env(), "DOCKER_HOST": docker_setup.host}
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "proxytest", "run", "--runtime", "docker", *images,
             "--only", "nginx/realtime", "--checks", "ws.idle", "--max-hold", "30"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        ) as tool:  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not containers(docker_setup):
                time.sleep(0.1)
            time.sleep(1.0)
            tool.kill()
        assert containers(docker_setup), "a SIGKILL removes nothing: the container stays"
        assert cli.leftovers()
        done = subprocess.run(
            [sys.executable, "-m", "proxytest", "run", "--runtime", "docker", *images,
             "--only", "caddy/default", "--checks", "ws.upgrade"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert containers(docker_setup) == []
        assert cli.leftovers() == []
    finally:
        for leftover in containers(docker_setup):
            docker.DockerClient(base_url=docker_setup.host).containers.get(leftover).remove(
                force=True
            )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_removes_every_container(
    docker_setup: DockerSetup, tmp_path: Path, sig: int
) -> None:
    cli = Cli(tmp_path / "tmpdir")
    images = [f"--image={p}={i}" for p, i in docker_setup.images.items()]
    with subprocess.Popen(
        [sys.executable, "-m", "proxytest", "run", "--runtime", "docker", *images,
         "--only", "nginx/realtime", "--only", "caddy/realtime", "--max-hold", "30"],
        cwd=ROOT, env={**cli.env(), "DOCKER_HOST": docker_setup.host},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        _, err = signal_once_running(
            process, lambda: len(containers(docker_setup)), sig,
            within_s=60, settle_s=1.0, end_s=60, what="container",
        )  # fmt: skip
    assert process.returncode != 0
    assert containers(docker_setup) == []
    assert cli.leftovers() == []
    assert "Traceback" not in err
    assert os.path.exists(ROOT / "proxytest" / "runtimes" / "docker.py")
