"""The origin reached over HTTP through a deployed path (probe mode).

``proxytest probe URL`` cannot look into the origin's memory: a
``proxytest origin`` runs behind the user's load balancer, CDN or ingress.
:class:`RemoteOrigin` is the same :class:`~proxytest.origin.OriginView` as the
in-process ``Origin``, read through the path itself:

- :func:`confirm` asks the ready route (``{prefix}/__proxytest/ready``, with the
  token) whether the URL leads to a proxytest origin at all; anything else
  (a login page, a CDN's error page, a 404, a refused token) comes back as a
  sentence naming what answered, never as a verdict on the proxy;
- ``records()``/``wait_for()`` poll the records API
  (``{prefix}/__proxytest/records?probe=P``), bounded by their timeout;
- **clocks**: events carry the origin's ``time.monotonic()``, which is another
  machine's clock. ``confirm`` takes several round trips to the ready route,
  reads ``X-Proxytest-Clock`` from each and keeps the one with the smallest
  round-trip time: the origin read its clock somewhere within that round
  trip, so assuming the middle puts the offset within RTT/2 of the truth
  (NTP's reasoning, without its filters). :meth:`RemoteOrigin.local_time`
  converts origin times into the client's clock with it, and records come
  back converted. On one machine the offset comes out near 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from ..origin import OriginRecord
from ..origin.server import CLOCK_HEADER, ORIGIN_HEADER
from ..routes import READY_PATH, RECORDS_PATH

__all__ = [
    "ClockOffset",
    "OriginUnreachable",
    "RemoteOrigin",
    "confirm",
    "describe_answer",
]


CLOCK_SAMPLES = 5  # round trips to the ready route at probe start
_POLL_FIRST_S = 0.05  # records API polling: first pause, doubling up to ...
_POLL_MAX_S = 0.5
_SNIPPET = 200  # characters of an unexpected body shown


@dataclass(frozen=True)
class ClockOffset:
    """The origin's clock minus ours, within ``uncertainty_s`` (half the best RTT)."""

    offset_s: float
    uncertainty_s: float
    rtt_s: float
    samples: int

    @classmethod
    def estimate(cls, samples: list[tuple[float, float, float]]) -> ClockOffset:
        """From ``(sent, origin_clock, received)`` round trips: the smallest RTT's middle."""
        if not samples:
            raise ValueError("no clock sample")
        sent, origin_clock, received = min(samples, key=lambda s: s[2] - s[0])
        rtt = received - sent
        return cls(origin_clock - (sent + received) / 2, rtt / 2, rtt, len(samples))


class OriginUnreachable(ConnectionError):
    """The records API did not answer as a proxytest origin does (a harness error)."""


@dataclass
class _Answer:
    status: int | None
    headers: Mapping[str, str]
    body: str
    sent: float
    received: float
    error: str | None = None


class RemoteOrigin:
    """A ``proxytest origin`` behind the path at ``base_url`` (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        origin_id: str,
        clock: ClockOffset,
        *,
        prefix: str = "",
        request_timeout_s: float = 5.0,
    ) -> None:
        self.session = session
        self.base_url = base_url  # scheme://host:port, without the prefix
        self.prefix = prefix
        self._id = origin_id
        self.clock = clock
        self.request_timeout_s = request_timeout_s
        self._known: dict[str, list[OriginRecord]] = {}

    @property
    def id(self) -> str:
        return self._id

    def local_time(self, origin_time: float) -> float:
        return origin_time - self.clock.offset_s

    def records(self, probe: str) -> list[OriginRecord]:
        """The records as last read from the origin (``wait_for`` reads them)."""
        return list(self._known.get(probe, ()))

    async def wait_for(
        self, probe: str, predicate: Callable[[list[OriginRecord]], object], timeout: float
    ) -> list[OriginRecord]:
        """Poll the records API until ``predicate`` holds or ``timeout`` (one read at least)."""
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST_S
        while True:
            records = await self.fetch(probe)
            remaining = deadline - time.monotonic()
            if predicate(records) or remaining <= 0:
                return records
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX_S)

    async def fetch(self, probe: str) -> list[OriginRecord]:
        """One read of the records API; raises OriginUnreachable when it is not one."""
        url = f"{self.base_url}{self.prefix}{RECORDS_PATH}"
        answer = await _get(self.session, url, self.request_timeout_s, params={"probe": probe})
        if answer.status != 200:
            raise OriginUnreachable(
                f"the origin's records API did not answer: {describe_answer(answer)}"
            )
        try:
            data = json.loads(answer.body)
            if data.get("origin") != self._id:
                raise OriginUnreachable(
                    f"the records API answered for origin {data.get('origin')!r}, not {self._id}"
                )
            records = [self._localised(OriginRecord.from_json(r)) for r in data["records"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OriginUnreachable(
                f"the origin's records API sent what proxytest cannot read ({exc})"
            ) from None
        self._known[probe] = records
        return records

    def _localised(self, record: OriginRecord) -> OriginRecord:
        """The record on the client's clock, its path without the prefix."""
        path = record.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :] or "/"
        return replace(
            record,
            path=path,
            received_at=self.local_time(record.received_at),
            finished_at=None if record.finished_at is None else self.local_time(record.finished_at),
            pongs_received=[(self.local_time(t), p) for t, p in record.pongs_received],
        )


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    timeout_s: float,
    params: Mapping[str, str] | None = None,
) -> _Answer:
    sent = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, params=params, allow_redirects=False) as response:
                raw = await response.content.read(64 * 1024)
                received = time.monotonic()
                body = raw.decode(response.charset or "utf-8", errors="replace")
                return _Answer(response.status, dict(response.headers), body, sent, received)
    except TimeoutError:
        why = f"no answer within {timeout_s:g} s"
    except aiohttp.ClientConnectorCertificateError as exc:
        why = (
            f"the server's certificate was not accepted ({exc.certificate_error}): "
            "pass --ca FILE for a private CA"
        )
    except (aiohttp.ClientError, OSError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    return _Answer(None, {}, "", sent, time.monotonic(), error=why)


def describe_answer(answer: _Answer, *, token_given: bool = True) -> str:
    """What answered instead of the origin, in a sentence a person recognises."""
    if answer.status is None:
        return f"nothing answered: {answer.error}"
    headers = {k.lower(): v for k, v in answer.headers.items()}
    server = headers.get("server")
    kind = headers.get("content-type", "").split(";")[0].strip() or "no content type"
    snippet = " ".join(answer.body.split())[:_SNIPPET]
    shown = f": {snippet!r}" if snippet else " (empty body)"
    if answer.status == 401 and (
        "x-proxytest-origin" in headers or "proxytest origin" in answer.body
    ):
        what = "the origin's token was not accepted"
        fix = (
            "check --origin-token (or PROXYTEST_ORIGIN_TOKEN)"
            if token_given
            else "pass --origin-token (or set PROXYTEST_ORIGIN_TOKEN)"
        )
        return f"401: {what} — {fix}"
    html = kind == "text/html"
    if html and re.search(r"log ?in|sign ?in|password", answer.body, re.IGNORECASE):
        what = "a login page"
    elif answer.status == 404:
        what = "a 404 (no such route: is the path prefix right?)"
    elif 300 <= answer.status < 400:
        what = f"a redirect to {headers.get('location', '?')}"
    elif answer.status >= 500:
        what = "a server error (the path's, or an origin it cannot reach)"
    elif html:
        what = "an HTML page"
    else:
        what = "not a proxytest origin"
    return (
        f"{what}: {answer.status} {kind} from {server or 'a server without a Server header'}{shown}"
    )


async def confirm(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    prefix: str = "",
    token_given: bool = True,
    timeout_s: float = 5.0,
    samples: int = CLOCK_SAMPLES,
) -> RemoteOrigin | str:
    """The origin behind ``base_url`` with its clock offset, or what answered instead."""
    url = f"{base_url}{prefix}{READY_PATH}"
    clock_samples: list[tuple[float, float, float]] = []
    origin_id: str | None = None
    for _ in range(max(samples, 1)):  # bounded
        answer = await _get(session, url, timeout_s)
        answered_id = {k.lower(): v for k, v in answer.headers.items()}.get(ORIGIN_HEADER.lower())
        body_id = answer.body.strip()
        if answer.status != 200 or not answered_id or not body_id:
            return describe_answer(answer, token_given=token_given)
        if body_id != answered_id:
            return (
                f"the ready route answered for origin {body_id!r} but its header says "
                f"{answered_id!r}: {describe_answer(answer)}"
            )
        if origin_id is not None and answered_id != origin_id:
            return (
                f"two different origins answered ({origin_id}, then {answered_id}): "
                "the path balances over several origins; probe one of them"
            )
        origin_id = answered_id
        clock = _float({k.lower(): v for k, v in answer.headers.items()}.get(CLOCK_HEADER.lower()))
        if clock is None:
            return (
                f"the origin {origin_id} sent no {CLOCK_HEADER} header "
                "(an older proxytest origin?): its events' times cannot be read"
            )
        clock_samples.append((answer.sent, clock, answer.received))
    assert origin_id is not None
    return RemoteOrigin(
        session,
        base_url,
        origin_id,
        ClockOffset.estimate(clock_samples),
        prefix=prefix,
        request_timeout_s=timeout_s,
    )


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
