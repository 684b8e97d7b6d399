"""The origin's image (deploy/origin/Dockerfile), built and run in a real engine.

No registry is reachable here, so scripts/origin-image.py builds the Dockerfile
unchanged on a stand-in for python:3.11-slim made from this interpreter. The
image runs as shipped (its CMD listens on 0.0.0.0:8080 inside the container)
with its port published on 127.0.0.1: that needs an engine with a bridge, so
this module starts one in a network namespace of its own, as test_bridge.py
does (PROXYTEST_DOCKER_NETNS=1; the state in $PROXYTEST_DOCKER_ORIGIN_DIR), and
its clients run in that namespace (nsenter).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import docker
import pytest

from proxytest.origin.cli import TOKEN_ENV
from proxytest.origin.server import ORIGIN_HEADER, TOKEN_REQUIRED
from proxytest.routes import READY_PATH

from ..conftest import ROOT
from .conftest import _unavailable

pytestmark = pytest.mark.integration
ENGINE_DIR = Path(os.environ.get("PROXYTEST_DOCKER_ORIGIN_DIR", "/tmp/proxytest-docker-origin"))
SCRIPT = ROOT / "scripts" / "docker-engine.sh"
TOKEN = "image-test-token-0123456789"
LABELS = {"proxytest.tool": "origin-image-test"}

# What a client in the engine's namespace sees at a URL, with or without the token.
FETCH = """
import json, sys, urllib.error, urllib.request
url, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"X-Proxytest-Token": token} if token else {})
try:
    with urllib.request.urlopen(request, timeout=10) as r:
        out = (r.status, r.read().decode(), dict(r.headers))
except urllib.error.HTTPError as e:
    out = (e.code, e.read().decode(), dict(e.headers))
except OSError as e:  # not listening yet
    out = (0, str(e), {})
print(json.dumps(out))
"""


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROXYTEST_DOCKER_NETNS": "1", "PROXYTEST_DOCKER_DIR": str(ENGINE_DIR)}
    return subprocess.run(
        ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[docker.DockerClient, int]]:
    """A client of a bridge engine in its own network namespace, and dockerd's pid."""
    if os.geteuid() != 0:
        _unavailable("an engine in its own network namespace needs root")
    if shutil.which("nsenter") is None or shutil.which("unshare") is None:
        _unavailable("nsenter and unshare (util-linux) are needed")
    started = _script("status", 30).returncode != 0
    try:
        if started:
            done = _script("start", 600)
            if done.returncode != 0:
                _unavailable(f"docker-engine.sh start (netns) failed: {done.stderr[-800:]}")
        pid = int((ENGINE_DIR / "docker.pid").read_text().strip())
        client = docker.DockerClient(base_url=f"unix://{ENGINE_DIR}/docker.sock", timeout=60)
        try:
            yield client, pid
        finally:
            client.close()
    finally:
        if started:
            _script("stop", 120)


def _origin_image() -> ModuleType:
    spec = importlib.util.spec_from_file_location("origin_image", ROOT / "scripts/origin-image.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_serves_the_origin_on_a_published_port_with_its_token(
    engine: tuple[docker.DockerClient, int],
) -> None:
    client, pid = engine
    began = time.monotonic()
    tag = _origin_image().build_origin_image(client, "proxytest-local/origin:test")
    built_s = time.monotonic() - began
    image = client.images.get(tag)
    config = image.attrs["Config"]
    assert config["Entrypoint"] == ["proxytest", "origin"]
    assert config["Cmd"] == ["--listen", "0.0.0.0:8080"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "proxytest.origin.health"]

    container = client.containers.run(
        tag, detach=True, environment={TOKEN_ENV: TOKEN}, labels=LABELS,
        ports={"8080/tcp": ("127.0.0.1", None)},
    )  # fmt: skip
    try:
        container.reload()
        (binding,) = container.ports["8080/tcp"]
        assert binding["HostIp"] == "127.0.0.1"
        url = f"http://127.0.0.1:{binding['HostPort']}{READY_PATH}"

        def fetch(token: str) -> tuple[int, str, dict[str, str]]:
            argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-c", FETCH]
            done = subprocess.run(
                [*argv, url, token], capture_output=True, text=True, timeout=60, check=True
            )
            status, body, headers = json.loads(done.stdout)
            return int(status), str(body), headers

        deadline = time.monotonic() + 30
        while (status := fetch(TOKEN))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        status, body, headers = fetch(TOKEN)
        assert status == 200 and body.startswith("origin-") and headers[ORIGIN_HEADER] == body
        assert fetch("")[:2] == (401, TOKEN_REQUIRED)
        assert fetch("not-the-token")[:2] == (401, TOKEN_REQUIRED)
        # The image's own health check (its ready route, the token from the env).
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs["State"]["Health"]["Status"]
            if health != "starting":
                break
            time.sleep(1)
        assert health == "healthy", container.attrs["State"]["Health"]
        logs = container.logs().decode()
        assert "listening on http://0.0.0.0:8080/" in logs
        assert "beyond loopback" in logs and TOKEN not in logs
        stopping = time.monotonic()
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()
        print(
            f"origin image built in {built_s:.1f} s ({image.attrs['Size'] / 1e6:.0f} MB), "
            f"stopped in {time.monotonic() - stopping:.2f} s",
            file=sys.stderr,
        )
    finally:
        container.remove(force=True)
