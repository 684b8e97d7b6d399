"""Run targets: launch each proxy, probe it with every selected check, stop it.

Targets run concurrently (bounded by a semaphore), and the checks of one target
run concurrently: each uses its own connections and the traffic is small.
Timing checks are judged against a direct origin-to-client baseline measured
first, while nothing else runs, and measured again when the tool itself was
late (measure.py says how attempts add up).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from . import runtimes
from ._version import VERSION
from .adapters import ADAPTERS, Adapter
from .checks import Check, EvalContext, Phase
from .errors import BinaryNotFound, ConfigRejected, HarnessError, UsageError
from .harness import Harness
from .lag import LagMonitor
from .masking import mask_secrets
from .matrix import TargetSpec
from .measure import Baseline, combine, measure_again, measure_baseline
from .options import RunOptions
from .origin import Origin
from .origin.server import RecordStore
from .probes import ProbeContext
from .probes.cdp import Browsers
from .probes.context import new_session
from .results import (
    CheckResult,
    ConfigFile,
    Outcome,
    RunResult,
    TargetResult,
    TargetStatus,
    Verdict,
)
from .runtimes import LOOPBACK, Running, Runtime
from .timing import Thresholds

__all__ = [
    "PreparedTarget",
    "Progress",
    "prepare_target",
    "run_checks",
    "run_targets",
]


class Progress(Protocol):
    """Receives progress events; the console's live display implements it."""

    def target_phase(self, target: TargetSpec, phase: str) -> None: ...

    def check_done(self, target: TargetSpec, result: CheckResult) -> None: ...

    def target_done(self, result: TargetResult) -> None: ...


class _Silent:
    def target_phase(self, target: TargetSpec, phase: str) -> None:
        pass

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        pass

    def target_done(self, result: TargetResult) -> None:
        pass


def _requested(target: TargetSpec, options: RunOptions) -> runtimes.RuntimeName:
    return options.runtime or target.runtime


def check_budget(check: Check[Any], ctx: ProbeContext, th: Thresholds) -> float:
    """How long one attempt of ``check`` may take before it is an error."""
    if check.phase in (Phase.LONG, Phase.BROWSER):  # a browser check may wait for a page
        return ctx.settings.max_hold_s + th.check_timeout_s
    if check.phase in (Phase.LIFECYCLE, Phase.LOAD):
        return 4 * th.check_timeout_s
    return th.check_timeout_s


async def run_checks(
    ctx: ProbeContext,
    checks: Sequence[Check[Any]],
    *,
    baseline: Baseline | Mapping[str, float] | None = None,
    adapter: Adapter | None = None,
    target: TargetSpec | None = None,
    alive: Running | None = None,
    progress: Progress | None = None,
    skip_missing: bool = False,
) -> tuple[CheckResult, ...]:
    """Probe and judge ``checks`` concurrently against the endpoint in ``ctx``.

    ``skip_missing``: a check that could not run for something missing here
    (``Outcome.not_run``) is a plain skip, not a result that keeps the run from green.
    """
    th = ctx.thresholds
    progress = progress or _Silent()
    if not isinstance(baseline, Baseline):
        baseline = Baseline(dict(baseline or {}))
    timing_ctx = EvalContext(th, baseline.delays_ms, baseline.problem)

    async def one(check: Check[Any]) -> CheckResult:
        started = time.monotonic()
        limit = check_budget(check, ctx, th)
        timeline = None
        tries: list[Outcome] = []
        while len(tries) <= th.timing_retries:
            if tries:  # measuring again: let a busy moment pass first
                await asyncio.sleep(th.retry_pause_s * len(tries))
            try:
                async with asyncio.timeout(limit):
                    timeline = await check.probe(ctx, check.id)
            except TimeoutError:
                outcome = Outcome(Verdict.ERROR, f"the probe did not finish within {limit:g} s")
            except Exception as exc:  # a harness failure, never the proxy's verdict
                outcome = Outcome(Verdict.ERROR, f"the probe failed: {type(exc).__name__}: {exc}")
            else:
                ectx = timing_ctx if check.timing else EvalContext(th)
                try:
                    outcome = check.evaluate(timeline, ectx)
                except Exception as exc:  # a bug of ours on an unforeseen timeline
                    outcome = Outcome(
                        Verdict.ERROR,
                        f"the evaluation failed on what was measured: {type(exc).__name__}: {exc}",
                    )
            tries.append(outcome)
            if not measure_again(outcome, check.timing):
                break
        outcome = combine(tries)
        if alive is not None and not alive.alive:
            # Whatever still answered (workers of a dead master) is not the process
            # proxytest launched and watches: nothing it measured can be judged.
            outcome = Outcome(
                Verdict.ERROR,
                f"the proxy process proxytest launched exited (code {alive.exit_code}) "
                f"before the check ended: {outcome.summary}",
                outcome.metrics,
            )
        hint = None
        failure = outcome.failure if outcome.verdict in (Verdict.FAIL, Verdict.DEGRADED) else None
        if failure:
            hint = (adapter.hint(check.id, failure) if adapter else None) or (
                check.hints.get(failure)
            )
        result = CheckResult(
            check=check.id,
            verdict=outcome.verdict,
            summary=outcome.summary,
            expected=target.expected(check.id) if target else None,
            hint=hint,
            metrics=outcome.metrics,
            duration_s=time.monotonic() - started,
            attempts=len(tries),
            timeline=timeline,
            tries=tuple(try_json(o) for o in tries) if len(tries) > 1 else (),
            not_run=outcome.not_run and not skip_missing,
            failure=failure.value if failure else None,
        )
        if target is not None:
            progress.check_done(target, result)
        return result

    return tuple(await asyncio.gather(*(one(c) for c in checks)))


def try_json(outcome: Outcome) -> dict[str, Any]:
    """One attempt of a check as the JSON report keeps it (every attempt is kept)."""
    data: dict[str, Any] = {"verdict": outcome.verdict.value, "summary": outcome.summary}
    if outcome.discard:
        data["discarded"] = outcome.discard
    return data


def _all(
    checks: Sequence[Check[Any]],
    target: TargetSpec,
    verdict: Verdict,
    summary: str,
    hint: str | None = None,
) -> tuple[CheckResult, ...]:
    return tuple(
        CheckResult(c.id, verdict, summary, expected=target.expected(c.id), hint=hint)
        for c in checks
    )


@dataclass
class _Countdown:
    """Set once every target of the run has passed a point, however each one ends."""

    left: int
    over: asyncio.Event = field(default_factory=asyncio.Event)
    _passed: set[str] = field(default_factory=set)

    def passed(self, target: TargetSpec) -> None:
        if target.id in self._passed:
            return
        self._passed.add(target.id)
        self.left -= 1
        if self.left <= 0:
            self.over.set()


@dataclass
class _RunEnv:
    origin: Origin
    session: aiohttp.ClientSession
    lag: LagMonitor
    baseline: Baseline
    options: RunOptions
    progress: Progress
    semaphore: asyncio.Semaphore  # targets in their start-up and quick phase at once
    # Browser checks wait until every target's quick (timing) checks are over, so
    # Chromium's CPU never competes with a timing probe; load checks also wait for
    # every target's browser checks, so a thousand connections share the machine
    # with neither, and then take turns.
    quick: _Countdown
    browsed: _Countdown
    load_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # When each target got its slot: its duration excludes the wait for one.
    active_since: dict[str, float] = field(default_factory=dict)
    harnesses: dict[str, Harness] = field(default_factory=dict)  # target ID -> its harness
    # The run's one Chromium: started by the first browser check, shared by every
    # target (each check in a browser context of its own), closed with the run.
    browsers: Browsers = field(default_factory=Browsers)


CONFIG_TEXT_LIMIT = 200_000  # characters of one config file kept for the reports


def config_files(target: TargetSpec) -> tuple[ConfigFile, ...]:
    """The target's config templates as the user wrote them, secrets masked, for the reports.

    Paths are shown relative to the current folder when they are inside it. A
    line that looks like it holds a secret keeps its key, not its value
    (masking.py); ``--no-config-in-reports`` leaves the files out altogether.
    """
    files = []
    cwd = Path.cwd()
    for path in target.configs:
        shown = path
        if path.is_absolute() and path.is_relative_to(cwd):
            shown = path.relative_to(cwd)
        try:
            text = mask_secrets(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            text = f"(could not read {path}: {exc.strerror or exc})"
        if len(text) > CONFIG_TEXT_LIMIT:
            text = text[:CONFIG_TEXT_LIMIT] + f"\n… (cut at {CONFIG_TEXT_LIMIT} characters)\n"
        files.append(ConfigFile(shown.as_posix(), text))
    return tuple(files)


async def _run_target(target: TargetSpec, env: _RunEnv) -> TargetResult:
    started = time.monotonic()
    try:
        result = await _run_target_inner(target, env)
    finally:
        env.quick.passed(target)
        env.browsed.passed(target)
    began = env.active_since.get(target.id, started)
    harness = env.harnesses.get(target.id)
    result = TargetResult(
        **{
            **result.__dict__,
            "duration_s": time.monotonic() - began,
            "config_files": config_files(target) if env.options.config_in_reports else (),
            "run_dirs": tuple(str(d) for d in harness.kept) if harness else (),
        }
    )
    env.progress.target_done(result)
    return result


@dataclass(frozen=True)
class PreparedTarget:
    """A target ready to launch: its adapter, runtime, version and harness."""

    target: TargetSpec
    adapter: Adapter
    runtime: Runtime
    version: str | None
    harness: Harness


async def prepare_target(
    target: TargetSpec,
    options: RunOptions,
    session: aiohttp.ClientSession,
    progress: Progress | None = None,
) -> PreparedTarget | str:
    """Choose the runtime, find the binary, read the version; or say why it cannot run.

    A string is the reason to skip the target (no binary, no engine, no image).
    """
    adapter = ADAPTERS[target.proxy]
    chosen = await runtimes.choose(
        _requested(target, options),
        adapter,
        image=options.images.get(target.proxy) or target.image,
        network=options.docker_network,
    )
    if isinstance(chosen, str):  # the engine or the image is not available
        return chosen
    runtime = chosen
    host_binary: Path | None = None
    if runtime.name == "local":
        if progress is not None:
            progress.target_phase(target, "finding binary")
        try:
            host_binary = adapter.find_binary(target.binary)
        except BinaryNotFound as exc:
            return exc.problem
    harness = Harness(
        adapter,
        runtime.binary(adapter, host_binary),
        target.configs,
        options.thresholds,
        session,
        runtime=runtime,
        keep_run_dirs=options.keep_run_dirs,
        label=target.id,
        env=dict(target.env),
    )
    try:
        version = await harness.version()
    except Exception:  # a version is nice to have, never a reason to stop
        version = None
    return PreparedTarget(target, adapter, runtime, version, harness)


@contextlib.asynccontextmanager
async def target_origins(
    run_origin: Origin, harness: Harness, runtime: Runtime
) -> AsyncIterator[tuple[Origin, ...]]:
    """The origins a target's main instance fronts, backend 1 first.

    One backend: the run's shared origin. Several (a config with numbered
    placeholders): N origins of the target's own, on loopback, reachable from
    where the proxy runs, with ids ``<run origin id>-b1`` … and ONE record store,
    so a probe waiting for its records sees them whichever backend got them
    (``OriginRecord.origin_id`` says which). They end after the target.
    """
    count = harness.backends
    if count <= 1:
        await runtime.reach(run_origin)
        yield (run_origin,)
        return
    store = RecordStore()
    async with contextlib.AsyncExitStack() as stack:
        origins = []
        for n in range(1, count + 1):
            origin = Origin(LOOPBACK, origin_id=f"{run_origin.id}-b{n}", store=store)
            await stack.enter_async_context(origin)
            await runtime.reach(origin)
            origins.append(origin)
        yield tuple(origins)


async def _run_target_inner(target: TargetSpec, env: _RunEnv) -> TargetResult:
    th = env.options.thresholds
    # The run's checks that this target selects (its own `checks:` in the matrix).
    options = replace(
        env.options, checks=tuple(c for c in env.options.checks if target.selects(c.id))
    )
    prepared = await prepare_target(target, options, env.session, env.progress)
    base: dict[str, Any] = dict(id=target.id, proxy=target.proxy, setup=target.setup)
    if isinstance(prepared, str):  # could not run: nothing measured, so not green
        optional = target.optional or options.skip_missing
        reason = prepared if optional else f"{prepared} (not run)"
        return TargetResult(
            **base, runtime=_requested(target, options), proxy_version=None,
            status=TargetStatus.SKIPPED, reason=prepared,
            results=tuple(
                replace(r, not_run=not optional)
                for r in _all(options.checks, target, Verdict.SKIP, reason)
            ),
        )  # fmt: skip
    adapter, harness, version = prepared.adapter, prepared.harness, prepared.version
    env.harnesses[target.id] = harness
    base["runtime"] = prepared.runtime.name
    log_tail = ""
    tls = False
    slot_held = False
    try:
        await env.semaphore.acquire()
        slot_held = True
        env.active_since[target.id] = time.monotonic()
        env.progress.target_phase(target, "starting")
        async with (
            target_origins(env.origin, harness, prepared.runtime) as origins,
            harness.fronting(origins, validate=True) as main,
        ):
            proc, tls = main.process, main.tls
            env.progress.target_phase(target, "checking")
            ctx = ProbeContext(
                LOOPBACK,
                main.port,
                origins[0],
                env.session,
                th,
                env.lag,
                label=target.id,
                settings=options.settings,
                harness=harness,
                tls=main.tls,
                browsers=env.browsers,
                backends=origins if len(origins) > 1 else (),
            )

            def phase(*phases: Phase) -> Awaitable[tuple[CheckResult, ...]]:
                return run_checks(
                    ctx,
                    [c for c in options.checks if c.phase in phases],
                    baseline=env.baseline,
                    adapter=adapter,
                    target=target,
                    alive=proc,
                    progress=env.progress,
                    skip_missing=target.optional or options.skip_missing,
                )

            # Quick checks first, in a concurrency slot.
            quick = await phase(Phase.QUICK)
            env.semaphore.release()
            slot_held = False
            env.quick.passed(target)

            async def browse() -> tuple[CheckResult, ...]:
                try:
                    if not any(c.phase == Phase.BROWSER for c in options.checks):
                        return ()
                    await env.quick.over.wait()
                    return await phase(Phase.BROWSER)
                finally:
                    env.browsed.passed(target)

            async def load() -> tuple[CheckResult, ...]:
                if not any(c.phase == Phase.LOAD for c in options.checks):
                    return ()
                await env.browsed.over.wait()  # after every quick and browser check
                async with env.load_turn:
                    return await phase(Phase.LOAD)

            # Long holds of every target overlap; browser checks, then load checks
            # (taking turns) run meanwhile.
            held, browsed, loaded = await asyncio.gather(
                phase(Phase.LONG, Phase.LIFECYCLE), browse(), load()
            )
            order = {c.id: i for i, c in enumerate(options.checks)}
            results = tuple(
                sorted((*quick, *held, *browsed, *loaded), key=lambda r: order[r.check])
            )
            log_tail = proc.log_tail()
        return TargetResult(
            **base,
            proxy_version=version,
            status=TargetStatus.OK,
            reason=None,
            results=results,
            log_tail=log_tail,
            tls=tls,
        )
    except HarnessError as exc:
        if isinstance(exc, ConfigRejected) and options.raise_rejected:
            raise
        reason = exc.problem
        more = exc.detail.strip()
        if isinstance(exc, ConfigRejected) and "\n" not in more:
            more = ""  # its first line is already in the problem
        detail = f"\n{more}" if more else ""
        return TargetResult(
            **base,
            proxy_version=version,
            status=TargetStatus.ERROR,
            reason=reason + detail,
            results=_all(options.checks, target, Verdict.ERROR, reason),
            log_tail=exc.detail,
        )
    except UsageError as exc:  # a template that changed since it was checked
        return TargetResult(
            **base,
            proxy_version=version,
            status=TargetStatus.ERROR,
            reason=str(exc),
            results=_all(options.checks, target, Verdict.ERROR, str(exc)),
        )
    finally:
        if slot_held:
            env.semaphore.release()


async def run_targets(
    targets: Sequence[TargetSpec],
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run every target and return the whole result. Never raises for a proxy's faults."""
    options = options or RunOptions.from_matrix()
    # A target whose own `checks:` keep none of the run's checks is not started.
    chosen = [t for t in targets if any(t.selects(c.id) for c in options.checks)]
    if targets and not chosen:
        raise UsageError(
            "no target runs any of the selected checks (each target's own `checks:` in the "
            "matrix leaves none of them)",
            fix="select other checks with --checks, or widen the targets' `checks:`",
        )
    targets = chosen
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    browsers = Browsers(start_timeout_s=options.thresholds.browser_start_timeout_s)
    async with (
        Origin(LOOPBACK) as origin,
        LagMonitor() as lag,
        new_session() as session,
        browsers,
    ):
        direct = ProbeContext(
            origin.host, origin.port, origin, session, options.thresholds, lag, label="direct"
        )
        # What dead runs left (a SIGKILL runs no clean-up), before this run adds its own
        # and before the baseline is timed.
        await runtimes.sweep(containers=any(_requested(t, options) != "local" for t in targets))
        # Before any proxy starts: nothing else competes for the machine. Skipped
        # when no timing check runs.
        baseline = (
            await measure_baseline(direct)
            if any(c.timing for c in options.checks)
            else Baseline(problem="no timing check was selected")
        )
        env = _RunEnv(
            origin,
            session,
            lag,
            baseline,
            options,
            progress or _Silent(),
            asyncio.Semaphore(options.concurrency),
            quick=_Countdown(len(targets)),
            browsed=_Countdown(len(targets)),
            browsers=browsers,
        )
        results = await asyncio.gather(*(_run_target(t, env) for t in targets))
    return RunResult(VERSION, started_at, time.monotonic() - started, tuple(results))
