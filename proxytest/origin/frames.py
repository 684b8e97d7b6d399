"""The frame-depth routes (``ws.frames``, ``ws.deflate``): echo, and record exactly
what arrived.

``/ws/frames`` echoes every text and binary message unchanged, without
compression, up to ``FRAMES_MAX_MESSAGE`` bytes, and answers pings (aiohttp's
autoping); each message is recorded as its kind, size and digest
(``OriginRecord.digests``), so a probe tells a message corrupted on the way in
from one corrupted on the way back. aiohttp's reader refuses what RFC 6455 calls
invalid (bad UTF-8 in text: 1007; a reserved opcode, a fragmented control frame,
RSV bits without an extension: 1002) and closes with that code: an invalid frame
that arrives here as a message was made valid on the way.

``/ws/deflate`` is the same echo with permessage-deflate (RFC 7692) accepted when
offered; ``OriginRecord.extensions_selected`` is the Sec-WebSocket-Extensions the
origin answered (None: no extension).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import WSMessage, WSMsgType, web

if TYPE_CHECKING:
    from .server import Origin, OriginRecord

__all__ = ["FRAMES_MAX_MESSAGE", "digest", "routes"]

# The largest message /ws/frames accepts: ws.frames sends 16 MiB at most.
FRAMES_MAX_MESSAGE = 24 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def digest(payload: bytes) -> str:
    """What the origin records of a message's payload (UTF-8 bytes for text)."""
    return hashlib.sha256(payload).hexdigest()[:16]


def routes(origin: Origin) -> dict[str, Handler]:
    """The frame-depth routes of ``origin``."""

    async def serve(request: web.Request, compress: bool) -> web.WebSocketResponse:
        record = origin._record(request)
        ws = web.WebSocketResponse(
            max_msg_size=FRAMES_MAX_MESSAGE, heartbeat=None, autoping=True, compress=compress
        )
        try:
            await ws.prepare(request)
        except web.HTTPException:
            origin._finish(record, "error")
            raise
        record.upgraded = True
        record.extensions_selected = ws.headers.get("Sec-WebSocket-Extensions")
        origin._notify()
        await _echo(ws, record, origin._notify)
        origin._finish(record, "complete" if record.close_code is not None else "client-gone")
        return ws

    async def frames(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, compress=False)

    async def deflate(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, compress=True)

    return {"/ws/frames": frames, "/ws/deflate": deflate}


async def _echo(
    ws: web.WebSocketResponse, record: OriginRecord, notify: Callable[[], None]
) -> None:
    while True:
        msg: WSMessage = await ws.receive()
        if msg.type == WSMsgType.CLOSE:
            record.close_code, record.close_reason = msg.data, msg.extra
            break
        if msg.type == WSMsgType.ERROR:
            # aiohttp refused a frame and closed with its code (1002, 1007, 1009)
            record.close_code = getattr(msg.data, "code", ws.close_code)
            record.close_reason = f"refused: {msg.data}"
            break
        if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
            break
        if msg.type == WSMsgType.TEXT:
            raw = msg.data.encode()
            record.messages_received.append(("text", len(raw)))
            record.digests.append(digest(raw))
            if not ws.closed:
                await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            record.messages_received.append(("binary", len(msg.data)))
            record.digests.append(digest(msg.data))
            if not ws.closed:
                await ws.send_bytes(msg.data)
        notify()
