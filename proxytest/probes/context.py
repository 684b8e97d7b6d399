"""What every probe needs: where the proxy listens, the origin, a client session."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode

import aiohttp

from ..lag import LagMonitor
from ..origin import Origin, OriginView
from ..settings import Settings
from ..timing import Thresholds
from ..tls import Trust
from .cdp import Browsers

if TYPE_CHECKING:
    from ..harness import Harness

_counter = itertools.count(1)

# How a probe's HTTP requests travel (docs/architecture.md, "Transports"): HTTP/1.1
# (over TLS where the listener speaks TLS), HTTP/2 over TLS, HTTP/2 in cleartext.
Transport = Literal["h1", "h2", "h2c"]
TRANSPORTS: tuple[Transport, ...] = ("h1", "h2", "h2c")


@dataclass
class ProbeContext:
    """The endpoint under test (a proxy, a relay, or the origin itself for baselines)."""

    host: str
    port: int
    origin: OriginView
    session: aiohttp.ClientSession
    thresholds: Thresholds
    lag: LagMonitor = field(default_factory=LagMonitor)
    label: str = "target"
    settings: Settings = field(default_factory=Settings)
    # A launched proxy's own controls (private instances, reload); None when the
    # endpoint is not one proxytest launched (a relay, the origin itself).
    harness: Harness | None = None
    # The listener speaks TLS (a config that names the run's certificate): clients
    # use https and wss and trust the run's CA (tls.py).
    tls: bool = False
    # The protocol of the probe's HTTP requests (probes/http.py); checks run over
    # another transport than h1 carry it in their ID (``sse.stream@h2``).
    transport: Transport = "h1"
    # The run's Chromium (browser.* checks; started on first use, closed with the
    # run). None: a browser check starts one of its own for its duration.
    browsers: Browsers | None = None
    # Probe mode (a deployed path, pathprobe.py): the path prefix the origin's
    # routes sit under, headers sent on every request (the user's --header and the
    # origin's token), and which certificates the clients trust (tls.Trust: the
    # run's CA only, unless probe mode says otherwise).
    prefix: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    trust: Trust = field(default_factory=Trust)
    # Several backends (a config with ``{{ upstream_port_2 }}`` …): every origin the
    # proxy fronts, backend 1 first. Empty: one backend, ``origin``.
    # docs/architecture.md, "Several backends".
    backends: tuple[Origin, ...] = ()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def authority(self) -> str:
        """host:port as it goes into a URL (an IPv6 address in brackets)."""
        return url_authority(self.host, self.port)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.authority}"

    def ssl_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext | None:
        """The client TLS context for this listener offering ``alpn`` (None: cleartext)."""
        return self.trust.client_context(alpn) if self.tls else None

    async def open_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection to the listener (TLS where it speaks TLS, ALPN http/1.1)."""
        return await asyncio.open_connection(self.host, self.port, ssl=self.ssl_context())

    @property
    def ws_base_url(self) -> str:
        return "ws" + self.base_url[4:]

    def token(self, check: str) -> str:
        """A fresh probe token: the origin files what it receives under it."""
        return f"{check}-{next(_counter)}-{secrets.token_hex(3)}"

    def url(self, path: str, probe: str, *, ws: bool = False, **query: object) -> str:
        params = urlencode({**{k: v for k, v in query.items() if v is not None}, "probe": probe})
        base = self.ws_base_url if ws else self.base_url
        return f"{base}{self.prefix}{path}?{params}"


def url_authority(host: str, port: int) -> str:
    """``host:port`` as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def new_session(
    trust: Trust | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> aiohttp.ClientSession:
    """A client session with no connection reuse: every probe opens its own.

    Over TLS it trusts the run's CA (or ``trust``) and offers only http/1.1
    (aiohttp's one protocol); ``headers`` go on every request and upgrade.
    """
    connector = aiohttp.TCPConnector(
        limit=0,
        force_close=True,
        enable_cleanup_closed=False,
        ssl=(trust or Trust()).client_context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        headers=list(headers) or None,
    )


def tab_session(ctx: ProbeContext) -> aiohttp.ClientSession:
    """One client, as a browser tab: its own connections and its own cookie jar,
    which keeps what a proxy sets (a sticky cookie naming a backend) and sends it
    back on every later request and upgrade. ``unsafe=True``: cookies for an IP
    address too, as the run's listeners have."""
    connector = aiohttp.TCPConnector(
        limit=0, force_close=True, ssl=ctx.trust.client_context() if ctx.tls else False
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=None),
        headers=list(ctx.headers) or None,
    )
