"""One road from a matrix and overrides to run options; every setting validated once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import MatrixError, UsageError
from proxytest.matrix import parse_matrix
from proxytest.options import RunOptions
from proxytest.settings import BOUNDS, Settings

from .conftest import ROOT, Cli

CONFIG = ROOT / "proxies/nginx/default.conf"
MATRIX = f"""\
checks: ["ws.*"]
concurrency: 3
max_hold: 20
heartbeat: 4
load_connections: 60
fanout_max_n: 400
runtime: docker
docker_network: bridge
targets:
  - proxy: nginx
    configs: [{CONFIG}]
"""


def matrix_with(text: str = MATRIX) -> object:
    return parse_matrix(text, Path("matrix.yaml"), tuple(ADAPTERS))


def test_the_matrix_gives_every_option() -> None:
    options = RunOptions.from_matrix(matrix_with())  # type: ignore[arg-type]
    assert {c.family for c in options.checks} == {"ws"}
    assert options.concurrency == 3
    assert options.settings == Settings(
        max_hold_s=20, heartbeat_s=4, load_connections=60, fanout_max_n=400
    )
    assert options.docker_network == "bridge"
    assert options.runtime is None  # the targets carry the matrix's runtime


def test_overrides_win_and_text_is_read_as_numbers() -> None:
    options = RunOptions.from_matrix(
        matrix_with(),  # type: ignore[arg-type]
        checks=["sse.stream"],
        max_hold="7.5",
        heartbeat=2,
        load_connections="10",
        fanout_max_n="4000",
        concurrency=1,
        runtime="local",
        docker_network="host",
    )
    assert [c.id for c in options.checks] == ["sse.stream"]
    assert options.settings == Settings(
        max_hold_s=7.5, heartbeat_s=2, load_connections=10, fanout_max_n=4000
    )
    assert (options.concurrency, options.runtime, options.docker_network) == (1, "local", "host")


def test_without_a_matrix_the_defaults() -> None:
    options = RunOptions.from_matrix()
    assert options.settings == Settings()
    assert options.concurrency == 4 and options.docker_network == "host"
    assert len(options.checks) == len(RunOptions().checks)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("max_hold", math.nan, "not a finite number"),
        ("max_hold", "inf", "not a finite number"),
        ("max_hold", "-inf", "not a finite number"),
        ("max_hold", 0, "from 0.1 to 86400"),
        ("max_hold", 90_000, "from 0.1 to 86400"),
        ("heartbeat", "soon", "got 'soon'"),
        ("heartbeat", True, "got True"),
        ("load_connections", 2.5, "not a whole number"),
        ("load_connections", 0, "from 1 to 100000"),
        ("fanout_max_n", 2.5, "not a whole number"),
        ("fanout_max_n", 0, "from 1 to 100000"),
        ("concurrency", "NaN", "not a finite number"),
        ("concurrency", 65, "from 1 to 64"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_its_flag(key: str, value: object, why: str) -> None:
    with pytest.raises(UsageError) as info:
        RunOptions.from_matrix(None, **{key: value})  # type: ignore[arg-type]
    flag = "--" + key.replace("_", "-")
    assert str(info.value).startswith(f"{flag} must be ")
    assert why in str(info.value)
    assert f"e.g. {flag}" in str(info.value)


def test_the_flag_name_comes_from_the_caller() -> None:
    with pytest.raises(UsageError, match=r"^--proxytest-max-hold must be"):
        RunOptions.from_matrix(max_hold="nan", flag=lambda k: "--proxytest-" + k.replace("_", "-"))


@pytest.mark.parametrize("key", sorted(BOUNDS))
@pytest.mark.parametrize("value", [".nan", "nan", "inf", "-1"])
def test_the_matrix_refuses_the_same_values_at_their_line(key: str, value: str) -> None:
    text = f"{key}: {value}\ntargets:\n  - proxy: nginx\n    configs: [{CONFIG}]\n"
    with pytest.raises(MatrixError) as info:
        matrix_with(text)
    assert info.value.line == 1
    assert f"{key} must be" in str(info.value)


def test_choices_are_checked_with_the_valid_ones_listed() -> None:
    with pytest.raises(UsageError, match="use one of: local, docker, auto"):
        RunOptions.from_matrix(runtime="podman")
    with pytest.raises(UsageError, match="use one of: host, bridge"):
        RunOptions.from_matrix(docker_network="overlay")
    with pytest.raises(UsageError, match="expected PROXY=IMAGE"):
        RunOptions.from_matrix(images={"apache": "httpd:2"})


def test_settings_refuse_what_the_bounds_refuse() -> None:
    with pytest.raises(ValueError, match="max_hold"):
        Settings(max_hold_s=math.nan)
    with pytest.raises(ValueError, match="load_connections"):
        Settings(load_connections=0)


@pytest.mark.parametrize(
    "args",
    [["--max-hold", "nan"], ["--max-hold", "inf"], ["--heartbeat", "-1"], ["--concurrency", "0"]],
)
def test_the_cli_exits_2_before_anything_starts(cli: Cli, args: list[str]) -> None:
    done = cli("run", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"proxytest: {args[0]} must be" in done.stderr
    assert "fix: e.g." in done.stderr
    assert cli.leftovers() == []
