"""The Traefik planner: the router found, the buffering middleware dropped from its list
(not its definition), in-place vs inserted, refusals, idempotence; and Traefik's own
acceptance of what it writes (it starts and routes to the origin)."""

from __future__ import annotations

from pathlib import Path

from proxytest.fixes.base import Finding, Plan
from proxytest.fixes.traefik import PLANNER
from proxytest.results import Failure

from ..conftest import ROOT
from .helpers import accepted, assert_minimal, patched

TRAEFIK = ROOT / "proxies/traefik"
STATIC = Path("traefik.yaml")
DYNAMIC = Path("traefik.dynamic.yaml")


def setup_files(setup: str) -> dict[Path, str]:
    return {
        TRAEFIK / f"{setup}.yaml": (TRAEFIK / f"{setup}.yaml").read_text(),
        TRAEFIK / f"{setup}.dynamic.yaml": (TRAEFIK / f"{setup}.dynamic.yaml").read_text(),
    }


def plan_of(files: dict[Path, str], findings: list[Finding]) -> Plan:
    plan = PLANNER.plan(files, findings)
    assert_minimal(plan, files)
    return plan


STATIC_TEXT = (
    (TRAEFIK / "default.yaml").read_text().replace("default.dynamic.yaml", "traefik.dynamic.yaml")
)

BUFFERED = """\
# routes of the app
http:
  routers:
    all:
      entryPoints:
        - web
      rule: "PathPrefix(`/`)"
      service: origin
      middlewares:
        - buffer-all
    # the event stream has its own router
    events:
      rule: "PathPrefix(`/sse`)"
      service: origin
      middlewares:
        - headers
        - buffer-all@file
        - gzip
  middlewares:
    buffer-all:
      buffering:
        maxResponseBodyBytes: 10000000
    headers:
      headers:
        customResponseHeaders:
          X-App: "1"
    gzip:
      compress: {}
  services:
    origin:
      loadBalancer:
        servers:
          - url: "http://{{ upstream_host }}:{{ upstream_port }}"
"""


def buffered(dynamic: str = BUFFERED) -> dict[Path, str]:
    return {STATIC: STATIC_TEXT, DYNAMIC: dynamic}


def test_the_default_setup_has_nothing_to_fix_and_the_realtime_one_neither() -> None:
    assert PLANNER.plan(setup_files("default"), []) == Plan(files={})
    plan = plan_of(setup_files("realtime"), [Finding("sse.idle", Failure.IDLE)])
    assert plan.empty and plan.files == {}
    assert "heartbeats" in plan.refusals[0].remedy


def test_held_sse_drops_buffering_from_the_router_that_serves_sse_only() -> None:
    plan = plan_of(buffered(), [Finding("sse.stream", Failure.HELD)])
    (change,) = plan.changes
    assert change.file == DYNAMIC
    before = BUFFERED.splitlines()
    after = plan.files[DYNAMIC].splitlines()
    assert len(after) == len(before)
    assert before[change.line - 1] == "        - buffer-all@file"
    assert after[change.line - 1].startswith("        # proxytest fix: ")
    # the `all` router keeps it, and the definition stays
    assert after[9] == "        - buffer-all" and "    buffer-all:" in after
    assert STATIC not in plan.files


def test_the_router_with_the_only_middleware_loses_the_list() -> None:
    text = BUFFERED.replace('rule: "PathPrefix(`/sse`)"', 'rule: "PathPrefix(`/other`)"')
    plan = plan_of(buffered(text), [Finding("sse.stream", Failure.HELD)])
    after = plan.files[DYNAMIC].splitlines()
    assert after[8].startswith("      # proxytest fix: ") and after[9].startswith("        # ")
    again = plan_of(buffered(plan.files[DYNAMIC]), [Finding("sse.stream", Failure.HELD)])
    assert again.empty and again.refusals


def test_compressed_sse_excludes_event_streams_in_the_compress_middleware() -> None:
    plan = plan_of(buffered(), [Finding("sse.stream", Failure.COMPRESSED_HELD)])
    (change,) = plan.changes
    assert plan.files[DYNAMIC].splitlines()[change.line - 1] == (
        "      compress: {excludedContentTypes: [text/event-stream]}"
    )
    again = plan_of(buffered(plan.files[DYNAMIC]), [Finding("sse.stream", Failure.COMPRESSED_HELD)])
    assert again.empty and again.refusals[0].proposal is not None


def test_delayed_streams_get_flush_interval_on_the_service() -> None:
    # /fanout/sse is served by the `all` router: here without the buffering middleware
    unbuffered = BUFFERED.replace("      middlewares:\n        - buffer-all\n", "", 1)
    plan = plan_of(buffered(unbuffered), [Finding("load.fanout", Failure.FANOUT_SLOW)])
    (change,) = plan.changes
    assert change.knob == "responseForwarding: {flushInterval: -1}"
    assert plan.files[DYNAMIC].splitlines()[-1] == "        responseForwarding: {flushInterval: -1}"
    # the default written out is replaced in place; another value is the user's
    text = unbuffered.replace(
        "      loadBalancer:\n",
        "      loadBalancer:\n        responseForwarding:\n          flushInterval: 100ms\n",
    )
    plan = plan_of(buffered(text), [Finding("load.fanout", Failure.FANOUT_SLOW)])
    assert plan.files[DYNAMIC].count("flushInterval: -1") == 1
    assert len(plan.files[DYNAMIC].splitlines()) == len(text.splitlines())
    slow = [Finding("load.fanout", Failure.FANOUT_SLOW)]
    plan = plan_of(buffered(text.replace("100ms", "1s")), slow)
    assert plan.empty and plan.refusals[0].proposal == "flushInterval: -1"


def test_a_write_timeout_is_proposed_not_forced() -> None:
    static = STATIC_TEXT.replace(
        '    address: "{{ listen_host }}:{{ listen_port }}"\n',
        '    address: "{{ listen_host }}:{{ listen_port }}"\n'
        "    transport:\n      respondingTimeouts:\n        writeTimeout: 30s\n",
    )
    plan = plan_of({STATIC: static, DYNAMIC: BUFFERED}, [Finding("sse.lifetime", Failure.LIFETIME)])
    assert plan.empty and plan.refusals[0].proposal == "writeTimeout: 0s"
    assert "writeTimeout: 30s" in plan.refusals[0].reason


def test_lb_failover_gets_a_retry_middleware_defined_and_used() -> None:
    files = setup_files("lb-round-robin")
    findings = [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)]
    plan = plan_of(files, findings)
    assert {c.knob for c in plan.changes} == {
        "middlewares: {retry-dead-backend: {retry: {attempts: 3}}}",
        "middlewares: [retry-dead-backend]",
    }
    again = plan_of({**files, **plan.files}, findings)
    assert again.empty and again.files == {}


def test_the_retry_goes_into_an_existing_block_list_and_mapping() -> None:
    plan = plan_of(buffered(), [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)])
    after = plan.files[DYNAMIC].splitlines()
    # the `all` router (PathPrefix(`/`)) serves /lb/events
    at = after.index("        - buffer-all")
    assert after[at + 2] == "        - retry-dead-backend"
    assert "    retry-dead-backend: {retry: {attempts: 3}}" in after


def test_causes_without_a_config_fix_are_refused() -> None:
    plan = plan_of(setup_files("tls"), [
        Finding("ws.upgrade@h2", Failure.H2_WEBSOCKET),
        Finding("ws.upgrade", Failure.UPGRADE),
        Finding("load.concurrency", Failure.LIMIT),
    ])  # fmt: skip
    assert plan.empty
    assert "GODEBUG" in {r.check: r.remedy for r in plan.refusals}["ws.upgrade@h2"]


def test_toml_configs_are_refused_for_now() -> None:
    plan = PLANNER.plan(
        {Path("traefik.toml"): "", DYNAMIC: BUFFERED}, [Finding("sse.stream", Failure.HELD)]
    )
    assert plan.empty and "YAML" in plan.refusals[0].reason


# -- Traefik's own word: the patched configs start and route ---------------------------


def test_traefik_accepts_the_patched_buffered_config(tmp_path: Path) -> None:
    files = buffered()
    plan = PLANNER.plan(
        files,
        [Finding("sse.stream", Failure.HELD), Finding("sse.stream", Failure.COMPRESSED_HELD),
         Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)],
    )  # fmt: skip
    assert len(plan.changes) == 4
    accepted("traefik", patched(tmp_path, files, plan))


def test_traefik_accepts_the_patched_lb_round_robin(tmp_path: Path) -> None:
    files = setup_files("lb-round-robin")
    plan = PLANNER.plan(files, [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)])
    accepted("traefik", patched(tmp_path, files, plan), backends=2)


def test_a_router_in_one_dynamic_file_and_its_middleware_in_another() -> None:
    routers, middlewares = BUFFERED.split("  middlewares:\n    buffer-all:")
    second = Path("middlewares.yaml")
    files = {
        STATIC: STATIC_TEXT,
        DYNAMIC: routers.rstrip() + "\n",
        second: "http:\n  middlewares:\n    buffer-all:" + middlewares.split("  services:")[0],
    }
    files[DYNAMIC] += "  services:" + BUFFERED.split("  services:")[1]
    plan = plan_of(files, [Finding("sse.stream", Failure.HELD)])
    (change,) = plan.changes
    assert change.file == DYNAMIC and set(plan.files) == {DYNAMIC}
