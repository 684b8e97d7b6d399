"""Probe mode: the client-side checks through a deployed path (``proxytest probe URL``).

A deployed path (a cloud load balancer, a CDN, an ingress controller) cannot be
launched from a config file, so proxytest only drives its client side:
``proxytest origin`` runs behind the path, and the checks go through ``URL``.

1. **Confirm the origin** (probes/remote.py ``confirm``): the ready route, with
   the token, through the URL. Anything but a proxytest origin (a login page, a
   CDN's error page, a 404, a refused token) makes every check ``error`` with
   what answered: the tool could not do its job, so it judges nothing.
2. **Clock offset**: from the same round trips (``RemoteOrigin.clock``); event
   send times are converted into the client's clock.
3. **The checks**, by phase as ``runner`` schedules them: quick ones, then the
   long holds beside the browser checks, then ``h2.streams``. ``lifecycle.*``,
   ``load.*`` and ``lb.failover`` need control of the proxy (a reload, an origin
   or a backend that dies, a private instance) and are skipped with the reason.

Timing: there is no direct origin-to-client baseline (the origin is behind the
path), so the baseline is documented as absent (``Baseline.problem``): a stream
that arrives promptly passes, and a delay beyond the thresholds is ``error``
with that reason, never ``degraded`` against a number proxytest did not
measure. Delays include the path's one-way time and the clock's uncertainty.

A probe sends traffic only to the URL's host and port; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._version import VERSION
from .checks import Check, Phase
from .errors import UsageError
from .lag import LagMonitor
from .matrix import TargetSpec
from .measure import Baseline
from .options import RunOptions
from .origin.server import TOKEN_HEADER
from .probes import ProbeContext
from .probes.cdp import Browsers
from .probes.context import new_session, url_authority
from .probes.remote import RemoteOrigin, confirm
from .results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict
from .runner import Progress, run_checks
from .tls import Trust

__all__ = ["NEEDS_CONTROL", "DeployedPath", "PathRun", "probe_path"]

# Check families that need control of the proxy: skipped in probe mode, as is every
# check of the lifecycle phase (a private instance: lb.failover kills a backend).
NEEDS_CONTROL = ("lifecycle", "load")
SKIP_REASON = "needs control of the proxy: use proxytest check"
RUNTIME = "remote"  # the target's runtime in reports
# A deployed path has a public certificate: the system's CAs (not the run's).
SYSTEM_TRUST = Trust(system=True)


def _needs_control(check: Check[Any]) -> bool:
    return check.family in NEEDS_CONTROL or check.phase == Phase.LIFECYCLE


@dataclass(frozen=True)
class DeployedPath:
    """Where the path is reached, and how to talk to the origin behind it."""

    scheme: str  # http | https
    host: str
    port: int
    prefix: str  # the URL's path, without a trailing slash ("" or "/rt")
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # --header K:V, in order
    trust: Trust = SYSTEM_TRUST

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        token: str | None = None,
        headers: Sequence[str] = (),
        trust: Trust = SYSTEM_TRUST,
    ) -> DeployedPath:
        """``url`` and ``--header K:V`` values, or a UsageError that says what to write."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"probe URL {url!r}: expected http:// or https:// and a host",
                fix="e.g. proxytest probe https://realtime.example.com/rt",
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise UsageError(
                f"probe URL {url!r}: a query, fragment or user name has no place in it",
                fix="give the scheme, host, port and path prefix only",
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UsageError(f"probe URL {url!r}: the port is not a number") from None
        pairs = []
        for item in headers:
            name, sep, value = item.partition(":")
            name = name.strip()
            if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in value:
                raise UsageError(
                    f"--header {item!r}: expected NAME:VALUE on one line",
                    fix="e.g. --header 'Authorization: Bearer …'",
                )
            pairs.append((name, value.strip()))
        return cls(
            parts.scheme,
            parts.hostname,
            port,
            parts.path.rstrip("/"),
            token or None,
            tuple(pairs),
            trust,
        )

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{url_authority(self.host, self.port)}"

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """Sent on every request: the user's headers, then the origin's token."""
        token = ((TOKEN_HEADER, self.token),) if self.token else ()
        return (*self.headers, *token)

    @property
    def target(self) -> TargetSpec:
        """The target as reports and the live display name it: ``probe/<host>``."""
        # TargetSpec wants a config file; a deployed path has none (the URL stands in).
        return TargetSpec(
            proxy="probe",
            setup=self.host,
            configs=(Path(f"{self.base_url}{self.prefix}"),),
            id=f"probe/{self.host}",
        )


class PathRun:
    """What a probe measured so far: the final result, or a snapshot to save as it goes."""

    def __init__(self, path: DeployedPath, checks: Sequence[Check[Any]]) -> None:
        self.path = path
        self.checks = tuple(checks)
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.started = time.monotonic()
        self.done: dict[str, CheckResult] = {}
        self.reason: str | None = None
        self.tls = path.scheme == "https"

    def result(self, *, unfinished: str | None = None) -> RunResult:
        """Every check's result; ``unfinished``: why the others have none (interrupted)."""
        results = tuple(
            self.done.get(c.id) or CheckResult(c.id, Verdict.ERROR, unfinished or "not run")
            for c in self.checks
        )
        status = TargetStatus.ERROR if self.reason or unfinished else TargetStatus.OK
        target = TargetResult(
            id=self.path.target.id,
            proxy="probe",
            setup=self.path.host,
            runtime=RUNTIME,
            proxy_version=None,
            status=status,
            reason=self.reason or (unfinished and "the probe was interrupted"),
            results=results,
            duration_s=time.monotonic() - self.started,
            tls=self.tls,
        )
        return RunResult(
            VERSION,
            self.started_at,
            time.monotonic() - self.started,
            (target,),
            interrupted=unfinished is not None,
        )


class _Watched:
    """Progress that also keeps every finished check in the PathRun."""

    def __init__(self, run: PathRun, inner: Progress | None) -> None:
        self.run = run
        self.inner = inner

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        if self.inner is not None:
            self.inner.target_phase(target, phase)

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        self.run.done[result.check] = result
        if self.inner is not None:
            self.inner.check_done(target, result)

    def target_done(self, result: TargetResult) -> None:
        if self.inner is not None:
            self.inner.target_done(result)


def _timed(check: Check[Any], started: Callable[[str], None]) -> Check[Any]:
    """``check`` whose probe reports when it starts (the live display's held time)."""
    inner = check.probe

    def probe(ctx: ProbeContext, label: str) -> Awaitable[Any]:
        started(check.id)
        return inner(ctx, label)

    return replace(check, probe=probe)


async def probe_path(
    path: DeployedPath,
    options: RunOptions,
    run: PathRun | None = None,
    progress: Progress | None = None,
    *,
    started: Callable[[str], None] | None = None,
) -> RunResult:
    """Confirm the origin behind ``path``, then run ``options.checks`` through it."""
    run = run or PathRun(path, options.checks)
    watched = _Watched(run, progress)
    target = path.target
    th = options.thresholds
    skipped = [c for c in options.checks if _needs_control(c)]
    runnable = [_timed(c, started) if started else c for c in options.checks if c not in skipped]
    browsers = Browsers(start_timeout_s=th.browser_start_timeout_s)
    async with (
        new_session(path.trust, path.request_headers) as session,
        LagMonitor() as lag,
        browsers,
    ):
        watched.target_phase(target, "confirming the origin")
        found = await confirm(
            session,
            path.base_url,
            prefix=path.prefix,
            token_given=path.token is not None,
            timeout_s=th.handshake_timeout_s,
        )
        if isinstance(found, str):
            run.reason = f"the URL does not lead to a proxytest origin: {found}"
            for check in options.checks:
                watched.check_done(target, CheckResult(check.id, Verdict.ERROR, run.reason))
            result = run.result()
            watched.target_done(result.targets[0])
            return result
        clock = found.clock
        watched.target_phase(
            target,
            f"origin {found.id}: clock offset {clock.offset_s * 1000:+.1f} ms "
            f"±{clock.uncertainty_s * 1000:.1f} ms",
        )
        for check in skipped:
            watched.check_done(target, CheckResult(check.id, Verdict.SKIP, SKIP_REASON))
        ctx = ProbeContext(
            path.host,
            path.port,
            found,
            session,
            th,
            lag,
            label=target.id,
            settings=options.settings,
            tls=path.scheme == "https",
            browsers=browsers,
            prefix=path.prefix,
            headers=path.request_headers,
            trust=path.trust,
        )
        baseline = Baseline(problem=no_baseline(found))

        def phase(*phases: Phase) -> Awaitable[tuple[CheckResult, ...]]:
            return run_checks(
                ctx,
                [c for c in runnable if c.phase in phases],
                baseline=baseline,
                target=target,
                progress=watched,
            )

        watched.target_phase(target, "checking")
        await phase(Phase.QUICK)

        async def after_browser() -> tuple[CheckResult, ...]:
            await phase(Phase.BROWSER)
            return await phase(Phase.LOAD)  # h2.streams: after the browser's CPU

        watched.target_phase(target, f"holding (up to {options.settings.max_hold_s:g} s)")
        await asyncio.gather(phase(Phase.LONG), after_browser())
    result = run.result()
    watched.target_done(result.targets[0])
    return result


def no_baseline(origin: RemoteOrigin) -> str:
    """Why timing has no direct baseline here, with what the clock estimate is worth."""
    clock = origin.clock
    return (
        "probe mode, no direct baseline: delays include the path's one-way time; "
        f"round trip {clock.rtt_s * 1000:.1f} ms, origin clock ±{clock.uncertainty_s * 1000:.1f} ms"
    )
