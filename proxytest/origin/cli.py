"""``proxytest origin`` (and ``python -m proxytest.origin``): the test origin on its own.

A person deploys it behind the path they want to test (a load balancer, a CDN,
an ingress controller) and runs ``proxytest probe URL`` in front of it::

    proxytest origin [--listen HOST:PORT ...] [--token T | --no-token]
                     [--tls-cert FILE --tls-key FILE] [--id ID] [--prefix /path]

* ``--listen`` (repeatable): ``127.0.0.1:8080`` by default, loopback only. It
  listens elsewhere (``0.0.0.0:8080``, a LAN address, ``[::]:8080``) only when
  that address is given, and then says so. ``:PORT`` is loopback; port 0 picks a
  free port, printed.
* The token: ``--token``, else the environment variable
  ``PROXYTEST_ORIGIN_TOKEN``, else a new one (``secrets.token_urlsafe(24)``),
  printed. Every route requires it (server.py says how it is given). A token
  read from the environment (a Kubernetes Secret, a compose file) is not printed:
  container logs are read by more people than the Secret. ``--no-token`` is
  refused unless every address is loopback, and warns.
* TLS: ``--tls-cert`` and ``--tls-key`` (PEM) serve https and wss, ALPN
  ``http/1.1`` (aiohttp speaks nothing else).

On start it prints one block on stdout: a line ``listening on URL`` per address,
the id, the token, and the ``proxytest probe`` command to run. SIGTERM and
Ctrl-C stop it with exit code 0; bad input is exit code 2 with the option and
the fix (``UsageError``).

One parser serves both entry points (:func:`add_arguments`). ``--host`` and
``--port`` (hidden) are the harness's own form, used by ``OriginProcess``
(process.py): no token, the same port on every host, and one JSON line
(``{"id", "port", "url"}``) on stdout instead of the block.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._version import VERSION
from ..errors import UsageError
from ..routes import READY_PATH, RECORDS_PATH
from .server import Origin, normalise_prefix, serve_forever, url_of

__all__ = ["DEFAULT_LISTEN", "TOKEN_ENV", "Listen", "add_arguments", "main", "parse_listen", "run"]

DEFAULT_PORT = 8080  # the image, the compose file and the manifests use it too
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
TOKEN_ENV = "PROXYTEST_ORIGIN_TOKEN"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: it travels in a query string
_ID_CHARS = re.compile(r"[A-Za-z0-9._:@+-]{1,128}")
EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``proxytest origin`` and ``python -m proxytest.origin``."""
    parser.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help=f"address to listen on, repeatable (default {DEFAULT_LISTEN}; :PORT is "
        "loopback, port 0 a free port; [::1]:PORT for IPv6). Anything but loopback "
        "only when given here",
    )
    parser.add_argument(
        "--token",
        metavar="T",
        help=f"the token every request must carry (query token=T or header "
        f"X-Proxytest-Token: T); default ${TOKEN_ENV}, else a new one, printed",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help="accept requests without a token (loopback addresses only)",
    )
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate (chain)")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key")
    parser.add_argument("--id", metavar="ID", help="the origin's id (default: a new one)")
    parser.add_argument(
        "--prefix",
        default="",
        metavar="/PATH",
        help="serve every route under this path (an ingress that routes /PATH "
        "without rewriting it)",
    )
    # The harness's own origin process (process.py): hidden from help.
    parser.add_argument("--host", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)


@dataclass(frozen=True)
class Listen:
    """One ``--listen`` value."""

    text: str  # as given
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def client_host(self) -> str:
        """Where a client on this machine connects: loopback for a wildcard address."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (or a name that resolves to those only)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return False
        return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def parse_listen(text: str) -> Listen:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback); UsageError otherwise."""
    fix = f"write HOST:PORT, e.g. {DEFAULT_LISTEN}, 0.0.0.0:8080 (all interfaces) or [::1]:0"
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if not rest.startswith(":"):
            raise UsageError(f"--listen {text!r}: no :PORT after the address", fix=fix)
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise UsageError(f"--listen {text!r}: no port", fix=fix)
        if ":" in host:
            raise UsageError(
                f"--listen {text!r}: an IPv6 address needs brackets",
                fix=f"write [{host}]:{port_text}",
            )
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be a number from 0 to 65535", fix=fix)
    host = host or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UsageError(
                f"--listen {text!r}: {host!r} is no address of this machine ({exc})",
                fix="give an IP address, e.g. 127.0.0.1 or 0.0.0.0 (all interfaces)",
            ) from None
    return Listen(text, host, int(port_text))


@dataclass(frozen=True)
class OriginConfig:
    """Validated options of a person's origin."""

    listens: tuple[Listen, ...]
    token: str | None
    token_source: str  # "--token", the environment variable, "generated" or "--no-token"
    origin_id: str | None
    prefix: str
    ssl_context: ssl.SSLContext | None


def _token(args: argparse.Namespace) -> tuple[str | None, str]:
    env = os.environ.get(TOKEN_ENV) or None
    if args.no_token:
        if args.token is not None:
            raise UsageError(
                "--token and --no-token exclude each other", fix="give one of them (or neither)"
            )
        return None, "--no-token"
    if args.token is not None:
        token, source = args.token, "--token"
    elif env is not None:
        token, source = env, TOKEN_ENV
    else:
        return secrets.token_urlsafe(24), "generated"
    if not _TOKEN_CHARS.fullmatch(token):
        raise UsageError(
            f"{source}: the token may hold letters, digits and - . _ ~ only (it travels in URLs)",
            fix="e.g. --token $(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
        )
    return token, source


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context for ``--tls-cert``/``--tls-key`` (both or neither)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise UsageError(f"{given} without {missing}", fix="give both --tls-cert and --tls-key")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(
                f"{option} {path}: no such file", fix=f"give the PEM file's path to {option}"
            )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"--tls-cert {cert} --tls-key {key}: cannot be loaded ({exc})",
            fix="give the certificate chain (PEM, leaf first) and its unencrypted private key",
        ) from None
    context.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1 only
    return context


def resolve(args: argparse.Namespace) -> OriginConfig:
    """Validate every option; UsageError (exit 2) naming the option and the fix."""
    listens = tuple(parse_listen(text) for text in (args.listen or [DEFAULT_LISTEN]))
    token, source = _token(args)
    if token is None:
        beyond = [listen.text for listen in listens if not listen.loopback]
        if beyond:
            raise UsageError(
                f"--no-token with --listen {beyond[0]}: anyone who reaches that address "
                "could drive the origin and read what it recorded",
                fix="drop --no-token (a token is made and printed), or listen on loopback only",
            )
    if args.id is not None and not _ID_CHARS.fullmatch(args.id):
        raise UsageError(
            f"--id {args.id!r}: use 1 to 128 letters, digits and . _ : @ + - only",
            fix="e.g. --id staging-eu-1",
        )
    try:
        prefix = normalise_prefix(args.prefix)
    except ValueError as exc:
        raise UsageError(f"--prefix: {exc}", fix="e.g. --prefix /realtime") from None
    context = server_context(args.tls_cert, args.tls_key)
    return OriginConfig(listens, token, source, args.id, prefix, context)


def _bind_error(listen: Listen, exc: OSError) -> UsageError:
    problem = {
        errno.EADDRINUSE: "the port is in use",
        errno.EADDRNOTAVAIL: "that address is not one of this machine's",
        errno.EACCES: "no permission to listen there (ports below 1024 need root)",
    }.get(exc.errno or 0, str(exc))
    return UsageError(
        f"--listen {listen.text}: cannot listen: {problem}",
        fix="pick another port (:0 picks a free one) or an address of this machine",
    )


def banner(config: OriginConfig, origin: Origin, ports: Sequence[int]) -> str:
    """The block printed on start: where, who, the token and the probe command."""
    tls = config.ssl_context is not None
    path = config.prefix + "/"
    lines = [f"proxytest origin {origin.id} (proxytest {VERSION})"]
    for listen, port in zip(config.listens, ports, strict=True):
        lines.append(f"  listening on {url_of(listen.host, port, tls=tls)}{path}")
    for listen in config.listens:
        if not listen.loopback:
            lines.append(
                f"  note: listening beyond loopback on {listen.text} (as --listen asked): "
                "whoever reaches this machine there can connect; the token guards every route"
            )
    lines.append(f"  id:      {origin.id}")
    if config.token is None:
        lines.append("  token:   none (--no-token): every request is accepted")
        flag = ""
    elif config.token_source == TOKEN_ENV:
        lines.append(f"  token:   from ${TOKEN_ENV} (not shown)")
        flag = f' --origin-token "${TOKEN_ENV}"'
    else:
        note = f" (generated: --token T or ${TOKEN_ENV} sets one)"
        shown = note if config.token_source == "generated" else ""
        lines.append(f"  token:   {config.token}{shown}")
        flag = f" --origin-token {config.token}"
    first, port = config.listens[0], ports[0]
    lines += [
        f"  routes:  {path}sse, {path}ws/echo, … ready: {config.prefix}{READY_PATH}, "
        f"records: {config.prefix}{RECORDS_PATH}?probe=P",
        "  probe it through the path you deploy it behind:",
        f"    proxytest probe https://YOUR-PATH{path}{flag}",
        "  or directly, from this machine:",
        f"    proxytest probe {url_of(first.client_host, port, tls=tls)}{path}{flag}",
        "  Ctrl-C or SIGTERM stops it.",
    ]
    return "\n".join(lines)


async def _serve(config: OriginConfig) -> None:
    first = config.listens[0]
    origin = Origin(
        first.host,
        first.port,
        token=config.token,
        prefix=config.prefix,
        origin_id=config.origin_id,
        ssl_context=config.ssl_context,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(origin)
        except OSError as exc:
            raise _bind_error(first, exc) from None
        ports = [origin.port]
        for listen in config.listens[1:]:
            try:
                ports.append(await origin.listen_also(listen.host, listen.port))
            except OSError as exc:
                raise _bind_error(listen, exc) from None
        print(banner(config, origin, ports), flush=True)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C (exit 0); UsageError for bad input."""
    if args.host or args.port is not None:
        if args.listen:
            raise UsageError("--listen and --host/--port exclude each other", fix="use --listen")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forever(args.host or ["127.0.0.1"], args.port or 0))
        return EXIT_OK
    config = resolve(args)
    if config.token is None:
        print(
            "proxytest origin: warning: --no-token: any local user or process can drive "
            "this origin and read what it recorded",
            file=sys.stderr,
            flush=True,
        )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    print("proxytest origin: stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m proxytest.origin``."""
    parser = argparse.ArgumentParser(
        prog="python -m proxytest.origin",
        description="The proxytest test origin on its own, for a deployed path to front.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"proxytest origin: {exc}", file=sys.stderr)
        return EXIT_USAGE
