"""lb.sticky through tests/relay.py in front of two real origins sharing one record
store, as the runner starts them: it fails through round robin and through a
hash on the application's cookie (which loses the long-polling session), and
passes through a relay that keeps a client on one backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.origin import Origin
from proxytest.origin.server import RecordStore
from proxytest.origin.sessions import COOKIE
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Failure, Verdict
from proxytest.runner import run_checks
from proxytest.timing import Thresholds

from .relay import Fault, Relay

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def two_backends() -> AsyncIterator[tuple[Origin, Origin]]:
    store = RecordStore()
    async with (
        Origin(origin_id="b1", store=store) as one,
        Origin(origin_id="b2", store=store) as two,
    ):
        yield one, two


async def sticky_through(balance: str) -> tuple[CheckResult, list[int]]:
    async with (
        two_backends() as (one, two),
        Relay(
            one.host, one.port, Fault("clean"), more=[(two.host, two.port)], balance=balance
        ) as relay,
        LagMonitor() as lag,
        new_session() as session,
    ):
        ctx = ProbeContext(
            relay.host, relay.port, one, session, Thresholds(), lag, backends=(one, two)
        )
        (result,) = await run_checks(ctx, select(["lb.sticky"]))
        assert relay.errors == []
        return result, relay.picked


async def test_round_robin_fails_with_every_part_moved() -> None:
    result, picked = await sticky_through("round_robin")
    assert set(picked) == {0, 1}
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.metrics["sticky_polling"] is False
    assert result.metrics["sticky_ws"] is False
    assert result.metrics["sticky_sse"] is False
    assert result.metrics["backends"] == 2
    assert result.metrics["backends_seen"] == 2
    assert result.metrics["moved_polls"] >= 3  # every other poll at least
    assert "unknown session" in result.summary
    assert "WebSocket reconnects on 2 backends" in result.summary
    assert result.hint and "sticky" in result.hint


async def test_a_hash_on_the_app_cookie_loses_the_polling_session_only() -> None:
    result, picked = await sticky_through("app_cookie")
    assert picked[0] == 0 and set(picked[1:]) == {1}  # the handshake had no cookie yet
    assert result.verdict == Verdict.FAIL, result.summary
    assert result.metrics["sticky_polling"] is False
    assert result.metrics["moved_polls"] == 8
    assert result.metrics["sticky_ws"] is True
    assert result.metrics["sticky_sse"] is True
    assert "polls 8/8 on another backend (8 × 400 unknown session)" in result.summary


async def test_a_relay_that_keeps_the_client_on_one_backend_passes() -> None:
    result, picked = await sticky_through("source")
    assert set(picked) == {0}
    assert result.verdict == Verdict.PASS, result.summary
    assert result.metrics == {
        "backends": 2,
        "sticky_polling": True,
        "sticky_ws": True,
        "sticky_sse": True,
        "moved_polls": 0,
        "backends_seen": 1,
    }


async def test_one_backend_is_a_skip_with_the_reason() -> None:
    async with Origin() as origin, LagMonitor() as lag, new_session() as session:
        ctx = ProbeContext(origin.host, origin.port, origin, session, Thresholds(), lag)
        (result,) = await run_checks(ctx, select(["lb.sticky"]))
    assert result.verdict == Verdict.SKIP
    assert result.summary == "one backend: nothing to balance"


async def test_sessions_live_in_one_backend_and_the_records_in_the_shared_store() -> None:
    async with two_backends() as (one, two), aiohttp.ClientSession() as session:
        async with session.get(f"{one.url}/lb/handshake?probe=p") as response:
            body = await response.json()
            assert response.cookies[COOKIE].value == body["sid"]
            assert body["origin"] == "b1" and response.headers["X-Proxytest-Origin"] == "b1"
        sid = body["sid"]
        async with session.get(f"{one.url}/lb/poll?probe=p&sid={sid}") as response:
            assert response.status == 200
        async with session.get(f"{two.url}/lb/poll?probe=p&sid={sid}") as response:
            assert response.status == 400
            assert await response.json() == {"error": "unknown session"}
            assert response.headers["X-Proxytest-Origin"] == "b2"
    # one store: every backend's records, each saying who received it
    assert [r.origin_id for r in one.records("p")] == ["b1", "b1", "b2"]
    assert two.records("p") == one.records("p")
    assert [r.path for r in one.records("p")] == ["/lb/handshake", "/lb/poll", "/lb/poll"]
    assert Failure.NOT_STICKY.value == "not_sticky"
