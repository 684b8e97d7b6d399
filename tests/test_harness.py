"""Listening ports for proxies: free, never handed out twice, outside the ephemeral range."""

from __future__ import annotations

import random
import socket

import pytest

from proxytest.runtimes import base
from proxytest.runtimes.base import BROWSER_BLOCKED_PORTS, _ephemeral_ports, free_port


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low > 11000:  # room below the range: client sockets can never take these
        assert all(p < low for p in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_browsers_refuse_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI33: a container's proxy on 10080 failed every browser check with
    # net::ERR_UNSAFE_PORT. The draw lands on it first here; free_port draws again.
    low, _ = _ephemeral_ports()
    if low - base._LISTEN_FLOOR < 1000:
        pytest.skip("no pool below the ephemeral range on this machine")
    # Then the real draw: a fixed third port may be in use, or handed out already in
    # this long test process (CI39: StopIteration).
    blocked = iter([10080, 10080])
    choice = random.choice
    monkeypatch.setattr(base.random, "choice", lambda pool: next(blocked, None) or choice(pool))
    port = free_port()
    assert next(blocked, None) is None  # both blocked draws were made
    assert port not in BROWSER_BLOCKED_PORTS
    assert 10080 in BROWSER_BLOCKED_PORTS and 10080 in range(base._LISTEN_FLOOR, low)
