"""The command line, run as a user runs it: exit codes, messages, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from proxytest.checks import CHECKS

from .conftest import ROOT, Cli, processes_under, signal_once_running

NGINX_BROKEN = """\
# a config with a typo on line 7
events {}
http {
    server {
        listen {{ listen_host }}:{{ listen_port }};
        location / {
            proxy_pas http://{{ upstream_host }}:{{ upstream_port }};
        }
    }
}
"""


def test_list_shows_proxies_setups_and_checks(cli: Cli) -> None:
    done = cli("list")
    assert done.returncode == 0, done.stderr
    for word in (
        "nginx",
        "haproxy",
        "envoy",
        "traefik",
        "caddy",
        "default, lb-round-robin",
        "lb-sticky, realtime",
        "ws.upgrade",
        "sse.compression",
    ):
        assert word in done.stdout


def test_malformed_matrix_exits_2_naming_file_and_line(cli: Cli, tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("targets:\n  - proxy: nginx\n    setup: default\n   expect: x\n")
    done = cli("run", str(matrix))
    assert done.returncode == 2
    assert f"{matrix}:4" in done.stderr
    assert "fix:" in done.stderr
    assert cli.leftovers() == []


def test_unknown_proxy_in_matrix_exits_2(cli: Cli, tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("targets:\n  - proxy: squid\n    setup: default\n")
    done = cli("run", str(matrix))
    assert done.returncode == 2
    assert f"{matrix}:2: unknown proxy 'squid'" in done.stderr
    assert "use one of: caddy, envoy, haproxy, nginx, traefik" in done.stderr


def test_unknown_check_exits_2(cli: Cli) -> None:
    done = cli("run", "--checks", "ws.upgrayde")
    assert done.returncode == 2
    assert "matches no check" in done.stderr
    assert "ws.upgrade" in done.stderr


def test_unknown_proxy_on_the_command_line_exits_2(cli: Cli, tmp_path: Path) -> None:
    done = cli("check", "--proxy", "squid", "--config", str(tmp_path / "x"))
    assert done.returncode == 2


def test_missing_config_exits_2(cli: Cli, tmp_path: Path) -> None:
    done = cli("check", "--proxy", "nginx", "--config", str(tmp_path / "nope.conf"))
    assert done.returncode == 2
    assert "nope.conf: config file not found" in done.stderr


def test_unknown_placeholder_exits_2_before_starting_anything(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "site.conf"
    config.write_text(
        "events {}\nhttp { server { listen {{ listen_port }}; root {{ docroot }}; } }\n"
    )
    done = cli("check", "--proxy", "nginx", "--config", str(config))
    assert done.returncode == 2
    assert f"{config}:2: unknown placeholder {{{{ docroot }}}}" in done.stderr
    assert cli.leftovers() == []


def test_config_the_proxy_rejects_exits_2_with_its_message(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "broken.conf"
    config.write_text(NGINX_BROKEN)
    done = cli("check", "--proxy", "nginx", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}:7" in done.stderr
    assert "proxy_pas" in done.stderr
    assert cli.leftovers() == []
    assert processes_under(cli.tmp) == []


def test_rejected_config_in_a_run_is_an_error_verdict(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "proxies" / "nginx").mkdir(parents=True)
    (tmp_path / "proxies" / "nginx" / "broken.conf").write_text(NGINX_BROKEN)
    (tmp_path / "matrix.yaml").write_text("targets:\n  - proxy: nginx\n    setup: broken\n")
    report = tmp_path / "out.json"
    done = cli("run", "--checks", "ws.upgrade", "--json", str(report), cwd=tmp_path)
    assert done.returncode == 1
    data = json.loads(report.read_text())
    (target,) = data["targets"]
    assert target["status"] == "error"
    assert "rejected the config" in target["reason"]
    assert target["results"][0]["verdict"] == "error"
    assert cli.leftovers() == []


def test_binary_that_does_not_exist_exits_2(cli: Cli) -> None:
    config = ROOT / "proxies" / "nginx" / "realtime.conf"
    done = cli("check", "--proxy", "nginx", "--config", str(config), "--binary", "/no/nginx")
    assert done.returncode == 2
    assert "/no/nginx" in done.stderr


def test_check_brings_your_own_config(cli: Cli, tmp_path: Path) -> None:
    """A config written in the placeholder form by someone else, not from proxies/."""
    config = tmp_path / "site.conf"
    config.write_text("""\
worker_processes 1;
pid {{run_dir}}/site.pid;
events { worker_connections 256; }
http {
    access_log off;
    upstream app { server {{upstream_host}}:{{upstream_port}}; keepalive 4; }
    server {
        listen {{listen_host}}:{{listen_port}};
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
""")
    report = tmp_path / "report.json"
    done = cli(
        "check",
        "--proxy",
        "nginx",
        "--config",
        str(config),
        "--json",
        str(report),
        "--max-hold",
        "2",
        "--heartbeat",
        "0.5",
        "--load-connections",
        "50",
        "--fanout-max-n",
        "50",
    )
    assert done.returncode == 1, done.stdout + done.stderr  # WebSocket is broken here
    data = json.loads(report.read_text())
    assert set(data) == {"tool", "started_at", "duration_s", "targets"}
    assert data["tool"]["name"] == "proxytest"
    (target,) = data["targets"]
    assert target["id"] == "nginx/site.conf"
    assert target["runtime"] == "local"
    assert target["status"] == "ok"
    verdicts = {r["check"]: r["verdict"] for r in target["results"]}
    assert verdicts["ws.upgrade"] == "fail"
    assert verdicts["sse.stream"] == "pass"
    assert verdicts["sse.headers"] == "pass"  # proxy_buffering off sends headers at once
    assert verdicts["sse.idle"] == "pass"  # held 2 s
    assert verdicts["load.concurrency"] == "pass"  # 50 SSE streams; WebSocket not proxied
    assert verdicts["load.fanout"] == "pass"  # 50 SSE subscribers; WebSocket not proxied
    assert list(verdicts) == list(CHECKS)  # every check, in catalogue order
    result = next(r for r in target["results"] if r["check"] == "ws.upgrade")
    assert set(result) == {
        "check",
        "verdict",
        "expected",
        "summary",
        "hint",
        "metrics",
        "duration_s",
        "failure",  # additive: the evaluation's failure kind, on fail and degraded
    }
    assert result["failure"] == "upgrade"
    assert result["metrics"]["status"] == 400
    assert "ws.upgrade" in done.stdout and "FAIL" in done.stdout
    assert cli.leftovers() == []


def test_check_with_a_two_file_traefik_config(cli: Cli, tmp_path: Path) -> None:
    static, dynamic = tmp_path / "edge.yaml", tmp_path / "edge-routes.yaml"
    static.write_text(f"""\
global: {{checkNewVersion: false, sendAnonymousUsage: false}}
entryPoints:
  web: {{address: "{{{{ listen_host }}}}:{{{{ listen_port }}}}"}}
providers:
  file: {{filename: "{{{{ run_dir }}}}/{dynamic.name}"}}
""")
    dynamic.write_text("""\
http:
  routers:
    all: {rule: "PathPrefix(`/`)", service: app, entryPoints: [web]}
  services:
    app:
      loadBalancer:
        servers: [{url: "http://{{ upstream_host }}:{{ upstream_port }}"}]
""")
    done = cli(
        "check",
        "--proxy",
        "traefik",
        "--config",
        str(static),
        "--config",
        str(dynamic),
        "--checks",
        "ws.upgrade",
        "--checks",
        "sse.stream",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "traefik/edge.yaml" in done.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_every_proxy_and_removes_run_dirs(cli: Cli, sig: int) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "proxytest", "run", "--only", "nginx", "--only", "caddy"],
        cwd=ROOT, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        _, err = signal_once_running(process, lambda: len(processes_under(cli.tmp)), sig)
    assert process.returncode != 0
    assert processes_under(cli.tmp) == []
    assert cli.leftovers() == []
    assert "Traceback" not in err


def test_python_dash_m_and_version(cli: Cli) -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("proxytest ")
    assert os.path.exists(ROOT / "proxytest" / "__main__.py")


def test_check_a_config_with_two_backends(cli: Cli, tmp_path: Path) -> None:
    """A user's nginx config in front of two backends, round robin: the run starts two
    origins for it; checks that wait for the origin's records (sse.last-event-id) and
    the lifecycle checks' private instances (which need both backends rendered) work,
    and lb.sticky fails with nginx's knob."""
    config = tmp_path / "pair.conf"
    config.write_text("""\
worker_processes 1;
pid {{ run_dir }}/pair.pid;
events { worker_connections 256; }
http {
    access_log off;
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream app {
        server {{ upstream_host_1 }}:{{ upstream_port_1 }};
        server {{ upstream_host_2 }}:{{ upstream_port_2 }};
    }
    server {
        listen {{ listen_host }}:{{ listen_port }};
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
        }
    }
}
""")
    report = tmp_path / "report.json"
    done = cli(
        "check", "--proxy", "nginx", "--config", str(config), "--json", str(report),
        "--checks", "lb.*", "--checks", "sse.last-event-id", "--checks", "ws.echo",
        "--checks", "lifecycle.*",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # lb.sticky fails
    (target,) = json.loads(report.read_text())["targets"]
    assert target["status"] == "ok", target["reason"]
    results = {r["check"]: r for r in target["results"]}
    assert {c: r["verdict"] for c, r in results.items() if c != "lb.sticky"} == {
        "sse.last-event-id": "pass",
        "ws.echo": "pass",
        "lifecycle.reload": "pass",
        "lifecycle.origin-restart": "pass",
        # a refused connect goes to the next server (proxy_next_upstream's default)
        "lb.failover": "pass",
    }, {c: r["summary"] for c, r in results.items()}
    sticky = results["lb.sticky"]
    assert sticky["verdict"] == "fail"
    assert sticky["metrics"]["backends"] == 2 and sticky["metrics"]["backends_seen"] == 2
    assert "ip_hash" in sticky["hint"]
    assert cli.leftovers() == []
