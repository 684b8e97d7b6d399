"""How attempts of a timing check add up, and when the direct baseline is too noisy to use."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from proxytest.lag import LagMonitor, cpu_stall_total_us, stall_between
from proxytest.measure import Baseline, combine, measure_again, measure_baseline
from proxytest.origin import Origin
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import Failure, Outcome, Verdict
from proxytest.timing import Thresholds

PASS = Outcome(Verdict.PASS, "20/20 events one by one")
LATE = Outcome(Verdict.DEGRADED, "20/20 events (1 of 20 late)", {"late_count": 1}, Failure.DELAYED)
BUSY = Outcome(Verdict.ERROR, "busy", discard="the tool's own event loop was 80 ms late")


def test_a_clean_first_attempt_is_the_verdict() -> None:
    assert combine([PASS]) == PASS
    assert not measure_again(PASS, timing=True)


def test_a_delayed_attempt_is_measured_again_and_counted() -> None:
    assert measure_again(LATE, timing=True)
    assert not measure_again(LATE, timing=False)
    steady = combine([LATE, LATE, LATE])
    assert steady.verdict == Verdict.DEGRADED
    assert steady.summary.endswith("(delayed in 3 of 3 attempts)")
    assert steady.failure == Failure.DELAYED
    once = combine([LATE, PASS, PASS])
    assert once.verdict == Verdict.DEGRADED  # not washed out by clean attempts
    assert "delayed in 1 of 3 attempts, intermittent" in once.summary
    assert once.metrics["attempts_delayed"] == 1 and once.metrics["attempts_counted"] == 3


def test_only_the_tools_own_lateness_is_discarded() -> None:
    assert measure_again(BUSY, timing=True)
    assert combine([BUSY, PASS]).verdict == Verdict.PASS
    assert "1 earlier attempts discarded" in combine([BUSY, PASS]).summary
    mixed = combine([BUSY, LATE, PASS])
    assert mixed.verdict == Verdict.DEGRADED
    assert "delayed in 1 of 2 attempts, intermittent; 1 more discarded" in mixed.summary
    never = combine([BUSY, BUSY, BUSY])
    assert never.verdict == Verdict.ERROR
    assert never.summary.startswith("too busy to judge timing: in all 3 attempts")


def _baseline(th: Thresholds) -> Baseline:
    async def main() -> Baseline:
        async with Origin() as origin, LagMonitor() as lag, new_session() as session:
            ctx = ProbeContext(origin.host, origin.port, origin, session, th, lag, label="direct")
            return await measure_baseline(ctx)

    return asyncio.run(main())


def test_the_baseline_of_a_quiet_machine_is_small_and_used() -> None:
    baseline = _baseline(Thresholds())
    assert baseline.problem is None, baseline.problem
    assert set(baseline.delays_ms) == {"sse", "ws"}
    assert all(0 <= v < Thresholds().baseline_limit_ms for v in baseline.delays_ms.values())


def test_a_baseline_over_its_limit_is_refused_not_subtracted() -> None:
    strict = replace(Thresholds(), baseline_limit_ms=0.0, retry_pause_s=0.01)
    baseline = _baseline(strict)
    assert baseline.delays_ms == {}
    assert baseline.problem is not None
    assert baseline.problem.startswith("too busy to judge timing")
    assert "in 3 attempts" in baseline.problem


def test_cpu_pressure_is_read_where_the_kernel_has_it() -> None:
    total = cpu_stall_total_us()
    assert total is None or total >= 0


def test_a_window_between_two_pressure_samples_is_measured_by_them() -> None:
    # PSI is read every fifth tick: a busy loop can leave a 60 ms late event with
    # no sample inside its travel. The samples just outside measure it.
    samples = ((10.0, 1_000), (10.2, 161_000), (10.4, 165_000))
    assert stall_between(samples, 10.05, 10.12) == (160.0, 200.0)
    assert stall_between(samples, 10.05, 10.3) == (164.0, 400.0)
    assert stall_between(samples, 10.5, 10.6) is None  # nothing after the window
    assert stall_between((), 10.0, 10.1) is None
