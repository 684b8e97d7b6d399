"""matrix.yaml parsing: frozen specs, and errors that name file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import MatrixError
from proxytest.matrix import TargetSpec, discover_setup, load_matrix, parse_matrix
from proxytest.results import Verdict

ROOT = Path(__file__).resolve().parents[1]
KNOWN = tuple(ADAPTERS)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "proxies" / "nginx").mkdir(parents=True)
    (tmp_path / "proxies" / "nginx" / "default.conf").write_text("# nginx\n")
    (tmp_path / "proxies" / "traefik").mkdir(parents=True)
    (tmp_path / "proxies" / "traefik" / "default.yaml").write_text("a: 1\n")
    (tmp_path / "proxies" / "traefik" / "default.dynamic.yaml").write_text("b: 2\n")
    return tmp_path


def parse(project: Path, text: str):
    return parse_matrix(text, project / "matrix.yaml", KNOWN)


def error(project: Path, text: str) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        parse(project, text)
    return info.value


def test_the_default_matrix_parses() -> None:
    matrix = load_matrix(ROOT / "matrix.yaml", KNOWN)
    ids = [t.id for t in matrix.targets]
    assert len(ids) == len(set(ids)) >= 15
    assert {t.proxy for t in matrix.targets} == set(KNOWN)
    assert {"default", "realtime", "tls"} <= {t.setup for t in matrix.targets}
    nginx = matrix.targets[0]
    assert nginx.expected("ws.echo") == Verdict.FAIL
    assert nginx.expected("sse.stream") is None


def test_setup_files_main_first(project: Path) -> None:
    files = discover_setup(project / "proxies", "traefik", "default")
    assert [f.name for f in files] == ["default.yaml", "default.dynamic.yaml"]


def test_a_full_target(project: Path) -> None:
    matrix = parse(
        project,
        """
checks: ["ws.*", sse.stream]
concurrency: 2
targets:
  - proxy: traefik
    setup: default
    expect: {ws.*: fail, ws.upgrade: pass}
    note: why
""",
    )
    (target,) = matrix.targets
    assert isinstance(target, TargetSpec)
    assert target.id == "traefik/default"
    assert [p.name for p in target.configs] == ["default.yaml", "default.dynamic.yaml"]
    assert target.expected("ws.upgrade") == Verdict.PASS  # exact beats glob
    assert target.expected("ws.echo") == Verdict.FAIL
    assert matrix.checks == ("ws.*", "sse.stream")
    assert matrix.concurrency == 2
    with pytest.raises(AttributeError):
        target.proxy = "x"  # type: ignore[misc]


def test_invalid_yaml_names_the_line(project: Path) -> None:
    err = error(project, "targets:\n  - proxy: nginx\n    setup: [default\n")
    assert err.file == project / "matrix.yaml"
    assert err.line is not None and err.line >= 3
    assert "not valid YAML" in str(err)


def test_unknown_proxy_lists_the_known_ones(project: Path) -> None:
    err = error(project, "targets:\n  - proxy: nginxx\n    setup: default\n")
    assert err.line == 2
    assert "unknown proxy 'nginxx'" in str(err)
    assert "caddy, envoy, haproxy, nginx, traefik" in (err.fix or "")


def test_unknown_check_in_expect(project: Path) -> None:
    err = error(
        project,
        "targets:\n  - proxy: nginx\n    setup: default\n    expect:\n      ws.upgrad: fail\n",
    )
    assert err.line == 5
    assert "matches no check" in str(err)
    assert "ws.upgrade" in (err.fix or "")


def test_unknown_verdict_in_expect(project: Path) -> None:
    err = error(
        project,
        "targets:\n  - proxy: nginx\n    setup: default\n    expect:\n      ws.upgrade: broken\n",
    )
    assert err.line == 5
    assert "pass, degraded, fail, error, skip" in (err.fix or "")


def test_unknown_check_glob(project: Path) -> None:
    err = error(project, "checks: [smtp.*]\ntargets:\n  - proxy: nginx\n    setup: default\n")
    assert err.line == 1


def test_missing_setup_files(project: Path) -> None:
    err = error(project, "targets:\n  - proxy: nginx\n    setup: fancy\n")
    assert err.line == 3
    assert "no config files" in str(err)
    assert "default" in (err.fix or "")


def test_missing_explicit_config(project: Path) -> None:
    err = error(project, "targets:\n  - proxy: nginx\n    configs: [site.conf]\n")
    assert err.line == 3
    assert "site.conf" in str(err)


def test_unknown_key_is_named(project: Path) -> None:
    err = error(project, "targets:\n  - proxy: nginx\n    setup: default\n    expects: {}\n")
    assert err.line == 4
    assert "unknown key 'expects'" in str(err)
    assert "expect" in (err.fix or "")


def test_duplicate_targets_need_an_id(project: Path) -> None:
    err = error(
        project,
        "targets:\n  - {proxy: nginx, setup: default}\n  - {proxy: nginx, setup: default}\n",
    )
    assert err.line == 3
    assert "id:" in (err.fix or "")


def test_empty_file(project: Path) -> None:
    assert "empty" in str(error(project, ""))


def test_no_targets(project: Path) -> None:
    assert error(project, "checks: ['*']\n").line == 1


def test_missing_matrix_file(tmp_path: Path) -> None:
    with pytest.raises(MatrixError) as info:
        load_matrix(tmp_path / "nope.yaml", KNOWN)
    assert "not found" in str(info.value)


def test_env_of_a_target(project: Path) -> None:
    matrix = parse(
        project,
        "targets:\n  - proxy: nginx\n    setup: default\n    env:\n"
        "      GODEBUG: http2xconnect=1\n      EMPTY: ''\n",
    )
    assert matrix.targets[0].env == (("GODEBUG", "http2xconnect=1"), ("EMPTY", ""))


def test_env_must_be_a_mapping(project: Path) -> None:
    exc = error(project, "targets:\n  - proxy: nginx\n    setup: default\n    env: [A=1]\n")
    assert exc.line == 4 and "env: must be a mapping" in str(exc)


def test_a_target_runs_only_its_own_checks(project: Path) -> None:
    matrix = parse(
        project,
        "targets:\n  - proxy: nginx\n    setup: default\n    checks: ['ws.*@h2', sse.stream]\n",
    )
    target = matrix.targets[0]
    assert target.checks == ("ws.*@h2", "sse.stream")
    assert target.selects("ws.upgrade@h2") and target.selects("sse.stream")
    assert not target.selects("ws.upgrade") and not target.selects("sse.stream@h2")
    assert TargetSpec("nginx", "x", (Path("a"),)).selects("anything")  # no checks: all


def test_a_target_check_pattern_that_matches_nothing_is_named_at_its_line(project: Path) -> None:
    exc = error(project, "targets:\n  - proxy: nginx\n    setup: default\n    checks: [ws.nope]\n")
    assert exc.line == 4 and "'ws.nope' matches no check" in str(exc)
