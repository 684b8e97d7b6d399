"""A background event loop that owns everything the plugin starts.

Tests run in pytest's main thread, sync or async (each async test in its own
loop). The origin, the proxies behind ``proxytest_target`` and the matrix run
live on one loop in a thread of their own, so they outlive any test's loop and
a test only ever talks to them over sockets. The processes started there die
with that thread (the parent-death signal of runtimes/local.py): it lives until
:meth:`Service.close` has stopped them, and should pytest be killed outright,
they go with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from .. import runtimes
from ..matrix import TargetSpec
from ..options import RunOptions
from ..origin import Origin
from ..probes.context import new_session
from ..runner import prepare_target, target_origins
from ..tls import authority

T = TypeVar("T")

# How long a cancelled call may take to clean up (stop proxies) before we give up.
_CANCEL_GRACE_S = 30.0


class Service:
    """One loop in a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="proxytest-service", daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        self._origin: Origin | None = None
        self._session: aiohttp.ClientSession | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # What asyncio.run does at its end: cancel what is left (an origin
            # handler still writing to a closed stream), then close.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float | None = None,
        *,
        tick: Callable[[], None] | None = None,
    ) -> T:
        """Run ``coro`` on the service loop; Ctrl-C cancels it and waits for its cleanup.

        ``tick`` runs in the calling thread every half second while it waits
        (the plugin prints progress from there, where pytest's capture is managed).
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            if tick is not None:
                while not future.done():
                    concurrent.futures.wait([future], timeout=0.5)
                    tick()
            return future.result(timeout)
        except BaseException:
            future.cancel()
            concurrent.futures.wait([future], timeout=_CANCEL_GRACE_S)
            raise

    # -- shared resources, created on first use ----------------------------------
    async def _ensure(self) -> tuple[Origin, aiohttp.ClientSession]:
        if self._origin is None or self._session is None:
            await runtimes.sweep()  # what dead runs left, before this session adds its own
            self._origin = await self._stack.enter_async_context(Origin())
            self._session = await self._stack.enter_async_context(new_session())
        return self._origin, self._session

    def origin(self) -> Origin:
        return self.call(self._ensure())[0]

    def start_target(self, target: TargetSpec, options: RunOptions) -> RunningTarget | str:
        """Launch ``target`` behind the shared origin; a string says why it cannot run."""
        return self.call(self._start_target(target, options))

    async def _start_target(self, target: TargetSpec, options: RunOptions) -> RunningTarget | str:
        origin, session = await self._ensure()
        prepared = await prepare_target(target, options, session)
        if isinstance(prepared, str):
            return prepared
        stop = asyncio.Event()
        ready: asyncio.Future[RunningTarget] = self.loop.create_future()

        async def hold() -> None:
            harness = prepared.harness
            try:
                # The shared origin, or the target's own backends (reachable from where
                # the proxy runs), as a run gives them.
                async with (
                    target_origins(origin, harness, prepared.runtime) as origins,
                    harness.fronting(origins, validate=True) as inst,
                ):
                    ready.set_result(
                        RunningTarget(
                            id=target.id,
                            proxy=target.proxy,
                            setup=target.setup,
                            runtime=prepared.runtime.name,
                            proxy_version=prepared.version,
                            host=inst.host,
                            port=inst.port,
                            _stop=stop,
                            tls=inst.tls,
                        )
                    )
                    await stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                raise

        task = self.loop.create_task(hold(), name=f"proxytest-target-{target.id}")
        running = await ready
        running._task = task
        return running

    def stop_target(self, running: RunningTarget) -> None:
        async def stop() -> None:
            running._stop.set()
            if running._task is not None:
                await running._task

        self.call(stop(), timeout=_CANCEL_GRACE_S)

    def close(self) -> None:
        """Stop everything this service started, then its loop."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.call(self._stack.aclose(), timeout=_CANCEL_GRACE_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=_CANCEL_GRACE_S)


@dataclass
class RunningTarget:
    """A proxy target launched for the user's own tests: where to reach it."""

    id: str
    proxy: str
    setup: str
    runtime: str
    proxy_version: str | None
    host: str
    port: int
    _stop: asyncio.Event
    _task: asyncio.Task[None] | None = None
    # The listener speaks TLS with the run's certificate: ``ssl_context`` trusts it.
    tls: bool = False

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` for a TLS listener) — where the proxy
        listens."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context that trusts the run's CA (None for a cleartext listener):
        pass it as aiohttp's ``ssl=`` or httpx's ``verify=``."""
        return authority().client_context() if self.tls else None

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def ws_url(self, path: str = "/ws/echo") -> str:
        return self.ws_base_url + path
