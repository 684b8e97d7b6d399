"""A real Docker engine for the docker-runtime tests, and local images of the proxies.

If no engine answers on DOCKER_HOST, the session starts an isolated one with
scripts/docker-engine.sh (root only: its own data root, socket and pidfile, no
bridge, no iptables) and stops it at the end. Images are built from the proxy
binaries already installed (scripts/docker-images.py): no registry is needed.
Where no engine can be had the tests skip with the reason, unless
PROXYTEST_REQUIRE_DOCKER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxytest.runtimes import docker as docker_runtime

from ..conftest import ROOT

ENGINE_DIR = Path(os.environ.get("PROXYTEST_DOCKER_DIR", "/tmp/proxytest-docker-tests"))


@dataclass(frozen=True)
class DockerSetup:
    host: str
    images: dict[str, str]


def _unavailable(reason: str) -> None:
    if os.environ.get("PROXYTEST_REQUIRE_DOCKER") == "1":
        pytest.fail(f"a Docker engine is required here (PROXYTEST_REQUIRE_DOCKER=1): {reason}")
    pytest.skip(f"no Docker engine: {reason}")


def _answers(host: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=host, timeout=10).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def docker_setup() -> Iterator[DockerSetup]:
    env = {**os.environ, "PROXYTEST_DOCKER_DIR": str(ENGINE_DIR)}
    host = os.environ.get("DOCKER_HOST", "")
    started = False
    if not (host and _answers(host)):
        if os.geteuid() != 0:
            _unavailable("DOCKER_HOST does not answer and starting an engine needs root")
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            _unavailable(f"scripts/docker-engine.sh start failed: {done.stderr[-800:]}")
        started = True
        host = f"unix://{ENGINE_DIR}/docker.sock"
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    docker_runtime.close_engine()  # a fresh engine connection for this DOCKER_HOST
    try:
        out = ENGINE_DIR.parent / f"proxytest-images-{os.getpid()}.json"
        built = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "docker-images.py"), "--json", str(out)],
            env={**env, "DOCKER_HOST": host}, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if built.returncode != 0 or not out.exists():
            pytest.fail(f"building the proxy images failed:\n{built.stdout}\n{built.stderr}")
        images = json.loads(out.read_text())
        out.unlink()
        yield DockerSetup(host, images)
    finally:
        docker_runtime.close_engine()
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        if started:
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "stop"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
