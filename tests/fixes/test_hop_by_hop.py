"""http.hop-by-hop findings in the nginx, HAProxy and Envoy planners: the well-known
hop-by-hop headers a run saw reach the origin are removed on every route, each
proxy accepts the result, and what no config line fixes is refused.

That the patched default setups then pass the check, with real proxies, is
tests/fixes/test_fix_defaults.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.fixes import envoy, haproxy, nginx
from proxytest.fixes._collect import NAMED_HOP_BY_HOP
from proxytest.fixes.base import Finding, Planner
from proxytest.probes.security import CONNECTION_NAMED, HOP_BY_HOP
from proxytest.results import Failure

from ..conftest import ROOT
from .helpers import (
    accepted,
    accepts,
    assert_idempotent,
    assert_minimal,
    assert_smallest,
    patched,
)

ALL = ["Keep-Alive", "Proxy-Authorization", "Proxy-Connection"]


def test_the_planners_know_every_well_known_name_the_check_sends() -> None:
    sent = {name for name, _ in HOP_BY_HOP}
    assert set(NAMED_HOP_BY_HOP) == sent - set(CONNECTION_NAMED)


def found(*names: str) -> list[Finding]:
    return [Finding("http.hop-by-hop", Failure.HOP_BY_HOP, {"forwarded_hop_by_hop": list(names)})]


def read(proxy: str, name: str) -> dict[Path, str]:
    path = Path(f"proxies/{proxy}/{name}")
    return {path: (ROOT / path).read_text()}


# What each default setup forwards (measured, matrix.yaml), and the line that stops it.
DEFAULTS: list[tuple[str, str, Planner, list[str], list[str]]] = [
    ("nginx", "default.conf", nginx.PLANNER, ["Proxy-Authorization"],
     ['proxy_set_header Proxy-Authorization "";']),
    ("haproxy", "default.cfg", haproxy.PLANNER, ALL,
     [f"http-request del-header {n}" for n in ALL]),
    ("envoy", "default.yaml", envoy.PLANNER, ["Proxy-Authorization"],
     ["request_headers_to_remove: [proxy-authorization]"]),
]  # fmt: skip


@pytest.mark.parametrize(("proxy", "name", "planner", "names", "knobs"), DEFAULTS)
def test_the_default_setups_remove_what_they_forwarded(
    tmp_path: Path, proxy: str, name: str, planner: Planner, names: list[str], knobs: list[str]
) -> None:
    files = read(proxy, name)
    plan = planner.plan(files, found(*names))
    assert plan.refusals == ()
    assert [c.knob for c in plan.changes] == knobs
    assert all(c.checks == ("http.hop-by-hop",) for c in plan.changes)
    (assert_minimal if proxy == "envoy" else assert_smallest)(plan, files)
    assert_idempotent(planner, plan, files, found(*names))
    if proxy == "envoy":
        accepted("envoy", patched(tmp_path, files, plan))
    else:
        accepts(proxy, tmp_path, plan.files)


@pytest.mark.parametrize(("proxy", "name", "planner", "names", "knobs"), DEFAULTS)
def test_a_header_named_only_in_connection_is_refused(
    proxy: str, name: str, planner: Planner, names: list[str], knobs: list[str]
) -> None:
    plan = planner.plan(read(proxy, name), found(*names, "X-Proxytest-Hop"))
    assert [c.knob for c in plan.changes] == knobs  # the well-known ones still go
    (refusal,) = plan.refusals
    assert "X-Proxytest-Hop" in refusal.reason and "Connection" in refusal.reason


@pytest.mark.parametrize(("proxy", "name", "planner", "names", "knobs"), DEFAULTS)
def test_a_config_that_already_removes_them_is_refused_not_changed(
    proxy: str, name: str, planner: Planner, names: list[str], knobs: list[str]
) -> None:
    files = read(proxy, name)
    plan = planner.plan(files, found(*names))
    again = planner.plan({**files, **plan.files}, found(*names))
    assert again.empty
    (refusal,) = again.refusals
    assert "already removes" in refusal.reason


def test_nginx_removes_them_in_every_proxying_location_keeping_inherited_headers(
    tmp_path: Path,
) -> None:
    conf = (
        "events {}\nhttp {\n    server {\n        listen {{ listen_host }}:{{ listen_port }};\n"
        "        proxy_set_header X-Real-IP $remote_addr;\n"
        "        location / {\n"
        "            proxy_pass http://{{ upstream_host }}:{{ upstream_port }};\n"
        "        }\n"
        "        location /static/ {\n            root /tmp;\n        }\n"
        "        location /api/ {\n"
        "            proxy_pass http://{{ upstream_host }}:{{ upstream_port }};\n"
        "            proxy_set_header Host $host;\n"
        "        }\n    }\n}\n"
    )
    files = {Path("n.conf"): conf}
    plan = nginx.PLANNER.plan(files, found("Proxy-Authorization"))
    after = plan.files[Path("n.conf")]
    blocks = after.split("location ")
    root, static, api = blocks[1], blocks[2], blocks[3]
    # `location /` set none of its own: the server's X-Real-IP is repeated, else lost
    assert "proxy_set_header X-Real-IP $remote_addr;" in root
    assert 'proxy_set_header Proxy-Authorization "";' in root
    assert "Proxy-Authorization" not in static  # serves files, proxies nothing
    assert 'proxy_set_header Proxy-Authorization "";' in api
    assert "X-Real-IP" not in api  # it sets its own: nginx inherits nothing there
    assert_smallest(plan, files)
    accepts("nginx", tmp_path, plan.files)


def test_haproxy_writes_the_rules_before_the_frontends_routing(tmp_path: Path) -> None:
    cfg = (
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n"
        "    timeout server 30s\n\n"
        "frontend web\n    bind {{ listen_host }}:{{ listen_port }}\n"
        "    acl ws path_beg /ws/\n    use_backend b_ws if ws\n    default_backend b_all\n\n"
        "backend b_ws\n    server s1 {{ upstream_host }}:{{ upstream_port }}\n\n"
        "backend b_all\n    server s1 {{ upstream_host }}:{{ upstream_port }}\n"
    )
    files = {Path("h.cfg"): cfg}
    plan = haproxy.PLANNER.plan(files, found("Proxy-Authorization"))
    after = plan.files[Path("h.cfg")]
    rule = after.index("http-request del-header Proxy-Authorization")
    assert after.index("acl ws path_beg") < rule < after.index("use_backend b_ws")
    assert_smallest(plan, files)
    accepts("haproxy", tmp_path, plan.files)


def test_envoy_appends_to_a_removal_list_the_user_wrote(tmp_path: Path) -> None:
    text = (ROOT / "proxies/envoy/default.yaml").read_text()
    marker = "          route_config:\n"
    assert marker in text
    text = text.replace(marker, marker + "            request_headers_to_remove:\n"
                                         "            - x-debug\n", 1)  # fmt: skip
    originals = {tmp_path / "src.yaml": text}
    plan = envoy.PLANNER.plan(originals, found("Proxy-Authorization"))
    assert [c.knob for c in plan.changes] == ["proxy-authorization"]
    after = plan.files[tmp_path / "src.yaml"]
    assert "- x-debug\n" in after and "- proxy-authorization\n" in after
    assert_minimal(plan, originals)
    accepted("envoy", patched(tmp_path, originals, plan))
