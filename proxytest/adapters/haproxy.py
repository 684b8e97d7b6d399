"""HAProxy: from the OS package manager (there is no wheel), run with ``-db``."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path, PurePosixPath

from ._edits import RUN_DIR, Edits, has_placeholder, mask
from .base import Adapter, Neutralised, Reload, RenderedConfig, SignalReload


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
    listen_example = "the frontend's `bind {{ listen_host }}:{{ listen_port }}`"
    upstream_example = "the backend's `server app {{ upstream_host }}:{{ upstream_port }}`"
    hints = {
        # security (issue 15, sec part: checks/security.py), measured on 2.6.12
        "hop_by_hop": "HAProxy forwards Keep-Alive, Proxy-Connection, Proxy-Authorization and "
        "the headers a client names in Connection: `http-request del-header "
        "Proxy-Authorization` (and Keep-Alive, Proxy-Connection) in the frontend or backend",
        "lax_handshake": "HAProxy answers 400 to a WebSocket upgrade without Sec-WebSocket-Key "
        "but forwards one with another version than 13 or over HTTP/1.0: `http-request deny if "
        "{ req.hdr(upgrade) -i websocket } !{ req.hdr(sec-websocket-version) 13 }` and "
        "`http-request deny if { req.ver 1.0 } { req.hdr(upgrade) -m found }`",
        "retried_dead_backend": "HAProxy retries a refused connect on the same server (`retries "
        "3`, about 1 s apart) and keeps choosing a dead server without health checks: add "
        "`option redispatch` (measured: reconnects then reached the live server at once) and "
        "`check inter 1s` on each server",
        "no_failover": "HAProxy retries a refused connect on the same server (`retries 3`, "
        "about 1 s apart) and then answers 503, and a `cookie ... insert` keeps sending a client "
        "to the server it names: measured (2.6), reconnects waited about 3 s for that 503 and "
        "found no live server within 5 s. Add `option redispatch` to the backend (measured: "
        "round robin then reached the live server at once, a sticky cookie after about 2 s), "
        "and `check inter 1s` on each server so a dead one is marked down",
        "hung_on_dead_backend": "HAProxy: `on-marked-down shutdown-sessions` on servers with "
        "`check` closes the sessions of a server marked down; look at `timeout server` and "
        "`timeout tunnel`",
        "lost_events": "HAProxy: look for `http-request del-header Last-Event-ID` or a "
        "`set-path`/`set-query` rule that drops `after=`",
        "not_sticky": "HAProxy balances round robin: in the backend, `cookie SERVERID insert "
        "indirect nocache` and `cookie s1`, `cookie s2` … on each `server` line (HAProxy sets "
        "the cookie, on a WebSocket's 101 too), or `balance source` to hash the client address",
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
        "fanout_slow": "HAProxy: `option http-no-delay` (else small writes wait to be "
        "coalesced), `nbthread` for the CPU that many connections need, and `maxconn` sized "
        "for two connections per subscriber",
        "held": "HAProxy holds the response: look for `option http-buffer-request`, a "
        "`compression` section or a filter on this backend",
        "truncated": "HAProxy cut the stream: `timeout server` / `timeout client` end quiet "
        "SSE streams; for WebSocket set `timeout tunnel 1h` (and `timeout client-fin`)",
        "compressed_held": "leave text/event-stream out of `compression type`",
        "compressed_delayed": "leave text/event-stream out of `compression type`, or add "
        "`option http-no-delay`",
        "upgrade": "HAProxy passes WebSocket upgrades in `mode http`: check for "
        "`http-request del-header Connection/Upgrade` rules or an `http-request return`",
        "h2_websocket": "HAProxy advertises RFC 8441 on h2 binds since 2.4 and upgrades to the "
        "server over HTTP/1.1: look for rules on CONNECT or Upgrade, or set "
        "`h2-workaround-bogus-websocket-clients` in `global` to stop advertising it (browsers "
        "then use HTTP/1.1 WebSockets)",
        "stream_limit": "HAProxy advertises `tune.h2.max-concurrent-streams` (100 by "
        "default): raise it in `global`",
        # ws.deflate (issue 15, frames part)
        "ws.deflate:extension": "HAProxy passes Sec-WebSocket-Extensions both ways by default: "
        "look for `http-response del-header Sec-WebSocket-Extensions` (measured: it applies to "
        "the 101 and breaks every compressed message). To turn compression off, strip the offer "
        "instead: `http-request del-header Sec-WebSocket-Extensions` (measured: stripped cleanly)",
    }

    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """chroot, users, pid file, stats sockets, syslog targets, absent error files,
        the certificates of TLS binds."""
        edits = Edits(text, source)
        masked = mask(text)
        section = ""
        for number, words in _lines(edits, masked):
            keyword = words[0][2]
            if keyword in _SECTIONS:
                section = keyword
                continue
            rule = _RULES.get(keyword)
            if rule is not None and (section == "global" or keyword not in _GLOBAL_ONLY):
                rule(edits, number, words)
        return edits.result()

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


# -- configs as deployed ---------------------------------------------------------------
# Measured with HAProxy 2.6 run as proxytest runs it (-W -db): `daemon` and `master-worker`
# are harmless (-db keeps it in the foreground; -W is master-worker already), so they
# stay. A `chroot` folder, a `pidfile` or `stats socket` folder that does not exist, and a
# `user`/`group` unknown here stop it; a pid file or socket in /run is shared by every
# instance, a fixed stats port collides between them. HAProxy runs in the run dir, so a
# socket there is named relative to it (a unix socket path has ~100 bytes). `log`
# targets are harmless where /dev/log is absent, but a test run must not log to the
# host's or a remote syslog. An `errorfile` that does not exist is a fatal error.
#
# TLS, measured the same way (`haproxy -c`): a bind's `crt`, `crt-list`, `ca-file` or
# `crl-file` that does not exist is fatal; the same `crt` twice on one bind is accepted,
# so each becomes the run's PEM. A global `ssl-dh-param-file` or `issuers-chain-path`
# that does not exist is fatal; `crt-base` and `ca-base` pointing at missing folders are
# not (and an absolute `crt` ignores them), so they stay. `verify required` on a bind
# refuses proxytest's clients (they present no certificate: the handshake fails);
# `verify optional` lets them through. `server … ssl` towards the origin is left alone:
# the origin is cleartext here, addressed by placeholders.

_SECTIONS = frozenset(
    {
        *("global", "defaults", "frontend", "backend", "listen", "userlist", "peers"),
        *("resolvers", "mailers", "program", "http-errors", "ring", "cache", "log-forward"),
        *("fcgi-app", "crt-store", "traces"),
    }
)
_GLOBAL_ONLY = frozenset(
    {
        *("chroot", "user", "group", "uid", "gid", "pidfile", "stats"),
        *("ssl-dh-param-file", "issuers-chain-path"),
    }
)
_KEPT_LOGS = ("global", "stdout", "stderr", "fd@1", "fd@2")

_Word = tuple[int, int, str]  # start offset, end offset, value


def _lines(edits: Edits, masked: str) -> Iterator[tuple[int, list[_Word]]]:
    """Each line with words (before its comment): HAProxy's syntax is one statement a line."""
    for number in range(1, masked.count("\n") + 2):
        start, end = edits.line_span(number)
        words = _words(masked, start, end)
        if words:
            yield number, words


def _words(text: str, start: int, end: int) -> list[_Word]:
    words: list[_Word] = []
    i = start
    while i < end:
        ch = text[i]
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            break
        begin, value = i, []
        quote = ""
        while i < end and (quote or text[i] not in " \t\r#"):
            ch = text[i]
            if ch == "\\" and i + 1 < end:
                value.append(text[i + 1])
                i += 2
                continue
            if ch in "\"'" and not quote:
                quote = ch
            elif ch == quote:
                quote = ""
            else:
                value.append(ch)
            i += 1
        words.append((begin, i, "".join(value)))
    return words


def _shown(edits: Edits, words: list[_Word]) -> str:
    text = " ".join(edits.text[words[0][0] : words[-1][1]].split())
    return text if len(text) <= 70 else text[:65] + " …"


def _remove(edits: Edits, number: int, words: list[_Word], why: str) -> None:
    edits.comment_lines(number, number, f"{_shown(edits, words)} removed ({why})")


def _in_run_dir(edits: Edits, word: _Word) -> bool:
    return has_placeholder(edits.text[word[0] : word[1]], "run_dir")


def _host_only(edits: Edits, number: int, words: list[_Word]) -> None:
    what = "folders" if words[0][2] == "chroot" else "users"
    _remove(edits, number, words, f"the deployed host's {what} need not exist here")


def _pidfile(edits: Edits, number: int, words: list[_Word]) -> None:
    if len(words) < 2 or _in_run_dir(edits, words[1]):
        return
    edits.replace(
        words[1][0],
        words[1][1],
        f"{RUN_DIR}/haproxy.pid",
        f"{_shown(edits, words)} moved into the run dir (each instance needs its own pid file)",
    )


def _stats(edits: Edits, number: int, words: list[_Word]) -> None:
    """A stats socket on a path of the host, or a fixed port, becomes a socket in the
    run dir. Named relative to it (HAProxy runs there): a unix socket's path is limited
    to about 100 bytes, and a run dir below a long TMPDIR can be longer."""
    if len(words) < 3 or words[1][2] != "socket" or _in_run_dir(edits, words[2]):
        return
    address = words[2][2].removeprefix("unix@")
    unix = not any(address.startswith(p) for p in ("ipv4@", "ipv6@", "fd@", "abns@"))
    unix = unix and ":" not in address
    if unix and not address.startswith("/"):
        return  # relative: in the run dir already
    name = "unix@" + (PurePosixPath(address).name if unix else "stats.sock")
    why = (
        "moved into the run dir (each instance needs its own socket)"
        if unix
        else "moved to a unix socket in the run dir (a fixed port collides between instances)"
    )
    edits.replace(words[2][0], words[2][1], name, f"{_shown(edits, words[:3])} {why}")


def _log(edits: Edits, number: int, words: list[_Word]) -> None:
    if len(words) < 2 or words[1][2] in _KEPT_LOGS or _in_run_dir(edits, words[1]):
        return
    _remove(edits, number, words, "a test run must not log to the host's or a remote syslog")


def _errorfile(edits: Edits, number: int, words: list[_Word]) -> None:
    if len(words) < 3 or not words[2][2].startswith("/") or Path(words[2][2]).is_file():
        return
    _remove(
        edits,
        number,
        words,
        f"{words[2][2]} is not on this machine; HAProxy answers with its own page",
    )


def _bind(edits: Edits, number: int, words: list[_Word]) -> None:
    """A TLS bind's files: the run's PEM and CA, no revocation list, no required client
    certificate (see the measurements above)."""
    for keyword, value in pairwise(words[2:]):
        option, shown = keyword[2], f"{keyword[2]} {value[2]}"
        if _in_placeholder(edits, value):
            continue
        if option in ("crt", "crt-list"):
            run = "the run's certificate and key ({{ tls_pem }})"
            edits.replace(keyword[0], value[1], "crt {{ tls_pem }}", f"{shown} → {run}")
        elif option == "ca-file":
            ca = "the run's CA ({{ tls_ca }})"
            edits.replace(value[0], value[1], "{{ tls_ca }}", f"{shown} → {ca}")
        elif option == "crl-file":
            why = "revocations of the deployed CA; the run's CA revokes nothing"
            edits.blank(keyword[0], value[1], f"{shown} removed ({why})")
        elif option == "verify" and value[2] == "required":
            why = "proxytest's clients present no certificate; the handshake would fail"
            edits.replace(value[0], value[1], "optional", f"{shown} → optional ({why})")


def _in_placeholder(edits: Edits, word: _Word) -> bool:
    return has_placeholder(edits.text[word[0] : word[1]])


def _host_path(edits: Edits, number: int, words: list[_Word]) -> None:
    """A global TLS file or folder: removed when it is not on this machine."""
    if len(words) < 2 or _in_placeholder(edits, words[1]):
        return
    path = Path(words[1][2])
    if not path.is_absolute() or path.exists():
        return
    _remove(edits, number, words, f"{path} is not on this machine")


_RULES = {
    "chroot": _host_only,
    "user": _host_only,
    "group": _host_only,
    "uid": _host_only,
    "gid": _host_only,
    "pidfile": _pidfile,
    "stats": _stats,
    "log": _log,
    "errorfile": _errorfile,
    "bind": _bind,
    "ssl-dh-param-file": _host_path,
    "issuers-chain-path": _host_path,
}
