"""Fixtures for a team's own tests against the matrix's proxies.

::

    async def test_my_stream(proxytest_target, proxytest_sse):
        events = await proxytest_sse.collect(count=3, interval_ms=50)
        assert [e.data for e in events] == ...

``proxytest_target`` is parametrized over the matrix's targets (readable IDs,
``nginx-default``) and launched once per session and worker; the marker
``@pytest.mark.proxytest_targets("nginx/*")`` narrows the targets for one test.
The clients are async (use pytest-asyncio or another async runner); they open
their own connections in the test's event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fnmatch
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from ..origin import Origin
from ..probes.sse import SseParser
from ..tls import authority
from .service import RunningTarget
from .session import RUN, SETTINGS, PluginSettings, service_for

TARGETS_MARKER = "proxytest_targets"


# -- plumbing shared with the hooks ---------------------------------------------------
def settings_of(config: pytest.Config) -> PluginSettings | None:
    return config.stash.get(SETTINGS, None)


def parametrize_targets(metafunc: pytest.Metafunc) -> None:
    """Give ``proxytest_target`` one parameter per selected target of the matrix."""
    if "proxytest_target" not in metafunc.fixturenames:
        return
    settings = settings_of(metafunc.config)
    if settings is None:
        return  # the fixture skips, saying how to name a matrix
    targets = list(settings.targets)
    marker = metafunc.definition.get_closest_marker(TARGETS_MARKER)
    if marker is not None:
        patterns = [str(p) for p in marker.args]
        targets = [t for t in targets if any(fnmatch.fnmatchcase(t.id, p) for p in patterns)]
    ids = [t.id.replace("/", "-") for t in targets]
    metafunc.parametrize("proxytest_target", targets, ids=ids, indirect=True, scope="session")


# -- fixtures -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OriginInfo:
    """The test origin every proxy target forwards to (its routes: see the README)."""

    host: str
    port: int
    id: str
    origin: Origin = field(repr=False, compare=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="session")
def proxytest_origin(request: pytest.FixtureRequest) -> OriginInfo:
    """The running test origin (shared by every target of the session)."""
    origin = service_for(request.config).origin()
    return OriginInfo(origin.host, origin.port, origin.id, origin)


@pytest.fixture(scope="session")
def proxytest_target(
    request: pytest.FixtureRequest, proxytest_origin: OriginInfo
) -> Iterator[RunningTarget]:
    """A running proxy target of the matrix, in front of ``proxytest_origin``."""
    settings = settings_of(request.config)
    if settings is None:
        pytest.skip(
            "no proxytest matrix: pass --proxytest-matrix PATH or set proxytest_matrix in the "
            "pytest ini file"
        )
    if not hasattr(request, "param"):
        pytest.skip("no target of the matrix matches this test's proxytest_targets marker")
    service = service_for(request.config)
    running = service.start_target(request.param, settings.options())
    if isinstance(running, str):  # could not run: the same rule as the matrix's tests
        if request.param.optional or settings.run_options.skip_missing:
            pytest.skip(f"{request.param.id}: {running}")
        pytest.fail(
            f"{request.param.id} could not run: {running}\ninstall what is missing, mark "
            "the target `optional: true` in the matrix, or pass --proxytest-skip-missing",
            pytrace=False,
        )
    request.config.stash[RUN].record_fixture_launch(running.id)
    try:
        yield running
    finally:
        service.stop_target(running)


@dataclass
class SseEvent:
    """One event as the client saw it."""

    data: str
    id: str | None
    event: str | None
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """An open SSE response: status, headers, then events as they arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self._parser = SseParser()
        self._pending: list[SseEvent] = []

    def __aiter__(self) -> AsyncIterator[SseEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SseEvent]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            while self._pending:
                yield self._pending.pop(0)
            chunk = await self.response.content.readany()
            if not chunk:
                return
            now = time.monotonic()
            for event in self._parser.feed(decoder.decode(chunk)):
                self._pending.append(SseEvent("\n".join(event.data), event.id, event.event, now))


def _session() -> aiohttp.ClientSession:
    """A client session that trusts the run's CA where a target speaks TLS."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=authority().client_context()))


class SseClient:
    """SSE through the target: ``async with client.stream(count=5) as stream``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def url(self, path: str = "/sse", **query: object) -> str:
        params = urlencode({k: v for k, v in query.items() if v is not None})
        return f"{self.base_url}{path}" + (f"?{params}" if params else "")

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str = "/sse", headers: dict[str, str] | None = None, **query: object
    ) -> AsyncIterator[SseStream]:
        """Open ``path`` (the origin's ``/sse`` takes count, interval_ms, size…)."""
        async with (
            _session() as session,
            session.get(
                self.url(path, **query), headers={"Accept": "text/event-stream", **(headers or {})}
            ) as response,
        ):
            yield SseStream(response)

    async def collect(
        self, *, count: int = 5, interval_ms: float = 100, timeout: float = 30, **query: Any
    ) -> list[SseEvent]:
        """Read ``count`` events of a stream the origin sends every ``interval_ms``."""
        events: list[SseEvent] = []
        query = {"count": count, "interval_ms": interval_ms, **query}
        async with asyncio.timeout(timeout), self.stream("/sse", **query) as stream:
            async for event in stream:
                events.append(event)
                if len(events) >= count:
                    break
        return events


class WsClient:
    """WebSockets through the target: ``async with client.connect() as ws``."""

    def __init__(self, ws_base_url: str) -> None:
        self.ws_base_url = ws_base_url

    @contextlib.asynccontextmanager
    async def connect(
        self, path: str = "/ws/echo", *, protocols: tuple[str, ...] = (), **query: object
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """An aiohttp WebSocket to ``path`` (the origin's /ws/echo, /ws/push, /ws/close…)."""
        params = urlencode({k: v for k, v in query.items() if v is not None})
        url = f"{self.ws_base_url}{path}" + (f"?{params}" if params else "")
        async with (
            _session() as session,
            session.ws_connect(url, protocols=protocols, autoping=False) as ws,
        ):
            yield ws


@pytest.fixture
def proxytest_sse(proxytest_target: RunningTarget) -> SseClient:
    """An SSE client aimed at ``proxytest_target``."""
    return SseClient(proxytest_target.base_url)


@pytest.fixture
def proxytest_ws(proxytest_target: RunningTarget) -> WsClient:
    """A WebSocket client aimed at ``proxytest_target``."""
    return WsClient(proxytest_target.ws_base_url)
