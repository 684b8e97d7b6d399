"""Run targets: launch each proxy, probe it with every selected check, stop it.

Targets run concurrently (bounded by a semaphore), and the checks of one target
run concurrently: each uses its own connections and the traffic is small.
Timing checks are judged against a direct origin-to-client baseline measured
in the same run, and re-measured when the tool's own event loop was late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from . import __version__
from .adapters import ADAPTERS, Adapter
from .checks import CHECKS, Check, EvalContext, analyse
from .errors import BinaryNotFound, ConfigRejected, HarnessError, UsageError
from .harness import LOOPBACK, Harness
from .lag import LagMonitor
from .launchers.base import Running
from .matrix import TargetSpec
from .origin import Origin
from .probes import ProbeContext, StreamTimeline
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
from .runtimes import DockerRuntime, LocalRuntime, Runtime, docker_engine
from .settings import Settings
from .templates import PLACEHOLDERS, render_text
from .timing import Thresholds

__all__ = [
    "PreparedTarget",
    "Progress",
    "RunOptions",
    "check_binaries",
    "check_templates",
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


@dataclass(frozen=True)
class RunOptions:
    checks: tuple[Check, ...] = tuple(CHECKS.values())
    thresholds: Thresholds = field(default_factory=Thresholds)
    concurrency: int = 4
    keep_run_dirs: bool = False
    # `proxytest check`: a config the proxy rejects is a usage error (exit 2),
    # raised as ConfigRejected, instead of an `error` verdict.
    raise_rejected: bool = False
    settings: Settings = field(default_factory=Settings)
    # None: each target's own runtime (matrix); else local, docker or auto for all.
    runtime: str | None = None
    images: Mapping[str, str] = field(default_factory=dict)  # proxy -> image
    docker_network: str = "host"  # host | bridge: how containers meet this machine


def check_templates(targets: Sequence[TargetSpec]) -> None:
    """Render every template once with dummy values: unknown placeholders fail early."""
    dummy = {name: "x" for name in PLACEHOLDERS}
    for target in targets:
        for path in target.configs:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(
                    f"cannot read config file: {exc.strerror or exc}",
                    file=path,
                    fix="check the path",
                ) from None
            render_text(text, dummy, source=path)


def check_binaries(targets: Sequence[TargetSpec], runtime: str | None = None) -> None:
    """A ``binary:`` that does not exist is a usage error before anything starts."""
    for target in targets:
        if target.binary is not None and (runtime or target.runtime) == "local":
            ADAPTERS[target.proxy].find_binary(target.binary)


async def measure_baseline(ctx: ProbeContext) -> dict[str, float]:
    """Direct origin-to-client p95 delay (ms) for SSE events and pushed messages."""
    th = ctx.thresholds
    sse, ws = CHECKS["sse.stream"], CHECKS["ws.push"]
    values: dict[str, float] = {}
    for _ in range(1 + th.timing_retries):
        timelines = await asyncio.gather(sse.probe(ctx, "baseline"), ws.probe(ctx, "baseline"))
        for tl in timelines:
            assert isinstance(tl, StreamTimeline)
            stats = analyse(tl.deliveries, tl.expected, tl.interval_ms, th.coalesce_window_ms)
            values[tl.kind] = stats.p95_delay_ms or 0.0
        if all(tl.loop_lag_ms <= th.loop_lag_limit_ms for tl in timelines):
            break
    return values


def _requested(target: TargetSpec, options: RunOptions) -> str:
    return options.runtime or target.runtime


async def _choose_runtime(
    target: TargetSpec, adapter: Adapter, options: RunOptions
) -> Runtime | str:
    """The runtime for ``target``, or why it cannot run (a skip reason).

    ``auto`` picks docker when an engine answers, has the network asked for and
    the image, else local; ``docker`` pulls a missing image and skips when that
    fails, or when the engine lacks the network.
    """
    requested = _requested(target, options)
    if requested == "local":
        return LocalRuntime()
    image = options.images.get(target.proxy) or target.image or adapter.default_image
    engine = docker_engine()
    problem = await asyncio.to_thread(engine.unavailable)
    network = None if problem else await asyncio.to_thread(engine.network, options.docker_network)
    if requested == "auto":
        if problem or isinstance(network, str):
            return LocalRuntime()
        if not await asyncio.to_thread(engine.image_present, image):
            return LocalRuntime()
        return DockerRuntime(engine, image, network)
    if problem:
        return f"{problem}; start one or set DOCKER_HOST (or use --runtime local)"
    if isinstance(network, str):
        return network
    missing = await asyncio.to_thread(engine.ensure_image, image)
    if missing:
        return missing
    return DockerRuntime(engine, image, network)


async def _sweep_containers() -> None:
    """Remove containers left by proxytest runs on this host that died (best effort)."""
    engine = docker_engine()
    if await asyncio.to_thread(engine.unavailable) is None:
        await asyncio.to_thread(engine.sweep)


def check_budget(check: Check, ctx: ProbeContext, th: Thresholds) -> float:
    """How long one attempt of ``check`` may take before it is an error."""
    if check.kind == "long":
        return ctx.settings.max_hold_s + th.check_timeout_s
    if check.kind in ("lifecycle", "load"):
        return 4 * th.check_timeout_s
    return th.check_timeout_s


async def run_checks(
    ctx: ProbeContext,
    checks: Sequence[Check],
    *,
    baseline: asyncio.Future[dict[str, float]] | dict[str, float] | None = None,
    adapter: Adapter | None = None,
    target: TargetSpec | None = None,
    alive: Running | None = None,
    progress: Progress | None = None,
) -> tuple[CheckResult, ...]:
    """Probe and judge ``checks`` concurrently against the endpoint in ``ctx``."""
    th = ctx.thresholds
    progress = progress or _Silent()

    async def baseline_values() -> dict[str, float]:
        if baseline is None:
            return {}
        if isinstance(baseline, dict):
            return baseline
        return await baseline

    async def one(check: Check) -> CheckResult:
        started = time.monotonic()
        limit = check_budget(check, ctx, th)
        attempts = 0
        timeline = None
        outcome = Outcome(Verdict.ERROR, "not run")
        while attempts <= th.timing_retries:
            if attempts:  # measuring again: let a busy moment pass first
                await asyncio.sleep(th.retry_pause_s * attempts)
            attempts += 1
            try:
                async with asyncio.timeout(limit):
                    timeline = await check.probe(ctx, check.id)
            except TimeoutError:
                outcome = Outcome(Verdict.ERROR, f"the probe did not finish within {limit:g} s")
            except Exception as exc:  # a harness failure, never the proxy's verdict
                outcome = Outcome(Verdict.ERROR, f"the probe failed: {type(exc).__name__}: {exc}")
            else:
                ectx = EvalContext(th, await baseline_values() if check.timing else {})
                outcome = check.evaluate(timeline, ectx)
            if not outcome.retry:
                break
        if alive is not None and not alive.alive and outcome.verdict != Verdict.PASS:
            outcome = Outcome(
                Verdict.ERROR,
                f"the proxy exited (code {alive.exit_code}) during the check: {outcome.summary}",
                outcome.metrics,
            )
        hint = None
        if outcome.verdict in (Verdict.FAIL, Verdict.DEGRADED) and outcome.failure:
            hint = (adapter.hint(check.id, outcome.failure) if adapter else None) or (
                check.hints.get(outcome.failure)
            )
        result = CheckResult(
            check=check.id,
            verdict=outcome.verdict,
            summary=outcome.summary,
            expected=target.expected(check.id) if target else None,
            hint=hint,
            metrics=outcome.metrics,
            duration_s=time.monotonic() - started,
            attempts=attempts,
            timeline=timeline,
        )
        if target is not None:
            progress.check_done(target, result)
        return result

    return tuple(await asyncio.gather(*(one(c) for c in checks)))


def _all(
    checks: Sequence[Check],
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
class _RunEnv:
    origin: Origin
    session: aiohttp.ClientSession
    lag: LagMonitor
    baseline: asyncio.Future[dict[str, float]]
    options: RunOptions
    progress: Progress
    semaphore: asyncio.Semaphore  # targets in their start-up and quick phase at once
    # Load checks wait until every target's quick (timing) checks are over, so a
    # thousand connections never share the event loop with a timing probe; then
    # they take turns.
    quick_left: int = 0
    quick_over: asyncio.Event = field(default_factory=asyncio.Event)
    load_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # When each target got its slot: its duration excludes the wait for one.
    active_since: dict[str, float] = field(default_factory=dict)

    def quick_phase_over(self, target: TargetSpec, done: set[str]) -> None:
        """Count ``target``'s quick phase as over (once, however the target ends)."""
        if target.id in done:
            return
        done.add(target.id)
        self.quick_left -= 1
        if self.quick_left <= 0:
            self.quick_over.set()


CONFIG_TEXT_LIMIT = 200_000  # characters of one config file kept for the reports


def config_files(target: TargetSpec) -> tuple[ConfigFile, ...]:
    """The target's config templates as the user wrote them, for the reports.

    Paths are shown relative to the current folder when they are inside it.
    """
    files = []
    cwd = Path.cwd()
    for path in target.configs:
        shown = path
        if path.is_absolute() and path.is_relative_to(cwd):
            shown = path.relative_to(cwd)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"(could not read {path}: {exc.strerror or exc})"
        if len(text) > CONFIG_TEXT_LIMIT:
            text = text[:CONFIG_TEXT_LIMIT] + f"\n… (cut at {CONFIG_TEXT_LIMIT} characters)\n"
        files.append(ConfigFile(shown.as_posix(), text))
    return tuple(files)


async def _run_target(target: TargetSpec, env: _RunEnv, quick_done: set[str]) -> TargetResult:
    started = time.monotonic()
    try:
        result = await _run_target_inner(target, env, quick_done)
    finally:
        env.quick_phase_over(target, quick_done)
    began = env.active_since.get(target.id, started)
    result = TargetResult(
        **{
            **result.__dict__,
            "duration_s": time.monotonic() - began,
            "config_files": config_files(target),
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
    chosen = await _choose_runtime(target, adapter, options)
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
    binary = runtime.binary(adapter, host_binary)
    try:
        version = await adapter.version(binary, runtime.run)
    except Exception:  # a version is nice to have, never a reason to stop
        version = None
    harness = Harness(
        adapter,
        binary,
        target.configs,
        options.thresholds,
        session,
        runtime=runtime,
        keep_run_dirs=options.keep_run_dirs,
        label=target.id,
    )
    return PreparedTarget(target, adapter, runtime, version, harness)


async def _run_target_inner(target: TargetSpec, env: _RunEnv, quick_done: set[str]) -> TargetResult:
    options, th = env.options, env.options.thresholds
    prepared = await prepare_target(target, options, env.session, env.progress)
    base: dict[str, Any] = dict(id=target.id, proxy=target.proxy, setup=target.setup)
    if isinstance(prepared, str):
        return TargetResult(
            **base, runtime=_requested(target, options), proxy_version=None,
            status=TargetStatus.SKIPPED, reason=prepared,
            results=_all(options.checks, target, Verdict.SKIP, prepared),
        )  # fmt: skip
    adapter, harness, version = prepared.adapter, prepared.harness, prepared.version
    base["runtime"] = prepared.runtime.name
    log_tail = ""
    slot_held = False
    try:
        await env.semaphore.acquire()
        slot_held = True
        env.active_since[target.id] = time.monotonic()
        env.progress.target_phase(target, "starting")
        await harness.reach(env.origin)
        async with harness.instance(
            env.origin.host, env.origin.port, env.origin.id, validate=True
        ) as main:
            proc = main.process
            env.progress.target_phase(target, "checking")
            ctx = ProbeContext(
                LOOPBACK,
                main.port,
                env.origin,
                env.session,
                th,
                env.lag,
                label=target.id,
                settings=options.settings,
                harness=harness,
            )

            def phase(kinds: tuple[str, ...]) -> Awaitable[tuple[CheckResult, ...]]:
                return run_checks(
                    ctx,
                    [c for c in options.checks if c.kind in kinds],
                    baseline=env.baseline,
                    adapter=adapter,
                    target=target,
                    alive=proc,
                    progress=env.progress,
                )

            # Quick checks first, in a concurrency slot.
            quick = await phase(("quick",))
            env.semaphore.release()
            slot_held = False
            env.quick_phase_over(target, quick_done)

            async def load() -> tuple[CheckResult, ...]:
                if not any(c.kind == "load" for c in options.checks):
                    return ()
                await env.quick_over.wait()
                async with env.load_turn:
                    return await phase(("load",))

            # Long holds of every target overlap; load checks take turns meanwhile.
            held, loaded = await asyncio.gather(phase(("long", "lifecycle")), load())
            order = {c.id: i for i, c in enumerate(options.checks)}
            results = tuple(sorted((*quick, *held, *loaded), key=lambda r: order[r.check]))
            log_tail = proc.log_tail()
        return TargetResult(
            **base,
            proxy_version=version,
            status=TargetStatus.OK,
            reason=None,
            results=results,
            log_tail=log_tail,
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
    options = options or RunOptions()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    async with Origin(LOOPBACK) as origin, LagMonitor() as lag, new_session() as session:
        direct = ProbeContext(
            origin.host, origin.port, origin, session, options.thresholds, lag, label="direct"
        )
        baseline = asyncio.ensure_future(measure_baseline(direct))
        if options.runtime in ("docker", "auto") or any(t.runtime != "local" for t in targets):
            await _sweep_containers()
        env = _RunEnv(
            origin,
            session,
            lag,
            baseline,
            options,
            progress or _Silent(),
            asyncio.Semaphore(options.concurrency),
            quick_left=len(targets),
        )
        quick_done: set[str] = set()
        try:
            results = await asyncio.gather(*(_run_target(t, env, quick_done) for t in targets))
        finally:
            baseline.cancel()
    return RunResult(__version__, started_at, time.monotonic() - started, tuple(results))
