"""The Envoy planner: the place found, in-place vs inserted, comments kept, refusals,
idempotence; and Envoy's own acceptance of what it writes (--mode validate and a start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.fixes.base import Finding, Plan
from proxytest.fixes.envoy import PLANNER
from proxytest.results import Failure

from ..conftest import ROOT
from .helpers import accepted, assert_minimal, patched

ENVOY = ROOT / "proxies/envoy"

# What envoy/default shows (matrix.yaml `expect:`), with the failure kinds a real run
# reported (proxytest run --only envoy/default, 1.36).
DEFAULT_FINDINGS = [
    *(Finding(c, Failure.UPGRADE) for c in (
        "ws.upgrade", "ws.echo", "ws.push", "ws.ping", "ws.close", "ws.subprotocol",
        "ws.idle", "ws.keepalive", "browser.websocket",
    )),
    Finding("sse.idle", Failure.IDLE, {"dropped_after_s": 15.0}),
    Finding("sse.heartbeat", Failure.LIFETIME, {"dropped_after_s": 15.0}),
    Finding("sse.lifetime", Failure.LIFETIME, {"dropped_after_s": 15.0}),
    Finding("browser.eventsource", Failure.LIFETIME),
]  # fmt: skip


def plan_of(text: str, findings: list[Finding], name: str = "envoy.yaml") -> tuple[Plan, dict]:
    path = Path(name)
    originals = {path: text}
    plan = PLANNER.plan(originals, findings)
    assert_minimal(plan, originals)
    return plan, originals


def lines_of(plan: Plan) -> list[str]:
    return next(iter(plan.files.values())).splitlines()


def test_the_default_setup_gets_upgrade_configs_on_its_hcm_and_timeout_0s_on_its_route() -> None:
    text = (ENVOY / "default.yaml").read_text()
    plan, originals = plan_of(text, DEFAULT_FINDINGS, "default.yaml")
    knobs = {c.knob: c for c in plan.changes}
    assert set(knobs) == {"upgrade_configs: [{upgrade_type: websocket}]", "timeout: 0s"}
    assert knobs["timeout: 0s"].checks == (
        "sse.idle", "sse.heartbeat", "sse.lifetime", "browser.eventsource",
    )  # fmt: skip
    assert "ws.upgrade" in knobs["upgrade_configs: [{upgrade_type: websocket}]"].checks
    assert plan.refusals == ()
    after = lines_of(plan)
    # timeout goes into the route action (under `cluster: origin`), at its indentation
    cluster = after.index("                  cluster: origin")
    assert after[cluster + 2] == "                  timeout: 0s"
    assert after[cluster + 1].startswith("                  # proxytest fix: ")
    # upgrade_configs at the HCM's keys' indentation (stat_prefix's)
    assert "          upgrade_configs: [{upgrade_type: websocket}]" in after
    # every comment of the user's is still there, in order
    assert [x for x in after if x.lstrip().startswith("# ") and "proxytest fix" not in x] == [
        x for x in text.splitlines() if x.lstrip().startswith("# ")
    ]
    diff = plan.diff(originals)
    body = diff.splitlines()[2:]
    assert sum(x.startswith("+") for x in body) == 4 and not any(x.startswith("-") for x in body)


def test_planning_again_on_the_patched_default_changes_nothing() -> None:
    text = (ENVOY / "default.yaml").read_text()
    plan, _ = plan_of(text, DEFAULT_FINDINGS, "default.yaml")
    again, _ = plan_of(lines_joined(plan), DEFAULT_FINDINGS, "default.yaml")
    assert again.empty and again.files == {}
    # ... and says why: the knobs are set, the cause is elsewhere
    assert {r.check for r in again.refusals} == {f.check for f in DEFAULT_FINDINGS}


def lines_joined(plan: Plan) -> str:
    return next(iter(plan.files.values()))


def test_the_realtime_setup_has_nothing_to_fix() -> None:
    text = (ENVOY / "realtime.yaml").read_text()
    assert PLANNER.plan({Path("realtime.yaml"): text}, []) == Plan(files={})
    plan, _ = plan_of(text, DEFAULT_FINDINGS, "realtime.yaml")
    assert plan.empty and plan.files == {}


HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TWO_LISTENERS = """\
static_resources:
  listeners:
  # an internal listener first: not the one proxytest tests
  - name: internal
    address:
      socket_address: {address: 127.0.0.1, port_value: 0}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": HCM_TYPE
          stat_prefix: internal
          route_config:
            virtual_hosts:
            - name: internal
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: origin
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: web
    address:
      socket_address:
        address: {{ listen_host }}
        port_value: {{ listen_port }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": HCM_TYPE
          stat_prefix: web
          upgrade_configs:
          - upgrade_type: CONNECT
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              # WebSockets first
              - match:
                  prefix: "/ws/"
                route:
                  cluster: origin
              - match:
                  path: "/sse"
                route:
                  cluster: origin
                  timeout: 15s  # Envoy's default, written out
              - match:
                  prefix: "/"
                route:
                  cluster: origin
                  timeout: 30s
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: origin
    type: STATIC
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: {{ upstream_host }}
                port_value: {{ upstream_port }}
""".replace("HCM_TYPE", f"type.googleapis.com/{HCM}")


def test_the_route_that_serves_the_path_on_the_listen_port_listener_is_changed() -> None:
    plan, _ = plan_of(TWO_LISTENERS, [Finding("sse.lifetime", Failure.LIFETIME)])
    (change,) = plan.changes
    # the /sse route's own `timeout: 15s` (the default written out), replaced in place
    line = TWO_LISTENERS.splitlines()[change.line - 1]
    assert line.strip() == "timeout: 15s  # Envoy's default, written out"
    replaced = "                  timeout: 0s  # Envoy's default, written out"
    assert lines_of(plan)[change.line - 1] == replaced
    assert len(lines_of(plan)) == len(TWO_LISTENERS.splitlines())


def test_a_timeout_the_user_chose_is_refused_with_a_proposal() -> None:
    text = TWO_LISTENERS.replace('path: "/sse"', 'path: "/other"')
    plan, _ = plan_of(text, [Finding("sse.lifetime", Failure.LIFETIME)])
    assert plan.empty and plan.files == {}
    (refusal,) = plan.refusals
    assert "timeout: 30s" in refusal.reason and refusal.proposal == "timeout: 0s"


def test_websocket_is_appended_to_the_upgrade_list_of_the_listen_port_hcm() -> None:
    plan, originals = plan_of(TWO_LISTENERS, [Finding("ws.upgrade", Failure.UPGRADE)])
    (change,) = plan.changes
    assert change.knob == "- upgrade_type: websocket"
    after = lines_of(plan)
    at = after.index("          - upgrade_type: CONNECT")
    assert after[at + 2] == "          - upgrade_type: websocket"
    # the internal listener's HCM is untouched
    assert after[:at] == originals[Path("envoy.yaml")].splitlines()[:at]


def test_a_disabled_websocket_upgrade_is_refused() -> None:
    text = TWO_LISTENERS.replace(
        "- upgrade_type: CONNECT", "- upgrade_type: websocket\n            enabled: false"
    )
    plan, _ = plan_of(text, [Finding("ws.upgrade", Failure.UPGRADE)])
    assert plan.empty
    assert plan.refusals[0].proposal is not None and "enabled: false" in plan.refusals[0].reason


def test_causes_without_a_config_fix_are_refused_with_the_application_remedy() -> None:
    text = (ENVOY / "realtime.yaml").read_text()
    plan, _ = plan_of(
        text,
        [
            Finding("sse.idle", Failure.IDLE, {"dropped_after_s": 40.0}),
            Finding("ws.upgrade@h2", Failure.H2_WEBSOCKET),
            Finding("load.concurrency", Failure.LIMIT),
        ],
    )
    assert plan.empty
    remedies = {r.check: r.remedy for r in plan.refusals}
    assert "heartbeats" in remedies["sse.idle"]
    assert "allow_connect" in remedies["ws.upgrade@h2"]
    # realtime's circuit breakers (9000) are the user's: proposed, not forced
    (limit,) = [r for r in plan.refusals if r.check == "load.concurrency"]
    assert limit.proposal == "max_connections: 100000"


def test_a_quiet_stream_cut_at_5_min_gets_stream_idle_timeout() -> None:
    cluster = "                  cluster: origin\n"
    text = (
        (ENVOY / "default.yaml")
        .read_text()
        .replace(cluster, cluster + "                  timeout: 0s\n")
    )
    plan, _ = plan_of(text, [Finding("sse.idle", Failure.IDLE, {"dropped_after_s": 300.2})])
    (change,) = plan.changes
    assert change.knob == "stream_idle_timeout: 3600s"


def test_a_quiet_websocket_is_not_blamed_on_the_route_timeout() -> None:
    text = (ENVOY / "default.yaml").read_text()
    plan, _ = plan_of(text, [Finding("ws.idle", Failure.IDLE, {"dropped_after_s": 300.1})])
    (change,) = plan.changes
    assert change.knob == "stream_idle_timeout: 3600s"
    again, _ = plan_of(
        lines_joined(plan), [Finding("ws.idle", Failure.IDLE, {"dropped_after_s": 300.1})]
    )
    assert again.empty and again.refusals[0].proposal is None
    plan, _ = plan_of(text, [Finding("ws.idle", Failure.IDLE, {"dropped_after_s": 30.0})])
    assert plan.empty and "heartbeats" in plan.refusals[0].remedy


def test_a_max_stream_duration_is_proposed_not_removed() -> None:
    text = (
        (ENVOY / "realtime.yaml")
        .read_text()
        .replace(
            "          stream_idle_timeout: 3600s\n",
            "          stream_idle_timeout: 3600s\n"
            "          common_http_protocol_options:\n            max_stream_duration: 20s\n",
        )
    )
    plan, _ = plan_of(text, [Finding("sse.lifetime", Failure.LIFETIME)])
    assert plan.empty and "max_stream_duration" in (plan.refusals[0].proposal or "")


def test_the_lb_route_gets_a_retry_policy_and_its_cluster_a_retry_budget() -> None:
    text = (ENVOY / "lb-round-robin.yaml").read_text()
    findings = [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)]
    plan, _ = plan_of(text, findings, "lb-round-robin.yaml")
    retry, budget = plan.changes
    assert retry.knob.startswith("retry_policy: {retry_on: ")
    assert "host_selection_retry_max_attempts: 20" in retry.knob
    # Into the thresholds the file has (max_connections and the others stay).
    assert budget.knob == "max_retries: 9000"
    patched_text = lines_joined(plan)
    assert "        max_retries: 9000\n" in patched_text
    assert "max_connections: 9000" in patched_text
    again, _ = plan_of(patched_text, findings, "lb-round-robin.yaml")
    assert again.empty and again.refusals[0].proposal == retry.knob


def sticky_without_failover() -> str:
    """The lb-sticky setup without the retry policy and retry budget it ships with."""
    text = (ENVOY / "lb-sticky.yaml").read_text()
    start = text.index("                  retry_policy:\n")
    end = text.index("                  # Hash each request on the cookie")
    stripped = text[:start] + text[end:]
    return stripped.replace("        max_retries: 9000\n", "")


def test_a_sticky_cluster_that_never_fails_over_gets_the_retry_too() -> None:
    # Measured (proxies/envoy/lb-sticky.yaml): a ring hash on a cookie keeps the dead
    # host; this retry with its host-selection attempts and budget passes every run.
    plan, _ = plan_of(sticky_without_failover(), [Finding("lb.failover", Failure.NO_FAILOVER)])
    assert [c.knob.split(":")[0] for c in plan.changes] == ["retry_policy", "max_retries"]
    # Breakers written with the default 3 are raised in place; none at all get a block.
    default_three = sticky_without_failover().replace(
        "        max_requests: 9000\n", "        max_requests: 9000\n        max_retries: 3\n"
    )
    plan, _ = plan_of(default_three, [Finding("lb.failover", Failure.NO_FAILOVER)])
    assert plan.changes[1].knob == "max_retries: 9000"
    assert "max_retries: 3" not in lines_joined(plan)
    no_breakers = (ENVOY / "lb-round-robin.yaml").read_text()
    no_breakers = (
        no_breakers[: no_breakers.index("    circuit_breakers:")]
        + no_breakers[no_breakers.index("    load_assignment:") :]
    )
    plan, _ = plan_of(no_breakers, [Finding("lb.failover", Failure.NO_FAILOVER)])
    assert plan.changes[1].knob.startswith("circuit_breakers: {thresholds: [{max_connections")
    assert plan.changes[1].knob.endswith("max_retries: 9000}]}")
    # LIMIT asking too: still one block.
    both = [Finding("lb.failover", Failure.NO_FAILOVER), Finding("load.concurrency", Failure.LIMIT)]
    plan, _ = plan_of(no_breakers, both)
    assert lines_joined(plan).count("circuit_breakers:") == 1
    # A budget set deliberately stays.
    deliberate = default_three.replace("max_retries: 3", "max_retries: 50")
    plan, _ = plan_of(deliberate, [Finding("lb.failover", Failure.NO_FAILOVER)])
    assert [c.knob.split(":")[0] for c in plan.changes] == ["retry_policy"]


def test_a_route_action_in_flow_style_is_refused_with_the_proposal() -> None:
    text = (
        (ENVOY / "default.yaml")
        .read_text()
        .replace(
            "                route:\n                  cluster: origin\n",
            "                route: {cluster: origin}\n",
        )
    )
    plan, _ = plan_of(text, [Finding("sse.lifetime", Failure.LIFETIME)])
    assert plan.empty and plan.refusals[0].proposal == "timeout: 0s"


def test_a_config_that_is_not_yaml_is_refused() -> None:
    plan = PLANNER.plan({Path("envoy.json"): "{}"}, [Finding("ws.upgrade", Failure.UPGRADE)])
    assert plan.empty and "YAML" in plan.refusals[0].reason


# -- Envoy's own word: the patched configs validate and start --------------------------


@pytest.mark.parametrize(
    ("setup", "findings", "backends"),
    [
        ("default", DEFAULT_FINDINGS, 1),
        ("default", [Finding("load.concurrency", Failure.LIMIT)], 1),
        ("lb-round-robin", [Finding("lb.failover", Failure.RETRIED_DEAD_BACKEND)], 2),
        ("lb-sticky", [Finding("lb.failover", Failure.NO_FAILOVER)], 2),
    ],
)
def test_envoy_accepts_the_patched_config(
    tmp_path: Path, setup: str, findings: list[Finding], backends: int
) -> None:
    source = ENVOY / f"{setup}.yaml"
    text = sticky_without_failover() if setup == "lb-sticky" else source.read_text()
    originals = {source: text}
    plan = PLANNER.plan(originals, findings)
    assert not plan.empty
    accepted("envoy", patched(tmp_path, originals, plan), backends)


def test_envoy_accepts_an_appended_upgrade_and_a_replaced_timeout(tmp_path: Path) -> None:
    source = tmp_path / "src" / "two.yaml"
    source.parent.mkdir()
    originals = {source: TWO_LISTENERS}
    plan = PLANNER.plan(
        originals, [Finding("ws.upgrade", Failure.UPGRADE), Finding("sse.idle", Failure.IDLE)]
    )
    assert len(plan.changes) == 2
    accepted("envoy", patched(tmp_path, originals, plan))


def test_envoy_takes_the_first_matching_route_so_does_the_planner() -> None:
    # `/` first: it serves /sse too, the later /sse route is never reached
    text = TWO_LISTENERS.replace('prefix: "/ws/"', 'prefix: "/"', 1)
    plan, _ = plan_of(text, [Finding("sse.lifetime", Failure.LIFETIME)])
    (change,) = plan.changes
    assert change.knob == "timeout: 0s"
    after = lines_of(plan)
    # inserted into the first route's action, before the /sse route
    assert after.index("                  timeout: 0s") < after.index(
        '                  path: "/sse"'
    )


def test_circuit_breakers_at_the_default_written_out_are_raised_in_place() -> None:
    text = (ENVOY / "realtime.yaml").read_text().replace(": 9000", ": 1024")
    plan, _ = plan_of(text, [Finding("load.concurrency", Failure.LIMIT)])
    assert {c.knob for c in plan.changes} == {
        "max_connections: 100000",
        "max_pending_requests: 100000",
        "max_requests: 100000",
    }
    assert len(lines_of(plan)) == len(text.splitlines())


def test_a_cluster_without_circuit_breakers_gets_raised_ones() -> None:
    """None written means Envoy's 1024 at once: 1000 WebSockets and 1000 SSE streams
    through the default setup with upgrades on had 818 streams refused (measured)."""
    text = (ENVOY / "default.yaml").read_text()
    assert "circuit_breakers" not in text
    plan, _ = plan_of(text, [Finding("load.concurrency", Failure.LIMIT)])
    (change,) = plan.changes
    assert change.knob.startswith("circuit_breakers: {thresholds: [{max_connections: 100000")
    assert plan.refusals == ()
    added = [line for line in lines_of(plan) if line not in text.splitlines()]
    assert [line.strip().split(":")[0] for line in added] == ["# proxytest fix", "circuit_breakers"]


def test_crlf_line_endings_are_kept() -> None:
    text = (ENVOY / "default.yaml").read_text().replace("\n", "\r\n")
    plan, _ = plan_of(text, DEFAULT_FINDINGS)
    after = next(iter(plan.files.values()))
    assert "\r\n" in after and "\n" not in after.replace("\r\n", "")
