"""Timelines: what a probe saw, as frozen data. Times are ``time.monotonic()``.

Stream timelines (and the resume timeline made of two streams) also give a
small JSON form for reports that draw them, ``stream_json()``: times in ms
relative to the request, rounded to 0.1 ms::

    {"kind": "sse" | "ws", "url": ..., "interval_ms": 100.0, "expected": 20,
     "status": 200, "headers_ms": 1.2 | null, "end": "complete", "error": null,
     "events": [[seq, sent_ms, arrived_ms], ...]}

The resume timeline adds ``"reconnect_ms"``: when the second request went out
(null when there was none); its events follow the first stream's, on the same
clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..lag import PressureSamples, stall_between

Headers = tuple[tuple[str, str], ...]
# What carried a stream: Server-Sent Events, or a WebSocket's pushed messages.
StreamKind = Literal["sse", "ws"]
# How a stream ended (StreamTimeline's docstring says what each means).
StreamEnd = Literal["complete", "truncated", "timeout", "refused", "status", "error"]
# How a long-lived connection was held (the checks in checks/long.py).
HoldMode = Literal["idle", "keepalive", "heartbeat", "lifetime"]


def _ms(at: float, origin: float) -> float:
    return round((at - origin) * 1000, 1)


def header(headers: Headers, name: str) -> str | None:
    lower = name.lower()
    for key, value in headers:
        if key.lower() == lower:
            return value
    return None


@dataclass(frozen=True)
class Delivery:
    """One SSE event or pushed WebSocket message: when sent, when it arrived."""

    seq: int
    sent_at: float
    received_at: float
    event_id: str | None = None


@dataclass(frozen=True)
class StreamTimeline:
    """An SSE stream or a WebSocket push, from request to end.

    ``end`` is ``complete`` (the body or the socket ended cleanly),
    ``truncated`` (it ended early: payload error, reset, 1006), ``timeout``
    (still open when the probe gave up), ``refused`` (no connection),
    ``status`` (a non-success status or failed upgrade) or ``error``.
    """

    kind: StreamKind
    url: str
    requested_at: float
    status: int | None
    headers: Headers
    headers_at: float | None
    deliveries: tuple[Delivery, ...]
    expected: int
    interval_ms: float
    ended_at: float
    end: StreamEnd
    error: str | None = None
    loop_lag_ms: float = 0.0
    # The PSI samples that bracket the stream's window (empty where the kernel has
    # no PSI): how starved the machine was over the stream (``cpu_stall_ms``) or
    # while one late item travelled (``stall_fraction``).
    pressure: PressureSamples = ()
    comments: int = 0
    retry_ms: int | None = None
    initial_delay_ms: float = 0.0

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def cpu_stall_ms(self) -> float | None:
        """How long (ms) some task on the machine waited for a CPU during the stream."""
        found = stall_between(self.pressure, self.requested_at, self.ended_at)
        return None if found is None else found[0]

    def stall_fraction(self, since: float, until: float) -> float | None:
        """Share of ``since`` … ``until`` in which some task waited for a CPU; None if unknown."""
        found = stall_between(self.pressure, since, until)
        if found is None or found[1] <= 0:
            return None
        return min(1.0, found[0] / found[1])

    def events_json(self, origin: float) -> list[list[float]]:
        return [
            [d.seq, _ms(d.sent_at, origin), _ms(d.received_at, origin)] for d in self.deliveries
        ]

    def stream_json(self) -> dict[str, Any]:
        """The small JSON form reports draw (see the module docstring)."""
        origin = self.requested_at
        return {
            "kind": self.kind,
            "url": self.url,
            "interval_ms": self.interval_ms,
            "expected": self.expected,
            "status": self.status,
            "headers_ms": None if self.headers_at is None else _ms(self.headers_at, origin),
            "end": self.end,
            "error": self.error,
            "events": self.events_json(origin),
        }


@dataclass(frozen=True)
class ResumeTimeline:
    """sse.last-event-id: a stream read in part, then a reconnect with Last-Event-ID."""

    first: StreamTimeline
    second: StreamTimeline | None
    last_event_id_sent: str | None
    origin_saw: tuple[str | None, ...]  # Last-Event-ID of each request the origin got

    def stream_json(self) -> dict[str, Any]:
        """Both connections on the first request's clock, as one stream."""
        data = self.first.stream_json()
        data["reconnect_ms"] = None
        if self.second is not None:
            origin = self.first.requested_at
            data["events"] += self.second.events_json(origin)
            data["reconnect_ms"] = _ms(self.second.requested_at, origin)
            data["end"], data["error"] = self.second.end, self.second.error
        return data


@dataclass(frozen=True)
class HandshakeTimeline:
    """A raw WebSocket upgrade request and what came back."""

    url: str
    requested_at: float
    status: int | None
    reason: str
    headers: Headers
    responded_at: float | None
    key: str
    expected_accept: str
    error: str | None
    origin_requests: int  # how many of our requests reached the origin
    origin_saw_upgrade: bool | None  # did the origin see Upgrade: websocket?
    origin_upgraded: bool | None

    def header(self, name: str) -> str | None:
        return header(self.headers, name)


@dataclass(frozen=True)
class EchoExchange:
    kind: Literal["text", "binary"]
    size: int
    ok: bool
    rtt_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class EchoTimeline:
    status: int | None  # 101 when the upgrade worked
    error: str | None
    exchanges: tuple[EchoExchange, ...]
    close_code: int | None = None


@dataclass(frozen=True)
class PingTimeline:
    status: int | None
    error: str | None
    client_pong_ms: float | None  # our ping answered after this long
    origin_ping_seen: bool  # the origin's ping reached us
    origin_pong_seen: bool  # our pong reached the origin
    origin_got_client_ping: bool  # our ping reached the origin (not answered by the proxy)


@dataclass(frozen=True)
class CloseTimeline:
    status: int | None
    error: str | None
    client_sent: tuple[int, str]  # code and reason the client closed with
    origin_got: tuple[int | None, str | None]
    origin_sent: tuple[int, str]  # code and reason the origin closed with
    client_got: tuple[int | None, str | None]
    second_status: int | None = None
    second_error: str | None = None


@dataclass(frozen=True)
class SubprotocolTimeline:
    status: int | None
    error: str | None
    offered: tuple[str, ...]
    server_prefers: tuple[str, ...]
    client_got: str | None
    origin_offered: tuple[str, ...] | None
    origin_selected: str | None


@dataclass(frozen=True)
class HoldTimeline:
    """A long-lived connection held open up to ``max_hold_s``: did it survive?

    ``opened_at`` is when the connection was usable (after the upgrade, or the
    first SSE event); ``ended_at`` is None when it was still open at max-hold.
    """

    kind: StreamKind
    mode: HoldMode
    status: int | None
    error: str | None
    opened_at: float | None
    ended_at: float | None
    max_hold_s: float
    heartbeat_s: float | None = None
    how: str | None = None  # how it ended, as the client saw it
    close_code: int | None = None
    events: int = 0
    expected_events: int = 0
    last_event_at: float | None = None
    origin_end: str | None = None  # the origin's view of its side of the connection
    origin_ended_at: float | None = None
    origin_sent: int | None = None  # events the origin had sent (sse.lifetime)

    @property
    def dropped_after_s(self) -> float | None:
        if self.ended_at is None or self.opened_at is None:
            return None
        return round(self.ended_at - self.opened_at, 2)


@dataclass(frozen=True)
class Attempt:
    """One connection of a reconnecting SSE client."""

    requested_at: float
    last_event_id: str | None  # the Last-Event-ID header it sent
    status: int | None
    ids: tuple[int, ...]  # sequence numbers of the events it received
    end: StreamEnd
    origin_saw: str | None = None  # the Last-Event-ID the origin received for it


@dataclass(frozen=True)
class ReconnectTimeline:
    """sse.reconnect: a stream cut by the origin, resumed by a browser-like client."""

    expected: tuple[int, ...]
    retry_ms: int | None
    attempts: tuple[Attempt, ...]
    cuts: int  # how many times the origin cut the stream


@dataclass(frozen=True)
class Fate:
    """What became of one open connection while something happened to the proxy."""

    kind: StreamKind
    opened_at: float | None
    ended_at: float | None  # None: still open when the watch stopped
    last_data_at: float | None
    how: str | None = None


@dataclass(frozen=True)
class ReloadTimeline:
    """lifecycle.reload: open connections and new ones across a reload."""

    unsupported: str | None = None
    method: str | None = None
    observed: str | None = None  # how the reload was seen to take effect; None: it was not
    error: str | None = None
    reload_at: float | None = None  # when the reload command started
    reloaded_at: float | None = None  # when it returned (a helper container takes a while)
    observe_s: float = 0.0
    fates: tuple[Fate, ...] = ()
    during_ok: int = 0
    during_failed: tuple[str, ...] = ()
    after_ws: str | None = None  # None when a new WebSocket worked after the reload
    after_sse: str | None = None
    alive_after: bool = True
    log_tail: str = ""


@dataclass(frozen=True)
class RestartTimeline:
    """lifecycle.origin-restart: the origin dies mid-stream, then comes back."""

    unsupported: str | None = None
    error: str | None = None
    killed_at: float | None = None
    learn_limit_s: float = 0.0
    fates: tuple[Fate, ...] = ()
    restarted_at: float | None = None
    recovered_after_s: float | None = None  # None: no request got through in time
    recover_limit_s: float = 0.0
    last_failure: str | None = None
    after_ws: str | None = None
    after_sse: str | None = None


@dataclass(frozen=True)
class LoadTimeline:
    """load.concurrency: N WebSockets and N SSE streams open at once through one proxy."""

    requested: int  # asked for, per kind
    attempted: int  # opened, per kind (less than requested only for the tool's own limits)
    ws_ok: int
    sse_ok: int
    failures: tuple[tuple[str, int], ...]  # ("ws: status 502", 12), ...
    setup_s: float
    still_open: int  # of the connections opened, how many answered again after all were up
    tool_limit: str | None = None
    fd_limit: int = 0
    tool_rss_mb: float = 0.0
    # The worst lag of the tool's own event loop while the connections were set up
    # and checked: past the connect timeout, a "no answer in time" may be the tool's.
    loop_lag_ms: float = 0.0
    origin_process: bool = False  # the origin ran in a process of its own
    error: str | None = None  # the harness could not set the check up


@dataclass(frozen=True)
class FanoutSide:
    """load.fanout: one protocol's subscribers during one burst, through one path.

    Latencies are receive time minus the origin's send time of each message
    (one machine, one monotonic clock), summarised by the probe.
    """

    subscribers: int  # asked for (N)
    connected: int  # subscribed when the burst began
    published: int = 0  # messages the origin broadcast during the burst
    expected: int = 0  # connected × published
    received: int = 0  # of those, arrived (each once) before the probe stopped waiting
    dropped: int = 0  # subscriptions whose connection ended during the burst
    # Why subscriptions failed to open, so far: (("status 502", 3), ...)
    refused: tuple[tuple[str, int], ...] = ()
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # The origin's longest loop writing one message to every subscriber of the topic
    # (both protocols), from the publisher's answers: its own share of the latency.
    origin_write_ms: float = 0.0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def delivered(self) -> bool:
        """Everyone subscribed, nothing lost, nobody dropped, something was sent."""
        return (
            self.connected >= self.subscribers and self.published > 0
            and self.lost == 0 and self.dropped == 0
        )  # fmt: skip


@dataclass(frozen=True)
class FanoutStep:
    """N subscribers of each protocol: a burst directly from the origin, then through the target."""

    n: int
    sse: FanoutSide
    ws: FanoutSide | None  # None: WebSocket not proxied (every upgrade refused alike)
    direct_sse: FanoutSide
    direct_ws: FanoutSide
    # The tool's own worst event-loop lag during each burst.
    loop_lag_ms: float = 0.0
    direct_loop_lag_ms: float = 0.0
    publish_error: str | None = None  # the publisher's request through the target failed
    direct_publish_error: str | None = None


@dataclass(frozen=True)
class FanoutTimeline:
    """load.fanout: one publisher, N subscribers per protocol, N stepping up."""

    steps: tuple[FanoutStep, ...]
    requested_max_n: int
    max_n: int  # the largest N this machine lets the tool try (requested, or the fd limit)
    interval_ms: float = 100.0
    messages_per_step: int = 10
    ws_refused: str | None = None  # why WebSocket is not judged ("status 400" every time)
    tool_limit: str | None = None  # why stepping stopped short of max_n on the tool's side
    fd_limit: int = 0
    origin_process: bool = False
    error: str | None = None  # the harness could not set the check up


@dataclass(frozen=True)
class H2Offer:
    """How far an ``@h2`` probe got before its own traffic: HTTP/2 at all, and what
    the server's first SETTINGS frame advertised."""

    tls: bool
    not_offered: str | None = None  # the listener does not speak HTTP/2 (why)
    error: str | None = None  # the HTTP/2 connection failed otherwise
    alpn: str | None = None
    advertised: bool | None = None  # SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441)
    max_streams: int | None = None  # SETTINGS_MAX_CONCURRENT_STREAMS; None: unlimited

    @property
    def connected(self) -> bool:
        return self.not_offered is None and self.error is None and self.advertised is not None


@dataclass(frozen=True)
class H2UpgradeTimeline:
    """ws.upgrade@h2: an extended CONNECT (``:protocol websocket``) and its answer."""

    offer: H2Offer
    url: str = ""
    requested_at: float = 0.0
    status: int | None = None  # 200 is success in RFC 8441
    responded_at: float | None = None
    error: str | None = None
    origin_requests: int = 0
    origin_saw_upgrade: bool | None = None
    origin_upgraded: bool | None = None


@dataclass(frozen=True)
class H2EchoTimeline:
    """ws.echo@h2: ``echo`` is None when no extended CONNECT was tried (see ``offer``);
    its ``status`` is the CONNECT's (200 when the WebSocket opened)."""

    offer: H2Offer
    echo: EchoTimeline | None = None


@dataclass(frozen=True)
class H2CloseTimeline:
    """ws.close@h2, as :class:`H2EchoTimeline` (statuses are the CONNECTs')."""

    offer: H2Offer
    close: CloseTimeline | None = None


@dataclass(frozen=True)
class H2StreamsTimeline:
    """h2.streams: long-held SSE streams opened at once on one HTTP/2 connection.

    ``requested`` streams within the advertised limit (capped), of which
    ``served`` got 200 and their first event; ``failure`` says what happened to
    the first that did not. ``beyond`` is the fate of one stream more than the
    server advertised (None when none was sent: no limit, or over the cap).
    """

    offer: H2Offer
    cap: int = 0
    requested: int = 0
    served: int = 0
    failure: str | None = None
    failure_index: int | None = None  # 1-based, in the order the streams were opened
    beyond: str | None = None
    beyond_refused: bool = False  # a clean refusal (RST_STREAM) of the stream beyond
    wait_s: float = 0.0  # how long a stream may take to deliver before it counts as stalled
    error: str | None = None  # the probe could not open the streams (the connection died)


# -- browser.* (probes/browser.py): what a real Chromium saw, read from its page ----------
@dataclass(frozen=True, kw_only=True)
class BrowserTimeline:
    """What every browser check records besides its own traffic.

    ``unavailable`` says why no browser ran (no Chromium found; nothing else is
    then filled in), ``required`` whether the run needs one anyway
    (``PROXYTEST_REQUIRE_BROWSER=1``). ``page_error`` says why the test page did
    not run (it did not load through the proxy). ``page_protocol`` is the
    protocol Chromium loaded the page with (``h2``, ``http/1.1``), ``tls``
    whether the listener speaks TLS (browsers speak h2 only over TLS). Times
    are milliseconds on the page's clock.
    """

    url: str = ""
    tls: bool = False
    unavailable: str | None = None
    required: bool = False
    page_error: str | None = None
    page_protocol: str | None = None
    end: str | None = None  # how the page's script ended: complete, closed, timeout, gave-up


@dataclass(frozen=True, kw_only=True)
class EventSourceTimeline(BrowserTimeline):
    """browser.eventsource: one EventSource, cut by the origin after ``cut_at``.

    ``opens_ms``: each time it opened (the first, then each reconnect);
    ``event_ids``: every event's id in arrival order; ``errors``: (when, the
    last id the page had, readyState) at each error; ``origin_last_event_ids``:
    the ``Last-Event-ID`` each request for the stream carried at the origin;
    ``origin_cuts``: how many of those requests the origin cut itself (None:
    not known). The origin cuts every request without ``Last-Event-ID``
    (``cut_once``): a page that got no event before the first cut reconnects
    without one and is cut again, by the origin, not the proxy.
    """

    expected_last: int = 0
    cut_at: int = 0
    interval_ms: float = 0.0
    created_ms: float = 0.0
    opens_ms: tuple[float, ...] = ()
    first_event_ms: float | None = None
    event_ids: tuple[str, ...] = ()
    errors: tuple[tuple[float, str | None, int], ...] = ()
    origin_last_event_ids: tuple[str | None, ...] = ()
    origin_cuts: int | None = None


@dataclass(frozen=True, kw_only=True)
class BrowserSocketTimeline(BrowserTimeline):
    """browser.websocket: one WebSocket that echoes a text and a binary message.

    ``handshake_status`` is what Chromium's network stack reported
    (``Network.webSocketHandshakeResponseReceived``): 101 over HTTP/1.1, 200
    for an RFC 8441 stream over HTTP/2; ``sent_key`` whether its handshake
    carried ``Sec-WebSocket-Key`` (HTTP/1.1 only). ``binary_size`` bytes.
    """

    created_ms: float = 0.0
    opened_ms: float | None = None
    text_echoed: bool | None = None
    binary_echoed: bool | None = None
    binary_size: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    was_clean: bool | None = None
    handshake_status: int | None = None
    sent_key: bool | None = None
    origin_upgraded: bool = False
    # The listener's SETTINGS_ENABLE_CONNECT_PROTOCOL as proxytest's own HTTP/2
    # client read it (None: no HTTP/2 over TLS there).
    extended_connect: bool | None = None

    @property
    def over_h2(self) -> bool | None:
        """Chromium used HTTP/2 (RFC 8441) for it; None when that cannot be told.

        From the handshake request Chromium reported; where it reported none, from
        the rule it follows: RFC 8441 on a page loaded over h2 where
        the listener advertises extended CONNECT.
        """
        if self.sent_key is not None:  # RFC 8441 has no key (and answers 200, not 101)
            return not self.sent_key
        if self.page_protocol is None or self.extended_connect is None:
            return None
        return self.page_protocol == "h2" and self.extended_connect


@dataclass(frozen=True, kw_only=True)
class ConnectionLimitTimeline(BrowserTimeline):
    """browser.connection-limit: ``streams`` EventSources to one host from one page.

    ``opened_ms``: when each opened (None: it never did) before the probe closed
    one; ``reopened``: whether a waiting one opened once the probe closed an
    open one (None when none was waiting, or nothing was open).
    """

    streams: int = 0
    opened_ms: tuple[float | None, ...] = ()
    errors: int = 0
    reopened: bool | None = None

    @property
    def opened(self) -> int:
        return sum(1 for t in self.opened_ms if t is not None)


# Which part of lb.sticky a request belongs to: a long-polling session (its
# handshake, then polls carrying the session id), WebSocket or SSE reconnects.
LbPart = Literal["handshake", "poll", "ws", "sse"]


@dataclass(frozen=True)
class LbHop:
    """One request of lb.sticky's client: which backend answered it.

    ``backend`` is the answering origin's id (its ``X-Proxytest-Origin``, or its
    records), None when no backend could be told (no answer, a refused upgrade);
    ``status`` is the HTTP status (101 for an upgrade), None without an answer.
    """

    part: LbPart
    backend: str | None
    status: int | None
    error: str | None = None


@dataclass(frozen=True)
class StickyTimeline:
    """lb.sticky: one client (one cookie jar) through a proxy in front of ``backends``
    origins, request by request in the order sent."""

    backends: int
    hops: tuple[LbHop, ...] = ()
    error: str | None = None  # the probe could not run at all
