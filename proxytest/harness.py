"""A target's controls: an adapter (what the proxy is) on a runtime (where it runs).

The harness carries out what the adapter describes, through the runtime: the
version command, the config checker, a reload. The runner starts each target's
main instance through :meth:`Harness.instance`; lifecycle checks start their own
private instance the same way, so a reload or a dying origin never disturbs the
checks running against the main one.

Clients always connect to the proxy on loopback. Where the rendered config
listens, and where the proxy reaches the origin, are the runtime's to say (a
container on a bridge network listens on 0.0.0.0 inside it and reaches this
machine through the bridge's gateway); ``runtime.reach(origin)`` makes the
origin listen there too.

A config with numbered placeholders (``{{ upstream_port_2 }}`` …) fronts
:attr:`Harness.backends` origins: :meth:`Harness.instance` takes backends 2 … N
as ``more``, and a request reaching any of them proves the instance ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from ._aio import finish
from .adapters import Adapter, RenderedConfig
from .adapters.base import CommandReload, EditedReload, SignalReload
from .errors import LaunchError
from .routes import READY_PATH
from .runtimes import (
    LOOPBACK,
    LaunchSpec,
    LocalRuntime,
    Running,
    Runtime,
    free_port,
    make_run_dir,
    remove_run_dir,
)
from .templates import Placeholders, backend_count, load_config, render_config
from .timing import Thresholds

if TYPE_CHECKING:
    from .origin import Origin

__all__ = ["Harness", "Instance", "Reloaded", "ask_ready"]


async def ask_ready(
    session: aiohttp.ClientSession,
    base_url: str,
    timeout_s: float = Thresholds.ready_poll_timeout_s,
    path: str = READY_PATH,
) -> tuple[int | None, str]:
    """One GET of the origin's ready route (or ``path``) through a proxy: (status, body),
    or (None, error)."""
    try:
        async with asyncio.timeout(timeout_s), session.get(f"{base_url}{path}") as response:
            return response.status, await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return None, type(exc).__name__


@dataclass
class Instance:
    """One running proxy instance: where it listens, its process, its rendered config."""

    host: str
    port: int
    process: Running
    config: RenderedConfig
    ready_s: float
    # The ids of the origins behind it, backend 1 first: a request reaching any proves
    # it passes traffic (readiness, a reload's confirmation).
    origin_ids: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.config.tls

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@dataclass
class Harness:
    adapter: Adapter
    binary: Path  # argv[0] where the proxy runs: the host binary, or its path in the image
    sources: Sequence[Path]
    thresholds: Thresholds
    session: aiohttp.ClientSession
    runtime: Runtime = field(default_factory=LocalRuntime)
    keep_run_dirs: bool = False
    label: str = "proxy"
    # The target's own environment variables (matrix ``env:``, ``--env``), over the adapter's.
    env: Mapping[str, str] = field(default_factory=dict)
    # The run dirs kept (keep_run_dirs), in the order they were made.
    kept: list[Path] = field(default_factory=list)
    _backends: int | None = field(default=None, repr=False)

    @property
    def backends(self) -> int:
        """How many origins the config fronts: its highest ``{{ upstream_port_N }}``
        (1 without numbered placeholders). Raises TemplateError for a bad number."""
        if self._backends is None:
            self._backends = backend_count(load_config(self.sources, self.adapter))
        return self._backends

    async def version(self) -> str | None:
        """The proxy's version, from its own version command where it runs."""
        return await self.runtime.version(self.adapter, self.binary)

    async def validate(self, config: RenderedConfig) -> None:
        """Run the proxy's own checker on ``config``; raise ConfigRejected with its message."""
        argv = self.adapter.check_argv(self.binary, config)
        if argv is None:
            return
        limit = self.thresholds.config_check_timeout_s
        try:
            code, output = await self.runtime.run(
                argv, timeout=limit, cwd=config.run_dir, env=self.process_env(config)
            )
        except TimeoutError:
            raise LaunchError(
                f"{self.adapter.name}'s config checker ({' '.join(argv[1:])}) did not finish "
                f"within {limit:g} s"
            ) from None
        if code != 0:
            raise self.adapter.rejected(config, output)

    def process_env(self, config: RenderedConfig) -> dict[str, str]:
        """The proxy process's added environment: the adapter's, then the target's."""
        return {**self.adapter.env(config), **self.env}

    def placeholders(
        self,
        upstream_host: str,
        upstream_port: int,
        run_dir: Path,
        listen_port: int,
        more: Sequence[tuple[str, int]] = (),
    ) -> Placeholders:
        """The values rendered into the config: the runtime decides the hosts (the
        listener's, and every backend's)."""
        return Placeholders(
            self.runtime.listen_host,
            listen_port,
            self.runtime.upstream_host or upstream_host,
            upstream_port,
            run_dir,
            tuple((self.runtime.upstream_host or host, port) for host, port in more),
        )

    def fronting(
        self, origins: Sequence[Origin], *, validate: bool = False
    ) -> contextlib.AbstractAsyncContextManager[Instance]:
        """:meth:`instance` in front of ``origins``, backend 1 first."""
        first, *rest = origins
        return self.instance(
            first.host,
            first.port,
            first.id,
            validate=validate,
            more=[(o.host, o.port, o.id) for o in rest],
        )

    @contextlib.asynccontextmanager
    async def instance(
        self,
        upstream_host: str,
        upstream_port: int,
        origin_id: str,
        *,
        validate: bool = False,
        more: Sequence[tuple[str, int, str]] = (),
    ) -> AsyncIterator[Instance]:
        """Render the config for a new port and ``upstream``, start it, wait until ready.

        ``upstream_host`` is where the origin listens on this machine (loopback); the
        origin must also listen at ``runtime.origin_hosts`` of it. ``more``: backends
        2 … N of a config that fronts several, ``(host, port, origin_id)`` each.
        """
        if len(more) + 1 != self.backends:
            raise LaunchError(
                f"the config fronts {self.backends} backends (its highest "
                f"{{{{ upstream_port_N }}}}), but {len(more) + 1} origins were given for it"
            )
        origin_ids = (origin_id, *(oid for _, _, oid in more))
        # Private (0700) and marked as this run's: a later run sweeps it, and what
        # runs in it, should this one be killed outright (runtimes/local.py).
        run_dir = make_run_dir(self.adapter.name, keep=self.keep_run_dirs)
        if self.keep_run_dirs:
            self.kept.append(run_dir)
        try:
            placeholders = self.placeholders(
                upstream_host,
                upstream_port,
                run_dir,
                free_port(),
                [(host, port) for host, port, _ in more],
            )
            # Neutralised as check_targets did before the run (which showed the notices).
            template = load_config(self.sources, self.adapter)
            config = replace(render_config(template, placeholders), as_root=self.runtime.as_root)
            if validate:
                await self.validate(config)
            spec = LaunchSpec(
                argv=self.adapter.argv(self.binary, config),
                run_dir=run_dir,
                host=LOOPBACK,
                port=placeholders.listen_port,
                env=self.process_env(config),
                stop_signal=self.adapter.stop_signal,
                stop_grace_s=self.thresholds.stop_grace_s,
                label=self.label,
            )
            async with self.runtime.launch(spec) as process:
                ready = await self._wait_ready(process, config, origin_ids)
                # process.port: where clients connect (a published port may differ).
                yield Instance(LOOPBACK, process.port, process, config, ready, origin_ids)
        finally:
            await finish(asyncio.to_thread(remove_run_dir, run_dir))

    async def _wait_ready(
        self, proc: Running, config: RenderedConfig, origin_ids: tuple[str, ...]
    ) -> float:
        """Poll through the proxy until a request reaches *our* origin (any of them, with
        several backends: whichever the proxy picked); seconds taken."""
        adapter, th = self.adapter, self.thresholds
        started = time.monotonic()
        deadline = started + th.ready_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if adapter.startup_error is not None:
                refused = adapter.refused_at_start(config, config.to_source(proc.log_tail(200)))
                if refused is not None:
                    raise refused
            if not proc.alive:
                raise LaunchError(
                    f"{adapter.name} exited with code {proc.exit_code} before it was ready",
                    detail=config.to_source(proc.log_tail()),
                )
            scheme = "https" if config.tls else "http"
            status, body = await ask_ready(
                self.session, f"{scheme}://{proc.host}:{proc.port}", th.ready_poll_timeout_s
            )
            if status == 200 and body in origin_ids:
                return time.monotonic() - started
            last = f"status {status}" if status is not None else body
            await asyncio.sleep(0.05)
        raise LaunchError(
            f"{adapter.name} did not pass a request to the origin within "
            f"{th.ready_timeout_s:g} s (last attempt: {last})",
            detail=config.to_source(proc.log_tail()),
        )

    async def reload(self, instance: Instance, origin_id: str) -> Reloaded:
        """Reload ``instance`` the way its operators do; say how, and how it was seen.

        A reload that proxytest cannot see take effect is ``observed=None``: a
        proxy that ignored the signal must not pass as one that kept every stream.
        Raises Unsupported when the adapter knows no reload, LaunchError when it failed.
        """
        plan = self.adapter.reload(self.binary, instance.config)
        before = instance.process.processes()
        observed: str | None = None
        if isinstance(plan, SignalReload):
            instance.process.send_signal(plan.signal, group=False)
            observed = await self._new_processes(instance.process, before)
        elif isinstance(plan, CommandReload):
            run = self.runtime.beside(instance.process)
            code, output = await run(plan.argv, timeout=plan.timeout_s, cwd=plan.cwd, env=plan.env)
            if code != 0:
                raise LaunchError(f"{self.adapter.name} reload failed: {output.strip()[-500:]}")
            observed = "the reload command succeeded (the proxy accepted the new config)"
        else:
            assert isinstance(plan, EditedReload)
            if plan.confirm_path:
                observed = await self._answers(instance, plan.confirm_path, origin_id)
        return Reloaded(plan.how, observed)

    async def _new_processes(self, process: Running, before: frozenset[int] | None) -> str | None:
        """Wait for a process that was not there before the reload (new workers)."""
        if before is None:
            return None
        deadline = time.monotonic() + self.thresholds.reload_confirm_timeout_s
        while time.monotonic() < deadline:
            now = process.processes()
            if now is not None and now - before:
                return f"{len(now - before)} new processes of the proxy appeared"
            await asyncio.sleep(0.05)
        return None

    async def _answers(self, instance: Instance, path: str, origin_id: str) -> str | None:
        """Wait until ``path``, routed only by the changed config, reaches the origin."""
        th = self.thresholds
        deadline = time.monotonic() + th.reload_confirm_timeout_s
        while time.monotonic() < deadline:
            status, body = await ask_ready(
                self.session, instance.base_url, th.ready_poll_timeout_s, path
            )
            if status == 200 and (body == origin_id or body in instance.origin_ids):
                return f"{path}, routed only by the changed config, answers"
            await asyncio.sleep(0.1)
        return None


@dataclass(frozen=True)
class Reloaded:
    """A reload done: how, and how proxytest saw it take effect (None: it did not)."""

    how: str
    observed: str | None
