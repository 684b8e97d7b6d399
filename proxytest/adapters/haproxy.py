"""HAProxy: from the OS package manager (there is no wheel), run with ``-db``."""

from __future__ import annotations

import signal
from pathlib import Path

from .base import Adapter, Reload, RenderedConfig, SignalReload


class HAProxy(Adapter):
    name = "haproxy"
    executables = ("haproxy",)
    # The official image, pinned, and where the binary lives in it.
    default_image = "haproxy:3.0.12-alpine"
    container_binary = "/usr/local/sbin/haproxy"
    install_hint = "apt-get install haproxy (no PyPI wheel exists)"
    version_args = ("-v",)
    max_config_files = None  # several -f files make one config
    version_pattern = r"HA-?Proxy version (\d+\.\d+(?:\.\d+)?)"
    hints = {
        "limit": "HAProxy queues or refuses connections beyond `maxconn` (global and per "
        "frontend; derived from the fd limit by default): size it for your streams",
        "ws.idle:idle": "HAProxy closes an idle WebSocket at `timeout tunnel`, or, when that is "
        "unset, at `timeout client`/`timeout server`: set `timeout tunnel 1h` (and "
        "`timeout client-fin 30s`)",
        "ws.keepalive:idle": "HAProxy closes an idle WebSocket at `timeout tunnel`, or at "
        "`timeout client`/`timeout server`: set `timeout tunnel 1h` or ping more often",
        "idle": "SSE is not a tunnel for HAProxy: `timeout server` and `timeout client` cut a "
        "stream that stays quiet longer than they are: heartbeat more often, or raise both",
        "lifetime": "HAProxy has no limit on total duration by default: look for "
        "`timeout tunnel`, `hard-stop-after` or another hop in front of it",
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
        # -W: master-worker mode, so SIGUSR2 to the master reloads as operators do
        # (systemctl reload); -db: stay in the foreground.
        return [str(binary), "-W", "-db", *files]

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        # The master starts new workers with the config; old workers keep their
        # connections until they end (or hard-stop-after).
        return SignalReload(signal.SIGUSR2, "SIGUSR2 to the master (master-worker reload)")

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        files = [arg for f in config.files for arg in ("-f", str(f))]
        return [str(binary), "-c", *files]
