"""The nginx config planner: findings in, the smallest edit of the user's files out.

Structure comes from crossplane's lexer (NGINX's own Python parser: quoting,
escapes, comments and the line of every token); the tree of blocks, with the
line of each directive's ``;``/``{`` and of each block's ``}``, is built here,
and ``include`` is followed into the other files given (glob patterns too).
crossplane's ``build()`` would reformat the file, so the text is edited at the
lines the parse reports (fixes/_text.py), every other line byte-identical.

Where: the ``server`` whose ``listen`` names ``{{ listen_port }}`` (its
``default_server``, else the first), then nginx's own location choice for the
path the failing checks request (``=`` exact, longest prefix, ``^~``, regexes
in order, nested locations): WebSocket checks ``/ws/echo``, SSE checks
``/sse``. Per-route knobs go into that location; ``worker_connections``
(``events``), ``worker_rlimit_nofile`` (main) and the ``map`` (``http``) are
global by nature. A hop-by-hop header (``http.hop-by-hop``) is removed with
``proxy_set_header NAME "";`` in every location of the server that proxies,
not only the one the check requested: a login for the proxy must not leak on
any route.

The rule for a value already set (documented in docs/architecture.md, "Config
fixes"):

- set in the serving location itself: the user decided it for this route. If
  it is nginx's default written out (``proxy_buffering on``,
  ``proxy_read_timeout 60s``, ``proxy_http_version 1.0``,
  ``worker_connections 512``) it is replaced in place; otherwise nothing is
  changed and a :class:`Refusal` carries the ``proposal``;
- set only in an enclosing block (``server``, ``http``): a setting for every
  route; the fix overrides it in the serving location only;
- already what the fix would set (a timeout already at least the target):
  the knob is not the cause, so a Refusal says where to look (heartbeats, a
  layer in front).

``proxy_set_header`` is inherited only into a block that sets none: a location
that gets its first one also gets copies of the enclosing block's, so no
header the user set is lost. ``Connection`` comes from the ``map`` nginx's
documentation gives (``upgrade`` for an upgrade, ``close`` otherwise, as
nginx sends by default), not a constant ``"upgrade"`` that would keep every
plain request's upstream connection open for reuse it never gets.

``Change.line`` is the replaced line, or for an insert the original line the
new lines follow.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossplane.errors import NgxParserBaseException
from crossplane.lexer import (
    _balance_braces,
    _lex_file_object,
)

from ..adapters._edits import has_placeholder, mask
from ..results import Failure
from ._collect import (
    HEADERS,
    HOP_WHY,
    HOUR,
    SSE,
    WS,
    hop_headers,
    matches,
    refuse_connection_named,
    refuse_removed,
    sample_paths,
)
from ._text import (
    Inserts,
    Knob,
    LineEdits,
    TextPlanner,
    TextState,
    Unreadable,
    Work,
    at_least,
    duration_s,
    included,
    indent_of,
    indent_unit,
    knob_lines,
    not_the_cause,
)
from .base import Finding

__all__ = ["PLANNER", "NginxPlanner"]

_WORKER_CONNECTIONS = 8192  # 4096 proxied streams per worker (two sockets each)
_RLIMIT = 16384  # twice worker_connections: within this kind of machine's hard limit


@dataclass(eq=False)
class Node:
    name: str
    args: list[str]
    file: Path
    line: int  # the line of its name
    end: int  # the line of its ";" or "{"
    parent: Node | None = None
    children: list[Node] | None = None  # a block's directives (includes followed)
    close: int = 0  # a block's "}" line

    @property
    def last(self) -> int:
        return self.close if self.children is not None else self.end

    def own(self) -> list[Node]:
        return self.children or []

    def chain(self) -> Iterator[Node]:
        node: Node | None = self
        while node is not None:
            yield node
            node = node.parent


def _tokens(text: str) -> Iterator[tuple[str, int, bool]]:
    for token, line, quoted in _balance_braces(_lex_file_object(io.StringIO(mask(text)))):
        if not (token.startswith("#") and not quoted):
            yield token, line, quoted


def _parse(
    path: Path, files: Mapping[Path, str], parent: Node, seen: frozenset[Path] = frozenset()
) -> list[Node]:
    try:
        tokens = list(_tokens(files[path]))
    except NgxParserBaseException as exc:
        raise Unreadable(
            f"nginx syntax the planner cannot read: {path}: {exc}",
            "fix the syntax first (nginx -t names the line)",
        ) from None
    return _block(iter(tokens), path, parent, files, seen | {path})


def _block(
    it: Iterator[tuple[str, int, bool]],
    path: Path,
    parent: Node,
    files: Mapping[Path, str],
    seen: frozenset[Path],
) -> list[Node]:
    nodes: list[Node] = []
    for token, line, quoted in it:
        if token == "}" and not quoted:
            parent.close = line
            return nodes
        node = Node(token, [], path, line, line, parent)
        for word, at, q in it:
            if word in (";", "{") and not q:
                node.end = at
                if word == "{":
                    node.children = []
                    node.children.extend(_block(it, path, node, files, seen))
                break
            node.args.append(word)
        nodes.append(node)
        if node.name == "include" and node.args:
            home = next(iter(files)).parent.as_posix()  # nginx: the main file's folder
            for path in included(node.args[0], home, files, seen):
                nodes.extend(_parse(path, files, parent, seen))
    return nodes


def _find(block: Node, key: tuple[str, ...]) -> Node | None:
    found = None
    for node in block.own():
        if node.name == key[0] and all(
            i < len(node.args) and node.args[i].lower() == k.lower() for i, k in enumerate(key[1:])
        ):
            found = node  # the last one counts
    return found


def _locations(block: Node | None) -> Iterator[Node]:
    """Every location within ``block``, nested ones too, in file order."""
    for node in block.own() if block is not None else ():
        if node.name == "location":
            yield node
            yield from _locations(node)


def _inherited(block: Node, key: tuple[str, ...]) -> Node | None:
    for scope in list(block.chain())[1:]:
        node = _find(scope, key)
        if node is not None:
            return node
    return None


def _value(node: Node, key: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(node.args[len(key) - 1 :])


# --- where the traffic goes ------------------------------------------------------------
def _servers(root: Node, files: Mapping[Path, str]) -> list[Node]:
    http = [n for n in root.own() if n.name == "http"]
    servers = [s for h in http for s in h.own() if s.name == "server"]

    def on_port(server: Node) -> bool:
        for listen in server.own():
            if listen.name == "listen":
                lines = files[listen.file].splitlines()[listen.line - 1 : listen.end]
                if has_placeholder("\n".join(lines), "listen_port"):
                    return True
        return False

    chosen = [s for s in servers if on_port(s)] or servers
    default = [
        s for s in chosen if any(n.name == "listen" and "default_server" in n.args for n in s.own())
    ]
    return default[:1] or chosen[:1]


def _location(block: Node, path: str) -> Node | None:
    """nginx's choice of location for ``path`` among ``block``'s (None: no location)."""
    locations = [n for n in block.own() if n.name == "location" and n.args]
    longest: Node | None = None
    for loc in locations:
        mod, uri = (loc.args[0], loc.args[-1]) if len(loc.args) > 1 else ("", loc.args[0])
        if mod == "=" and uri == path:
            return loc
        longer = longest is None or len(uri) > len(longest.args[-1])
        if mod in ("", "^~") and path.startswith(uri) and longer:
            longest = loc
    if longest is not None and longest.args[0] == "^~":
        return _location(longest, path) or longest
    if longest is not None:
        nested = _location(longest, path)
        if nested is not None:
            return nested
    for loc in locations:
        if loc.args[0] in ("~", "~*") and len(loc.args) > 1:
            try:
                if re.search(loc.args[1], path, re.I if loc.args[0] == "~*" else 0):
                    return loc
            except re.error:
                continue
    return longest


# --- the rules -------------------------------------------------------------------------
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "proxy_buffering": ("on",),
    "proxy_http_version": ("1.0",),
    "gzip": ("off",),
}
_TIMEOUT_DEFAULT = 60.0
_UPGRADE_WHY = "Upgrade and Connection are hop-by-hop: forwarded only when set here"


class _State(TextState):
    proxy = "nginx"

    def __init__(self, files: Mapping[Path, str], work: Work) -> None:
        super().__init__(files, work)
        main = next(iter(files))
        self.root = root = Node("", [], main, 0, 0)
        root.children = []
        root.children.extend(_parse(main, files, root))
        servers = _servers(root, files)
        self.server = servers[0] if servers else None
        self.inserts: Inserts[Node] = Inserts()  # knob lines per block, flushed at the end
        self.copied: set[int] = set()
        self.map_checks: dict[str, None] = {}  # checks that need the Connection map
        self.http: Node | None = None

    # -- entry --------------------------------------------------------------------------
    def apply(self, f: Finding) -> None:
        kind = f.failure
        if kind == Failure.UPGRADE and (matches(f.check, "ws.*") or matches(f.check, "browser.*")):
            self.upgrade(f)
        elif kind in (Failure.HELD, Failure.DELAYED, Failure.FANOUT_SLOW) and not _ws(f):
            self.buffering(f)
        elif kind in (Failure.COMPRESSED_HELD, Failure.COMPRESSED_DELAYED):
            self.gzip(f)
        elif kind == Failure.IDLE:
            self.idle(f)
        elif kind == Failure.LIMIT and matches(f.check, "load.*"):
            self.limit(f)
        elif kind == Failure.NOT_STICKY:
            self.sticky(f)
        elif kind == Failure.HOP_BY_HOP:
            self.hop_by_hop(f)
        elif kind == Failure.LIFETIME:
            self.refuse(
                f,
                "nginx has no limit on a connection's total duration",
                "look at a layer in front of nginx (a load balancer's connection "
                "lifetime) and let clients reconnect with Last-Event-ID",
            )
        elif kind == Failure.H2_WEBSOCKET:
            self.refuse(
                f,
                "WebSocket over HTTP/2 (RFC 8441) depends on the nginx version",
                "serve WebSockets over HTTP/1.1 or use a version that proxies them",
            )
        else:
            self.unknown(f)

    def location(self, f: Finding, path: str) -> Node | None:
        if self.server is None:
            self.refuse(
                f,
                "no server block listens on {{ listen_port }}",
                "the config must route the proxy's port",
            )
            return None
        loc = _location(self.server, path)
        if loc is None:
            self.refuse(
                f,
                f"no location in the server routes {path}",
                f"add a location that proxies {path} to the origin",
            )
        return loc

    # -- knob helpers -------------------------------------------------------------------
    def ensure(self, f: Finding, block: Node, knob: Knob, *, enough: Any = None) -> str:
        """Make ``knob`` hold in ``block``: "ok" (already), "set" (a change), "refused"."""
        own = _find(block, knob.key)
        same = enough or (lambda value: tuple(v.lower() for v in value) == knob.value)
        if own is not None:
            value = _value(own, knob.key)
            if same(value):
                return "ok"
            if self.is_default(knob.key, value) and own.line == own.end:
                self.replace(f, own, knob)
                return "set"
            where = f"{own.file}:{own.line}"
            self.refuse(
                f,
                f"`{' '.join((own.name, *own.args))};` at {where} is set on this route "
                f"and would have to change",
                "decide whether this route may use the proposed value; proxytest does not "
                "override a value set deliberately",
                proposal=f"{knob.text};",
            )
            return "refused"
        up = _inherited(block, knob.key)
        if up is not None and same(_value(up, knob.key)):
            return "ok"
        self.insert(f, block, knob)
        return "set"

    def is_default(self, key: tuple[str, ...], value: tuple[str, ...]) -> bool:
        if key[0] in ("proxy_read_timeout", "proxy_send_timeout"):
            return len(value) == 1 and duration_s(value[0]) == _TIMEOUT_DEFAULT
        if key[0] == "worker_connections":
            return value == ("512",)
        return tuple(v.lower() for v in value) == _DEFAULTS.get(key[0], ())

    def replace(self, f: Finding, node: Node, knob: Knob) -> None:
        edits = self.work.edits[node.file]
        old = edits.line(node.line)
        rest = old[old.find(";") + 1 :] if ";" in old else ""
        if edits.replaced(node.line) is None:
            edits.replace(node.line, f"{indent_of(old)}{knob.text};{rest}")
        self.work.change(node.file, node.line, f"{knob.text};", knob.comment, f.check)

    def insert(self, f: Finding, block: Node, knob: Knob) -> None:
        self.inserts.add(block, knob, f.check)

    def copy_headers(
        self, f: Finding, block: Node, skip: tuple[str, ...] = ("upgrade", "connection")
    ) -> None:
        """Before a location's first proxy_set_header: the inherited ones, repeated
        (but ``skip``: the ones the caller sets itself)."""
        if id(block) in self.copied or any(n.name == "proxy_set_header" for n in block.own()):
            return
        self.copied.add(id(block))
        for scope in list(block.chain())[1:]:
            headers = [n for n in scope.own() if n.name == "proxy_set_header"]
            if headers:
                for node in headers:
                    if node.args and node.args[0].lower() in skip:
                        continue
                    text = " ".join(node.args)
                    key = ("proxy_set_header", node.args[0].lower())
                    self.insert(
                        f,
                        block,
                        Knob(
                            key[:1],
                            (text,),
                            "nginx inherits proxy_set_header only into a block that sets "
                            "none: the enclosing block's, repeated",
                        ),
                    )
                return

    # -- actions ------------------------------------------------------------------------
    def upgrade(self, f: Finding) -> None:
        loc = self.location(f, WS)
        if loc is None:
            return
        why = _UPGRADE_WHY
        version = Knob(
            ("proxy_http_version",),
            ("1.1",),
            "WebSocket needs HTTP/1.1 upstream (before 1.29.7 nginx used 1.0)",
        )
        up = ("proxy_set_header", "Upgrade")
        conn = ("proxy_set_header", "Connection")
        variable = self.connection_variable(f, dry=True)

        def upgrade_or_map(value: tuple[str, ...]) -> bool:
            return len(value) == 1 and value[0].lower() in (variable, "upgrade")

        knobs: list[tuple[Knob, Any]] = [
            (version, None),
            (Knob(up, ("$http_upgrade",), why), None),
            (Knob(conn, (variable,), why), upgrade_or_map),
        ]
        blocked = [(k, e) for k, e in knobs if self.blocked(loc, k, e)]
        if blocked:  # all three or none: a partial upgrade fixes nothing
            for knob, enough in blocked:
                self.ensure(f, loc, knob, enough=enough)
            return
        if _find(loc, up) is None or _find(loc, conn) is None:
            self.copy_headers(f, loc)
        states = [self.ensure(f, loc, knob, enough=enough) for knob, enough in knobs[:2]]
        self.connection_variable(f)
        states.append(self.ensure(f, loc, knobs[2][0], enough=upgrade_or_map))
        if all(s == "ok" for s in states):
            self.refuse(
                f,
                f"the location at {loc.file}:{loc.line} already forwards the upgrade",
                "look for a layer in front that drops Upgrade, or at the origin",
            )

    def blocked(self, block: Node, knob: Knob, enough: Any = None) -> bool:
        """Whether ensuring ``knob`` in ``block`` would be refused (a deliberate value)."""
        own = _find(block, knob.key)
        if own is None:
            return False
        value = _value(own, knob.key)
        same = enough or (lambda v: tuple(x.lower() for x in v) == knob.value)
        return not same(value) and not (self.is_default(knob.key, value) and own.line == own.end)

    def connection_variable(self, f: Finding, dry: bool = False) -> str:
        """``$connection_upgrade``, with the map added to ``http`` if there is none
        (``dry``: only the name)."""
        http = next((n for n in self.root.own() if n.name == "http"), None)
        if http is None:
            return '"upgrade"'
        for node in http.own():
            if node.name == "map" and len(node.args) == 2 and node.args[0] == "$http_upgrade":
                return node.args[1]
        if dry:
            return "$connection_upgrade"
        self.map_checks.setdefault(f.check, None)
        self.http = http
        return "$connection_upgrade"

    def buffering(self, f: Finding) -> None:
        loc = self.location(f, SSE)
        if loc is None:
            return
        knob = Knob(
            ("proxy_buffering",),
            ("off",),
            "event streams must reach the client as they arrive, not when a buffer fills",
        )
        if self.ensure(f, loc, knob) == "ok":
            self.refuse(
                f,
                f"proxy_buffering is already off for {SSE}",
                "look for X-Accel-Buffering from the origin, gzip, or a layer in front",
            )

    def gzip(self, f: Finding) -> None:
        loc = self.location(f, SSE)
        if loc is None:
            return
        on = next((n for n in loc.chain() if _find(n, ("gzip",)) is not None), None)
        gz = _find(on, ("gzip",)) if on is not None else None
        if gz is None or gz.args[:1] != ["on"]:
            self.refuse(
                f,
                "nginx does not compress this stream (gzip is off)",
                "look for compression at the origin or in a layer in front",
            )
            return
        self.ensure(
            f, loc, Knob(("gzip",), ("off",), "gzip holds small events until its buffer fills")
        )

    def idle(self, f: Finding) -> None:
        paths = sample_paths(f.check)
        for path in paths[:1]:
            loc = self.location(f, path)
            if loc is None:
                return
            key = ("proxy_read_timeout",)
            node = _find(loc, key) or _inherited(loc, key)
            current = (duration_s(node.args[0]) if node and node.args else None) or (
                _TIMEOUT_DEFAULT
            )
            if not_the_cause(current, f.metrics):
                self.refuse(
                    f,
                    f"proxy_read_timeout is {current:g} s here, but the connection was dropped "
                    f"after {f.metrics.get('dropped_after_s')} s: nginx's timeout is not what "
                    "cut it",
                    "send heartbeats (an SSE comment, a WebSocket ping) more often than the "
                    "shortest idle timeout on the path, and look for a layer in front",
                )
                return
            self.ensure(
                f,
                loc,
                Knob(
                    key,
                    ("1h",),
                    "quiet streams and WebSockets are closed after this long (60 s by default)",
                ),
                enough=lambda v: len(v) == 1 and (duration_s(v[0]) or 0) >= HOUR,
            )

    def sticky(self, f: Finding) -> None:
        """``ip_hash;`` in the upstream block the /lb/ location's proxy_pass names."""
        loc = self.location(f, "/lb/handshake")
        if loc is None:
            return
        target = _find(loc, ("proxy_pass",))
        name = target.args[0].split("://", 1)[-1].split("/", 1)[0] if target and target.args else ""
        http = next((n for n in self.root.own() if n.name == "http"), None)
        upstream = next(
            (n for n in (http.own() if http else []) if n.name == "upstream" and n.args == [name]),
            None,
        )
        if upstream is None:
            self.refuse(
                f,
                f"proxy_pass at {loc.file}:{loc.line} names no upstream block with several servers",
                "balance in front of nginx, or add an upstream block with ip_hash",
            )
            return
        methods = ("ip_hash", "hash", "least_conn", "random", "least_time", "sticky")
        chosen = next((n for n in upstream.own() if n.name in methods), None)
        knob = Knob(
            ("ip_hash",),
            (),
            "the same client to the same server (a session held in one server's memory)",
        )
        if chosen is not None:
            self.refuse(
                f,
                f"`{' '.join((chosen.name, *chosen.args))};` at {chosen.file}:{chosen.line} "
                "chooses the servers of this upstream",
                "decide whether this upstream may balance by client address; proxytest does "
                "not override a value set deliberately",
                proposal="ip_hash;",
            )
            return
        self.insert(f, upstream, knob)

    def hop_by_hop(self, f: Finding) -> None:
        """``proxy_set_header <name> "";`` (not sent) in every location of the server
        that proxies: a credential must not leak on the routes no check requested."""
        names, named = hop_headers(f)
        refuse_connection_named(self.work, f, named)
        served = self.location(f, HEADERS)
        if served is None or not names:
            return
        places = [served, *(n for n in _locations(self.server) if n is not served)]
        states = []
        for loc in places:
            if loc is not served and _find(loc, ("proxy_pass",)) is None:
                continue
            self.copy_headers(f, loc, skip=())
            states += [
                self.ensure(
                    f,
                    loc,
                    Knob(("proxy_set_header", name), ('""',), HOP_WHY),
                    enough=lambda v: v in (("",), ('""',), ("''",)),
                )
                for name in names
            ]
        if all(state == "ok" for state in states):
            refuse_removed(self.work, f, names)

    def limit(self, f: Finding) -> None:
        events = next((n for n in self.root.own() if n.name == "events"), None)
        if events is None:
            self.refuse(f, "no events block", "add `events { worker_connections 8192; }`")
            return
        wc = Knob(
            ("worker_connections",),
            (str(_WORKER_CONNECTIONS),),
            "each proxied stream holds two connections; the default 512 is ~250 streams",
        )
        state = self.ensure(
            f,
            events,
            wc,
            enough=at_least(_WORKER_CONNECTIONS),
        )
        if state == "refused":
            return
        rl = Knob(
            ("worker_rlimit_nofile",),
            (str(_RLIMIT),),
            "descriptors for worker_connections; keep it within `ulimit -Hn`",
        )
        state2 = self.ensure(
            f,
            self.root,
            rl,
            enough=at_least(_RLIMIT),
        )
        if state == "ok" and state2 == "ok":
            self.refuse(
                f,
                "worker_connections and worker_rlimit_nofile are already high",
                "look for a connection limit in a layer in front, or the OS (somaxconn, ulimit -n)",
            )

    # -- writing ------------------------------------------------------------------------
    def flush(self) -> None:
        if self.http is not None and self.map_checks:
            self.write_map(self.http, list(self.map_checks))
        for block, knobs in self.inserts:
            self.write(block, knobs)

    def write(self, block: Node, knobs: dict[Knob, list[str]]) -> None:
        file = block.file if block.name else next(iter(self.files))
        edits = self.work.edits[file]
        own = [n for n in block.own() if n.file == file]
        unit = indent_unit(self.files[file], "    ")
        if block.name == "":  # main context: after the last simple directive
            simple = [n for n in own if n.children is None]
            anchor = simple[-1].last if simple else 0
            indent = ""
        else:
            anchor = own[-1].last if own else block.end
            indent = _indent(edits, block, own, unit)
        self.work.noted(file, anchor, knobs, end=";")
        self._emit(edits, block, anchor, knob_lines(indent, knobs, end=";"))

    def write_map(self, http: Node, checks: list[str]) -> None:
        """The map before the first server block of ``http`` (after its simple directives)."""
        file = http.file
        edits = self.work.edits[file]
        own = [n for n in http.own() if n.file == file]
        unit = indent_unit(self.files[file], "    ")
        server = next((n for n in own if n.name == "server"), None)
        simple = [n for n in own if server is None or n.last < server.line]
        anchor = simple[-1].last if simple else http.end
        indent = _indent(edits, http, own, unit)
        why = "Connection: upgrade only for an upgrade, close otherwise (nginx's default)"
        self._emit(
            edits,
            http,
            anchor,
            [
                f"{indent}# {why}",
                f"{indent}map $http_upgrade $connection_upgrade {{",
                f"{indent}{unit}default upgrade;",
                f"{indent}{unit}''      close;",
                f"{indent}}}",
            ],
        )
        knob = "map $http_upgrade $connection_upgrade { … }"
        for check in checks:
            self.work.change(file, anchor, knob, why, check)

    def _emit(self, edits: LineEdits, block: Node, anchor: int, lines: list[str]) -> None:
        if block.name and anchor == block.end and block.close == block.end:
            # `events {}` on one line: open it up around the new lines
            old = edits.line(block.end)
            head, _, tail = old.rpartition("}")
            head = head.rstrip()
            prefix = head[: head.rfind("{") + 1] if "{" in head else head
            inner = head[len(prefix) :].strip()
            base = indent_of(old)
            new = [
                prefix,
                *([f"{base}    {inner}"] if inner else []),
                *lines,
                f"{base}}}{tail}",
            ]
            if edits.replaced(block.end) is None:
                edits.replace(block.end, *new)
            else:  # a second batch into the same one-line block
                edits.insert_before_last(block.end, *lines)
            return
        edits.insert_after(anchor, *lines)


def _ws(f: Finding) -> bool:
    """A WebSocket check: its delays are not a response buffer's."""
    return matches(f.check, "ws.*") or matches(f.check, "browser.websocket")


def _indent(edits: LineEdits, block: Node, own: list[Node], unit: str) -> str:
    if own:
        return indent_of(edits.line(own[-1].line))
    return indent_of(edits.line(block.line)) + unit


class NginxPlanner(TextPlanner):
    """``plan(files, findings)``: see the module docstring for where and the value rule."""

    proxy = "nginx"
    state = _State


PLANNER = NginxPlanner()
