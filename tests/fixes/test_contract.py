"""What `proxytest fix` relies on from every text planner, whatever the finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.fixes import caddy, haproxy, nginx
from proxytest.fixes.base import Finding, Planner
from proxytest.results import Failure

from ..conftest import ROOT

PLANNERS: dict[str, tuple[Planner, str]] = {
    "nginx": (nginx.PLANNER, "default.conf"),
    "haproxy": (haproxy.PLANNER, "default.cfg"),
    "caddy": (caddy.PLANNER, "default.Caddyfile"),
}
CHECKS = ("ws.echo", "ws.idle", "sse.stream", "sse.idle", "lb.failover", "load.fanout",
          "lifecycle.reload", "browser.websocket", "ws.upgrade@h2")  # fmt: skip


@pytest.mark.parametrize("proxy", PLANNERS)
@pytest.mark.parametrize("failure", list(Failure))
def test_every_finding_is_answered_by_a_change_or_a_refusal(proxy: str, failure: Failure) -> None:
    planner, name = PLANNERS[proxy]
    path = Path(f"proxies/{proxy}/{name}")
    files = {path: (ROOT / path).read_text()}
    found = [Finding(check, failure, {"dropped_after_s": 30.0}) for check in CHECKS]
    plan = planner.plan(files, found)
    answered = {c for change in plan.changes for c in change.checks}
    answered |= {r.check for r in plan.refusals}
    assert answered == set(CHECKS)
    assert set(plan.files) <= set(files)  # only the user's files, never a new one
    for change in plan.changes:
        assert change.file == path and change.knob and change.why
        assert 0 <= change.line <= len(files[path].splitlines())


@pytest.mark.parametrize("proxy", PLANNERS)
def test_no_findings_no_plan(proxy: str) -> None:
    planner, name = PLANNERS[proxy]
    path = Path(f"proxies/{proxy}/{name}")
    plan = planner.plan({path: (ROOT / path).read_text()}, [])
    assert plan.empty and plan.files == {} and plan.refusals == ()


@pytest.mark.parametrize("proxy", PLANNERS)
def test_a_delayed_websocket_gets_no_response_buffering_knob(proxy: str) -> None:
    planner, name = PLANNERS[proxy]
    path = Path(f"proxies/{proxy}/{name}")
    plan = planner.plan({path: (ROOT / path).read_text()}, [Finding("ws.push", Failure.DELAYED)])
    assert plan.empty and [r.check for r in plan.refusals] == ["ws.push"]
