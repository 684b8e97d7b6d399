"""The HAProxy config planner: findings in, the smallest edit of the user's file out.

A small section editor: HAProxy's config is sections (``global``, ``defaults``,
``frontend``, ``backend``, ``listen``, …) of one keyword line each, words
separated by spaces, ``#`` comments. The planner reads them with the line of
every keyword and changes the user's text at those lines (fixes/_text.py),
every other line byte-identical.

Where: the ``frontend`` (or ``listen``) whose ``bind`` names
``{{ listen_port }}``, then its ``use_backend … if|unless`` rules in order for
the path the failing checks request (WebSocket ``/ws/echo``, SSE ``/sse``,
``lb.sticky`` ``/lb/handshake``), with the ACLs the rules name evaluated for
``path``, ``path_beg``, ``path_end``, ``path_sub``, ``path_dir``,
``path_reg`` and ``hdr(upgrade)``/``hdr(connection)`` (a WebSocket request
carries ``Upgrade: websocket``); any other criterion counts as not matching.
Then ``default_backend``. A ``listen`` section is its own backend. Backend
knobs (``option http-no-delay``, ``timeout tunnel``, ``timeout server``,
``option redispatch``, the stickiness ``cookie``) go into that backend; frontend ones
(``timeout client``, ``maxconn``) into the frontend; ``global`` only for the
process-wide ``maxconn``. ``http-request del-header`` (a hop-by-hop header) goes
into the frontend, for every route, before its ``use_backend``/``default_backend``
lines (HAProxy runs http-request rules first wherever they stand, and warns when
one follows a use_backend).

The rule for a value already set (docs/architecture.md, "Config fixes"):

- set in the serving section itself: decided for this traffic, and not
  changed (``timeout tunnel 10m``, ``no option http-no-delay``, ``balance
  leastconn``): a :class:`Refusal` carries the ``proposal``. HAProxy's
  default written out, ``balance roundrobin``, does not block the stickiness
  cookie (``cookie SERVERID insert indirect nocache`` and ``cookie sN``
  appended to each ``server`` line: with ``option redispatch`` a client
  leaves a dead server at once, which ``balance source`` does not);
- set only in ``defaults``: a setting for every proxy; the fix overrides it in
  the serving section only (``defaults`` is left as it is);
- already what the fix would set (a timeout already at least an hour): the
  knob is not the cause, and a Refusal says where to look.

Raising ``timeout client`` for quiet SSE streams also sets ``timeout
http-request 10s`` in that frontend when neither it nor its defaults set one:
without it, slow request headers would be waited for as long as the new
client timeout.

A config split over several ``-f`` files is read as HAProxy loads it: every
file in order, each starting outside any section, a ``defaults`` section
applying to the proxies after it in later files too; the frontend and its
backends may be in any file, and each change goes into the file that holds
its section. ``Change.line`` is the replaced line of that file, or for an
insert the line the new lines follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters._edits import has_placeholder, mask
from ..results import Failure
from ._collect import (
    HOP_WHY,
    HOUR,
    LB,
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
    TextPlanner,
    TextState,
    Work,
    at_least,
    duration_s,
    indent_of,
    knob_lines,
    not_the_cause,
)
from .base import Finding

__all__ = ["PLANNER", "HaproxyPlanner", "Section", "config_sections", "sections"]

_SECTIONS = {
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "cache",
    "mailers",
    "crt-store",
    "traces",
    "log-forward",
}
_MAXCONN = 9000


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    words: tuple[str, ...]


@dataclass
class Section:
    kind: str
    name: str
    line: int  # its header line
    lines: list[Line] = field(default_factory=list)  # its keyword lines
    defaults: Section | None = None  # the defaults section it takes its settings from
    file: Path = Path()  # the file that holds it

    @property
    def last(self) -> int:
        return self.lines[-1].number if self.lines else self.line

    def find(self, key: tuple[str, ...]) -> Line | None:
        """The last line setting ``key`` (``no option X`` included, for option keys)."""
        found = None
        for line in self.lines:
            words = line.words[1:] if line.words[0] == "no" else line.words
            if words[: len(key)] == key:
                found = line
        return found


def _words(line: str) -> tuple[str, ...]:
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            i += 1
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in " \t":
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        words.append("".join(current))
    return tuple(words)


def sections(text: str) -> list[Section]:
    """Every section of ``text`` with its keyword lines, each proxy with its defaults."""
    return config_sections({Path(): text})


def config_sections(files: Mapping[Path, str]) -> list[Section]:
    """Every section of a config's files (``-f`` order), each proxy with its defaults:
    the last ``defaults`` before it, in its file or an earlier one, or the one it
    names with ``from``. A file starts outside any section."""
    found: list[Section] = []
    last_defaults: Section | None = None
    named: dict[str, Section] = {}
    for path, text in files.items():
        current: Section | None = None
        for number, raw in enumerate(mask(text).splitlines(), 1):
            words = _words(raw)
            if not words:
                continue
            if words[0] in _SECTIONS:
                name = words[1] if len(words) > 1 and words[1] != "from" else ""
                current = Section(words[0], name, number, file=path)
                if "from" in words[1:-1]:
                    current.defaults = named.get(words[words.index("from", 1) + 1])
                elif words[0] in ("frontend", "backend", "listen"):
                    current.defaults = last_defaults
                if words[0] == "defaults":
                    last_defaults = current
                    if name:
                        named[name] = current
                found.append(current)
            elif current is not None:
                current.lines.append(Line(number, words))
    return found


# --- where the traffic goes ------------------------------------------------------------
def _criterion(words: Sequence[str], path: str) -> bool:
    if not words:
        return False
    name, rest = words[0], list(words[1:])
    nocase, method = False, ""
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "-i":
            nocase = True
        elif flag == "-m" and rest:
            method = rest.pop(0)
        elif flag == "--":
            break
    values = rest
    header = re.fullmatch(r"hdr(?:_(\w+))?\((\w[\w-]*)\)", name)
    if header:
        upgrade = path.startswith("/ws/")
        seen = {"upgrade": "websocket", "connection": "Upgrade"}.get(header.group(2).lower())
        how = header.group(1) or method or "str"
        return upgrade and seen is not None and _match(seen, values, how, nocase=True)
    base, _, kind = name.partition("_")
    if base != "path":
        return False
    return _match(path, values, kind or method or "str", nocase)


def _match(subject: str, values: Sequence[str], how: str, nocase: bool) -> bool:
    if nocase:
        subject, values = subject.lower(), [v.lower() for v in values]
    for value in values:
        if (
            (how in ("", "str") and subject == value)
            or (how == "beg" and subject.startswith(value))
            or (how == "end" and subject.endswith(value))
            or (how == "sub" and value in subject)
            or (how == "dir" and value.strip("/") in subject.split("/"))
        ):
            return True
        if how == "reg":
            try:
                if re.search(value, subject):
                    return True
            except re.error:
                continue
    return False


def _condition(words: Sequence[str], acls: Mapping[str, list[tuple[str, ...]]], path: str) -> bool:
    """A rule's condition: OR of ANDs of ``[!]acl`` or ``{ criterion values }``."""
    for term in _split(list(words), ("||", "or")):
        ok, i = True, 0
        while i < len(term) and ok:
            word, negate = term[i], False
            if word.startswith("!"):
                negate, word = True, word[1:] or (term[i + 1] if i + 1 < len(term) else "")
                if not term[i][1:]:
                    i += 1
            if word == "{":
                close = term.index("}", i) if "}" in term[i:] else len(term)
                value = _criterion(term[i + 1 : close], path)
                i = close + 1
            else:
                value = any(_criterion(c, path) for c in acls.get(word, []))
                i += 1
            ok = value != negate
        if ok:
            return True
    return False


def _split(words: list[str], separators: tuple[str, ...]) -> list[list[str]]:
    terms: list[list[str]] = [[]]
    for word in words:
        if word in separators:
            terms.append([])
        else:
            terms[-1].append(word)
    return terms


def _backend(front: Section, by_name: Mapping[str, Section], path: str) -> Section | None:
    acls: dict[str, list[tuple[str, ...]]] = {}
    for line in front.lines:
        if line.words[0] == "acl" and len(line.words) > 2:
            acls.setdefault(line.words[1], []).append(line.words[2:])
    for line in front.lines:
        words = line.words
        if words[0] == "use_backend" and len(words) > 1:
            if len(words) == 2:
                return by_name.get(words[1])
            cond, rest = words[2], words[3:]
            hit = _condition(rest, acls, path)
            if (cond == "if" and hit) or (cond == "unless" and not hit):
                return by_name.get(words[1])
    default = front.find(("default_backend",))
    if default is not None and len(default.words) > 1:
        return by_name.get(default.words[1])
    return front if front.kind == "listen" else None


class _State(TextState):
    proxy = "haproxy"

    def __init__(self, files: Mapping[Path, str], work: Work) -> None:
        super().__init__(files, work)
        self.sections = config_sections(files)
        self.by_name = {
            s.name: s for s in self.sections if s.kind in ("backend", "listen") and s.name
        }
        self.front = self._front()
        self.inserts: Inserts[Section] = Inserts()  # knob lines per section, flushed at the end
        # http-request rules, written before the section's routing (use_backend and
        # default_backend), where HAProxy evaluates them anyway
        self.rules: Inserts[Section] = Inserts()

    def _front(self) -> Section | None:
        fronts = [s for s in self.sections if s.kind in ("frontend", "listen")]
        for front in fronts:
            lines = self.files[front.file].splitlines()
            for line in front.lines:
                if line.words[0] == "bind" and has_placeholder(
                    lines[line.number - 1], "listen_port"
                ):
                    return front
        return fronts[0] if fronts else None

    # -- entry --------------------------------------------------------------------------
    def apply(self, f: Finding) -> None:
        kind = f.failure
        websocket = matches(f.check, "ws.*") or matches(f.check, "browser.websocket")
        stream = (Failure.DELAYED, Failure.COMPRESSED_DELAYED, Failure.FANOUT_SLOW)
        if kind in stream and not websocket:
            self.no_delay(f)
        elif kind == Failure.IDLE and matches(f.check, "ws.*"):
            self.tunnel(f)
        elif kind == Failure.IDLE:
            self.sse_idle(f)
        elif kind == Failure.LIMIT and matches(f.check, "load.*"):
            self.maxconn(f)
        elif kind in (Failure.NO_FAILOVER, Failure.RETRIED_DEAD_BACKEND):
            for backend in self.backends(f, sample_paths(f.check)):
                if (
                    self.ensure(
                        f,
                        backend,
                        Knob(
                            ("option", "redispatch"),
                            (),
                            "send a retry to another server when this one is dead",
                        ),
                    )
                    == "ok"
                ):
                    self.refuse(f, "option redispatch is already set", self.hint(f))
        elif kind == Failure.NOT_STICKY:
            for backend in self.backends(f, (LB,)):
                self.sticky(f, backend)
        elif kind == Failure.HOP_BY_HOP:
            self.hop_by_hop(f)
        else:
            self.unknown(f)

    def backends(self, f: Finding, paths: Sequence[str]) -> list[Section]:
        if self.front is None:
            self.refuse(f, "no frontend binds {{ listen_port }}", "bind the proxy's port")
            return []
        found: list[Section] = []
        for path in paths:
            backend = _backend(self.front, self.by_name, path)
            if backend is None:
                self.refuse(
                    f,
                    f"no backend serves {path} on frontend {self.front.name}",
                    "route it with use_backend or default_backend",
                )
            elif backend not in found:
                found.append(backend)
        return found

    # -- knob helpers -------------------------------------------------------------------
    def ensure(
        self,
        f: Finding,
        section: Section,
        knob: Knob,
        *,
        enough: Callable[[tuple[str, ...]], bool] | None = None,
        default: tuple[str, ...] | None = None,
    ) -> str:
        """Make ``knob`` hold in ``section``: "ok" (already), "set" (a change), "refused"."""
        same = enough or (lambda value: value == knob.value)
        own = section.find(knob.key)
        if own is not None:
            negated = own.words[0] == "no"
            value = own.words[len(knob.key) :]
            if not negated and same(value):
                return "ok"
            if not negated and default is not None and value == default:
                edits = self.work.edits[section.file]
                edits.replace(own.number, indent_of(edits.line(own.number)) + knob.text)
                self.work.change(section.file, own.number, knob.text, knob.comment, f.check)
                return "set"
            where = self.where(section.file, own.number)
            self.refuse(
                f,
                f"`{' '.join(own.words)}` ({where}, {section.kind} {section.name}) "
                "is set for this traffic and would have to change",
                "decide whether it may take the proposed value; proxytest does not override "
                "a value set deliberately",
                proposal=knob.text,
            )
            return "refused"
        up = section.defaults.find(knob.key) if section.defaults else None
        if up is not None and up.words[0] != "no" and same(up.words[len(knob.key) :]):
            return "ok"
        self.inserts.add(section, knob, f.check)
        return "set"

    def blocked(self, section: Section, knob: Knob) -> bool:
        """Whether ensuring a timeout ``knob`` in ``section`` would be refused."""
        own = section.find(knob.key)
        return own is not None and (own.words[0] == "no" or not _hour(own.words[len(knob.key) :]))

    def effective(self, section: Section, key: tuple[str, ...]) -> float | None:
        """A timeout in seconds as it applies in ``section`` (None: unset, no limit)."""
        for scope in (section, section.defaults):
            line = scope.find(key) if scope else None
            if line is not None and len(line.words) > len(key):
                return duration_s(line.words[len(key)], bare=0.001)
        return None

    # -- actions ------------------------------------------------------------------------
    def no_delay(self, f: Finding) -> None:
        knob = Knob(
            ("option", "http-no-delay"),
            (),
            "send each chunk at once: small SSE writes are not held to be merged",
        )
        for backend in self.backends(f, (SSE,)):
            if self.ensure(f, backend, knob) == "ok":
                self.refuse(
                    f,
                    "option http-no-delay is already set for this backend",
                    "look for compression or a layer in front that batches writes",
                )

    def tunnel(self, f: Finding) -> None:
        for backend in self.backends(f, (WS,)):
            if not self.long_enough(f, backend, ("timeout", "tunnel")):
                why = "an upgraded WebSocket may stay quiet this long (else client/server apply)"
                self.ensure(f, backend, _timeout("tunnel", why), enough=_hour)

    def sse_idle(self, f: Finding) -> None:
        for backend in self.backends(f, (SSE,)):
            front = self.front
            assert front is not None
            server = self.effective(backend, ("timeout", "server"))
            client = self.effective(front, ("timeout", "client"))
            shortest = min([t for t in (server, client) if t] or [float("inf")])
            if not_the_cause(shortest, f.metrics):
                self.refuse(
                    f,
                    f"HAProxy's client/server timeouts ({shortest:g} s) are not what "
                    f"cut the stream (dropped after {f.metrics.get('dropped_after_s')} s)",
                    _HEARTBEAT,
                )
                continue
            why = "SSE is no tunnel: a stream quieter than this is cut"
            wanted = [
                (section, _timeout(which, why))
                for section, which, value in (
                    (backend, "server", server),
                    (front, "client", client),
                )
                if value is not None and value < HOUR
            ]
            blocked = [(s, k) for s, k in wanted if self.blocked(s, k)]
            if blocked:  # both or neither: raising one alone leaves the stream cut
                for section, knob in blocked:
                    self.ensure(f, section, knob, enough=_hour)
                continue
            if server is not None and server < HOUR:
                self.ensure(f, backend, _timeout("server", why), enough=_hour)
            if client is not None and client < HOUR:
                state = self.ensure(f, front, _timeout("client", why), enough=_hour)
                guard = ("timeout", "http-request")
                unguarded = front.find(guard) is None and (
                    front.defaults is None or front.defaults.find(guard) is None
                )
                if state == "set" and unguarded:
                    self.ensure(
                        f,
                        front,
                        Knob(
                            guard,
                            ("10s",),
                            "request headers still have 10 s, not the client timeout",
                        ),
                    )

    def sticky(self, f: Finding, backend: Section) -> None:
        """A cookie HAProxy inserts (on a 101 too) names each client's server: the
        ``cookie`` line in the backend and ``cookie sN`` on each ``server`` line.
        Unlike ``balance source``, it lets ``option redispatch`` move a client off a
        dead server at once (measured with the lb-sticky setup)."""
        chosen = backend.find(("cookie",)) or backend.find(("balance",))
        if chosen is not None and chosen.words[:2] != ("balance", "roundrobin"):
            self.refuse(
                f,
                f"`{' '.join(chosen.words)}` ({self.where(backend.file, chosen.number)}, "
                f"backend {backend.name}) "
                "already chooses the servers",
                "decide how clients should stick to a server; proxytest does not override "
                "a value set deliberately",
                proposal="cookie SERVERID insert indirect nocache",
            )
            return
        why = "a cookie names the client's server: its next requests go there"
        knob = Knob(("cookie",), ("SERVERID", "insert", "indirect", "nocache"), why)
        self.inserts.add(backend, knob, f.check)
        edits = self.work.edits[backend.file]
        servers = [line for line in backend.lines if line.words[0] == "server"]
        for n, line in enumerate(servers, 1):
            if "cookie" in line.words:
                continue
            old = edits.line(line.number)
            body, hashed, comment = old.partition("#")
            new = f"{body.rstrip()} cookie s{n}" + (f" {hashed}{comment}" if hashed else "")
            if edits.replaced(line.number) is None:
                edits.replace(line.number, new)
            self.work.change(backend.file, line.number, f"cookie s{n}", why, f.check)

    def hop_by_hop(self, f: Finding) -> None:
        """``http-request del-header <name>`` in the frontend: every route, every backend."""
        names, named = hop_headers(f)
        refuse_connection_named(self.work, f, named)
        if self.front is None:
            self.refuse(f, "no frontend binds {{ listen_port }}", "bind the proxy's port")
            return
        have = {line.words[2].lower() for line in self.front.lines if line.words[:2] == _DEL_HEADER}
        missing = [name for name in names if name.lower() not in have]
        for name in missing:
            self.rules.add(self.front, Knob((*_DEL_HEADER, name), (), HOP_WHY), f.check)
        if names and not missing:
            refuse_removed(self.work, f, names)

    def long_enough(self, f: Finding, section: Section, key: tuple[str, ...]) -> bool:
        current = self.effective(section, key)
        if current is not None and not_the_cause(current, f.metrics):
            self.refuse(
                f,
                f"`{' '.join(key)}` is {current:g} s here, not what cut the "
                f"connection (dropped after {f.metrics.get('dropped_after_s')} s)",
                _HEARTBEAT,
            )
            return True
        return False

    def maxconn(self, f: Finding) -> None:
        glob = next((s for s in self.sections if s.kind == "global"), None)
        front = self.front
        if front is None:
            self.refuse(f, "no frontend binds {{ listen_port }}", "bind the proxy's port")
            return
        enough = at_least(_MAXCONN)
        knob = Knob(
            ("maxconn",), (str(_MAXCONN),), "each stream holds a connection for its whole life"
        )
        states = [self.ensure(f, front, knob, enough=enough)]
        if glob is not None:
            states.append(self.ensure(f, glob, knob, enough=enough))
        if all(s == "ok" for s in states):
            self.refuse(
                f,
                "maxconn is already high",
                "look for a limit in a layer in front or the file descriptor limit (ulimit -n)",
            )

    # -- writing ------------------------------------------------------------------------
    def flush(self) -> None:
        for section, knobs in self.rules:
            routing = [n for n, line in enumerate(section.lines) if line.words[0] in _ROUTING]
            before = section.lines[: routing[0]] if routing else section.lines
            self.write(section, before[-1].number if before else section.line, knobs)
        for section, knobs in self.inserts:
            self.write(section, section.last, knobs)

    def write(self, section: Section, anchor: int, knobs: Mapping[Knob, list[str]]) -> None:
        edits = self.work.edits[section.file]
        indent = indent_of(edits.line(section.lines[-1].number)) if section.lines else "    "
        self.work.noted(section.file, anchor, knobs)
        edits.insert_after(anchor, *knob_lines(indent, knobs))


_DEL_HEADER = ("http-request", "del-header")
_ROUTING = ("use_backend", "default_backend", "use-server", "server")


_HEARTBEAT = (
    "send heartbeats (an SSE comment, a WebSocket ping) more often than the shortest idle "
    "timeout on the path, and look for a layer in front of HAProxy"
)


def _timeout(which: str, why: str) -> Knob:
    return Knob(("timeout", which), ("1h",), why)


def _hour(value: tuple[str, ...]) -> bool:
    return len(value) == 1 and (duration_s(value[0], bare=0.001) or 0) >= HOUR


class HaproxyPlanner(TextPlanner):
    """``plan(files, findings)``: see the module docstring for where and the value rule."""

    proxy = "haproxy"
    state = _State


PLANNER = HaproxyPlanner()
