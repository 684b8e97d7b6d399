"""Traefik config planner: findings → the smallest edit of the static and dynamic YAML.

``files``: the static file first, then the dynamic files (file provider). YAML
only for now: a TOML file makes every finding a :class:`Refusal`.

The place: the entry point whose ``address`` holds ``{{ listen_port }}`` (the
only one, if none does) in the static file; in the dynamic files, the router of
that entry point (a router without ``entryPoints`` serves all) whose rule takes
the check's path (``/sse``, ``/ws/echo``, ``/lb/events``, ``/fanout/sse``; the
``Path``/``PathPrefix`` matchers are read, a rule without one takes every path)
with the highest priority (``priority``, else the rule's length, as Traefik
does); its ``middlewares`` (a ``name@provider`` reference counts as ``name``)
and its service's ``loadBalancer``.

What each finding changes (check pattern, Failure):

- HELD, DELAYED, FANOUT_SLOW with a ``buffering`` middleware on the router → its
  item in the router's ``middlewares`` list becomes a comment (the middleware's
  definition stays: other routers may use it). DELAYED/FANOUT_SLOW without one →
  the service's ``loadBalancer.responseForwarding.flushInterval: -1``.
- IDLE, LIFETIME, TRUNCATED → the entry point's ``transport.respondingTimeouts``
  in the STATIC file: a non-zero ``writeTimeout`` (default 0) ends every
  response at that age; the user wrote it, so it is refused with the proposal
  ``writeTimeout: 0s``. ``readTimeout`` (60 s since v3.0) cuts streamed request
  bodies only (measured, 3.7: idle WebSockets and SSE outlive it) and
  ``idleTimeout`` acts between requests, so neither is changed: with
  ``writeTimeout`` at 0 the drop is refused (heartbeats, or a hop in front).
- ``lb.*``, RETRIED_DEAD_BACKEND → a ``retry`` middleware (``retry-dead-backend``,
  ``attempts: 3``) defined in the router's file and added to the router's
  ``middlewares``. Measured on lb-round-robin (3.7.15): lb.failover passed in 12
  of 15 runs after it (degraded in every run before); in the other three one
  reconnect still got a 502 within 3 ms, which the middleware did not retry.
- COMPRESSED_HELD/COMPRESSED_DELAYED with a ``compress`` middleware on the router →
  ``excludedContentTypes: [text/event-stream]`` in its definition.
- UPGRADE, h2_websocket (GODEBUG, not the config), LIMIT, no_failover,
  not_sticky and the rest → refused with the hint's remedy.

The refusal rule (as for Envoy): a knob the user wrote is deliberate unless its
value is Traefik's default written out (``flushInterval: 100ms``); a deliberate
value is never overridden: a :class:`Refusal` carries the change as ``proposal``.
``Change.line`` is the replaced line, or the last line of the block after which
the new lines (a comment, then the knob) go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..results import Failure
from ._collect import Collector, matches
from ._yaml import Doc, Finder, is_map, is_seq, plan_yaml, seconds, text_of
from .base import Finding, Plan

__all__ = ["PLANNER", "TraefikPlanner"]

_STREAMS = ("sse.*", "ws.*", "browser.*", "load.*", "lifecycle.*")
_RETRY_NAME = "retry-dead-backend"


class TraefikPlanner:
    def plan(self, files: Mapping[Path, str], findings: Sequence[Finding]) -> Plan:
        return plan_yaml(files, findings, _Finder, edits="Traefik's YAML configs only for now")


class _Router:
    def __init__(self, doc: Doc, name: str, node: Any) -> None:
        self.doc = doc
        self.name = name
        self.node = node


class _Finder(Finder):
    def __init__(self, docs: Sequence[Doc], collector: Collector, finding: Finding) -> None:
        super().__init__(docs, collector, finding)
        self.static = docs[0]
        self.dynamic = list(docs[1:])

    # -- the place --------------------------------------------------------------------
    def entry_point(self) -> tuple[str, Any] | None:
        points = self.static.get(self.static.root, "entryPoints")
        if not is_map(points):
            return None
        named = []
        for name, point in points.items():
            if is_map(point) and "address" in point:
                line = point.lc.value("address")[0]
                if "listen_port" in self.static.raw_line(line):
                    named.append((str(name), point))
        if named:
            return named[0]
        items = [(str(n), p) for n, p in points.items() if is_map(p)]
        return items[0] if len(items) == 1 else None

    def router(self) -> _Router | None:
        point = self.entry_point()
        best: tuple[int, _Router] | None = None
        for doc in self.dynamic:
            routers = doc.get(doc.root, "http", "routers")
            for name, node in routers.items() if is_map(routers) else ():
                if not is_map(node):
                    continue
                points = node.get("entryPoints")
                if (
                    point is not None
                    and is_seq(points)
                    and point[0] not in [str(p) for p in points]
                ):
                    continue
                rule = text_of(node.get("rule")) or ""
                if not _takes(rule, self.path):
                    continue
                priority = text_of(node.get("priority"))
                rank = int(priority) if priority and priority.isdigit() else len(rule)
                if best is None or rank > best[0]:
                    best = (rank, _Router(doc, str(name), node))
        return best[1] if best else None

    def middlewares(self, router: _Router) -> list[tuple[int, str, Doc, Any]]:
        """(index in the router's list, name, defining doc, its definition)."""
        names = router.node.get("middlewares")
        out = []
        for index, ref in enumerate(names if is_seq(names) else ()):
            name = str(ref).split("@", 1)[0]
            for doc in self.dynamic:
                definition = doc.get(doc.root, "http", "middlewares", name)
                if is_map(definition):
                    out.append((index, name, doc, definition))
                    break
        return out

    def load_balancer(self, router: _Router) -> tuple[Doc, Any] | None:
        service = text_of(router.node.get("service"))
        if service is None:
            return None
        service = service.split("@", 1)[0]
        for doc in self.dynamic:
            balancer = doc.get(doc.root, "http", "services", service, "loadBalancer")
            if is_map(balancer):
                return doc, balancer
        return None

    # -- the rules --------------------------------------------------------------------
    def run(self) -> None:
        failure = self.finding.failure
        check = self.finding.check
        if failure in (Failure.HELD, Failure.DELAYED, Failure.FANOUT_SLOW):
            if self.drop_buffering():
                return
            if failure is Failure.HELD:
                self.refuse(
                    "no buffering middleware on the router that serves this path",
                    "look for a `compress` middleware or a hop in front of Traefik",
                )
            else:
                self.flush_interval()
        elif failure in (Failure.IDLE, Failure.LIFETIME, Failure.TRUNCATED) and matches(
            check, *_STREAMS
        ):
            self.timeouts()
        elif failure is Failure.RETRIED_DEAD_BACKEND:
            self.retry()
        elif failure in (Failure.COMPRESSED_HELD, Failure.COMPRESSED_DELAYED):
            self.compress()
        else:
            self.refuse(*_NO_FIX.get(failure, _OTHER))

    def drop_buffering(self) -> bool:
        router = self.router()
        if router is None:
            return False
        found = [(i, n) for i, n, _, d in self.middlewares(router) if "buffering" in d]
        if not found:
            return False
        names = router.node["middlewares"]
        doc = router.doc
        why = "the buffering middleware holds whole responses (streams arrive at the end)"
        for index, name in found:
            if names.fa.flow_style():
                line = int(router.node.lc.value("middlewares")[0])
                kept = [str(n) for i, n in enumerate(names) if i not in {f[0] for f in found}]
                raw = doc.raw_line(line)
                start = raw.index("[", int(router.node.lc.value("middlewares")[1]))
                end = raw.index("]", start) + 1
                doc.set_line(line, raw[:start] + "[" + ", ".join(kept) + "]" + raw[end:])
                knob = f"middlewares: [{', '.join(kept)}]"
            else:
                if len(names) == 1:
                    # the list would be empty: drop the key's value with it
                    key_line = doc.key_line(router.node, "middlewares")
                    doc.comment_out(key_line, "middlewares list emptied")
                line = int(names.lc.item(index)[0])
                doc.comment_out(line, why)
                knob = f"remove {name} from the router's middlewares"
            self.change(doc, line, knob, why)
        return True

    def flush_interval(self) -> None:
        router = self.router()
        found = self.load_balancer(router) if router else None
        if found is None:
            self.refuse("no loadBalancer service found for this path", "set flushInterval by hand")
            return
        doc, balancer = found
        current = text_of(doc.get(balancer, "responseForwarding", "flushInterval"))
        why = "responses other than text/event-stream are flushed every 100 ms"
        if current is None:
            forwarding = balancer.get("responseForwarding")
            if is_map(forwarding):
                self.edit(
                    doc,
                    lambda: doc.insert(forwarding, ["flushInterval"], "-1", why),
                    "flushInterval: -1",
                    why,
                )
            else:
                self.edit(
                    doc,
                    lambda: doc.insert(
                        balancer, ["responseForwarding", "flushInterval"], "-1", why
                    ),
                    "responseForwarding: {flushInterval: -1}",
                    why,
                )
        elif seconds(current) == 0.1:
            line = doc.replace_value(balancer["responseForwarding"], "flushInterval", "-1")
            self.change(doc, line, "flushInterval: -1", why)
        elif current.strip() != "-1":
            self.refuse(
                f"the service sets `flushInterval: {current}` deliberately",
                "decide whether this service's responses may be flushed at once",
                proposal="flushInterval: -1",
            )
        else:
            self.refuse("flushInterval is -1 already", "look at a middleware or a hop in front")

    def timeouts(self) -> None:
        point = self.entry_point()
        doc = self.static
        if point is None:
            self.refuse(
                "no entry point at {{ listen_port }} in the static file",
                "look at the entry point that serves this traffic",
            )
            return
        name, node = point
        timeouts = doc.get(node, "transport", "respondingTimeouts")
        write = text_of(doc.get(timeouts, "writeTimeout"))
        if write is not None and seconds(write) != 0:
            self.refuse(
                f"the entry point {name} sets `writeTimeout: {write}`: it ends every "
                "response at that age, busy or quiet (the default is 0)",
                "decide whether every response on this entry point may live longer; streams need 0",
                proposal="writeTimeout: 0s",
            )
            return
        # readTimeout (60 s since v3.0) cuts streamed request bodies only: measured on
        # 3.7, idle WebSockets and SSE outlive it; idleTimeout is between requests.
        self.refuse(
            "nothing in this Traefik config ends a stream (writeTimeout is 0): the drop "
            "comes from a hop in front or the peer",
            "let the origin send heartbeats (SSE `:` comments, WebSocket pings) more often "
            "than the drop; look at the layer in front",
        )

    def retry(self) -> None:
        router = self.router()
        if router is None:
            self.refuse("no router serves the lb traffic", "check the routers' rules")
            return
        for _, name, _, definition in self.middlewares(router):
            if "retry" in definition:
                self.refuse(
                    f"the router has a retry middleware ({name}) already, set deliberately",
                    "a sticky cookie retries the same dead server: add a healthCheck",
                )
                return
        doc = router.doc
        why = "without a retry a reconnect sent to a dead server gets 502"
        http = doc.get(doc.root, "http")
        middlewares = doc.get(http, "middlewares")
        definition = "{retry: {attempts: 3}}"
        if is_map(middlewares):
            self.edit(
                doc,
                lambda: doc.insert(middlewares, [_RETRY_NAME], definition, why),
                f"{_RETRY_NAME}: {definition}",
                why,
            )
        else:
            self.edit(
                doc,
                lambda: doc.insert(http, ["middlewares", _RETRY_NAME], definition, why),
                f"middlewares: {{{_RETRY_NAME}: {definition}}}",
                why,
            )
        names = router.node.get("middlewares")
        use = "the retry middleware on this router"
        if is_seq(names):
            self.edit(
                doc, lambda: doc.append_item(names, _RETRY_NAME, use), f"- {_RETRY_NAME}", why
            )
        else:
            self.edit(
                doc,
                lambda: doc.insert(router.node, ["middlewares"], f"[{_RETRY_NAME}]", use),
                f"middlewares: [{_RETRY_NAME}]",
                why,
            )

    def compress(self) -> None:
        router = self.router()
        found = [
            (doc, d)
            for _, _, doc, d in (self.middlewares(router) if router else [])
            if "compress" in d
        ]
        if not found:
            self.refuse(
                "no compress middleware on the router that serves this path",
                "look for compression in a hop in front of Traefik",
            )
            return
        doc, definition = found[0]
        compress = definition["compress"]
        knob = "excludedContentTypes: [text/event-stream]"
        why = "compression holds SSE events until a block fills"
        if is_map(compress) and (
            "excludedContentTypes" in compress or "includedContentTypes" in compress
        ):
            self.refuse(
                "the compress middleware sets its content types deliberately",
                "leave text/event-stream out of the compressed types",
                proposal=knob,
            )
            return
        line, col = (int(v) for v in definition.lc.value("compress"))
        raw = doc.raw_line(line)
        if (compress is None or is_map(compress)) and not compress:
            # `compress: {}` or `compress:` (no options): options go on that line
            if not raw[col:].startswith("{}"):
                raw, col = raw.rstrip() + " {}", len(raw.rstrip()) + 1
            start = col
            end = raw.index("}", start) + 1
            doc.set_line(line, raw[:start] + "{" + knob + "}" + raw[end:])
            self.change(doc, line, f"compress: {{{knob}}}", why)
            return
        if is_map(compress):
            self.edit(
                doc,
                lambda: doc.insert(compress, ["excludedContentTypes"], "[text/event-stream]", why),
                knob,
                why,
            )
            return
        self.refuse(
            "the compress middleware is written in a form not handled", "add it by hand", knob
        )


PLANNER = TraefikPlanner()

_MATCHER = re.compile(r"\b(PathPrefix|Path|PathRegexp)\(\s*[`\"]([^`\"]*)[`\"]\s*\)")


def _takes(rule: str, path: str) -> bool:
    """Whether any path matcher of the rule takes ``path`` (no matcher: every path)."""
    found = _MATCHER.findall(rule)
    if not found:
        return True
    for kind, value in found:
        if kind == "PathPrefix" and path.startswith(value):
            return True
        if kind == "Path" and path == value:
            return True
        if kind == "PathRegexp":
            try:
                if re.search(value, path):
                    return True
            except re.error:
                continue
    return False


_OTHER = ("no config change is known for this failure", "follow the hint; it names the knob")
_NO_FIX: dict[Failure, tuple[str, str] | tuple[str, str, str]] = {
    Failure.UPGRADE: (
        "Traefik passes WebSocket upgrades by default: a middleware or a hop in front "
        "rewrites Connection or Upgrade",
        "find the headers middleware or the hop in front that drops them",
    ),
    Failure.H2_WEBSOCKET: (
        "Traefik advertises extended CONNECT only with GODEBUG=http2xconnect=1, and does "
        "not carry WebSockets over it (traefik#11405): not a config file setting",
        "unset GODEBUG=http2xconnect=1 so browsers use HTTP/1.1 WebSockets",
    ),
    Failure.LIMIT: (
        "Traefik sets no connection limit by default: an inFlightReq middleware, the file "
        "descriptor limit or a hop in front refuses them",
        "raise the limit where it is (ulimit -n, the layer in front)",
    ),
    Failure.NO_FAILOVER: (
        "a sticky cookie keeps choosing the dead server; failing over needs a healthCheck "
        "of your choosing",
        "add a `healthCheck` (path, interval) on the service and the retry middleware",
    ),
    Failure.NOT_STICKY: (
        "stickiness needs a cookie name of your choosing",
        "add `sticky: {cookie: {name: NAME, httpOnly: true}}` to the loadBalancer",
    ),
}
