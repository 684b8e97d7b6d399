"""Long-polling sessions held in one backend's memory, as socket.io keeps them.

An application behind several backends without a shared session store (the
usual socket.io or SockJS deployment) needs every request of a session to reach
the backend that created it. These routes behave like one:

``/lb/handshake``
    Creates a session (a random id) and answers ``{"sid": …, "origin": …}`` as
    JSON, with the cookie ``proxytest_sid=<sid>`` (applications set one; a proxy
    that hashes on an application cookie can use it).
``/lb/poll?sid=<sid>``
    200 ``{"sid": …, "origin": …}`` on the backend that holds the session; on any
    other 400 ``{"error": "unknown session"}``, socket.io's answer (``{"code": 1,
    "message": "Session ID unknown"}`` there).

Memory is bounded: at most :data:`MAX_SESSIONS` sessions, each forgotten
:data:`SESSION_TTL_S` after its last use (the oldest first when full).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from aiohttp import web

from ..routes import HANDSHAKE_PATH, POLL_PATH

__all__ = [
    "COOKIE",
    "HANDSHAKE_PATH",
    "MAX_SESSIONS",
    "POLL_PATH",
    "SESSION_TTL_S",
    "UNKNOWN_SESSION",
    "Sessions",
]

COOKIE = "proxytest_sid"
MAX_SESSIONS = 10_000
SESSION_TTL_S = 120.0
UNKNOWN_SESSION = "unknown session"


class Sessions:
    """The sessions one backend holds: created by a handshake, found by a poll."""

    def __init__(self, origin_id: str) -> None:
        self.origin_id = origin_id
        self._last_use: OrderedDict[str, float] = OrderedDict()  # sid -> last use, oldest first

    def __len__(self) -> int:
        return len(self._last_use)

    def _expire(self, now: float) -> None:
        while self._last_use:
            sid, used = next(iter(self._last_use.items()))
            if now - used < SESSION_TTL_S and len(self._last_use) <= MAX_SESSIONS:
                break
            del self._last_use[sid]

    def create(self) -> str:
        now = time.monotonic()
        sid = secrets.token_urlsafe(12)
        self._last_use[sid] = now
        self._expire(now)
        return sid

    def holds(self, sid: str) -> bool:
        """Whether this backend holds ``sid`` (a use: its expiry starts again)."""
        now = time.monotonic()
        self._expire(now)
        if sid not in self._last_use:
            return False
        self._last_use[sid] = now
        self._last_use.move_to_end(sid)
        return True

    def handshake(self) -> web.Response:
        sid = self.create()
        response = web.json_response(
            {"sid": sid, "origin": self.origin_id}, headers={"Cache-Control": "no-store"}
        )
        response.set_cookie(COOKIE, sid, path="/", httponly=True)
        return response

    def poll(self, sid: str) -> web.Response:
        if not sid or not self.holds(sid):
            return web.json_response(
                {"error": UNKNOWN_SESSION}, status=400, headers={"Cache-Control": "no-store"}
            )
        return web.json_response(
            {"sid": sid, "origin": self.origin_id}, headers={"Cache-Control": "no-store"}
        )
