"""SSE probes: read a stream through the proxy, recording each event's arrival."""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from dataclasses import dataclass, field

import aiohttp

from .context import ProbeContext
from .http import fetch
from .timeline import (
    Attempt,
    Delivery,
    ReconnectTimeline,
    ResumeTimeline,
    StreamEnd,
    StreamTimeline,
)

__all__ = ["SseParser", "read_stream", "resume"]


@dataclass
class SseEvent:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    retry: int | None = None


class SseParser:
    """Incremental parser of the text/event-stream format (HTML Living Standard)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._current = SseEvent()
        self.comments = 0
        self.retry_ms: int | None = None
        self.last_event_id: str | None = None

    def feed(self, text: str) -> list[SseEvent]:
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events: list[SseEvent] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line == "":
                if self._current.data or self._current.id is not None:
                    events.append(self._current)
                self._current = SseEvent()
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._current.data.append(value)
            elif name == "id":
                self._current.id = value
                self.last_event_id = value
            elif name == "event":
                self._current.event = value
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
        return events


def _delivery(ctx: ProbeContext, event: SseEvent, received_at: float) -> Delivery | None:
    """The event's sequence number, and its send time on the client's clock."""
    try:
        body = json.loads("\n".join(event.data))
        sent = ctx.origin.local_time(float(body["sent"]))
        return Delivery(int(body["seq"]), sent, received_at, event.id)
    except (ValueError, KeyError, TypeError):
        return None


async def read_stream(
    ctx: ProbeContext,
    url: str,
    *,
    expected: int,
    interval_ms: float,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    initial_delay_ms: float = 0.0,
    timeout_s: float | None = None,
) -> StreamTimeline:
    """GET ``url`` and read the SSE stream until it ends, ``stop_after`` events, or timeout."""
    th = ctx.thresholds
    nominal = (initial_delay_ms + interval_ms * max(expected - 1, 0)) / 1000
    budget = timeout_s if timeout_s is not None else nominal + th.stream_grace_s
    request_headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    request_headers.update(headers or {})
    parser = SseParser()
    deliveries: list[Delivery] = []
    status: int | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    headers_at: float | None = None
    end: StreamEnd = "complete"
    error: str | None = None
    requested_at = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            async with fetch(ctx, url, request_headers) as response:
                headers_at = time.monotonic()
                status = response.status
                response_headers = response.headers
                if status != 200:
                    end = "status"
                else:
                    decoder = _utf8()
                    async for chunk in response.chunks():
                        now = time.monotonic()
                        for event in parser.feed(decoder.decode(chunk)):
                            delivery = _delivery(ctx, event, now)
                            if delivery is not None:
                                deliveries.append(delivery)
                        if stop_after is not None and len(deliveries) >= stop_after:
                            break
    except TimeoutError:
        end, error = "timeout", f"still open after {budget:.1f} s"
    except aiohttp.ClientPayloadError:
        end, error = "truncated", "the response body ended before its end"
    except aiohttp.ClientConnectorError as exc:
        end, error = "refused", str(exc)
    except (aiohttp.ClientError, OSError) as exc:
        end, error = ("truncated" if headers_at else "error"), _cause(exc)
    ended_at = time.monotonic()
    return StreamTimeline(
        kind="sse",
        url=url,
        requested_at=requested_at,
        status=status,
        headers=response_headers,
        headers_at=headers_at,
        deliveries=tuple(deliveries),
        expected=expected,
        interval_ms=interval_ms,
        ended_at=ended_at,
        end=end,
        error=error,
        loop_lag_ms=ctx.lag.max_lag_ms(requested_at, ended_at),
        pressure=ctx.lag.pressure(requested_at, ended_at),
        comments=parser.comments,
        retry_ms=parser.retry_ms,
        initial_delay_ms=initial_delay_ms,
    )


async def resume(
    ctx: ProbeContext, check: str, *, first: int = 3, total: int = 6
) -> ResumeTimeline:
    """Read ``first`` events, drop the connection, reconnect with Last-Event-ID."""
    probe = ctx.token(check)
    interval = 50.0
    url = ctx.url("/sse", probe, count=total, interval_ms=interval, retry_ms=100)
    identity = {"Accept-Encoding": "identity"}
    one = await read_stream(
        ctx, url, expected=total, interval_ms=interval, headers=identity, stop_after=first
    )
    ids = [d.event_id for d in one.deliveries if d.event_id]
    last_id = ids[-1] if ids else None
    two: StreamTimeline | None = None
    if last_id is not None:
        await asyncio.sleep((one.retry_ms or 100) / 1000)  # as a browser honours retry:
        two = await read_stream(
            ctx,
            url,
            expected=total - len(ids),
            interval_ms=interval,
            headers={**identity, "Last-Event-ID": last_id},
        )
    records = await ctx.origin.wait_for(
        probe, lambda r: len(r) >= (2 if two else 1), ctx.thresholds.message_timeout_s
    )
    return ResumeTimeline(
        first=one,
        second=two,
        last_event_id_sent=last_id,
        origin_saw=tuple(r.last_event_id for r in records),
    )


def _utf8() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text


async def reconnect(
    ctx: ProbeContext, check: str, *, count: int = 12, cuts: tuple[int, ...] = (4, 8)
) -> ReconnectTimeline:
    """Like EventSource: when the stream ends early, wait ``retry:`` and reconnect
    with Last-Event-ID, until every event arrived or attempts run out."""
    probe_id = ctx.token(check)
    interval, retry_default = 50.0, 200
    url = ctx.url(
        "/sse",
        probe_id,
        count=count,
        interval_ms=interval,
        retry_ms=retry_default,
        cut_at=",".join(map(str, cuts)),
    )
    attempts: list[Attempt] = []
    last_id: str | None = None
    retry_ms: int | None = None
    received: set[int] = set()
    for _ in range(len(cuts) + 3):  # bounded: a browser would go on, a test must not
        headers = {"Accept-Encoding": "identity"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        tl = await read_stream(ctx, url, expected=count, interval_ms=interval, headers=headers)
        ids = tuple(d.seq for d in tl.deliveries)
        received.update(ids)
        event_ids = [d.event_id for d in tl.deliveries if d.event_id]
        if event_ids:
            last_id = event_ids[-1]
        retry_ms = tl.retry_ms or retry_ms
        attempts.append(
            Attempt(tl.requested_at, headers.get("Last-Event-ID"), tl.status, ids, tl.end)
        )
        if tl.status != 200 or count in received:
            break
        await asyncio.sleep((retry_ms or retry_default) / 1000)
    records = await ctx.origin.wait_for(
        probe_id, lambda r: len(r) >= len(attempts), ctx.thresholds.message_timeout_s
    )
    attempts = [
        Attempt(
            a.requested_at,
            a.last_event_id,
            a.status,
            a.ids,
            a.end,
            records[i].last_event_id if i < len(records) else None,
        )
        for i, a in enumerate(attempts)
    ]
    return ReconnectTimeline(tuple(range(1, count + 1)), retry_ms, tuple(attempts), len(cuts))
