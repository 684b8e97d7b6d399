"""The public API is what __all__ says, and every name in it exists."""

from __future__ import annotations

import proxytest


def test_all_names_exist() -> None:
    for name in proxytest.__all__:
        assert hasattr(proxytest, name), name


def test_public_names_are_exactly_all() -> None:
    public = {
        name for name in vars(proxytest)
        if not name.startswith("_") and not isinstance(getattr(proxytest, name), type(proxytest))
    }  # fmt: skip
    assert public == set(proxytest.__all__) - {"__version__"}


def test_check_ids_are_the_design_catalogue() -> None:
    assert list(proxytest.CHECKS) == [
        "ws.upgrade", "ws.echo", "ws.push", "ws.ping", "ws.close", "ws.subprotocol",
        "ws.idle", "ws.keepalive",
        "sse.headers", "sse.stream", "sse.last-event-id", "sse.reconnect", "sse.compression",
        "sse.idle", "sse.heartbeat", "sse.lifetime",
        "lifecycle.reload", "lifecycle.origin-restart", "load.concurrency",
    ]  # fmt: skip
    for check in proxytest.CHECKS.values():
        assert check.description and len(check.description) < 100
