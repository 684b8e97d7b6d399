"""One GET through the listener over the context's transport: HTTP/1.1 or HTTP/2.

The SSE probes read a response the same way whichever protocol carried it:
:func:`fetch` yields a :class:`Response` (status, headers, body chunks as they
arrive). HTTP/1.1 goes through aiohttp (TLS or not, as the listener speaks);
``h2`` is HTTP/2 over TLS chosen by ALPN, ``h2c`` HTTP/2 in cleartext with
prior knowledge, both through proxytest's own client (h2.py), one connection
per request as the HTTP/1.1 probes have. A compressed HTTP/2 body is
decompressed here as aiohttp does for HTTP/1.1, so both hand over the events.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from . import h2
from .context import ProbeContext

__all__ = ["Response", "fetch", "offered"]


class Response(Protocol):
    status: int
    headers: tuple[tuple[str, str], ...]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decompressed), until it ends."""
        ...


@dataclass
class _H1Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    _response: aiohttp.ClientResponse

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk


@dataclass
class _H2Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    _stream: h2.H2Stream

    async def chunks(self) -> AsyncIterator[bytes]:
        encoding = next((v for k, v in self.headers if k.lower() == "content-encoding"), "")
        encoding = encoding.strip().lower()
        # gzip and deflate (zlib) streams, as aiohttp undoes them; anything else is
        # handed over as it came (the probes ask only for gzip or identity).
        inflate = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        async for data, _ in self._stream.chunks():
            if inflate is None:
                yield data
                continue
            try:
                out = inflate.decompress(data)
            except zlib.error as exc:
                raise ConnectionError(f"the {encoding} body could not be decoded: {exc}") from None
            if out:
                yield out


@contextlib.asynccontextmanager
async def fetch(ctx: ProbeContext, url: str, headers: Mapping[str, str]) -> AsyncIterator[Response]:
    """GET ``url`` over ``ctx.transport``; the response once its headers arrived.

    Errors are aiohttp's (HTTP/1.1) or ConnectionError/OSError (HTTP/2, a reset
    stream included), as the probes already tell them apart.
    """
    if ctx.transport == "h1":
        async with ctx.session.get(url, headers=dict(headers)) as response:
            yield _H1Response(response.status, tuple(response.headers.items()), response)
        return
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    fields = [(k.lower(), v) for k, v in headers.items()]
    async with h2.connect(ctx, timeout=ctx.thresholds.handshake_timeout_s) as connection:
        stream = await connection.request("GET", path, fields)
        status, response_headers, _ = await stream.response()
        try:
            yield _H2Response(status, response_headers, stream)
        finally:
            with contextlib.suppress(Exception):
                await stream.reset()


async def offered(ctx: ProbeContext) -> str | None:
    """Why the listener does not speak ``ctx.transport`` (None: it does).

    ``h2`` needs a TLS listener that chooses h2 by ALPN; ``h2c`` a cleartext one
    that answers the HTTP/2 preface.
    """
    if ctx.transport == "h1":
        return None
    if ctx.transport == "h2" and not ctx.tls:
        return "a cleartext listener: h2 is HTTP/2 over TLS (see the @h2c results)"
    if ctx.transport == "h2c" and ctx.tls:
        return "a TLS listener: h2c is HTTP/2 in cleartext (see the @h2 results)"
    started = time.monotonic()
    try:
        async with h2.connect(ctx, timeout=ctx.thresholds.handshake_timeout_s):
            return None
    except h2.NotOffered as exc:
        return f"the listener does not speak {ctx.transport}: {exc.reason}"
    except (OSError, TimeoutError) as exc:
        waited = time.monotonic() - started
        return f"no {ctx.transport} connection ({type(exc).__name__} after {waited:.1f} s): {exc}"
