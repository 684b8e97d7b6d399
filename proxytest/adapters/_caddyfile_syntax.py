"""A small scanner of the Caddyfile's syntax, for the Caddy neutraliser.

A Caddyfile is lines of tokens separated by spaces. A token may be quoted with
``"`` (backslash escapes) or backticks, and may then span lines; ``#`` at the
start of a token starts a comment to the end of the line. A line whose last
token is ``{`` opens a block, a ``}`` token closes one; the block at the very
top with no name is the global options block. Text is scanned after its
placeholders are masked (adapters/_edits.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GLOBAL", "Statement", "Token", "closing_line", "statements"]

GLOBAL = "{global}"  # the name given to the global options block in Statement.within


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    value: str
    line: int  # 1-based, where it starts


@dataclass(frozen=True)
class Statement:
    """The tokens starting on one line, and the names of the blocks around them."""

    tokens: tuple[Token, ...]
    within: tuple[str, ...]  # e.g. (GLOBAL, "storage") or ("example.com", "log")

    @property
    def name(self) -> str:
        return self.tokens[0].value

    @property
    def line(self) -> int:
        return self.tokens[0].line


def statements(text: str) -> list[Statement]:
    """Every statement of ``text`` (a ``}`` alone is none), with its enclosing blocks."""
    found: list[Statement] = []
    stack: list[str] = []
    lines: dict[int, list[Token]] = {}
    for token in _tokens(text):
        lines.setdefault(token.line, []).append(token)
    first = True
    for _, tokens in sorted(lines.items()):
        while tokens and tokens[0].value == "}":
            if stack:
                stack.pop()
            tokens = tokens[1:]
        if not tokens:
            continue
        opens = tokens[-1].value == "{"
        if first and opens and len(tokens) == 1:
            stack.append(GLOBAL)
            first = False
            continue
        first = False
        found.append(Statement(tuple(tokens), tuple(stack)))
        if opens:
            stack.append(tokens[0].value)
    return found


def closing_line(text: str, opener: Statement) -> int:
    """The line of the ``}`` that closes the block ``opener`` opens (its own line if it
    opens none, or the last line if the block is not closed)."""
    if opener.tokens[-1].value != "{":
        return opener.line
    depth, last = 1, opener.line
    for token in _tokens(text):
        if token.start < opener.tokens[-1].end:
            continue
        last = token.line
        depth += (token.value == "{") - (token.value == "}")
        if depth == 0:
            break
    return last


def _tokens(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            start, start_line, value = i, line, []
            while i < n and text[i] not in " \t\r\n":
                ch = text[i]
                if ch in '"`':
                    close = i + 1
                    while close < n and text[close] != ch:
                        close += 2 if ch == '"' and text[close] == "\\" else 1
                    value.append(text[i + 1 : close])
                    line += text.count("\n", i, close)
                    i = close + 1
                    continue
                value.append(ch)
                i += 1
            tokens.append(Token(start, i, "".join(value), start_line))
    return tokens
