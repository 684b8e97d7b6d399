"""A small scanner of nginx's config syntax, for the nginx neutraliser.

nginx's grammar is words, ended by ``;`` (a simple directive) or ``{`` (a
block, closed by ``}``). Words may be quoted with ``"`` or ``'`` (backslash
escapes), may span lines between them, and ``${var}`` keeps its braces inside
a word; ``#`` at the start of a word starts a comment to the end of the line.
The scanner returns every directive with the offsets of its words, so an edit
can replace exactly one argument, and it never looks inside comments or
quoted strings. Text is scanned after its placeholders are masked
(adapters/_edits.py), so ``{{ listen_port }}`` is one plain word.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Directive", "NginxSyntaxError", "Word", "directives"]


class NginxSyntaxError(ValueError):
    """The text is not nginx syntax the scanner understands (nginx will say why)."""


@dataclass(frozen=True)
class Word:
    start: int
    end: int
    value: str  # without quotes and escapes


@dataclass(frozen=True)
class Directive:
    words: tuple[Word, ...]  # the name, then the arguments
    end: int  # offset just after its ``;`` or ``{``
    block: bool

    @property
    def name(self) -> str:
        return self.words[0].value

    @property
    def args(self) -> tuple[Word, ...]:
        return self.words[1:]

    @property
    def start(self) -> int:
        return self.words[0].start


_SPACE = " \t\r\n"


def directives(text: str) -> list[Directive]:
    """Every directive of ``text``, in order (block directives too, at their ``{``)."""
    found: list[Directive] = []
    words: list[Word] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in ";{":
            if not words:
                raise NginxSyntaxError(f"unexpected {ch!r} at offset {i}")
            found.append(Directive(tuple(words), i + 1, ch == "{"))
            words = []
            depth += ch == "{"
            i += 1
        elif ch == "}":
            if words or depth == 0:
                raise NginxSyntaxError(f"unexpected '}}' at offset {i}")
            depth -= 1
            i += 1
        elif ch in "\"'":
            word, i = _quoted(text, i)
            words.append(word)
        else:
            word, i = _plain(text, i)
            words.append(word)
    if words or depth:
        raise NginxSyntaxError("unexpected end of file: a ';' or a '}' is missing")
    return found


def _quoted(text: str, start: int) -> tuple[Word, int]:
    quote = text[start]
    value: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            value.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            return Word(start, i + 1, "".join(value)), i + 1
        value.append(ch)
        i += 1
    raise NginxSyntaxError(f"unterminated quoted string at offset {start}")


def _plain(text: str, start: int) -> tuple[Word, int]:
    value: list[str] = []
    i = start
    variable = False  # inside ${...}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            value.append(text[i + 1])
            i += 2
            continue
        if variable:
            variable = ch != "}"
        elif ch == "{" and i > start and text[i - 1] == "$":
            variable = True
        elif ch in _SPACE or ch in ";{}":
            break
        value.append(ch)
        i += 1
    return Word(start, i, "".join(value)), i
