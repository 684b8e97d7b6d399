"""Verdict boundaries of lifecycle.reload, lifecycle.origin-restart and load.concurrency."""

from __future__ import annotations

from proxytest.checks import EvalContext
from proxytest.checks.lifecycle import evaluate_reload, evaluate_restart
from proxytest.checks.load import evaluate_load
from proxytest.probes.timeline import Fate, LoadTimeline, ReloadTimeline, RestartTimeline
from proxytest.results import Verdict

CTX = EvalContext()
T = 100.0


def fates(*ends: float | None, kinds: str = "wwss") -> tuple[Fate, ...]:
    return tuple(
        Fate("ws" if k == "w" else "sse", T - 1, None if e is None else T + e, T)
        for k, e in zip(kinds, ends, strict=True)
    )


def reload_tl(*ends: float | None, **kw: object) -> ReloadTimeline:
    fields: dict[str, object] = dict(
        method="SIGHUP",
        observed="2 new processes of the proxy appeared",
        reload_at=T,
        observe_s=8.0,
        fates=fates(*ends),
        during_ok=30,
    )
    fields.update(kw)
    return ReloadTimeline(**fields)  # type: ignore[arg-type]


def test_reload_all_survive_passes() -> None:
    outcome = evaluate_reload(reload_tl(None, None, None, None), CTX)
    assert outcome.verdict == Verdict.PASS
    assert "WebSockets: 2 survived; SSE streams: 2 survived" in outcome.summary


def test_reload_cut_at_once_is_degraded() -> None:
    outcome = evaluate_reload(reload_tl(0.05, 0.1, None, None), CTX)
    assert outcome.verdict == Verdict.DEGRADED
    assert outcome.failure == "reload_cut"
    assert "WebSockets: 2 cut at once" in outcome.summary


def test_reload_cut_boundary_is_one_second() -> None:
    assert evaluate_reload(reload_tl(0.99, None, None, None), CTX).verdict == Verdict.DEGRADED
    drained = evaluate_reload(reload_tl(1.5, None, None, None), CTX)
    assert drained.verdict == Verdict.PASS
    assert "drained then closed" in drained.summary


def test_reload_cut_window_starts_when_the_reload_command_returned() -> None:
    # A helper container made `caddy reload` take 0.9 s: a close 1.5 s after the
    # command started, 0.6 s after it returned, is still the reload's cut.
    cut = evaluate_reload(reload_tl(1.5, 1.5, None, None, reloaded_at=T + 0.9), CTX)
    assert cut.verdict == Verdict.DEGRADED
    assert "WebSockets: 2 cut at once" in cut.summary
    assert cut.metrics["closed_after_s"] == [1.5, 1.5]  # still from the command's start
    drained = evaluate_reload(reload_tl(2.0, None, None, None, reloaded_at=T + 0.9), CTX)
    assert drained.verdict == Verdict.PASS


def test_failed_requests_during_reload_are_degraded() -> None:
    outcome = evaluate_reload(
        reload_tl(None, None, None, None, during_failed=("ClientConnectorError",)), CTX
    )
    assert outcome.verdict == Verdict.DEGRADED
    assert "1 of 31 new requests during it failed" in outcome.summary


def test_no_new_connections_after_reload_fails() -> None:
    outcome = evaluate_reload(reload_tl(None, None, None, None, after_sse="status 502"), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "reload_broken"


def test_proxy_that_died_on_reload_fails() -> None:
    outcome = evaluate_reload(reload_tl(0, 0, 0, 0, alive_after=False), CTX)
    assert outcome.verdict == Verdict.FAIL


def test_unsupported_reload_is_a_skip_with_the_reason() -> None:
    outcome = evaluate_reload(ReloadTimeline(unsupported="no reload for this proxy"), CTX)
    assert outcome.verdict == Verdict.SKIP
    assert outcome.summary == "no reload for this proxy"


def restart_tl(*ends: float | None, recovered: float | None = 0.2, **kw: object) -> RestartTimeline:
    fields: dict[str, object] = dict(
        killed_at=T,
        learn_limit_s=10.0,
        fates=fates(*ends),
        restarted_at=T + 5,
        recovered_after_s=recovered,
        recover_limit_s=15.0,
        last_failure="status 502",
    )
    fields.update(kw)
    return RestartTimeline(**fields)  # type: ignore[arg-type]


def test_origin_restart_prompt_and_recovered_passes() -> None:
    assert evaluate_restart(restart_tl(0.01, 0.02, 0.01, 0.3), CTX).verdict == Verdict.PASS


def test_origin_restart_hung_connection_fails() -> None:
    outcome = evaluate_restart(restart_tl(0.01, None, 0.01, 0.01), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "hung"
    assert "still open 10 s after the origin died" in outcome.summary


def test_origin_restart_learned_late_is_degraded() -> None:
    assert evaluate_restart(restart_tl(0.1, 0.1, 0.1, 2.5), CTX).verdict == Verdict.DEGRADED


def test_origin_restart_without_recovery_fails() -> None:
    outcome = evaluate_restart(restart_tl(0.1, 0.1, 0.1, 0.1, recovered=None), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "no_recovery"
    assert "status 502" in outcome.summary


def load_tl(
    ws: int,
    sse: int,
    failures: tuple[tuple[str, int], ...] = (),
    *,
    still: int | None = None,
    n: int = 1000,
    tool_limit: str | None = None,
    lag_ms: float = 3.0,
) -> LoadTimeline:
    return LoadTimeline(
        requested=1000,
        attempted=n,
        ws_ok=ws,
        sse_ok=sse,
        failures=failures,
        setup_s=1.2,
        still_open=ws + sse if still is None else still,
        tool_limit=tool_limit,
        fd_limit=20000,
        tool_rss_mb=100.0,
        loop_lag_ms=lag_ms,
        origin_process=True,
    )


def test_load_all_open_passes() -> None:
    outcome = evaluate_load(load_tl(1000, 1000), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.metrics["ws_upgraded"] == 1000


def test_load_one_short_fails_with_failure_kinds() -> None:
    outcome = evaluate_load(load_tl(999, 1000, (("ws: connection reset", 1),)), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert outcome.failure == "limit"
    assert "999/1000 WebSockets" in outcome.summary
    assert "1 ws: connection reset" in outcome.summary


def test_load_connections_dropped_after_opening_fail() -> None:
    outcome = evaluate_load(load_tl(1000, 1000, still=1990), CTX)
    assert outcome.verdict == Verdict.FAIL
    assert "10 dropped once all were open" in outcome.summary


def test_load_without_websocket_support_judges_sse_only() -> None:
    outcome = evaluate_load(load_tl(0, 1000, (("ws: status 403", 1000),)), CTX)
    assert outcome.verdict == Verdict.PASS
    assert outcome.summary.startswith("WebSocket not proxied (status 403, see ws.upgrade)")


def test_load_tool_limit_is_said_and_never_a_pass_at_the_smaller_n() -> None:
    """400 of 1000 tested (the tool's file limit): not the proxy's, and not measured."""
    outcome = evaluate_load(load_tl(400, 400, n=400, tool_limit="fd limit 2000"), CTX)
    assert outcome.verdict == Verdict.ERROR
    assert "400 WebSockets and 400 SSE streams held, but 1000 were asked for" in outcome.summary
    assert "fd limit 2000" in outcome.summary and "ulimit -n" in outcome.summary
    assert outcome.failure is None


def test_load_timeouts_while_the_tool_stalled_are_not_the_proxys() -> None:
    slow = (("ws: no answer in time", 300),)
    tool = evaluate_load(load_tl(700, 1000, slow, lag_ms=6000.0), CTX)
    assert tool.verdict == Verdict.ERROR
    assert "the tool was overloaded" in tool.summary
    proxy = evaluate_load(load_tl(700, 1000, slow, lag_ms=40.0), CTX)
    assert proxy.verdict == Verdict.FAIL and proxy.failure == "limit"


def test_load_that_could_not_be_set_up_is_an_error() -> None:
    tl = LoadTimeline(1000, 0, 0, 0, (), 0.0, 0, error="nginx exited with code 1")
    outcome = evaluate_load(tl, CTX)
    assert outcome.verdict == Verdict.ERROR
    assert "nginx exited" in outcome.summary


def test_a_reload_that_was_not_observed_is_an_error_not_a_pass() -> None:
    """A proxy that ignored the signal keeps every stream: that is no finding."""
    outcome = evaluate_reload(reload_tl(None, None, None, None, observed=None), CTX)
    assert outcome.verdict == Verdict.ERROR
    assert outcome.summary.startswith("reload not observed")
    seen = evaluate_reload(reload_tl(None, None, None, None), CTX)
    assert seen.verdict == Verdict.PASS
    assert seen.metrics["reload_observed"] == "2 new processes of the proxy appeared"
