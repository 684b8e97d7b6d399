"""A shared event log, as an application with a pub/sub adapter has (Redis, NATS).

The origins of one group (the backends behind one load balancer) share one
:class:`EventLog`, so each serves the same sequence of events and a client
that reconnects to another backend resumes where it was cut (``lb.failover``).

A topic's events are published at fixed times: event ``k`` (from 1) at
``t0 + k * interval``, where ``t0`` and ``interval`` are fixed when the topic is
first used and kept in the log. Which events exist is a function of the clock,
so every backend agrees on it without a publisher of its own.

Routes (all GET, registered by ``Origin.app()``):

``/lb/events?topic=T&interval_ms=100&count=600``
    An SSE stream: the events published after ``Last-Event-ID`` (or the query
    ``after``) at once, then each new one at its publish time. Without either,
    the stream starts at the next event to be published (a new subscriber).
    Each event is ``id: <seq>`` with a JSON payload ``{"seq", "sent", "origin",
    "topic"}``; ``sent`` is the publish time (``time.monotonic()``), ``origin``
    the backend that served it. The stream ends after the topic's last event.
``/lb/ws?topic=T&after=N&interval_ms=100&count=600``
    The same over a WebSocket: one text message per event.

Bounded: a topic has at most :data:`MAX_COUNT` events; a log keeps at most
:data:`MAX_TOPICS` topics (past it the oldest is forgotten).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import Origin

__all__ = ["EVENTS_PATH", "EVENTS_WS_PATH", "MAX_COUNT", "MAX_TOPICS", "EventLog", "Topic"]

EVENTS_PATH = "/lb/events"
EVENTS_WS_PATH = "/lb/ws"
MAX_COUNT = 10_000  # events of one topic
MAX_TOPICS = 1_000  # topics one log remembers
DEFAULT_COUNT = 600  # one minute at the default interval
DEFAULT_INTERVAL_MS = 100.0
_MIN_INTERVAL_MS = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Topic:
    """One topic's schedule: event ``k`` (1..count) is published at ``t0 + k * interval_s``."""

    name: str
    t0: float
    interval_s: float
    count: int

    def published_at(self, seq: int) -> float:
        return self.t0 + seq * self.interval_s

    def published(self, now: float) -> int:
        """How many events exist at ``now`` (the last published seq)."""
        return max(0, min(self.count, int((now - self.t0) / self.interval_s)))

    def payload(self, seq: int, origin_id: str) -> str:
        body = {"seq": seq, "sent": self.published_at(seq), "origin": origin_id, "topic": self.name}
        return json.dumps(body, separators=(",", ":"))


class EventLog:
    """Topics shared by the origins of one group; each origin has a private one by default."""

    def __init__(self, max_topics: int = MAX_TOPICS) -> None:
        self.max_topics = max_topics
        self._topics: dict[str, Topic] = {}

    def topic(self, name: str, interval_s: float, count: int) -> Topic:
        """The topic ``name``, created now with this schedule if it is new (a known
        topic keeps the schedule it was created with)."""
        known = self._topics.get(name)
        if known is not None:
            return known
        topic = Topic(name, time.monotonic(), interval_s, count)
        self._topics[name] = topic
        while len(self._topics) > self.max_topics:
            del self._topics[next(iter(self._topics))]
        return topic


def _topic(request: web.Request, log: EventLog) -> tuple[Topic, int]:
    """The request's topic and the first seq to send it."""
    name = request.query.get("topic", "")
    if not name or len(name) > 200:
        raise web.HTTPBadRequest(text="query parameter topic is required (at most 200 characters)")
    try:
        interval_ms = float(request.query.get("interval_ms", DEFAULT_INTERVAL_MS))
        count = int(request.query.get("count", DEFAULT_COUNT))
        after_text = request.headers.get("Last-Event-ID") or request.query.get("after")
        after = int(after_text) if after_text not in (None, "") else None
    except ValueError:
        raise web.HTTPBadRequest(
            text="interval_ms, count, after and Last-Event-ID must be numbers"
        ) from None
    if not _MIN_INTERVAL_MS <= interval_ms <= 60_000 or not 1 <= count <= MAX_COUNT:
        raise web.HTTPBadRequest(
            text=f"interval_ms must be {_MIN_INTERVAL_MS:g}..60000 and count 1..{MAX_COUNT}"
        )
    topic = log.topic(name, interval_ms / 1000, count)
    first = (after if after is not None else topic.published(time.monotonic())) + 1
    return topic, max(1, first)


async def _until(due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def routes(origin: Origin) -> dict[str, Handler]:
    """The event routes of ``origin``, served from its log (``origin.log``)."""

    async def sse(request: web.Request) -> web.StreamResponse:
        topic, first = _topic(request, origin.log)
        record = origin._record(request)
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        try:
            await response.prepare(request)
            for seq in range(first, topic.count + 1):
                await _until(topic.published_at(seq))
                frame = f"id: {seq}\nevent: tick\ndata: {topic.payload(seq, origin.id)}\n\n"
                await response.write(frame.encode())
                record.events_sent += 1
            await response.write_eof()
        except ConnectionResetError:
            origin._finish(record, "client-gone")
            return response
        except asyncio.CancelledError:
            origin._finish(record, "client-gone")
            raise
        origin._finish(record, "complete")
        return response

    async def ws(request: web.Request) -> web.StreamResponse:
        topic, first = _topic(request, origin.log)
        socket, record = await origin._upgrade(request)
        reader = asyncio.create_task(origin._serve(socket, record))
        try:
            for seq in range(first, topic.count + 1):
                await _until(topic.published_at(seq))
                if socket.closed or reader.done():
                    break
                await socket.send_str(topic.payload(seq, origin.id))
                record.events_sent += 1
            else:
                await socket.close()
            await reader
        except ConnectionResetError:
            origin._finish(record, "client-gone")
        finally:
            reader.cancel()
        return socket

    return {EVENTS_PATH: sse, EVENTS_WS_PATH: ws}
