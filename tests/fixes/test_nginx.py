"""The nginx planner (proxytest/fixes/nginx.py): the place, the smallest edit, the rule.

Pure planning on texts; the patched default setup and a few others are checked
by nginx itself (``nginx -t`` on the rendered config).
"""

from __future__ import annotations

from pathlib import Path

from proxytest.fixes.nginx import PLANNER

from ..conftest import ROOT
from .helpers import accepts, assert_idempotent, assert_smallest, findings

DEFAULT = Path("proxies/nginx/default.conf")
# What the matrix expects of nginx/default, each with the kind its evaluation names.
EXPECTED = findings(
    "ws.upgrade:upgrade", "ws.echo:upgrade", "ws.idle:upgrade", "browser.websocket:upgrade",
    "sse.headers:held", "sse.idle:idle", "load.concurrency:limit", "load.fanout:limit",
)  # fmt: skip


def read(name: str) -> dict[Path, str]:
    return {Path(f"proxies/nginx/{name}"): (ROOT / "proxies/nginx" / name).read_text()}


def server(body: str, head: str = "", listen: str = "{{ listen_host }}:{{ listen_port }}") -> str:
    return (
        f"events {{}}\nhttp {{\n{head}    server {{\n        listen {listen};\n{body}    }}\n}}\n"
    )


def test_the_default_setup_gets_every_knob_where_nginx_needs_it(tmp_path: Path) -> None:
    files = read("default.conf")
    plan = PLANNER.plan(files, EXPECTED)
    after = plan.files[DEFAULT]
    assert plan.refusals == ()
    knobs = {c.knob: c.checks for c in plan.changes}
    assert knobs["proxy_http_version 1.1;"] == (
        "ws.upgrade",
        "ws.echo",
        "ws.idle",
        "browser.websocket",
    )  # several findings, one change
    assert knobs["proxy_buffering off;"] == ("sse.headers",)
    assert knobs["proxy_read_timeout 1h;"] == ("sse.idle",)
    assert knobs["worker_connections 8192;"] == ("load.concurrency", "load.fanout")
    start = after.index("location / {")
    location = after[start : after.index("\n        }", start)]
    for line in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_buffering off;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 1h;",
    ):
        assert line in location  # fmt: skip
    # global knobs in their global places, the map in http
    assert after.index("worker_rlimit_nofile 16384;") < after.index("events {")
    assert "events {\n    # " in after and "    worker_connections 8192;\n}\n" in after
    assert after.index("map $http_upgrade") < after.index("server {")
    assert_smallest(plan, files)
    assert_idempotent(PLANNER, plan, files, EXPECTED)
    accepts("nginx", tmp_path, plan.files)


def test_the_realtime_setup_has_nothing_to_fix() -> None:
    files = read("realtime.conf")
    assert PLANNER.plan(files, []).files == {}
    plan = PLANNER.plan(files, EXPECTED)  # every knob already set: refused, not changed
    assert plan.empty and plan.files == {}
    assert {r.check for r in plan.refusals} == {f.check for f in EXPECTED}


def test_the_location_that_routes_the_path_is_changed_not_another() -> None:
    body = (
        "        location / {\n            proxy_pass http://a;\n        }\n"
        "        location /ws/ {\n            proxy_pass http://b;\n        }\n"
        "        location ~ ^/sse {\n            proxy_pass http://c;\n        }\n"
        "        location = /sse {\n            proxy_pass http://d;\n        }\n"
    )
    files = {Path("n.conf"): server(body)}
    plan = PLANNER.plan(files, findings("ws.echo:upgrade", "sse.stream:delayed"))
    lines = plan.files[Path("n.conf")].splitlines()
    after_b = lines[lines.index("            proxy_pass http://b;") + 1 :]
    assert after_b[1] == "            proxy_http_version 1.1;"
    after_d = lines[lines.index("            proxy_pass http://d;") + 1 :]
    assert after_d[1] == "            proxy_buffering off;"  # `=` beats the regex
    assert lines[lines.index("            proxy_pass http://a;") + 1] == "        }"
    assert lines[lines.index("            proxy_pass http://c;") + 1] == "        }"
    assert_smallest(plan, files)


def test_a_regex_location_wins_over_a_prefix_and_caret_tilde_over_a_regex() -> None:
    body = (
        "        location /s {\n            proxy_pass http://a;\n        }\n"
        "        location ~* ^/SSE {\n            proxy_pass http://b;\n        }\n"
        "        location ^~ /ws/ {\n            proxy_pass http://c;\n        }\n"
        "        location ~ /ws {\n            proxy_pass http://d;\n        }\n"
    )
    files = {Path("n.conf"): server(body)}
    plan = PLANNER.plan(files, findings("ws.echo:upgrade", "sse.stream:delayed"))
    lines = plan.files[Path("n.conf")].splitlines()
    assert lines[lines.index("            proxy_pass http://b;") + 2] == (
        "            proxy_buffering off;"
    )
    assert lines[lines.index("            proxy_pass http://c;") + 2] == (
        "            proxy_http_version 1.1;"
    )
    for untouched in ("a", "d"):
        assert lines[lines.index(f"            proxy_pass http://{untouched};") + 1] == "        }"


def test_only_the_server_on_the_proxys_port_is_changed(tmp_path: Path) -> None:
    other = "    server {\n        listen 127.0.0.1:8081;\n        location / {\n" \
            "            proxy_pass http://127.0.0.1:9;\n        }\n    }\n"  # fmt: skip
    body = "        location / {\n            proxy_pass http://{{ upstream_host }}:{{ upstream_port }};\n        }\n"  # noqa: E501
    files = {Path("n.conf"): server(body, head=other)}
    plan = PLANNER.plan(files, findings("sse.stream:delayed"))
    text = plan.files[Path("n.conf")]
    assert text.count("proxy_buffering off;") == 1
    assert text.index("proxy_buffering off;") > text.index("{{ listen_port }}")
    assert_smallest(plan, files)
    accepts("nginx", tmp_path, plan.files)


def test_an_included_file_is_edited_where_the_location_is(tmp_path: Path) -> None:
    main = Path("nginx.conf")
    site = Path("conf.d/site.conf")
    files = {
        main: "events {}\nhttp {\n    include conf.d/*.conf;\n}\n",
        site: "server {\n    listen {{ listen_host }}:{{ listen_port }};\n"
        "    location / {\n        proxy_pass http://{{ upstream_host }}:{{ upstream_port }};\n"
        "    }\n}\n",
    }
    plan = PLANNER.plan(files, findings("sse.idle:idle", "ws.upgrade:upgrade"))
    assert "proxy_read_timeout 1h;" in plan.files[site]
    assert "proxy_set_header Connection $connection_upgrade;" in plan.files[site]
    # the map belongs to http, in the main file, after the include that brings the servers
    assert "map $http_upgrade $connection_upgrade {" in plan.files[main]
    assert_smallest(plan, files)
    accepts("nginx", tmp_path, {**files, **plan.files})


def test_a_default_written_out_is_replaced_in_place_keeping_its_comment() -> None:
    body = (
        "        location / {\n            # the origin is fast\n"
        "            proxy_buffering on;  # nginx's default\n"
        "            proxy_read_timeout 60s;\n"
        "            proxy_pass http://a;\n        }\n"
    )
    files = {Path("n.conf"): server(body)}
    plan = PLANNER.plan(files, findings("sse.stream:delayed", "sse.idle:idle"))
    text = plan.files[Path("n.conf")]
    assert "            proxy_buffering off;  # nginx's default\n" in text
    assert "            proxy_read_timeout 1h;\n" in text
    assert len(text.splitlines()) == len(files[Path("n.conf")].splitlines())  # no line added
    assert {c.line for c in plan.changes} == {7, 8}
    assert_smallest(plan, files)


def test_a_value_set_deliberately_on_the_route_is_proposed_not_forced() -> None:
    body = "        location / {\n            proxy_read_timeout 30s;\n            proxy_pass http://a;\n        }\n"  # noqa: E501
    files = {Path("n.conf"): server(body)}
    plan = PLANNER.plan(files, findings("sse.idle:idle", dropped_after_s=30.0))
    assert plan.empty and plan.files == {}
    (refusal,) = plan.refusals
    assert refusal.check == "sse.idle" and refusal.proposal == "proxy_read_timeout 1h;"
    assert "proxy_read_timeout 30s;" in refusal.reason and "decide" in refusal.remedy


def test_a_value_set_for_every_route_is_overridden_on_this_one_only() -> None:
    head = "    proxy_read_timeout 30s;\n    proxy_set_header Host $host;\n"
    body = "        location / {\n            proxy_pass http://a;\n        }\n"
    files = {Path("n.conf"): server(body, head=head)}
    plan = PLANNER.plan(files, findings("ws.idle:idle", "ws.upgrade:upgrade"))
    text = plan.files[Path("n.conf")]
    assert "    proxy_read_timeout 30s;\n" in text  # the http-wide value stays
    location = text[text.index("location / {") :]
    assert "proxy_read_timeout 1h;" in location
    # the location's first proxy_set_header: the inherited Host is repeated, not lost
    assert "proxy_set_header Host $host;" in location
    assert_smallest(plan, files)


def test_causes_without_a_config_fix_are_refused_with_the_remedy() -> None:
    files = read("realtime.conf")
    plan = PLANNER.plan(files, findings("sse.idle:idle", dropped_after_s=30.0)
                        + findings("sse.lifetime:lifetime", "ws.upgrade@h2:h2_websocket",
                                   "lb.sticky:not_sticky"))  # fmt: skip
    assert plan.empty
    by_check = {r.check: r for r in plan.refusals}
    assert "heartbeat" in by_check["sse.idle"].remedy
    assert "layer in front" in by_check["sse.lifetime"].remedy
    assert "HTTP/1.1" in by_check["ws.upgrade@h2"].remedy
    assert "ip_hash" in by_check["lb.sticky"].remedy  # the adapter's hint
    assert all(r.proposal is None for r in plan.refusals)


def test_gzip_is_turned_off_only_where_events_stream() -> None:
    head = "    gzip on;\n    gzip_types text/event-stream application/json;\n"
    body = "        location / {\n            proxy_pass http://a;\n        }\n"
    files = {Path("n.conf"): server(body, head=head)}
    plan = PLANNER.plan(files, findings("sse.compression:compressed_held"))
    text = plan.files[Path("n.conf")]
    assert "    gzip on;\n" in text and text.count("gzip off;") == 1
    assert text.index("gzip off;") > text.index("location / {")
    plain = {Path("n.conf"): server(body)}
    refused = PLANNER.plan(plain, findings("sse.compression:compressed_held"))
    assert refused.empty and "gzip is off" in refused.refusals[0].reason


def test_crlf_and_tabs_are_kept() -> None:
    text = server("\t\tlocation / {\n\t\t\tproxy_pass http://a;\n\t\t}\n").replace("\n", "\r\n")
    files = {Path("n.conf"): text}
    plan = PLANNER.plan(files, findings("sse.stream:delayed"))
    new = plan.files[Path("n.conf")]
    assert "\t\t\tproxy_buffering off;\r\n" in new and "\n" not in new.replace("\r\n", "")
    assert_smallest(plan, files)


def test_an_upgrade_blocked_by_a_deliberate_header_changes_nothing() -> None:
    body = (
        "        location / {\n            proxy_pass http://a;\n"
        '            proxy_set_header Connection "";  # keepalive to the upstream\n        }\n'
    )
    plan = PLANNER.plan({Path("n.conf"): server(body)}, findings("ws.upgrade:upgrade"))
    assert plan.empty and plan.files == {}  # no half of the three lines
    (refusal,) = plan.refusals
    assert refusal.proposal == "proxy_set_header Connection $connection_upgrade;"


def test_stickiness_goes_into_the_upstream_the_location_proxies_to(tmp_path: Path) -> None:
    files = read("lb-round-robin.conf")
    found = findings("lb.sticky:not_sticky")
    plan = PLANNER.plan(files, found)
    (change,) = plan.changes
    text = next(iter(plan.files.values()))
    upstream = text[text.index("upstream backends {") : text.index("\n    server {")]
    assert change.knob == "ip_hash;" and "        ip_hash;\n" in upstream
    assert_smallest(plan, files)
    again = PLANNER.plan({**files, **plan.files}, found)  # ip_hash is now the user's choice
    assert again.empty and again.refusals[0].proposal == "ip_hash;"
    accepts("nginx", tmp_path, plan.files)
