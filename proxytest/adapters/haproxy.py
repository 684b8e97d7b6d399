"""HAProxy: from the OS package manager (there is no wheel), run with ``-db``."""

from __future__ import annotations

from pathlib import Path

from .base import Adapter, RenderedConfig


class HAProxy(Adapter):
    name = "haproxy"
    executables = ("haproxy",)
    install_hint = "apt-get install haproxy (no PyPI wheel exists)"
    version_args = ("-v",)
    version_pattern = r"HA-?Proxy version (\d+\.\d+(?:\.\d+)?)"
    hints = {
        "delayed": "HAProxy coalesces small writes without `option http-no-delay` (measured: "
        "first event after ~200 ms, gaps up to ~300 ms): add it to the frontend or defaults",
        "held": "HAProxy holds the response: look for `option http-buffer-request`, a "
        "`compression` section or a filter on this backend",
        "truncated": "HAProxy cut the stream: `timeout server` / `timeout client` end quiet "
        "SSE streams; for WebSocket set `timeout tunnel 1h` (and `timeout client-fin`)",
        "compressed_held": "leave text/event-stream out of `compression type`",
        "compressed_delayed": "leave text/event-stream out of `compression type`, or add "
        "`option http-no-delay`",
        "upgrade": "HAProxy passes WebSocket upgrades in `mode http`: check for "
        "`http-request del-header Connection/Upgrade` rules or an `http-request return`",
    }

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        files = [arg for f in config.files for arg in ("-f", str(f))]
        return [str(binary), "-db", *files]

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        files = [arg for f in config.files for arg in ("-f", str(f))]
        return [str(binary), "-c", *files]
