"""Listening ports for proxies: free, never handed out twice, outside the ephemeral range."""

from __future__ import annotations

import socket

from proxytest.runtimes.base import _ephemeral_ports, free_port


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low > 11000:  # room below the range: client sockets can never take these
        assert all(p < low for p in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
