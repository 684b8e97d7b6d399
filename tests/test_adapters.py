"""Adapters: binaries, versions, argv, and checker messages pointed at the user's file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS, RenderedConfig
from proxytest.errors import BinaryNotFound, UsageError
from proxytest.runtimes import LocalRuntime

from .conftest import running_in_ci


@pytest.fixture
def config(tmp_path: Path) -> RenderedConfig:
    sources = (tmp_path / "src" / "edge.yaml", tmp_path / "src" / "routes.yaml")
    sources[0].parent.mkdir()
    sources[0].write_text("a: 1\nhttp_connection_manager:\n  stat_prefx: web\n")
    sources[1].write_text("b: 2\n")
    run = tmp_path / "run"
    run.mkdir()
    files = tuple(run / s.name for s in sources)
    return RenderedConfig(run, files, sources)


def test_nginx_message_is_pointed_at_the_template(config: RenderedConfig) -> None:
    rendered = config.files[0]
    output = (
        f'2026/11/23 12:42:28 [emerg] 5830#5830: unknown directive "proxy_pas" in {rendered}:7\n'
        f'2026/11/23 12:42:28 [emerg] 5830#5830: unknown directive "proxy_pas" in {rendered}:7\n'
    )
    err = ADAPTERS["nginx"].rejected(config, output)
    assert (err.file, err.line) == (config.sources[0], 7)
    assert err.detail == f'[emerg] unknown directive "proxy_pas" in {config.sources[0]}:7'
    assert str(config.files[0]) not in str(err)


def test_haproxy_message(config: RenderedConfig) -> None:
    output = (
        f"[ALERT]    (12086) : config : parsing [{config.files[1]}:8] : unknown keyword 'servr'\n"
        "[ALERT]    (12086) : config : Fatal errors found in configuration.\n"
    )
    err = ADAPTERS["haproxy"].rejected(config, output)
    assert (err.file, err.line) == (config.sources[1], 8)
    assert err.detail.startswith(f"[alert] parsing [{config.sources[1]}:8]")


def test_caddy_json_log_line(config: RenderedConfig) -> None:
    output = (
        '{"level":"error","ts":1.5,"msg":"adapting config using caddyfile: '
        f'{config.files[0]}:6: unrecognized directive: reverse_prxy"}}\n'
    )
    err = ADAPTERS["caddy"].rejected(config, output)
    assert (err.file, err.line) == (config.sources[0], 6)
    assert err.detail.startswith("[error] adapting config using caddyfile")


def test_envoy_unknown_field_is_found_in_the_template(config: RenderedConfig) -> None:
    output = (
        "[2026-11-23 12:50:42.090][12001][critical][main] [source/server/x.cc:76] error "
        f"initializing configuration '{config.files[0]}': Protobuf message (near   1:638   "
        "(offset  637):   no  such   field: 'stat_prefx') has unknown fields\n"
    )
    err = ADAPTERS["envoy"].rejected(config, output)
    assert (err.file, err.line) == (config.sources[0], 3)
    assert "  " not in err.detail  # Envoy's random padding collapsed


def test_traefik_startup_error_names_the_dynamic_file(config: RenderedConfig) -> None:
    log = (
        "2026-11-23T12:50:40Z INF Starting provider\n"
        "2026-11-23T12:50:40Z ERR Error while building configuration (for the first time) "
        f'error="{config.files[1]}: buffering cannot be a standalone element" providerName=file\n'
    )
    adapter = ADAPTERS["traefik"]
    err = adapter.refused_at_start(config, config.to_source(log))
    assert err is not None
    assert err.file == config.sources[1]
    assert adapter.refused_at_start(config, "2026-11-23T12:50:40Z INF all good\n") is None


def test_explicit_binary_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist or is not executable"):
        ADAPTERS["nginx"].find_binary(tmp_path / "nginx")


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_binaries_are_found_and_report_a_version(name: str) -> None:
    adapter = ADAPTERS[name]
    try:
        binary = adapter.find_binary()
    except BinaryNotFound as exc:
        if running_in_ci():
            raise
        pytest.skip(str(exc))
    version = asyncio.run(LocalRuntime().version(adapter, binary))
    assert version is not None and version[0].isdigit(), version


def test_traefik_yaml_error_is_pointed_at_the_line_in_trouble(tmp_path: Path) -> None:
    """go-yaml, Traefik's parser, names the line before a misindented key (it counts
    parser errors from 0, at the block that could not go on): line 2 here, not 5."""
    text = "global: {}\nentryPoints:\n  web:\n    address: ':80'\n   bad: 1\n"
    source, run = tmp_path / "src" / "edge.yml", tmp_path / "run"
    source.parent.mkdir()
    run.mkdir()
    source.write_text(text)
    (run / "edge.yml").write_text(text)
    config = RenderedConfig(run, (run / "edge.yml",), (source,))
    log = (
        '{"level":"error","error":"command traefik error: yaml: line 2: did not find expected '
        'key","time":"2026-11-28T04:57:36Z","message":"Command error"}\n'
    )
    adapter = ADAPTERS["traefik"]
    err = adapter.refused_at_start(config, log)  # a static file's error stops Traefik
    assert err is not None
    assert (err.file, err.line) == (source, 5)
    assert (
        err.detail == "[error] Command error: command traefik error: yaml: line 2: did not "
        "find expected key"
    )
    decoded = adapter.rejected(
        config,
        'command traefik error: yaml: unmarshal errors:\n  line 4: mapping key "web" already '
        "defined at line 3",
    )
    assert (decoded.file, decoded.line) == (source, 4)  # decoding errors count from 1
