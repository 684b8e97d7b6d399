"""Broadcast routes: one publisher, many subscribers of a topic (``load.fanout``).

The live-comments case: every subscriber of a topic receives each comment the
publisher posts, over Server-Sent Events or a WebSocket::

    GET  /fanout/sse?topic=T        a subscriber (SSE): ": subscribed" first, then
                                    "id: <seq>\\nevent: comment\\ndata: <payload>"
    GET  /fanout/ws?topic=T         a subscriber (WebSocket): the text "subscribed"
                                    first, then one text message per comment
    POST /fanout/publish?topic=T    broadcast: ``seq`` (the first sequence number, 1),
                                    ``count`` (1) messages every ``interval_ms`` (100),
                                    ``size`` padding bytes each (0); answers JSON
                                    ``{"topic", "subscribers", "written", "gone",
                                    "took_ms", "sent"}`` once the last is written

Each message's payload has the shape of every event's (server.py's
``event_payload``: ``{"seq": n, "sent": <origin time.monotonic()>}``): one
send time per message, taken when its broadcast starts, so a subscriber's latency includes its place
in the origin's own write loop. The bytes of a message are built once per
protocol and written as they are to every subscriber's transport (no
per-subscriber encoding); the first subscriber written rotates from message to
message so neither protocol is always served first.

The publisher is an HTTP request, not a WebSocket: one publisher serves SSE
and WebSocket subscribers alike, through a proxy that breaks upgrades too (SSE
applications take comments by POST), and it is paced by its client. Bounded:
``MAX_TOPICS`` topics, ``MAX_SUBSCRIBERS`` per topic, ``MAX_COUNT`` messages per
request; a subscriber whose unsent bytes pass ``MAX_BACKLOG`` (it does not read)
is dropped and counted as gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import WSMsgType, web

__all__ = ["MAX_SUBSCRIBERS", "MAX_TOPICS", "Fanout", "sse_event", "ws_text_frame"]

MAX_TOPICS = 64
MAX_SUBSCRIBERS = 25_000  # per topic: above what one machine's file descriptors allow
MAX_COUNT = 10_000  # messages of one publish request
MAX_SIZE = 64 * 1024  # padding bytes of one message
MAX_BACKLOG = 1024 * 1024  # unsent bytes to one subscriber before it is dropped
SWEEP_S = 0.5  # how often subscribers whose connection ended are removed
HOLD_S = 3600.0  # an SSE subscriber's stream ends after this at the latest

Mode = Literal["sse-chunked", "sse-raw", "ws"]


def sse_event(seq: int, payload: str) -> bytes:
    """One comment as a Server-Sent Event."""
    return f"id: {seq}\nevent: comment\ndata: {payload}\n\n".encode()


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2) holding ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


@dataclass(eq=False)
class _Subscriber:
    transport: asyncio.Transport
    mode: Mode
    # Resolved when the subscription ends: its connection closed, or it was dropped.
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass(eq=False)
class _Topic:
    name: str
    subscribers: list[_Subscriber] = field(default_factory=list)
    turn: int = 0  # where the next broadcast starts in ``subscribers``


class Fanout:
    """The topics of one origin, and its three routes."""

    def __init__(self) -> None:
        self._topics: dict[str, _Topic] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- subscribers -----------------------------------------------------------------
    def _topic(self, request: web.Request) -> _Topic:
        name = request.query.get("topic", "")
        if not name or len(name) > 200:
            raise web.HTTPBadRequest(
                text="query parameter topic is required (up to 200 characters)"
            )
        topic = self._topics.get(name)
        if topic is None:
            if len(self._topics) >= MAX_TOPICS:
                raise web.HTTPServiceUnavailable(text=f"at most {MAX_TOPICS} topics at once")
            topic = self._topics[name] = _Topic(name)
        return topic

    def _join(self, topic: _Topic, sub: _Subscriber) -> None:
        if len(topic.subscribers) >= MAX_SUBSCRIBERS:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_SUBSCRIBERS} subscribers a topic")
        topic.subscribers.append(sub)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _leave(self, topic: _Topic, sub: _Subscriber) -> None:
        sub.end()
        with contextlib.suppress(ValueError):
            topic.subscribers.remove(sub)
        if not topic.subscribers and self._topics.get(topic.name) is topic:
            del self._topics[topic.name]

    async def _sweep(self) -> None:
        """End the subscriptions whose connection closed (an SSE handler is not told)."""
        while self._topics:
            await asyncio.sleep(SWEEP_S)
            for topic in list(self._topics.values()):
                for sub in topic.subscribers:
                    if sub.transport.is_closing():
                        sub.end()

    async def sse(self, request: web.Request) -> web.StreamResponse:
        topic = self._topic(request)
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        # The headers go out with this first chunk; later chunks are written raw.
        await response.write(b": subscribed\n\n")
        transport = request.transport
        if transport is None or transport.is_closing():
            return response
        chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        sub = _Subscriber(transport, "sse-chunked" if chunked else "sse-raw")
        self._join(topic, sub)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sub.done), HOLD_S)
        finally:
            self._leave(topic, sub)
        if not transport.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        return response

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        topic = self._topic(request)
        ws = web.WebSocketResponse(heartbeat=None, compress=False)
        await ws.prepare(request)
        await ws.send_str("subscribed")
        transport = request.transport
        if transport is None or transport.is_closing():
            return ws
        sub = _Subscriber(transport, "ws")
        self._join(topic, sub)
        try:
            # Messages from the subscriber are read and ignored until it closes.
            while not sub.done.done():
                receive = asyncio.ensure_future(ws.receive())
                await asyncio.wait((receive, sub.done), return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    break
                if receive.result().type in (WSMsgType.CLOSE, WSMsgType.CLOSING,
                                             WSMsgType.CLOSED, WSMsgType.ERROR):  # fmt: skip
                    break
        finally:
            self._leave(topic, sub)
        if not ws.closed and not transport.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
        return ws

    # -- the publisher -------------------------------------------------------------------
    async def publish(self, request: web.Request) -> web.Response:
        name = request.query.get("topic", "")
        if not name:
            raise web.HTTPBadRequest(text="query parameter topic is required")
        first = _bounded(request, "seq", 1, 0, 1 << 53)
        count = _bounded(request, "count", 1, 1, MAX_COUNT)
        interval = _bounded(request, "interval_ms", 100, 1, 60_000) / 1000
        size = _bounded(request, "size", 0, 0, MAX_SIZE)
        await request.read()  # a body, if any, is the comment's text: not echoed
        written = gone = 0
        took = 0.0
        subscribers = 0
        start = time.monotonic()
        sent: list[float] = []
        for index in range(count):
            if index:
                due = start + index * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            topic = self._topics.get(name)
            members = list(topic.subscribers) if topic else []
            subscribers = len(members)
            began = time.monotonic()
            w, g = self._broadcast(topic, members, first + index, size, began)
            took = max(took, (time.monotonic() - began) * 1000)
            written, gone = written + w, gone + g
            sent.append(began)
        body = {
            "topic": name, "subscribers": subscribers, "written": written, "gone": gone,
            "took_ms": round(took, 3), "sent": sent,
        }  # fmt: skip
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    def _broadcast(
        self,
        topic: _Topic | None,
        members: list[_Subscriber],
        seq: int,
        size: int,
        sent: float,
    ) -> tuple[int, int]:
        """Write message ``seq`` to every member; (written, gone)."""
        if topic is None or not members:
            return 0, 0
        payload = _payload(seq, sent, size)
        event = sse_event(seq, payload)
        frames: dict[Mode, bytes] = {
            "sse-raw": event,
            "sse-chunked": b"%x\r\n%s\r\n" % (len(event), event),
            "ws": ws_text_frame(payload.encode()),
        }
        n = len(members)
        turn = topic.turn % n
        topic.turn += 1
        written = gone = 0
        for sub in members[turn:] + members[:turn]:
            transport = sub.transport
            if transport.is_closing() or transport.get_write_buffer_size() > MAX_BACKLOG:
                gone += 1
                sub.end()
                if not transport.is_closing():
                    transport.abort()  # it does not read: dropped, counted as gone
                continue
            transport.write(frames[sub.mode])
            written += 1
        return written, gone


def _bounded(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be an integer") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be from {low} to {high}")
    return value


def _payload(seq: int, sent: float, size: int) -> str:
    """``{"seq":…,"sent":…}`` (``"pad"`` with ``size``): server.py's event payload."""
    body: dict[str, object] = {"seq": seq, "sent": sent}
    if size:
        body["pad"] = "x" * size
    return json.dumps(body, separators=(",", ":"))
