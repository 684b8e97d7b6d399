"""Configs as deployed, through the command line: each proxy's production-style config
runs, with one notice per neutralised line; bad input is refused before anything starts.

The configs are under tests/configs/deployed/<proxy>/; each carries the lines its
proxy's packaged or containerised config carries (daemon mode, users, pid files,
syslog, log folders, fixed admin ports, includes by the host's paths), which
proxytest must neutralise, and proxytest's placeholders where it listens and
where the origin is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import BinaryNotFound
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions, check_targets
from proxytest.templates import load_config, uses_tls

from .conftest import ROOT, Cli, processes_under, running_in_ci

DEPLOYED = ROOT / "tests" / "configs" / "deployed"
QUICK = ("--checks", "ws.upgrade", "--checks", "sse.stream")

# proxy: (config files, main first; the lines proxytest must neutralise, as file:line)
CASES = {
    "nginx": (
        ["nginx/nginx.conf"],
        [*(f"nginx/nginx.conf:{n}" for n in (4, 6, 7, 8, 16, 19, 23)), "nginx/conf.d/site.conf:9"],
    ),
    "haproxy": (
        ["haproxy/haproxy.cfg"],
        [f"haproxy/haproxy.cfg:{n}" for n in (4, 5, 6, 7, 9, 10, 13, 24)],
    ),
    "envoy": (["envoy/envoy.yaml"], [f"envoy/envoy.yaml:{n}" for n in (8, 10, 28)]),
    "traefik": (
        ["traefik/traefik.yml", "traefik/routes.yml"],
        [f"traefik/traefik.yml:{n}" for n in (9, 11, 14, 15, 20, 22, 26, 32)],
    ),
    "caddy": (
        ["caddy/Caddyfile"],
        [*(f"caddy/Caddyfile:{n}" for n in (4, 6, 8, 13)), "caddy/sites/app.caddy:5"],
    ),
}


# TLS configs as deployed: their own certificate files (absent here), ACME, client
# certificates required. proxytest serves the run's certificate instead, so the checks
# run over https/wss; the lines it changes, as file:line (one per notice).
TLS_CASES = {
    "nginx": (
        ["nginx/tls.conf"],
        [f"nginx/tls.conf:{n}" for n in (3, 4, 9, 10, 17, 18, 19, 20, 24, 25, 26)],
    ),
    "haproxy": (["haproxy/tls.cfg"], ["haproxy/tls.cfg:6", *["haproxy/tls.cfg:18"] * 5]),
    "envoy": (["envoy/tls.yaml"], [f"envoy/tls.yaml:{n}" for n in (15, 19, 20, 22, 27, 29)]),
    "traefik": (
        ["traefik/tls.yml", "traefik/tls-routes.yml"],
        [
            *(f"traefik/tls.yml:{n}" for n in (14, 17, 22)),
            *(f"traefik/tls-routes.yml:{n}" for n in (10, 22, 23, 25, 26)),
        ],
    ),
    "caddy": (["caddy/tls.Caddyfile"], [f"caddy/tls.Caddyfile:{n}" for n in (7, 9, 11)]),
}


def notices(stderr: str) -> list[str]:
    """The file:line of each notice, relative to tests/configs/deployed."""
    found = re.findall(r"^notice: (\S+?:\d+): ", stderr, re.M)
    return [str(Path(f).relative_to(DEPLOYED)) if f.startswith("/") else f for f in found]


def installed(proxy: str) -> None:
    try:
        ADAPTERS[proxy].find_binary()
    except BinaryNotFound as exc:
        if running_in_ci():
            raise
        pytest.skip(str(exc))


def runs_with_a_notice_per_line(
    cli: Cli, proxy: str, files: list[str], expected: list[str]
) -> None:
    """`proxytest check` on a deployed config passes the quick checks, printing each
    expected notice once, and leaves nothing behind."""
    installed(proxy)
    configs = [arg for f in files for arg in ("--config", str(DEPLOYED / f))]
    done = cli("check", "--proxy", proxy, *configs, *QUICK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert notices(done.stderr) == expected, done.stderr
    printed = re.findall(r"^notice: .*$", done.stderr, re.M)
    assert len(printed) == len(set(printed)), done.stderr
    assert "Traceback" not in done.stderr
    assert cli.leftovers() == []
    assert processes_under(cli.tmp) == []


@pytest.mark.integration
@pytest.mark.parametrize("proxy", list(CASES))
def test_a_deployed_config_runs_with_a_notice_per_neutralised_line(cli: Cli, proxy: str) -> None:
    runs_with_a_notice_per_line(cli, proxy, *CASES[proxy])


@pytest.mark.integration
@pytest.mark.parametrize("proxy", list(TLS_CASES))
def test_a_deployed_tls_config_runs_over_tls_with_the_runs_certificate(
    cli: Cli, proxy: str
) -> None:
    files, expected = TLS_CASES[proxy]
    # after neutralising, the config names the run's certificate: probes use https/wss
    assert uses_tls(load_config([DEPLOYED / f for f in files], ADAPTERS[proxy]))
    runs_with_a_notice_per_line(cli, proxy, files, expected)


def test_check_targets_returns_each_notice_once_in_file_order() -> None:
    config = DEPLOYED / "nginx" / "nginx.conf"
    targets = [TargetSpec("nginx", "a", (config,)), TargetSpec("nginx", "b", (config,))]
    found = check_targets(targets, RunOptions())
    assert [f"{n.file.name}:{n.line}" for n in found] == [
        *(f"nginx.conf:{n}" for n in (4, 6, 7, 8, 16, 19, 23)),
        "site.conf:9",
    ]
    assert str(found[1]) == (
        f"{config}:6: daemon off; removed (proxytest runs nginx in the foreground itself)"
    )


def test_a_config_that_is_not_utf8_exits_2_naming_the_line(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "site.conf"
    config.write_bytes(
        b"events {}\nhttp {\n    # caf\xe9 au lait\n    server { listen {{ listen_port }}; }\n}\n"
    )
    done = cli("check", "--proxy", "nginx", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert f"{config}:3: not UTF-8 text: byte 0xe9" in done.stderr
    assert "fix: save the file as UTF-8" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli.leftovers() == []


def test_a_config_without_the_listen_placeholder_is_refused_at_once(
    cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "site.conf"
    config.write_text(
        "events {}\nhttp { server { listen 127.0.0.1:8080;\n"
        "    location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; } } }\n"
    )
    done = cli("check", "--proxy", "nginx", "--config", str(config), timeout=15)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}: no {{{{ listen_port }}}} placeholder in this config" in done.stderr
    assert "fix: put {{ listen_port }} in the `listen` directive" in done.stderr
    assert "proxytest 0.1" not in done.stdout  # no run started
    assert cli.leftovers() == []


def test_a_traefik_yaml_error_names_its_own_line(cli: Cli, tmp_path: Path) -> None:
    static, routes = tmp_path / "edge.yml", DEPLOYED / "traefik" / "routes.yml"
    static.write_text(
        "global: {checkNewVersion: false}\n"
        "entryPoints:\n"
        "  web:\n"
        '    address: "{{ listen_host }}:{{ listen_port }}"\n'
        "   asDefault: true\n"  # one space short: Traefik's own message says line 2
        "providers:\n"
        '  file: {filename: "{{ run_dir }}/routes.yml"}\n'
    )
    done = cli(
        "check", "--proxy", "traefik", "--config", str(static), "--config", str(routes), *QUICK
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{static}:5: not valid YAML" in done.stderr
    assert cli.leftovers() == []


def test_a_static_traefik_error_is_a_rejected_config_at_its_line(cli: Cli, tmp_path: Path) -> None:
    static, routes = tmp_path / "edge.yml", DEPLOYED / "traefik" / "routes.yml"
    static.write_text(
        "global: {checkNewVersion: false}\n"
        "entryPoints:\n"
        "  web:\n"
        '    address: "{{ listen_host }}:{{ listen_port }}"\n'
        "    asDefualt: true\n"
        "providers:\n"
        '  file: {filename: "{{ run_dir }}/routes.yml"}\n'
    )
    done = cli(
        "check", "--proxy", "traefik", "--config", str(static), "--config", str(routes), *QUICK
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{static}:5: traefik rejected the config" in done.stderr
    assert "asDefualt" in done.stderr
    assert cli.leftovers() == []


def test_an_envoy_sds_certificate_exits_2_naming_the_line(cli: Cli, tmp_path: Path) -> None:
    text = (DEPLOYED / "envoy" / "tls.yaml").read_text()
    old = "            tls_certificates:\n"
    assert old in text
    config = tmp_path / "envoy.yaml"
    config.write_text(
        text.replace(
            old,
            "            tls_certificate_sds_secret_configs:\n"
            "            - name: site\n"
            "              sds_config: {path_config_source: {path: /etc/envoy/sds.yaml}}\n"
            "            tls_certificates:\n",
        )
    )
    done = cli("check", "--proxy", "envoy", "--config", str(config), timeout=15)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}:20: the listener's certificate is an SDS secret (site)" in done.stderr
    assert "fix: give the listener the run's certificate instead: `tls_certificates:" in done.stderr
    assert "proxytest 0.1" not in done.stdout  # no run started
    assert cli.leftovers() == []
