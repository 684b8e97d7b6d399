"""Line-keeping edits of a user's config file, the tools of ``Adapter.neutralise``.

A config as deployed carries lines that make sense on its production host and
not in a test run: ``daemon off;``, a pid file in /run, logs in /var/log, a
fixed admin port. A neutraliser reads the user's template, finds those lines
with a parser that knows the proxy's syntax, and changes them with
:class:`Edits`, which never adds or removes a line: a line becomes a comment, a
value on a line is replaced. The rendered file then keeps the template's line
numbers, so a proxy's message about it still points at the user's line.

Parsers see the template through :func:`mask`: every ``{{ placeholder }}`` is
replaced by as many ``x``, so the text parses like the rendered file would, at
the same offsets. Replacements may contain ``{{ run_dir }}``: the template is
rendered after it is neutralised. See docs/architecture.md ("Configs as
deployed").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "PLACEHOLDER",
    "RUN_DIR",
    "Edits",
    "Neutralised",
    "Notice",
    "has_placeholder",
    "mask",
]

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
RUN_DIR = "{{ run_dir }}"


@dataclass(frozen=True)
class Notice:
    """A line of the user's config that proxytest changed, and what it did."""

    file: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


@dataclass(frozen=True)
class Neutralised:
    """A neutralised template, what was changed, and the files it reads beside it.

    ``companions`` are paths relative to the config's folder (the folder of its
    main file) of files this one includes from there; they are rendered into the
    run dir at the same relative path.
    """

    text: str
    notices: tuple[Notice, ...] = ()
    companions: tuple[PurePosixPath, ...] = ()


def mask(text: str) -> str:
    """``text`` with every placeholder replaced by as many ``x``: same offsets, same lines."""
    return PLACEHOLDER.sub(lambda m: "x" * len(m.group(0)), text)


def has_placeholder(text: str, name: str | None = None) -> bool:
    """Whether ``text`` holds a placeholder (``name``'s, when given)."""
    return any(
        name is None or match.group(1).strip() == name for match in PLACEHOLDER.finditer(text)
    )


class Edits:
    """Non-overlapping edits of one file's text, each with a notice; lines are kept.

    Offsets are into the original text. ``result()`` applies them.
    """

    def __init__(self, text: str, source: Path) -> None:
        self.text = text
        self.source = source
        self._edits: list[tuple[int, int, str]] = []
        self._notices: list[Notice] = []
        self._companions: list[PurePosixPath] = []
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    # -- positions -------------------------------------------------------------------
    def line_of(self, offset: int) -> int:
        """The 1-based line of ``offset``."""
        low, high = 0, len(self._line_starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self._line_starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        return low + 1

    def line_span(self, line: int) -> tuple[int, int]:
        """Offsets of line ``line`` (1-based), without its line break."""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return start, len(self.text) if end < 0 else end

    def line_text(self, line: int) -> str:
        start, end = self.line_span(line)
        return self.text[start:end].rstrip("\r")

    # -- edits ----------------------------------------------------------------------
    def note(self, line: int, what: str) -> None:
        """A notice without an edit (the line stays; something around it changed)."""
        self._notices.append(Notice(self.source, line, what))

    def replace(
        self, start: int, end: int, new: str, what: str, *, line: int | None = None
    ) -> None:
        """Replace ``text[start:end]`` by ``new`` (with as many line breaks); the notice
        names ``line`` (the line of a directive that spans several), else the edit's."""
        if self.text.count("\n", start, end) != new.count("\n"):
            raise ValueError("an edit must keep the number of lines")
        self._add(start, end, new)
        self.note(line or self.line_of(start), what)

    def comment_lines(self, first: int, last: int, what: str, *, prefix: str = "# ") -> None:
        """Turn lines ``first``..``last`` into comments (the text stays, after ``#``)."""
        for line in range(first, last + 1):
            start, end = self.line_span(line)
            content = self.text[start:end]
            indent = len(content) - len(content.lstrip())
            if content.strip():
                self._add(start + indent, start + indent, prefix)
        self.note(first, what)

    def blank(self, start: int, end: int, what: str) -> None:
        """Replace ``text[start:end]`` by spaces (line breaks kept): for a directive
        that shares its line with others, which a comment would swallow."""
        self.replace(start, end, re.sub(r"[^\n]", " ", self.text[start:end]), what)

    def companion(self, path: PurePosixPath) -> None:
        if path not in self._companions:
            self._companions.append(path)

    def _add(self, start: int, end: int, new: str) -> None:
        for other_start, other_end, _ in self._edits:
            if start < other_end and other_start < end:
                raise ValueError(f"overlapping edits at offsets {start} and {other_start}")
        self._edits.append((start, end, new))

    def result(self) -> Neutralised:
        text = self.text
        for start, end, new in sorted(self._edits, reverse=True):
            text = text[:start] + new + text[end:]
        if text.count("\n") != self.text.count("\n"):  # pragma: no cover - guarded in replace
            raise AssertionError("neutralising changed the number of lines")
        notices = sorted(self._notices, key=lambda n: n.line)
        return Neutralised(text, tuple(notices), tuple(self._companions))
