"""The HAProxy planner (proxytest/fixes/haproxy.py): sections, the backend, the rule.

Pure planning on texts; patched configs are checked by HAProxy itself
(``haproxy -c`` on the rendered config).
"""

from __future__ import annotations

from pathlib import Path

from proxytest.fixes.haproxy import PLANNER, sections

from ..conftest import ROOT
from .helpers import accepts, assert_idempotent, assert_smallest, findings

CFG = Path("h.cfg")
# What the matrix expects of haproxy/default, each with the kind its evaluation names.
EXPECTED = findings(
    "sse.stream:delayed", "sse.compression:compressed_delayed", "load.fanout:fanout_slow",
) + findings("ws.idle:idle", "sse.idle:idle", dropped_after_s=29.9)  # fmt: skip

HEAD = (
    "global\n    pidfile {{ run_dir }}/haproxy.pid\n\n"
    "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n"
    "    timeout server 30s\n\n"
)
FRONT = "frontend web\n    bind {{ listen_host }}:{{ listen_port }}\n"


def read(name: str) -> dict[Path, str]:
    return {Path(f"proxies/haproxy/{name}"): (ROOT / "proxies/haproxy" / name).read_text()}


def backend(name: str, *lines: str, port: str = "{{ upstream_port }}") -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"\nbackend {name}\n{body}    server s1 {{{{ upstream_host }}}}:{port}\n"


def test_the_default_setup_gets_the_backend_and_frontend_knobs(tmp_path: Path) -> None:
    files = read("default.cfg")
    path = next(iter(files))
    plan = PLANNER.plan(files, EXPECTED)
    assert plan.refusals == ()
    knobs = {c.knob: c.checks for c in plan.changes}
    assert knobs == {
        "option http-no-delay": ("sse.stream", "sse.compression", "load.fanout"),
        "timeout tunnel 1h": ("ws.idle",),
        "timeout server 1h": ("sse.idle",),
        "timeout client 1h": ("sse.idle",),
        "timeout http-request 10s": ("sse.idle",),
    }
    text = plan.files[path]
    backend_part = text[text.index("\nbackend origin") :]
    front_part = text[text.index("frontend web") : text.index("\nbackend origin")]
    assert "option http-no-delay" in backend_part and "timeout tunnel 1h" in backend_part
    assert "timeout client 1h" in front_part
    # defaults keep their values: the override is on the serving sections
    assert "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n" in text
    assert_smallest(plan, files)
    assert_idempotent(PLANNER, plan, files, EXPECTED)
    accepts("haproxy", tmp_path, plan.files)


def test_the_realtime_setup_has_nothing_to_fix() -> None:
    files = read("realtime.cfg")
    assert PLANNER.plan(files, []).files == {}
    plan = PLANNER.plan(files, EXPECTED)
    assert plan.empty and plan.files == {}
    assert {r.check for r in plan.refusals} == {f.check for f in EXPECTED}


def test_use_backend_rules_pick_the_backend_of_each_path(tmp_path: Path) -> None:
    text = (
        HEAD + FRONT + "    acl is_ws hdr(upgrade) -i websocket\n"
        "    acl is_sse path_beg /sse\n    use_backend ws if is_ws\n"
        "    use_backend events if is_sse !is_ws\n    default_backend other\n"
        + backend("ws")
        + backend("events")
        + backend("other")
    )
    files = {CFG: text}
    plan = PLANNER.plan(files, findings("ws.idle:idle", "sse.stream:delayed"))
    new = plan.files[CFG]
    ws = new[new.index("\nbackend ws") : new.index("\nbackend events")]
    events = new[new.index("\nbackend events") : new.index("\nbackend other")]
    assert "timeout tunnel 1h" in ws and "http-no-delay" not in ws
    assert "option http-no-delay" in events and "tunnel" not in events
    assert new[new.index("\nbackend other") :] == text[text.index("\nbackend other") :]
    assert_smallest(plan, files)
    accepts("haproxy", tmp_path, plan.files)


def test_anonymous_acls_and_or_conditions_are_evaluated() -> None:
    text = (
        HEAD + FRONT + "    use_backend ws if { path_beg /ws/ } || { path /socket }\n"
        "    use_backend events unless { path_beg /ws }\n" + backend("ws") + backend("events")
    )
    plan = PLANNER.plan({CFG: text}, findings("ws.idle:idle", "sse.stream:delayed"))
    new = plan.files[CFG]
    assert "timeout tunnel 1h" in new[new.index("\nbackend ws") : new.index("\nbackend events")]
    assert "option http-no-delay" in new[new.index("\nbackend events") :]


def test_stickiness_is_a_cookie_haproxy_inserts(tmp_path: Path) -> None:
    files = read("lb-round-robin.cfg")
    plan = PLANNER.plan(files, findings("lb.sticky:not_sticky", "lb.failover:no_failover"))
    text = next(iter(plan.files.values()))
    assert "    balance roundrobin\n" in text  # the default, stated, is kept
    assert "    cookie SERVERID insert indirect nocache\n" in text
    assert "{{ upstream_port_1 }} cookie s1\n" in text
    assert "{{ upstream_port_2 }} cookie s2\n" in text
    assert "    option redispatch\n" in text
    assert_smallest(plan, files)
    accepts("haproxy", tmp_path, plan.files)
    again = PLANNER.plan({**files, **plan.files}, findings("lb.sticky:not_sticky"))
    assert again.empty and again.refusals[0].proposal is not None


def test_a_balancing_method_chosen_is_proposed_not_replaced() -> None:
    text = HEAD + FRONT + "    default_backend b\n" + backend("b", "balance leastconn")
    plan = PLANNER.plan({CFG: text}, findings("lb.sticky:not_sticky"))
    assert plan.empty and "balance leastconn" in plan.refusals[0].reason


def test_a_value_set_deliberately_on_the_backend_is_proposed_not_forced() -> None:
    text = (
        HEAD
        + FRONT
        + "    default_backend b\n"
        + backend("b", "timeout tunnel 10m", "no option http-no-delay")
    )
    plan = PLANNER.plan({CFG: text}, findings("ws.idle:idle", "sse.stream:delayed"))
    assert plan.empty and plan.files == {}
    proposals = {r.check: r.proposal for r in plan.refusals}
    assert proposals == {"ws.idle": "timeout tunnel 1h", "sse.stream": "option http-no-delay"}
    assert all("decide" in r.remedy for r in plan.refusals)


def test_a_value_set_in_defaults_is_overridden_in_the_backend_only(tmp_path: Path) -> None:
    text = HEAD.replace("    timeout server 30s\n", "    timeout server 30s\n"
                        "    timeout tunnel 10m\n    no option http-no-delay\n")  # fmt: skip
    text += FRONT + "    default_backend b\n" + backend("b")
    files = {CFG: text}
    plan = PLANNER.plan(files, findings("ws.idle:idle", "sse.stream:delayed"))
    new = plan.files[CFG]
    assert "    timeout tunnel 10m\n    no option http-no-delay\n" in new  # defaults kept
    tail = new[new.index("backend b") :]
    assert "timeout tunnel 1h" in tail and "option http-no-delay" in tail
    assert_smallest(plan, files)
    accepts("haproxy", tmp_path, plan.files)


def test_causes_without_a_config_fix_are_refused_with_the_remedy() -> None:
    files = read("realtime.cfg")
    plan = PLANNER.plan(files, findings("ws.idle:idle", dropped_after_s=30.0)
                        + findings("ws.upgrade:upgrade", "ws.upgrade@h2:h2_websocket"))  # fmt: skip
    assert plan.empty
    by_check = {r.check: r for r in plan.refusals}
    assert "heartbeat" in by_check["ws.idle"].remedy
    assert "del-header" in by_check["ws.upgrade"].remedy  # the adapter's hint
    assert "h2-workaround-bogus-websocket-clients" in by_check["ws.upgrade@h2"].remedy


def test_failover_adds_redispatch_to_the_balanced_backend(tmp_path: Path) -> None:
    files = read("lb-round-robin.cfg")
    plan = PLANNER.plan(files, findings("lb.failover:retried_dead_backend"))
    (change,) = plan.changes
    assert change.knob == "option redispatch" and change.checks == ("lb.failover",)
    text = next(iter(plan.files.values()))
    assert text.rstrip().endswith("# send a retry to another server when this one is dead\n"
                                  "    option redispatch")  # fmt: skip
    assert_smallest(plan, files)
    accepts("haproxy", tmp_path, plan.files)


def test_sections_know_their_defaults_and_lines() -> None:
    text = "defaults a\n    mode http\ndefaults\n    timeout client 1s\n" + FRONT + \
        "frontend f2 from a\n    bind :1\n"  # fmt: skip
    found = {s.name or s.kind: s for s in sections(text)}
    assert found["web"].defaults is not None and found["web"].defaults.line == 3
    assert found["f2"].defaults is not None and found["f2"].defaults.name == "a"
    assert [line.number for line in found["web"].lines] == [6]


def test_a_deliberate_server_timeout_blocks_the_client_one_too() -> None:
    text = HEAD + FRONT + "    default_backend b\n" + backend("b", "timeout server 45s")
    plan = PLANNER.plan({CFG: text}, findings("sse.idle:idle", dropped_after_s=29.9))
    assert plan.empty and plan.files == {}  # not timeout client alone
    (refusal,) = plan.refusals
    assert refusal.proposal == "timeout server 1h"


def test_a_config_of_several_files_is_edited_where_each_section_is(tmp_path: Path) -> None:
    """``-f main.cfg -f backends.cfg``: the frontend in the first file, its backends in
    the second (HAProxy reads them in order; each file starts outside any section)."""
    main, extra = Path("main.cfg"), Path("backends.cfg")
    files = {
        main: HEAD
        + FRONT
        + "    use_backend ws if { path_beg /ws/ }\n    default_backend events\n",
        extra: backend("ws").lstrip("\n") + backend("events"),
    }
    found = findings("ws.idle:idle", "sse.stream:delayed", "sse.idle:idle", dropped_after_s=29.9)
    plan = PLANNER.plan(files, found)
    assert plan.refusals == ()
    where = {c.knob: c.file for c in plan.changes}
    assert where == {
        "timeout tunnel 1h": extra,
        "option http-no-delay": extra,
        "timeout server 1h": extra,
        "timeout client 1h": main,
        "timeout http-request 10s": main,
    }
    new = plan.files[extra]
    assert "timeout tunnel 1h" in new[: new.index("\nbackend events")]
    assert "option http-no-delay" in new[new.index("\nbackend events") :]
    assert_smallest(plan, files)
    assert_idempotent(PLANNER, plan, files, found)
    accepts("haproxy", tmp_path, {**files, **plan.files})


def test_defaults_of_an_earlier_file_apply_to_the_sections_of_a_later_one() -> None:
    head = HEAD.replace(
        "    timeout server 30s\n", "    timeout server 30s\n    timeout tunnel 2h\n"
    )
    files = {Path("a.cfg"): head, Path("b.cfg"): FRONT + "    default_backend b\n" + backend("b")}
    plan = PLANNER.plan(files, findings("ws.idle:idle", dropped_after_s=29.9))
    assert plan.empty
    (refusal,) = plan.refusals
    assert "7200 s" in refusal.reason and "heartbeat" in refusal.remedy


def test_a_refusal_names_the_file_of_a_config_of_several() -> None:
    files = {Path("a.cfg"): HEAD + FRONT + "    default_backend b\n",
             Path("b.cfg"): backend("b", "timeout tunnel 10m")}  # fmt: skip
    plan = PLANNER.plan(files, findings("ws.idle:idle", dropped_after_s=599.0))
    (refusal,) = plan.refusals
    assert "(b.cfg:3, backend b)" in refusal.reason and refusal.proposal == "timeout tunnel 1h"
