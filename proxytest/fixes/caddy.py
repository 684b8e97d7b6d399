"""The Caddyfile planner: findings in, the smallest edit of the user's Caddyfile out.

A block editor over the Caddyfile scanner of the neutraliser
(adapters/_caddyfile_syntax.py: tokens with their lines, the blocks around
each statement, the line of a block's ``}``). The user's text is changed at
those lines (fixes/_text.py), every other line byte-identical.

Where: the site block whose address names ``{{ listen_port }}``, then the
``reverse_proxy`` that serves the path the failing checks request (WebSocket
``/ws/echo``, SSE ``/sse``, ``lb.sticky`` ``/lb/handshake``): among the
site's ``reverse_proxy``, ``handle``, ``handle_path`` and ``route``, the one
whose matcher matches the path, the most specific first as Caddy sorts them
(a longer path matcher before a shorter one, any matcher before none), into
``handle``/``route`` blocks. Matchers: a path token (``/ws/*``), ``*``, and
named matchers (``@name path …`` or a block) whose ``path`` conditions
decide; a ``header`` condition on Upgrade/Connection counts as matching a
WebSocket request, any other condition as not matching. A one-line
``reverse_proxy host:port`` gets a block opened on its own line.

The rule for a value already set (docs/architecture.md, "Config fixes"): a
value set in the serving ``reverse_proxy`` that is Caddy's default written
out (``stream_close_delay 0``, ``flush_interval 0``, ``lb_try_duration 0``)
is replaced in place; any other value is not changed: a :class:`Refusal`
carries the ``proposal``. A knob already at what the fix would set means it
is not the cause, and a Refusal says where to look. Caddy has no idle
timeout on proxied streams by default, so an idle drop with no
``stream_timeout`` is refused with the heartbeat remedy.

``import`` is followed as Caddy does: a file (or glob) relative to the
importing file, among the config's files, or a snippet (``(name) { … }``
defined before it, in any file); what it brings counts as written where the
``import`` stands, so the site block, the ``reverse_proxy`` and its knobs may
be in any file, and each change goes into the file that holds its line (a
knob added to a snippet's ``reverse_proxy`` holds for every site importing
it). ``Change.line`` is the replaced line of that file, or for an insert the
line the new lines follow.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters._caddyfile_syntax import GLOBAL, Statement, closing_line, statements
from ..adapters._edits import has_placeholder, mask
from ..results import Failure
from ._collect import LB, SSE, WS, matches
from ._text import (
    Inserts,
    Knob,
    TextPlanner,
    TextState,
    Work,
    duration_s,
    included,
    indent_of,
    indent_unit,
    knob_lines,
)
from .base import Finding

__all__ = ["PLANNER", "CaddyPlanner"]

_ROUTING = ("reverse_proxy", "handle", "handle_path", "route")


@dataclass(eq=False)
class Block:
    statement: Statement | None  # None: the file, or the global options block
    close: int  # the line of its "}" (0 for the file)
    file: Path  # the file that holds it
    children: list[Block] = field(default_factory=list)  # imports followed

    @property
    def name(self) -> str:
        return self.statement.name if self.statement else ""

    @property
    def line(self) -> int:
        return self.statement.line if self.statement else 0

    @property
    def opens(self) -> bool:
        return self.statement is not None and self.statement.tokens[-1].value == "{"

    def words(self) -> list[str]:
        return [t.value for t in self.statement.tokens] if self.statement else []

    def find(self, name: str) -> Block | None:
        found = None
        for child in self.children:
            if child.name == name:
                found = child
        return found

    def last(self) -> int:
        """The last line of this statement (its "}" for a block)."""
        return self.close if self.opens else self.line


def _tree(files: Mapping[Path, str]) -> Block:
    """The blocks of the main Caddyfile, with what its imports bring."""
    main = next(iter(files))
    root = Block(None, 0, main)
    _read(main, files, root, {}, frozenset())
    return root


def _read(
    path: Path,
    files: Mapping[Path, str],
    parent: Block,
    snippets: dict[str, Block],
    seen: frozenset[Path],
) -> None:
    """The statements of ``path`` into ``parent``, each ``import`` followed where it
    stands (``seen``: the files importing this one)."""
    masked = mask(files[path])
    seen = seen | {path}
    stack: list[Block] = []
    global_block: Block | None = None
    for st in statements(masked):
        depth = len(st.within)
        if st.within[:1] == (GLOBAL,) and global_block is None:
            global_block = Block(None, 0, path)
            parent.children.append(global_block)
        while len(stack) > depth:
            stack.pop()
        if st.within[:1] == (GLOBAL,) and not stack:
            assert global_block is not None
            stack.append(global_block)
        into = stack[-1] if stack else parent
        node = Block(st, 0, path)
        if st.tokens[-1].value == "{":
            node.close = closing_line(masked, st)
        into.children.append(node)
        if node.opens:
            stack.append(node)
            if not st.within and st.name.startswith("(") and st.name.endswith(")"):
                snippets[st.name[1:-1]] = node
        elif st.name == "import" and len(st.tokens) > 1:
            target = st.tokens[1].value
            if target in snippets:
                into.children.extend(snippets[target].children)
                continue
            for imported in included(target, path.parent.as_posix(), files, seen):
                _read(imported, files, into, snippets, seen)


def _site(root: Block, files: Mapping[Path, str]) -> Block | None:
    sites = [b for b in root.children if b.statement is not None and b.opens and not _snippet(b)]
    for site in sites:
        if has_placeholder(files[site.file].splitlines()[site.line - 1], "listen_port"):
            return site
    return sites[0] if sites else None


def _snippet(block: Block) -> bool:
    return block.name.startswith("(") and block.name.endswith(")")


def _path_match(pattern: str, path: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) or (pattern.endswith("*") and path == pattern[:-2])


def _named(site: Block, name: str, path: str) -> tuple[bool, int]:
    """Whether the named matcher ``name`` matches ``path``, and its path specificity."""
    definition = site.find(name)
    if definition is None:
        return False, 0
    conditions = (
        [c.words() for c in definition.children] if definition.opens else [definition.words()[1:]]
    )
    ok, longest = True, 0
    for words in conditions:
        if not words:
            continue
        kind, values = words[0], words[1:]
        if kind == "path":
            hit = any(_path_match(v, path) for v in values)
            longest = max([longest, *(len(v) for v in values)])
        elif kind == "header" and values and values[0].lower() in ("upgrade", "connection"):
            hit = path.startswith("/ws/")
        else:
            hit = False
        ok = ok and hit
    return ok, longest


def _matcher(site: Block, node: Block, path: str) -> tuple[bool, int]:
    """Whether ``node``'s matcher matches ``path``, and its rank (-1: no matcher)."""
    words = node.words()
    first = words[1] if len(words) > 1 else ""
    if first.startswith("@"):
        return _named(site, first, path)
    if first.startswith("/"):
        return _path_match(first, path), len(first)
    return True, -1  # none, "*", or an upstream address


def _serving(site: Block, block: Block, path: str) -> Block | None:
    best: tuple[int, Block] | None = None
    for child in block.children:
        if child.name not in _ROUTING:
            continue
        hit, rank = _matcher(site, child, path)
        if hit and (best is None or rank > best[0]):
            best = (rank, child)
    if best is None:
        return None
    chosen = best[1]
    return chosen if chosen.name == "reverse_proxy" else _serving(site, chosen, path)


def _longer_than_zero(value: tuple[str, ...]) -> bool:
    return len(value) == 1 and (duration_s(value[0]) or 0) > 0


class _State(TextState):
    proxy = "caddy"

    def __init__(self, files: Mapping[Path, str], work: Work) -> None:
        super().__init__(files, work)
        self.root = _tree(files)
        self.site = _site(self.root, files)
        self.inserts: Inserts[Block] = Inserts()  # knob lines per reverse_proxy, flushed last

    def apply(self, f: Finding) -> None:
        kind = f.failure
        if kind == Failure.RELOAD_CUT:
            self.knob(
                f,
                WS,
                Knob(("stream_close_delay",), ("1h",), _CLOSE_WHY),
                enough=_longer_than_zero,
                defaults=("0", "0s"),
            )
        elif kind in (Failure.HELD, Failure.DELAYED, Failure.FANOUT_SLOW) and not (
            matches(f.check, "ws.*") or matches(f.check, "browser.websocket")
        ):
            self.knob(f, SSE, Knob(("flush_interval",), ("-1",), _FLUSH_WHY), defaults=("0", "0s"))
        elif kind in (Failure.NO_FAILOVER, Failure.RETRIED_DEAD_BACKEND):
            for path in (SSE, WS):
                self.knob(
                    f,
                    path,
                    Knob(("lb_try_duration",), ("5s",), _TRY_WHY),
                    enough=_longer_than_zero,
                    defaults=("0", "0s"),
                )
                self.knob(
                    f,
                    path,
                    Knob(("fail_duration",), ("30s",), _FAIL_WHY),
                    enough=_longer_than_zero,
                    defaults=("0", "0s"),
                    quiet=True,
                )
        elif kind == Failure.NOT_STICKY:
            self.knob(
                f,
                LB,
                Knob(
                    ("lb_policy",),
                    ("ip_hash",),
                    "the same client to the same "
                    "upstream (a session held in one upstream's memory)",
                ),
            )
        elif kind in (Failure.IDLE, Failure.LIFETIME):
            self.stream_limits(f)
        else:
            self.unknown(f)

    def proxy_for(self, f: Finding, path: str) -> Block | None:
        if self.site is None:
            self.refuse(f, "no site block in the Caddyfile", "add a site block")
            return None
        rp = _serving(self.site, self.site, path)
        if rp is None:
            self.refuse(
                f,
                f"no reverse_proxy serves {path}",
                f"route {path} to the origin with reverse_proxy",
            )
        return rp

    def knob(
        self,
        f: Finding,
        path: str,
        knob: Knob,
        *,
        enough: Callable[[tuple[str, ...]], bool] | None = None,
        defaults: tuple[str, ...] = (),
        quiet: bool = False,
    ) -> None:
        rp = self.proxy_for(f, path)
        if rp is None:
            return
        same = enough or (lambda v: v == knob.value)
        own = rp.find(knob.key[0])
        if own is not None:
            value = tuple(own.words()[1:])
            where = self.where(own.file, own.line)
            if same(value):
                if not quiet:
                    self.refuse(
                        f,
                        f"`{' '.join(own.words())}` is already set ({where}): "
                        "this knob is not the cause",
                        "look at a layer in front of Caddy or at the origin",
                    )
                return
            if len(value) == 1 and value[0] in defaults:
                edits = self.work.edits[own.file]
                if edits.replaced(own.line) is None:
                    edits.replace(own.line, indent_of(edits.line(own.line)) + knob.text)
                self.work.change(own.file, own.line, knob.text, knob.comment, f.check)
                return
            self.refuse(
                f,
                f"`{' '.join(own.words())}` ({where}) is set on this reverse_proxy "
                "and would have to change",
                "decide whether it may take the proposed value; proxytest does not override "
                "a value set deliberately",
                proposal=knob.text,
            )
            return
        self.inserts.add(rp, knob, f.check)

    def stream_limits(self, f: Finding) -> None:
        path = WS if matches(f.check, "ws.*") else SSE
        rp = self.proxy_for(f, path)
        if rp is None:
            return
        limit = rp.find("stream_timeout")
        if limit is not None:
            where = self.where(limit.file, limit.line)
            self.refuse(
                f,
                f"`{' '.join(limit.words())}` ({where}) ends streams at a fixed age",
                "decide whether streams may live longer; proxytest does not override a value "
                "set deliberately",
                proposal=f"remove {where} (`stream_timeout`)",
            )
            return
        self.refuse(
            f,
            "Caddy has no idle or lifetime limit on this proxied stream",
            "send heartbeats more often than the shortest idle timeout on the path (a layer "
            "in front), and look at the server's `timeouts` in the global options",
        )

    def flush(self) -> None:
        for rp, knobs in self.inserts:
            edits = self.work.edits[rp.file]
            own = [c for c in rp.children if c.file == rp.file]  # not what an import brings
            base = indent_of(edits.line(rp.line))
            if own:
                indent = indent_of(edits.line(own[-1].line))
            else:
                indent = base + indent_unit(self.files[rp.file], "\t")
            lines = knob_lines(indent, knobs)
            if rp.opens:
                anchor = own[-1].last() if own else rp.line
                if rp.close == rp.line:  # `reverse_proxy x {}` on one line
                    self._open(rp, lines, base)
                else:
                    edits.insert_after(anchor, *lines)
            else:
                anchor = rp.line
                self._open(rp, lines, base)
            self.work.noted(rp.file, anchor, knobs)

    def _open(self, rp: Block, lines: list[str], base: str) -> None:
        """A one-line reverse_proxy becomes a block holding ``lines``."""
        assert rp.statement is not None
        edits = self.work.edits[rp.file]
        old = edits.line(rp.line)
        last = rp.statement.tokens[-1]
        start = self.files[rp.file].rfind("\n", 0, last.start) + 1
        cut = last.end - start
        if last.value == "{":  # `{}` on the same line: drop the "}" after it
            head, tail = old[:cut], old[cut:].lstrip()
            tail = tail[1:] if tail.startswith("}") else tail
        else:
            head, tail = old[:cut] + " {", old[cut:]
        edits.replace(rp.line, head, *lines, f"{base}}}{tail}")


_CLOSE_WHY = "a reload closes proxied WebSockets at once unless they may drain this long"
_FLUSH_WHY = "write every chunk to the client as soon as it arrives"
_TRY_WHY = "retry another upstream for this long when one is down"
_FAIL_WHY = "a failed upstream is left out for this long (passive health check)"


class CaddyPlanner(TextPlanner):
    """``plan(files, findings)``: see the module docstring for where and the value rule."""

    proxy = "caddy"
    state = _State


PLANNER = CaddyPlanner()
