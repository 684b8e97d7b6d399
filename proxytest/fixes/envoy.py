"""Envoy config planner: findings → the smallest edit of the user's static YAML.

The place: the listener whose ``port_value`` is ``{{ listen_port }}`` (the only
one, if none says so), its HttpConnectionManager (HCM), the first virtual host
route whose ``match`` (``prefix``, ``path``, ``path_separated_prefix``,
``safe_regex``) takes the check's path (``/sse``, ``/ws/echo``, ``/lb/events``,
``/fanout/sse``) — Envoy takes the first matching route — and the cluster it
names. Routes from RDS (``rds:``) are not in the file: refused.

What each finding changes (check pattern, Failure):

- ``ws.*``/``browser.websocket``, UPGRADE → HCM ``upgrade_configs: [{upgrade_type:
  websocket}]`` (or a ``- upgrade_type: websocket`` item appended to its list).
- SSE IDLE, LIFETIME, TRUNCATED → route ``timeout: 0s`` (the 15 s route timeout
  cuts every SSE stream; it does not end an upgraded WebSocket, measured, so a
  WebSocket finding skips it). With the route timeout already 0: IDLE near 5 min →
  HCM ``stream_idle_timeout: 3600s``; an explicit route ``idle_timeout``,
  ``max_stream_duration`` or HCM ``common_http_protocol_options``
  (``max_stream_duration``/``max_connection_duration``) → refused with a proposal;
  nothing left in Envoy → refused: the origin must heartbeat (or a hop in front).
- ``lb.*``, RETRIED_DEAD_BACKEND or NO_FAILOVER → route ``retry_policy``
  (connect-failure,reset, 2 retries, the previous_hosts predicate, and
  ``host_selection_retry_max_attempts: 20`` so a ring hash walks past the dead
  host's ring entries), and the cluster's ``circuit_breakers`` ``max_retries``
  raised from its default 3 (every client of a dead host retries at once).
- LIMIT → the cluster's circuit breaker thresholds when they are Envoy's default
  (1024) written out, or ``circuit_breakers`` with every threshold raised
  (``max_retries`` too) when the cluster has none (the defaults then apply);
  otherwise refused.
- HOP_BY_HOP → the route configuration's ``request_headers_to_remove`` (every
  route) gets the well-known names the run saw forwarded (appended to a list
  the user wrote).
- h2_websocket, held/compressed (a filter the user added), not_sticky and the
  rest → refused with the hint's remedy.

The refusal rule: a knob the user wrote is deliberate, unless its value is
Envoy's default written out (route ``timeout: 15s``, ``stream_idle_timeout:
300s``, thresholds of 1024): a deliberate value is never overridden; the planner
returns a :class:`Refusal` whose ``proposal`` is the change it would make. A knob
that is absent is set. ``Change.line`` is the replaced line, or the last line of
the block after which the new lines (a comment, then the knob) are inserted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..results import Failure
from ._collect import (
    HOP_WHY,
    Collector,
    hop_headers,
    matches,
    refuse_connection_named,
    refuse_removed,
)
from ._yaml import Doc, Finder, is_map, is_seq, plan_yaml, seconds, text_of
from .base import Finding, Plan

__all__ = ["PLANNER", "EnvoyPlanner"]

_STREAMS = ("sse.*", "ws.*", "browser.*", "load.*", "lifecycle.*")
# The predicate needs its typed_config: Envoy 1.40 refuses the name alone ("Didn't find
# a registered implementation for 'envoy.retry_host_predicates.previous_hosts'").
# A ring hash offers the next ring entry to a host-selection retry, often the dead
# host again: without host_selection_retry_max_attempts the same sticky clients got
# 503 on every reconnect (measured on 1.40, proxies/envoy/lb-sticky.yaml says more).
_RETRY = (
    '{retry_on: "connect-failure,reset", num_retries: 2, retry_host_predicate: '
    '[{name: envoy.retry_host_predicates.previous_hosts, typed_config: {"@type": '
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}], "
    "host_selection_retry_max_attempts: 20}"
)
# Retries in flight per cluster: Envoy's default is 3, and when a backend dies all its
# clients reconnect (and retry) at once: the fourth got 503, flag UO (measured, 1.40).
_DEFAULT_MAX_RETRIES = "3"
_RAISED_MAX_RETRIES = "9000"
_DEFAULT_THRESHOLD = 1024
_HIGH_S = 3600.0  # an idle timeout this long (or 0, none) is not the cause of a drop
_RAISED_THRESHOLD = "100000"


class EnvoyPlanner:
    def plan(self, files: Mapping[Path, str], findings: Sequence[Finding]) -> Plan:
        return plan_yaml(
            files, findings, _Finder, edits="Envoy's YAML configs only", first_only=True
        )


class _Finder(Finder):
    def __init__(self, docs: Sequence[Doc], collector: Collector, finding: Finding) -> None:
        super().__init__(docs, collector, finding)
        self.doc = docs[0]  # Envoy's one config file

    # -- the place --------------------------------------------------------------------
    def listener(self) -> Any:
        listeners = self.doc.get(self.doc.root, "static_resources", "listeners")
        if not is_seq(listeners):
            return None
        found = []
        for item in listeners:
            address = self.doc.get(item, "address", "socket_address")
            if is_map(address) and "port_value" in address:
                line = address.lc.value("port_value")[0]
                if "listen_port" in self.doc.raw_line(line):
                    found.append(item)
        if found:
            return found[0]
        return listeners[0] if len(listeners) == 1 else None

    def hcms(self) -> list[Any]:
        chains = self.doc.get(self.listener(), "filter_chains")
        out = []
        for chain in chains if is_seq(chains) else ():
            filters = self.doc.get(chain, "filters")
            for item in filters if is_seq(filters) else ():
                config = self.doc.get(item, "typed_config")
                kind = text_of(self.doc.get(config, "@type")) or ""
                name = text_of(self.doc.get(item, "name")) or ""
                if is_map(config) and (
                    kind.endswith("HttpConnectionManager")
                    or name.endswith("http_connection_manager")
                ):
                    out.append(config)
        return out

    def route(self) -> tuple[Any, Any, Any] | None:
        """(hcm, the route entry, its `route` action) that serves the check's path."""
        for hcm in self.hcms():
            hosts = self.doc.get(hcm, "route_config", "virtual_hosts")
            for host in hosts if is_seq(hosts) else ():
                routes = self.doc.get(host, "routes")
                for entry in routes if is_seq(routes) else ():
                    if _takes(self.doc.get(entry, "match"), self.path):
                        return hcm, entry, self.doc.get(entry, "route")
        return None

    # -- the rules --------------------------------------------------------------------
    def run(self) -> None:
        failure = self.finding.failure
        hcms = self.hcms()
        if not hcms:
            self.refuse(
                "no HttpConnectionManager found on the listener at {{ listen_port }}",
                "set the knob the hint names on the listener that serves this traffic",
            )
            return
        if any("rds" in hcm for hcm in hcms) and self.route() is None:
            self.refuse(
                "the routes come from RDS, not from this file",
                "make the route change the hint names in the route configuration RDS serves",
            )
            return
        if failure is Failure.UPGRADE and matches(self.finding.check, "ws.*", "browser.*"):
            self.upgrade()
        elif failure in (Failure.IDLE, Failure.LIFETIME, Failure.TRUNCATED) and matches(
            self.finding.check, *_STREAMS
        ):
            self.timeouts()
        elif failure in (Failure.RETRIED_DEAD_BACKEND, Failure.NO_FAILOVER):
            self.retry()
        elif failure is Failure.LIMIT:
            self.limits()
        elif failure is Failure.HOP_BY_HOP:
            self.hop_by_hop()
        else:
            self.refuse(*_NO_FIX.get(failure, _OTHER))

    def upgrade(self) -> None:
        found = self.route()
        hcm = found[0] if found else self.hcms()[0]
        route = found[2] if found else None
        for node in (hcm, route):
            configs = self.doc.get(node, "upgrade_configs")
            for item in configs if is_seq(configs) else ():
                kind = (text_of(self.doc.get(item, "upgrade_type")) or "").lower()
                if kind == "websocket" and text_of(self.doc.get(item, "enabled")) == "false":
                    self.refuse(
                        "the websocket upgrade is disabled here deliberately (`enabled: false`)",
                        "decide whether this route may carry WebSockets",
                        proposal="remove `enabled: false` from that upgrade_configs item",
                    )
                    return
        configs = self.doc.get(hcm, "upgrade_configs")
        why = "without it Envoy answers WebSocket upgrades 403"
        if is_seq(configs):
            types = {(text_of(self.doc.get(i, "upgrade_type")) or "").lower() for i in configs}
            if "websocket" in types:
                self.refuse(
                    "the HCM already allows websocket upgrades",
                    "look at a hop in front of Envoy, or a filter that answers the upgrade",
                )
                return
            self.edit(
                self.doc,
                lambda: self.doc.append_item(configs, "upgrade_type: websocket", why),
                "- upgrade_type: websocket",
                why,
            )
            return
        self.edit(
            self.doc,
            lambda: self.doc.insert(hcm, ["upgrade_configs"], "[{upgrade_type: websocket}]", why),
            "upgrade_configs: [{upgrade_type: websocket}]",
            why,
        )

    def timeouts(self) -> None:
        found = self.route()
        if found is None or not is_map(found[2]):
            self.refuse(
                f"no route of the listener at {{{{ listen_port }}}} sends {self.path} to a cluster",
                "check which route serves this traffic",
            )
            return
        hcm, _, action = found
        timeout = text_of(action.get("timeout")) if "timeout" in action else None
        # The route timeout does not end an upgraded WebSocket (measured: an idle one
        # outlived the default 15 s by 80 s): for those, only the idle timeouts count.
        upgraded = matches(self.finding.check, "ws.*", "browser.websocket", "lifecycle.*")
        if upgraded:
            timeout = "0s"
        if timeout is None or seconds(timeout) == 15.0:
            why = "the route timeout (15 s by default) cuts streams; 0s disables it"
            if timeout is None:
                self.edit(
                    self.doc,
                    lambda: self.doc.insert(action, ["timeout"], "0s", why),
                    "timeout: 0s",
                    why,
                )
            else:
                line = self.doc.replace_value(action, "timeout", "0s")
                self.change(self.doc, line, "timeout: 0s", why)
            return
        if seconds(timeout) != 0.0:
            self.refuse(
                f"the route sets `timeout: {timeout}` deliberately; it ends every stream at "
                "that age",
                "decide whether streams on this route may live longer than that",
                proposal="timeout: 0s",
            )
            return
        failure = self.finding.failure
        # The route timeout is off: what else in Envoy ends a stream?
        if failure is Failure.IDLE:
            idle = text_of(action.get("idle_timeout"))
            if idle is not None and (seconds(idle) or 0) < _HIGH_S and seconds(idle) != 0:
                self.refuse(
                    f"the route sets `idle_timeout: {idle}` deliberately",
                    "raise it for quiet streams, or let the origin send heartbeats more often",
                    proposal="idle_timeout: 3600s",
                )
                return
            stream = text_of(hcm.get("stream_idle_timeout"))
            high = stream is not None and (
                seconds(stream) == 0 or (seconds(stream) or 0) >= _HIGH_S
            )
            if stream is not None and seconds(stream) != 300.0 and not high:
                self.refuse(
                    f"the HCM sets `stream_idle_timeout: {stream}` deliberately",
                    "raise it for quiet streams, or let the origin send heartbeats more often",
                    proposal="stream_idle_timeout: 3600s",
                )
                return
            dropped = self.finding.metrics.get("dropped_after_s")
            if isinstance(dropped, (int, float)) and dropped >= 290 and not high:
                why = "stream_idle_timeout (5 min by default) resets quiet streams"
                if stream is None:
                    self.edit(
                        self.doc,
                        lambda: self.doc.insert(hcm, ["stream_idle_timeout"], "3600s", why),
                        "stream_idle_timeout: 3600s",
                        why,
                    )
                else:
                    line = self.doc.replace_value(hcm, "stream_idle_timeout", "3600s")
                    self.change(self.doc, line, "stream_idle_timeout: 3600s", why)
                return
            self.refuse(
                "Envoy's timeouts here are already off or at 5 min: the drop comes from the "
                "path (a hop in front) or the peer",
                "let the origin send heartbeats (SSE `:` comments, WebSocket pings) more often "
                "than the drop",
            )
            return
        for where, node, key in (
            ("route", action, "max_stream_duration"),
            ("HCM", self.doc.get(hcm, "common_http_protocol_options"), "max_stream_duration"),
            ("HCM", self.doc.get(hcm, "common_http_protocol_options"), "max_connection_duration"),
        ):
            if is_map(node) and key in node:
                self.refuse(
                    f"the {where} sets `{key}` deliberately: it ends every stream at that age",
                    "decide whether streams may live longer; clients must reconnect otherwise",
                    proposal=f"remove `{key}` from the {where}",
                )
                return
        self.refuse(
            "no limit on a stream's life is left in this Envoy config",
            "look at a hop in front of Envoy; clients should reconnect with Last-Event-ID",
        )

    def hop_by_hop(self) -> None:
        """``request_headers_to_remove`` of the route configuration: every route."""
        names, named = hop_headers(self.finding)
        refuse_connection_named(self.out, self.finding, named)
        found = self.route()
        config = self.doc.get(found[0] if found else self.hcms()[0], "route_config")
        if not is_map(config):
            self.refuse(
                "no route_config in this file serves the traffic",
                "remove the headers where the routes are configured: request_headers_to_remove",
            )
            return
        present = self.doc.get(config, "request_headers_to_remove")
        have = {(text_of(i) or "").lower() for i in present} if is_seq(present) else set()
        missing = [n.lower() for n in names if n.lower() not in have]
        if not missing:
            if names:
                refuse_removed(self.out, self.finding, names)
            return
        if present is None:
            value = f"[{', '.join(missing)}]"
            self.edit(
                self.doc,
                lambda: self.doc.insert(config, ["request_headers_to_remove"], value, HOP_WHY),
                f"request_headers_to_remove: {value}",
                HOP_WHY,
            )
            return
        for name in missing:
            self.edit(
                self.doc, partial(self.doc.append_item, present, name, HOP_WHY), name, HOP_WHY
            )

    def retry(self) -> None:
        found = self.route()
        if found is None or not is_map(found[2]):
            self.refuse("no route sends the lb traffic to a cluster", "check the routes")
            return
        action = found[2]
        knob = f"retry_policy: {_RETRY}"
        if "retry_policy" in action:
            self.refuse(
                "the route has a retry_policy already, set deliberately",
                "make it retry connect-failure,reset on another host (previous_hosts predicate, "
                "host_selection_retry_max_attempts) and raise the cluster's max_retries",
                proposal=knob,
            )
            return
        why = "without a retry a reconnect sent to a dead host gets 503"
        self.edit(
            self.doc, lambda: self.doc.insert(action, ["retry_policy"], _RETRY, why), knob, why
        )
        self.retry_budget(self.cluster(found))

    def retry_budget(self, cluster: Any) -> None:
        """The cluster's ``max_retries``: raised where absent or Envoy's default written out."""
        if cluster is None or not is_map(cluster):
            return
        why = "3 retries in flight by default: the clients of a dead host retry at once"
        knob = f"max_retries: {_RAISED_MAX_RETRIES}"
        if cluster.get("circuit_breakers") is None:
            self.breakers(cluster, why)
            return
        thresholds = self.doc.get(cluster, "circuit_breakers", "thresholds")
        first: Any = thresholds[0] if is_seq(thresholds) and len(thresholds) else None
        if not is_map(first):
            return  # breakers without thresholds: leave them, the retry alone is the fix
        current = text_of(self.doc.get(first, "max_retries"))
        if current is None:
            self.edit(
                self.doc,
                lambda: self.doc.insert(first, ["max_retries"], _RAISED_MAX_RETRIES, why),
                knob,
                why,
            )
        elif current.strip() == _DEFAULT_MAX_RETRIES:
            self.change(
                self.doc,
                self.doc.replace_value(first, "max_retries", _RAISED_MAX_RETRIES),
                knob,
                why,
            )

    def breakers(self, cluster: Any, why: str) -> None:
        """A ``circuit_breakers`` block for a cluster that has none, every threshold raised
        (one block whichever finding asks first: LIMIT, or a retry's budget)."""
        value = (
            f"{{thresholds: [{{max_connections: {_RAISED_THRESHOLD}, max_pending_requests: "
            f"{_RAISED_THRESHOLD}, max_requests: {_RAISED_THRESHOLD}, "
            f"max_retries: {_RAISED_MAX_RETRIES}}}]}}"
        )
        self.edit(
            self.doc,
            lambda: self.doc.insert(cluster, ["circuit_breakers"], value, why),
            f"circuit_breakers: {value}",
            why,
        )

    def cluster(self, found: Any) -> Any:
        """The static cluster the route ``found`` names; None if not in this file."""
        name = text_of(self.doc.get(found[2], "cluster")) if found else None
        clusters = self.doc.get(self.doc.root, "static_resources", "clusters")
        return next(
            (c for c in (clusters if is_seq(clusters) else ()) if text_of(c.get("name")) == name),
            None,
        )

    def limits(self) -> None:
        found = self.route()
        cluster_name = text_of(self.doc.get(found[2], "cluster")) if found else None
        cluster = self.cluster(found)
        thresholds = self.doc.get(cluster, "circuit_breakers", "thresholds")
        why = "each open stream holds one; the default 1024 refuses more with 503"
        changed = False
        for item in thresholds if is_seq(thresholds) else ():
            for key in ("max_connections", "max_requests", "max_pending_requests"):
                value = text_of(self.doc.get(item, key))
                if value is None:
                    continue
                if value.strip() != str(_DEFAULT_THRESHOLD):
                    self.refuse(
                        f"the cluster {cluster_name} sets `{key}: {value}` deliberately",
                        "raise it to the number of streams it must hold at once",
                        proposal=f"{key}: {_RAISED_THRESHOLD}",
                    )
                    return
                line = self.doc.replace_value(item, key, _RAISED_THRESHOLD)
                self.change(self.doc, line, f"{key}: {_RAISED_THRESHOLD}", why)
                changed = True
        if changed:
            return
        if cluster is not None and is_map(cluster) and cluster.get("circuit_breakers") is None:
            # None written: Envoy's defaults apply, 1024 connections and requests at once
            # (measured: 1000 WebSockets and 1000 SSE streams, 818 streams refused).
            self.breakers(cluster, why)
            return
        self.refuse(
            "Envoy's circuit breakers are set here without a connection or request limit; "
            "the limit is elsewhere (a hop in front, the file descriptor limit)",
            "raise the limit of the layer in front, or the process's `ulimit -n`",
        )


PLANNER = EnvoyPlanner()


def _takes(match: Any, path: str) -> bool:
    if not is_map(match):
        return False
    for key in ("prefix", "path_separated_prefix"):
        if key in match:
            prefix = text_of(match[key]) or ""
            if key == "prefix":
                return path.startswith(prefix)
            return path == prefix or path.startswith(prefix.rstrip("/") + "/")
    if "path" in match:
        return path == text_of(match["path"])
    regex = (
        text_of(match.get("safe_regex", {}).get("regex"))
        if is_map(match.get("safe_regex"))
        else None
    )
    if regex is not None:
        try:
            return re.fullmatch(regex, path) is not None
        except re.error:
            return False
    return False


_OTHER = (
    "no config change is known for this failure",
    "follow the hint; it names the knob",
)
_NO_FIX: dict[Failure, tuple[str, str] | tuple[str, str, str]] = {
    Failure.H2_WEBSOCKET: (
        "Envoy's extended CONNECT (allow_connect) reaches the origin without a "
        "Sec-WebSocket-Key; the origin refuses it",
        "decide whether to drop `http2_protocol_options.allow_connect` so browsers use "
        "HTTP/1.1 WebSockets",
        "remove `allow_connect: true`",
    ),
    Failure.HELD: (
        "a filter you added (buffer or compressor) holds the response",
        "disable it on streaming routes (typed_per_filter_config: {disabled: true})",
    ),
    Failure.COMPRESSED_HELD: (
        "the compressor filter you configured compresses event streams",
        "leave text/event-stream out of its content_type list",
    ),
    Failure.COMPRESSED_DELAYED: (
        "the compressor filter you configured compresses event streams",
        "leave text/event-stream out of its content_type list",
    ),
    Failure.NOT_STICKY: (
        "stickiness needs a hash policy and a cookie name of your choosing",
        "set the cluster's `lb_policy: RING_HASH` and a route `hash_policy` on a cookie",
    ),
    Failure.FANOUT_SLOW: (
        "Envoy's worker threads come from --concurrency, not from the config file",
        "give Envoy more workers (--concurrency) or more CPU",
    ),
}
