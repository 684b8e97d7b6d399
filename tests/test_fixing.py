"""How `proxytest fix` judges a patch from the two runs' results (no proxies: results by hand)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from proxytest.fixes.base import Change, Plan, Refusal
from proxytest.fixing import Prepared, _judge, _merged, _original_line, _rerun
from proxytest.matrix import TargetSpec
from proxytest.results import CheckResult, FixStatus, TargetResult, TargetStatus, Verdict

CONF = Path("site.conf")
TEXT = "a\nb\nc\n"
PREPARED = Prepared(TargetSpec("nginx", "site", (CONF,)), {CONF: TEXT}, {CONF: "site.conf"})
PASS, FAIL, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.ERROR


def run(**verdicts: Verdict) -> TargetResult:
    results = tuple(CheckResult(c.replace("_", "."), v, v.value) for c, v in verdicts.items())
    return TargetResult("nginx/site", "nginx", "site", "local", "1", TargetStatus.OK, None, results)


def plan(*checks: str, refused: tuple[str, ...] = ()) -> Plan:
    changes = tuple(Change(CONF, 2, f"knob_{c};", (c,), "why") for c in checks)
    refusals = tuple(Refusal(c, "set on purpose", "decide", "knob 1h;") for c in refused)
    return Plan({CONF: "a\nb\nknob;\nc\n"} if changes else {}, changes, refusals)


@pytest.mark.parametrize(
    ("before", "after", "the_plan", "status"),
    [
        # everything passed: nothing to fix; one could not be judged: not measured
        (run(ws_upgrade=PASS), None, plan(), FixStatus.NOTHING),
        (run(ws_upgrade=PASS, sse_stream=ERROR), None, plan(), FixStatus.NOT_MEASURED),
        # a failure with no change: no config change
        (run(sse_idle=FAIL), None, plan(refused=("sse.idle",)), FixStatus.NO_CONFIG_CHANGE),
        # fixed, and what passed still passes
        (run(ws_upgrade=FAIL, sse_stream=PASS), run(ws_upgrade=PASS, sse_stream=PASS),
         plan("ws.upgrade"), FixStatus.PROVEN),
        # fixed, but what passed regressed; or not fixed
        (run(ws_upgrade=FAIL, sse_stream=PASS), run(ws_upgrade=PASS, sse_stream=FAIL),
         plan("ws.upgrade"), FixStatus.UNPROVEN),
        (run(ws_upgrade=FAIL), run(ws_upgrade=FAIL), plan("ws.upgrade"), FixStatus.UNPROVEN),
        # an after run that could not judge a check that must pass proves nothing
        (run(ws_upgrade=FAIL, sse_stream=PASS), run(ws_upgrade=PASS, sse_stream=ERROR),
         plan("ws.upgrade"), FixStatus.UNPROVEN),
        # fixed, another failure refused: proven in part
        (run(ws_upgrade=FAIL, sse_idle=FAIL), run(ws_upgrade=PASS),
         plan("ws.upgrade", refused=("sse.idle",)), FixStatus.PROVEN_IN_PART),
        # a check the first run could not judge: proven once the copy judges it pass ...
        (run(ws_upgrade=FAIL, sse_stream=ERROR), run(ws_upgrade=PASS, sse_stream=PASS),
         plan("ws.upgrade"), FixStatus.PROVEN),
        # ... not while it stays unjudged
        (run(ws_upgrade=FAIL, sse_stream=ERROR), run(ws_upgrade=PASS, sse_stream=ERROR),
         plan("ws.upgrade"), FixStatus.PROVEN_IN_PART),
    ],
)  # fmt: skip
def test_the_status_follows_from_both_runs(
    before: TargetResult, after: TargetResult | None, the_plan: Plan, status: FixStatus
) -> None:
    fix = _judge(before, PREPARED, the_plan, after)
    assert fix.status == status, fix.summary
    assert bool(fix.patch) == (not the_plan.empty)
    assert fix.status.writable == (status in (FixStatus.PROVEN, FixStatus.PROVEN_IN_PART))


def _hop(before_kind: str, after_kind: str | None) -> tuple[TargetResult, TargetResult]:
    def one(kind: str | None) -> TargetResult:
        verdict = FAIL if kind else PASS
        hop = CheckResult("http.hop-by-hop", verdict, "headers", failure=kind)
        return replace(run(ws_upgrade=PASS), results=(run(ws_upgrade=PASS).results[0], hop))

    return one(before_kind), one(after_kind)


# http.hop-by-hop on nginx: the change removes Proxy-Authorization, a header the client
# named in Connection has no config fix (refused). The re-run shows only that kind.
HOP_PLAN = plan("http.hop-by-hop", refused=("http.hop-by-hop",))


def test_a_check_fixed_in_part_proves_its_change_and_leaves_the_rest() -> None:
    before, after = _hop("hop_by_hop", "connection_named")
    fix = _judge(before, PREPARED, HOP_PLAN, after)
    assert fix.status == FixStatus.PROVEN_IN_PART, fix.summary
    assert {r.check: r.outcome for r in fix.rows} == {
        "ws.upgrade": "kept", "http.hop-by-hop": "fixed in part",
    }  # fmt: skip
    assert all(c.proven for c in fix.changes)
    assert "1 fixed in part" in fix.summary


@pytest.mark.parametrize(
    ("after_kind", "the_plan"),
    [
        ("hop_by_hop", HOP_PLAN),  # the change did nothing: the same kind again
        ("connection_named", plan("http.hop-by-hop")),  # nothing refused: all was promised
    ],
)
def test_a_check_not_fixed_in_part_stays_unproven(after_kind: str, the_plan: Plan) -> None:
    before, after = _hop("hop_by_hop", after_kind)
    fix = _judge(before, PREPARED, the_plan, after)
    assert fix.status == FixStatus.UNPROVEN
    assert [r.outcome for r in fix.rows if r.check == "http.hop-by-hop"] == ["not fixed"]


def test_a_target_that_did_not_run_is_not_measured() -> None:
    broken = TargetResult("nginx/site", "nginx", "site", "local", None, TargetStatus.ERROR,
                          "nginx exited with code 1", ())  # fmt: skip
    fix = _judge(broken, PREPARED, None, None)
    assert fix.status == FixStatus.NOT_MEASURED and "exited with code 1" in fix.summary


def test_the_copy_runs_what_a_change_addresses_what_passed_and_what_was_not_judged() -> None:
    before = run(ws_upgrade=FAIL, ws_echo=FAIL, sse_stream=PASS, sse_idle=ERROR, sse_lifetime=FAIL)
    assert _rerun(before, plan("ws.upgrade", "ws.echo")) == [
        "ws.upgrade", "ws.echo", "sse.stream", "sse.idle",
    ]  # fmt: skip


def test_a_second_rounds_changes_are_placed_on_the_original_lines() -> None:
    original = "one\ntwo\nthree\nfour\n"
    first = Plan({CONF: "one\ntwo\n# why\nadded;\nthree\nfour\n"},
                 (Change(CONF, 2, "added;", ("ws.upgrade",), "why"),),
                 (Refusal("load.concurrency", "limit elsewhere", "raise it"),))  # fmt: skip
    more = Plan({CONF: "one\ntwo\n# why\nadded;\nthree\nfour\nmore;\n"},
                (Change(CONF, 6, "more;", ("load.concurrency",), "why"),))  # fmt: skip
    merged = _merged({CONF: original}, first, more)
    assert [(c.knob, c.line) for c in merged.changes] == [("added;", 2), ("more;", 4)]
    assert merged.files[CONF].endswith("more;\n")
    assert merged.refusals == ()  # the second round changed what the first refused
    assert _original_line(original, first.files[CONF], 4) == 2  # an inserted line: after 2
