"""Bad input a real user brings: exit 2 with the file, the line and the fix, before anything starts.

Each of these used to be ignored silently, crash, hang or blame the proxy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS

from .conftest import ROOT, Cli, processes_under, signal_once_running

NGINX = ROOT / "proxies" / "nginx" / "realtime.conf"


def _refused(done: subprocess.CompletedProcess[str], cli: Cli, *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert "fix:" in done.stderr
    assert cli.leftovers() == []


def test_a_second_config_for_a_one_file_proxy_is_refused(cli: Cli, tmp_path: Path) -> None:
    extra = tmp_path / "more.conf"
    extra.write_text("# more\n")
    done = cli("check", "--proxy", "nginx", "--config", str(NGINX), "--config", str(extra))
    _refused(done, cli, "nginx takes one config file", "realtime.conf, more.conf", "include")


def test_a_folder_as_config_is_named_a_folder(cli: Cli, tmp_path: Path) -> None:
    done = cli("check", "--proxy", "nginx", "--config", str(tmp_path))
    _refused(done, cli, f"{tmp_path}: --config names a folder")


def test_a_folder_in_the_matrix_configs_is_named_at_its_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "confs").mkdir()
    matrix = tmp_path / "m.yaml"
    matrix.write_text("targets:\n  - proxy: nginx\n    configs:\n      - confs\n")
    done = cli("run", str(matrix))
    _refused(done, cli, f"{matrix}:4:", "is a folder")


def test_binary_with_the_docker_runtime_is_refused(cli: Cli) -> None:
    binary = str(ADAPTERS["nginx"].find_binary())
    done = cli(
        "check", "--proxy", "nginx", "--config", str(NGINX), "--binary", binary,
        "--runtime", "docker",
    )  # fmt: skip
    _refused(done, cli, "is for the local runtime", "--image")


def test_binary_in_a_docker_target_of_the_matrix_is_refused_at_its_line(
    cli: Cli, tmp_path: Path
) -> None:
    binary = ADAPTERS["nginx"].find_binary()
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        f"targets:\n  - proxy: nginx\n    configs: [{NGINX}]\n    runtime: docker\n"
        f"    binary: {binary}\n"
    )
    done = cli("run", str(matrix))
    _refused(done, cli, f"{matrix}:2:", "is for the local runtime")


def test_image_with_the_local_runtime_is_refused(cli: Cli) -> None:
    done = cli("check", "--proxy", "nginx", "--config", str(NGINX), "--image", "nginx:1")
    _refused(done, cli, "--image is for the docker runtime")


@pytest.mark.parametrize(
    ("program", "said"),
    [
        ("#!/bin/sh\necho 'hello'\n", "exited 0 and printed 'hello'"),
        ("#!/bin/sh\nexit 3\n", "exited 3 and printed nothing"),
        ("#!/bin/sh\nexec sleep 60\n", "did not answer within 0.5 s"),
    ],
)
def test_a_binary_that_is_not_the_proxy_is_named_so(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, said: str
) -> None:
    fake = tmp_path / "fake-nginx"
    fake.write_text(program)
    fake.chmod(0o755)
    monkeypatch.setenv("PROXYTEST_TIME_SCALE", "0.05")  # 10 s of patience become 0.5 s
    done = cli("check", "--proxy", "nginx", "--config", str(NGINX), "--binary", str(fake))
    _refused(done, cli, f"{fake} is not nginx", said)
    assert processes_under(tmp_path) == []


def test_bin_sleep_is_not_blamed_as_a_rejected_config(cli: Cli) -> None:
    done = cli("check", "--proxy", "nginx", "--config", str(NGINX), "--binary", "/bin/sleep")
    _refused(done, cli, "/bin/sleep is not nginx")
    assert "rejected the config" not in done.stderr


@pytest.mark.parametrize("where", ["folder", "missing-parent", "parent-is-a-file"])
def test_an_unwritable_json_path_is_refused_before_the_run(
    cli: Cli, tmp_path: Path, where: str
) -> None:
    (tmp_path / "file").write_text("")
    path = {
        "folder": tmp_path,
        "missing-parent": tmp_path / "no" / "such" / "r.json",
        "parent-is-a-file": tmp_path / "file" / "r.json",
    }[where]
    done = cli("run", "--only", "nginx/realtime", "--json", str(path))
    _refused(done, cli, str(path), "--json")
    assert "proxytest 0.1" not in done.stdout  # nothing ran


def test_an_interrupted_run_writes_what_it_measured(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "out.json"
    args = ["run", "--only", "nginx/realtime", "--json", str(report), "--max-hold", "20"]
    with subprocess.Popen(
        [sys.executable, "-m", "proxytest", *args], cwd=ROOT, env=cli.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        # The long checks hold for 20 s: by 3 s the quick ones are done.
        signal_once_running(
            process, lambda: len(processes_under(cli.tmp)), signal.SIGINT, want=1, settle_s=3.0
        )
    assert process.returncode == 130
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    (target,) = data["targets"]
    verdicts = {r["check"]: r["verdict"] for r in target["results"]}
    assert verdicts["ws.upgrade"] == "pass"  # measured before the interruption
    assert verdicts["ws.idle"] == "error"  # cut short
    cut = next(r for r in target["results"] if r["check"] == "ws.idle")
    assert "interrupted" in cut["summary"]
    assert cli.leftovers() == []
    shown = cli("report", str(report))
    assert shown.returncode == 1  # an interrupted run is never as expected


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\xff\xfe targets", [":1: not UTF-8 text (byte 0xff at offset 0)", "save the matrix"]),
        (b"targets:\n  - proxy: nginx\n    setup: default\n    optional: maybe\n",
         [":4: optional must be true or false, got 'maybe'", "optional: true"]),
        (b"targets:\n  - proxy: nginx\n    setup: default\n    binary: /no/nginx\n",
         [":2: nginx binary /no/nginx does not exist"]),
    ],
)  # fmt: skip
def test_a_bad_matrix_is_named_at_its_line(
    cli: Cli, tmp_path: Path, content: bytes, words: list[str]
) -> None:
    (tmp_path / "proxies").symlink_to(ROOT / "proxies")
    matrix = tmp_path / "m.yaml"
    matrix.write_bytes(content)
    done = cli("run", str(matrix))
    _refused(done, cli, *(f"{matrix}{w}" if w.startswith(":") else w for w in words))


def test_a_folder_as_the_matrix_is_named_a_folder(cli: Cli, tmp_path: Path) -> None:
    done = cli("run", str(tmp_path))
    _refused(done, cli, f"{tmp_path}: is a folder, not a matrix file")


def test_json_below_a_file_is_named(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    done = cli("run", "--only", "nginx/realtime", "--json", str(tmp_path / "afile" / "r.json"))
    _refused(done, cli, "is a file, not a folder")


@pytest.mark.parametrize("item", ["GODEBUG", "1X=2", "A-B=c", "=value"])
def test_a_bad_env_option_is_refused(cli: Cli, item: str) -> None:
    done = cli("check", "--proxy", "nginx", "--config", str(NGINX), "--env", item)
    _refused(done, cli, f"--env {item!r}", "KEY=VALUE")


def test_a_bad_env_name_in_the_matrix_is_named_at_its_line(cli: Cli, tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "targets:\n  - proxy: nginx\n    setup: realtime\n    env:\n      GO DEBUG: x\n"
    )
    (tmp_path / "proxies").symlink_to(ROOT / "proxies")
    done = cli("run", str(matrix))
    _refused(done, cli, f"{matrix}:5:", "'GO DEBUG' is not an environment variable name")


def test_a_run_whose_targets_keep_none_of_the_selected_checks_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "targets:\n  - proxy: nginx\n    configs: ['" + str(NGINX) + "']\n    checks: ['ws.*']\n"
    )
    done = cli("run", str(matrix), "--checks", "sse.stream")
    _refused(done, cli, "no target runs any of the selected checks", "--checks")
