"""Several backends: the runner's origins for a target, their shared records, the
harness's count, the sessions' memory bounds. (lb.sticky itself:
tests/test_lb_through_relay.py; the proxies: tests/integration/test_proxies.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import LaunchError, TemplateError
from proxytest.harness import Harness
from proxytest.origin import Origin, OriginRecord
from proxytest.origin import sessions as sessions_module
from proxytest.origin.sessions import Sessions
from proxytest.runner import target_origins
from proxytest.runtimes import LocalRuntime
from proxytest.timing import Thresholds

ROOT = Path(__file__).resolve().parents[1]


def harness(session: aiohttp.ClientSession, *configs: Path) -> Harness:
    adapter = ADAPTERS[configs[0].parent.name]
    return Harness(adapter, Path("/bin/false"), configs, Thresholds(), session)


@pytest.mark.asyncio
async def test_a_two_backend_target_gets_two_origins_of_its_own_sharing_records() -> None:
    config = ROOT / "proxies/haproxy/lb-sticky.cfg"
    async with Origin() as run_origin, aiohttp.ClientSession() as session:
        pair = harness(session, config)
        assert pair.backends == 2
        async with target_origins(run_origin, pair, LocalRuntime()) as origins:
            one, two = origins
            assert (one.id, two.id) == (f"{run_origin.id}-b1", f"{run_origin.id}-b2")
            assert one.port != two.port and run_origin not in origins
            for origin in origins:
                async with session.get(f"{origin.url}/__proxytest/ready?probe=p") as r:
                    assert await r.text() == origin.id
            assert [r.origin_id for r in one.records("p")] == [one.id, two.id]
            assert two.records("p") == one.records("p")
            assert run_origin.records("p") == []  # not the run's store
        assert one.hosts == () and two.hosts == ()  # ended with the target
        alone = harness(session, ROOT / "proxies/haproxy/realtime.cfg")
        assert alone.backends == 1
        async with target_origins(run_origin, alone, LocalRuntime()) as origins:
            assert origins == (run_origin,)


@pytest.mark.asyncio
async def test_an_instance_given_another_number_of_origins_is_refused_before_it_starts(
    tmp_path: Path,
) -> None:
    async with aiohttp.ClientSession() as session:
        pair = harness(session, ROOT / "proxies/nginx/lb-round-robin.conf")
        with pytest.raises(LaunchError, match=r"fronts 2 backends .* but 1 origins were given"):
            async with pair.instance("127.0.0.1", 1, "x"):
                pass
        bad = tmp_path / "nginx" / "gap.conf"
        bad.parent.mkdir()
        bad.write_text("{{ listen_port }} {{ upstream_port }} {{ upstream_port_3 }}\n")
        with pytest.raises(TemplateError, match=re.escape("no {{ upstream_port_2 }}")):
            _ = harness(session, bad).backends


def test_records_say_which_backend_got_them_and_older_json_still_reads() -> None:
    record = OriginRecord("p", "/sse", {}, (), 1.0, "1.1", origin_id="o-b2")
    data = json.loads(json.dumps(record.to_json()))
    assert data["origin_id"] == "o-b2"
    assert OriginRecord.from_json(data) == record
    del data["origin_id"]  # a record from an origin before several backends
    assert OriginRecord.from_json(data).origin_id is None


def test_sessions_are_bounded_in_number_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(sessions_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    held = Sessions("o")
    first, *rest = [held.create() for _ in range(4)]
    assert len(held) == 3 and not held.holds(first)  # the oldest made room
    assert all(held.holds(sid) for sid in rest)
    now[0] += sessions_module.SESSION_TTL_S - 1
    assert held.holds(rest[0])  # a use starts its expiry again
    now[0] += 2
    assert held.holds(rest[0])
    assert not held.holds(rest[1]) and not held.holds(rest[2])  # unused: expired
    assert len(held) == 1
