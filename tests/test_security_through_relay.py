"""The security checks (checks/security.py) fail against their faults and pass
through a clean path: tests/relay.py clean and with ``tunnel_any`` (a tunnel after
any status) and ``forward_hop_by_hop``, then real proxies as measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxytest.checks import select
from proxytest.lag import LagMonitor
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.origin.security import RAW_PATH, SMUGGLED_HEADER
from proxytest.pathprobe import DeployedPath, probe_path
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.results import CheckResult, Failure, RunResult, TargetStatus, Verdict
from proxytest.runner import run_checks, run_targets
from proxytest.timing import Thresholds

from .relay import Fault, Relay

ROOT = Path(__file__).resolve().parents[1]
IDS = ["ws.smuggling", "ws.handshake-strict", "ws.upgrade-unrequested", "http.hop-by-hop"]
FAULTS = ("clean", "tunnel_any", "forward_hop_by_hop")


async def _through_all() -> dict[str, dict[str, CheckResult]]:
    out: dict[str, dict[str, CheckResult]] = {}
    async with Origin() as origin, LagMonitor() as lag, new_session() as session:
        for kind in FAULTS:
            async with Relay(origin.host, origin.port, Fault(kind)) as relay:
                ctx = ProbeContext(relay.host, relay.port, origin, session, Thresholds(), lag)
                results = await run_checks(ctx, select(IDS), baseline={})
                assert relay.errors == []
            out[kind] = {r.check: r for r in results}
        direct = ProbeContext(origin.host, origin.port, origin, session, Thresholds(), lag)
        out["direct"] = {r.check: r for r in await run_checks(direct, select(IDS), baseline={})}
    return out


@pytest.fixture(scope="module")
def relayed() -> dict[str, dict[str, CheckResult]]:
    return asyncio.run(_through_all())


def test_every_security_check_passes_through_the_clean_relay(relayed: dict) -> None:
    clean = relayed["clean"]
    assert {c: r.verdict for c, r in clean.items()} == {c: Verdict.PASS for c in IDS}, {
        c: r.summary for c, r in clean.items()
    }
    strict = clean["ws.handshake-strict"].metrics
    assert strict["no_key_status"] == 400 and strict["no_key_answered_by"] == "proxy"
    assert strict["no_connection_upgrade_status"] == 200
    assert strict["no_connection_upgrade_answered_by"] == "origin"
    assert strict["no_connection_upgrade_upgrade_at_origin"] is False
    assert clean["ws.upgrade-unrequested"].metrics["status"] == 502


def test_a_relay_that_tunnels_after_any_status_fails_the_upgrade_checks(relayed: dict) -> None:
    unsafe = relayed["tunnel_any"]
    smuggling = unsafe["ws.smuggling"]
    assert smuggling.verdict == Verdict.FAIL and smuggling.failure == Failure.SMUGGLED
    for variant in ("status_426", "status_200", "status_403", "version_mismatch", "with_body"):
        assert smuggling.metrics[f"{variant}_second_request"] == "tunnel", variant
    assert smuggling.hint and "smuggling" in smuggling.hint
    strict = unsafe["ws.handshake-strict"]
    assert strict.verdict == Verdict.FAIL and strict.failure == Failure.LAX_HANDSHAKE
    unrequested = unsafe["ws.upgrade-unrequested"]
    assert unrequested.verdict == Verdict.FAIL
    assert unrequested.metrics["raw_bytes_to_client"] is True
    assert unsafe["http.hop-by-hop"].verdict == Verdict.PASS


def test_a_relay_that_forwards_hop_by_hop_headers_fails_only_that(relayed: dict) -> None:
    leaky = relayed["forward_hop_by_hop"]
    hop = leaky["http.hop-by-hop"]
    assert hop.verdict == Verdict.FAIL and hop.failure == Failure.HOP_BY_HOP
    assert set(hop.metrics["forwarded_hop_by_hop"]) == {
        "X-Proxytest-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection",
    }  # fmt: skip
    assert hop.metrics["origin_headers"]["Proxy-Authorization"].startswith("Basic ")
    assert {c: r.verdict for c, r in leaky.items() if c != "http.hop-by-hop"} == {
        c: Verdict.PASS for c in IDS if c != "http.hop-by-hop"
    }


def test_against_the_origin_itself_there_is_no_proxy_to_judge(relayed: dict) -> None:
    assert {c: r.verdict for c, r in relayed["direct"].items()} == {c: Verdict.SKIP for c in IDS}


@pytest.mark.asyncio
async def test_the_origin_files_bytes_after_a_refused_upgrade_as_raw_and_answers_them() -> None:
    # A client writing straight to the origin is what a tunnel delivers.
    async with Origin() as origin:
        reader, writer = await asyncio.open_connection(origin.host, origin.port)
        writer.write(
            b"GET /sec/answer?status=403&probe=p1&hold_ms=2000 HTTP/1.1\r\nHost: o\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 403") and b"Connection: close" in head
        await asyncio.wait_for(reader.readexactly(int(head.split(b"Length: ")[1][:2])), 2)
        writer.write(b"GET /sec/marker?probe=p1 HTTP/1.1\r\nHost: o\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(4096), 2)
        writer.close()
        assert SMUGGLED_HEADER.encode() in answer
        records = await origin.wait_for("p1", lambda rs: len(rs) >= 2, 2)
        raw = [r for r in records if r.path == RAW_PATH]
        assert raw and raw[0].query["marker"] == "1" and raw[0].query["after"] == "403"
        assert raw[0].query["first_line"] == "GET /sec/marker?probe=p1 HTTP/1.1"
        assert not [r for r in records if r.path == "/sec/marker"]


# Real proxies, as measured (matrix.yaml says why): one run of three targets.
MEASURED = {
    "caddy/default": {
        "ws.smuggling": Verdict.PASS,
        "ws.handshake-strict": Verdict.FAIL,
        "ws.upgrade-unrequested": Verdict.PASS,
        "http.hop-by-hop": Verdict.PASS,
    },
    "haproxy/realtime": {
        "ws.smuggling": Verdict.PASS,
        "ws.handshake-strict": Verdict.FAIL,
        "ws.upgrade-unrequested": Verdict.PASS,
        "http.hop-by-hop": Verdict.FAIL,
    },
    "nginx/realtime": {
        "ws.smuggling": Verdict.PASS,
        "ws.handshake-strict": Verdict.FAIL,
        "ws.upgrade-unrequested": Verdict.DEGRADED,
        "http.hop-by-hop": Verdict.FAIL,
    },
}


@pytest.fixture(scope="module")
def real() -> RunResult:
    targets = [
        TargetSpec("caddy", "default", (ROOT / "proxies/caddy/default.Caddyfile",)),
        TargetSpec("haproxy", "realtime", (ROOT / "proxies/haproxy/realtime.cfg",)),
        TargetSpec("nginx", "realtime", (ROOT / "proxies/nginx/realtime.conf",)),
    ]
    return asyncio.run(run_targets(targets, RunOptions.from_matrix(checks=IDS)))


@pytest.mark.integration
@pytest.mark.parametrize("target_id", sorted(MEASURED))
def test_real_proxies_give_the_measured_verdicts(real: RunResult, target_id: str) -> None:
    done = next(t for t in real.targets if t.id == target_id)
    if done.status == TargetStatus.SKIPPED:
        pytest.skip(done.reason or "not installed")
    got = {r.check: r for r in done.results}
    assert {c: r.verdict for c, r in got.items()} == MEASURED[target_id], {
        c: r.summary for c, r in got.items()
    }
    smuggling = got["ws.smuggling"].metrics
    # Every refused upgrade kept HTTP framing: the second request was parsed.
    assert smuggling["status_426_second_request"] == "parsed"
    strict = got["ws.handshake-strict"].metrics
    assert strict["http10_status"] == 101 and strict["http10_answered_by"] == "origin"
    if target_id == "haproxy/realtime":
        assert strict["no_key_status"] == 400 and strict["no_key_answered_by"] == "proxy"
        assert got["ws.upgrade-unrequested"].metrics["status"] == 502
    if target_id in ("nginx/realtime", "haproxy/realtime"):
        # The setups remove the well-known names; what the client names in
        # Connection still goes through, a kind without a config fix.
        hop = got["http.hop-by-hop"]
        assert hop.metrics["forwarded_hop_by_hop"] == ["X-Proxytest-Hop"]
        assert hop.failure == "connection_named"
    if target_id == "nginx/realtime":  # the map adds Connection: upgrade
        assert strict["no_connection_upgrade_status"] == 101
    if target_id == "caddy/default":
        assert got["http.hop-by-hop"].metrics["x_forwarded_for"] == "127.0.0.1"
        assert got["http.hop-by-hop"].metrics["via"] == "1.1 Caddy"


@pytest.mark.asyncio
async def test_in_probe_mode_behind_a_token_and_a_prefix_the_verdicts_are_the_same() -> None:
    # A deployed origin (token, prefix) read through the records API: the raw
    # requests carry the token header and the prefix, /sec/raw records come back.
    async def probe(port: int) -> dict[str, CheckResult]:
        path = DeployedPath.parse(f"http://127.0.0.1:{port}/rt", token="sec-token")
        result = await probe_path(path, RunOptions.from_matrix(None, checks=IDS))
        return {r.check: r for r in result.targets[0].results}

    async with Origin(token="sec-token", prefix="/rt") as origin:
        async with Relay(origin.host, origin.port, Fault("clean")) as relay:
            clean = await probe(relay.port)
        async with Relay(origin.host, origin.port, Fault("tunnel_any")) as relay:
            unsafe = await probe(relay.port)
    assert {c: r.verdict for c, r in clean.items()} == {c: Verdict.PASS for c in IDS}, {
        c: r.summary for c, r in clean.items()
    }
    assert unsafe["ws.smuggling"].verdict == Verdict.FAIL
    assert unsafe["ws.smuggling"].metrics["status_403_second_request"] == "tunnel"
    assert unsafe["ws.handshake-strict"].verdict == Verdict.FAIL
    assert unsafe["ws.upgrade-unrequested"].verdict == Verdict.FAIL
