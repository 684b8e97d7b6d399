"""Finding things in a YAML config by structure, to edit them by line (Envoy, Traefik).

PyYAML's composed node tree keeps each node's start and end offsets; an edit
replaces one scalar in place, or turns the lines of one key and its value into
comments (adapters/_edits.py), so the file keeps its lines and its comments.
The text is composed after its placeholders are masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from ..errors import TemplateError
from ._edits import Edits

__all__ = [
    "Key",
    "compose",
    "entries",
    "entry",
    "get",
    "remove_entry",
    "replace_scalar",
    "scalar",
    "walk",
]

Key = tuple[yaml.ScalarNode, yaml.Node]


def compose(masked: str, source: Path) -> yaml.Node | None:
    """The node tree of ``masked``; a YAML error names the line of the problem itself."""
    try:
        return yaml.compose(masked, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise TemplateError(
            f"not valid YAML: {problem}",
            file=source,
            line=mark.line + 1 if mark is not None else None,
            fix="correct the YAML at that line (indentation, quotes, a missing ':')",
        ) from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"not valid YAML: {exc}", file=source) from None


def entries(node: yaml.Node | None) -> Iterator[Key]:
    """The (key, value) pairs of a mapping node with scalar keys; nothing for other nodes."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield key, value


def entry(node: yaml.Node | None, name: str) -> Key | None:
    """The (key, value) of ``name`` in a mapping node, or None."""
    return next(((key, value) for key, value in entries(node) if key.value == name), None)


def get(node: yaml.Node | None, *path: str) -> yaml.Node | None:
    """The node at ``path`` of keys below ``node``, or None."""
    for name in path:
        node = next((value for key, value in entries(node) if key.value == name), None)
        if node is None:
            return None
    return node


def walk(node: yaml.Node | None) -> Iterator[yaml.Node]:
    """``node`` and every node below it."""
    if node is not None:
        yield node
        for child in _children(node):
            yield from walk(child)


def scalar(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def replace_scalar(edits: Edits, node: yaml.Node, new: str, what: str) -> None:
    """Replace a scalar (quotes included) on its line by ``new`` (YAML text)."""
    edits.replace(node.start_mark.index, node.end_mark.index, new, what)


def remove_entry(edits: Edits, key: yaml.Node, value: yaml.Node, what: str) -> bool:
    """Comment out ``key: value`` when it has lines of its own; False when it shares one."""
    end = _end(value)
    first, last = key.start_mark.line + 1, edits.line_of(max(end - 1, key.start_mark.index))
    start, _ = edits.line_span(first)
    _, stop = edits.line_span(last)
    after = edits.text[end:stop].strip()
    if edits.text[start : key.start_mark.index].strip() or (after and not after.startswith("#")):
        return False
    edits.comment_lines(first, last, what)
    return True


def _end(node: yaml.Node) -> int:
    """Where ``node``'s own text ends. A block collection's end mark is where the next
    token starts (after blank and comment lines), so take its last scalar or flow node."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    ends = [_end(child) for child in _children(node)]
    return max(ends) if ends else int(node.start_mark.index)


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value
