"""Every tls setup, launched for real: it listens on loopback only, speaks TLS with
the run's certificate, offers h2 by ALPN, and its certificate files live in the run
dir and go with it.

Listening sockets are found per process (the proxy's process group, through
/proc/<pid>/fd and /proc/net/{tcp,tcp6,udp,udp6}), so nothing else on the
machine can make the test pass or fail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.matrix import TargetSpec, discover_setup
from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.probes.context import new_session
from proxytest.runner import prepare_target
from proxytest.tls import authority

from ..conftest import ROOT, running_in_ci

pytestmark = pytest.mark.integration

TCP_LISTEN = "0A"


def _socket_inodes(pids: frozenset[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        folder = Path(f"/proc/{pid}/fd")
        try:
            links = [fd.readlink() for fd in folder.iterdir()]
        except OSError:  # the process ended meanwhile
            continue
        for link in links:
            text = str(link)
            if text.startswith("socket:["):
                inodes.add(text[8:-1])
    return inodes


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # /proc/net/tcp6 holds four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return address.ipv4_mapped or address


def bound_addresses(pids: frozenset[int]) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every TCP listener and UDP socket of ``pids``."""
    inodes = _socket_inodes(pids)
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (protocol.startswith("tcp") and state != TCP_LISTEN):
                continue
            host, port = local.split(":")
            found.append((protocol, str(_address(host)), int(port, 16)))
    return found


def _handshake(port: int) -> tuple[str | None, dict[str, object]]:
    context = authority().client_context(("h2", "http/1.1"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol(), tls.getpeercert() or {}


@pytest.mark.asyncio
@pytest.mark.parametrize("proxy", sorted(ADAPTERS))
async def test_a_tls_setup_listens_on_loopback_only_with_the_runs_certificate(
    proxy: str,
) -> None:
    configs = discover_setup(ROOT / "proxies", proxy, "tls")
    target = TargetSpec(proxy, "tls", configs)
    options = RunOptions.from_matrix(runtime="local")
    async with Origin() as origin, new_session() as session:
        prepared = await prepare_target(target, options, session)
        if isinstance(prepared, str):
            if running_in_ci():
                pytest.fail(f"{proxy}: {prepared}")
            pytest.skip(prepared)
        async with prepared.harness.instance(origin.host, origin.port, origin.id) as inst:
            assert inst.tls and inst.base_url.startswith("https://127.0.0.1:")
            run_dir = inst.config.run_dir
            pem = run_dir / "tls" / "cert+key.pem"
            assert pem.stat().st_mode & 0o777 == 0o600
            pids = inst.process.processes()
            assert pids, "no process of the proxy's group found"
            bound = bound_addresses(pids)
            alpn, cert = await asyncio.to_thread(_handshake, inst.port)
        assert not run_dir.exists()  # the certificates went with the run dir
    assert ("tcp", "127.0.0.1", inst.port) in bound, bound
    elsewhere = [b for b in bound if not ipaddress.ip_address(b[1]).is_loopback]
    assert elsewhere == [], f"{proxy} listens beyond loopback: {elsewhere}"
    assert alpn == "h2"
    # the certificate the run made: verified against the run's CA, for the loopback names
    names = {
        value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    }  # type: ignore[union-attr]
    assert {"localhost", "127.0.0.1"} <= names


def test_the_run_ca_is_all_that_clients_trust() -> None:
    context = authority().client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    ca_names = [
        dict(x[0] for x in c["subject"]).get("organizationName") for c in context.get_ca_certs()
    ]
    assert ca_names == ["proxytest"]
