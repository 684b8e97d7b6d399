r"""Line edits of a YAML config found by structure (the Envoy and Traefik planners).

ruamel.yaml parses the template round-trip (after its ``{{ placeholders }}`` are
masked, adapters/_edits.py) and keeps every key's and item's line and column.
Its dump of an unchanged document is NOT byte-identical to these configs
(measured, ruamel.yaml 0.19: indentless sequences and quoting change, and the
masked placeholders would have to be put back), so a planner never dumps: it
finds the place through the parsed tree and edits the user's text at the lines
the tree names. Every line an edit does not touch stays byte-identical.

Edits: replace one scalar value in place; insert lines (a ``#`` comment saying
why, then ``key: value``) after the last line of a block mapping, at its keys'
indentation; append an item to a block sequence; turn one line into a comment.
A value inserted below keys that do not exist yet is written in flow style on
the same line (``transport: {respondingTimeouts: {readTimeout: 0s}}``), so an
insert is always two lines. A mapping written in flow style (``{a: 1}``) cannot
take a new line: the planner refuses instead (:class:`FlowStyle`).

:func:`plan_yaml` drives a planner: it reads the config's files as
:class:`Doc`\ s (refusing every finding when one is not YAML) and runs the
planner's :class:`Finder` on each finding; a planner supplies its table and its
place-finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ..adapters._edits import mask
from ..errors import TemplateError
from ._collect import Collector, path_of
from .base import Finding, Plan

__all__ = ["Doc", "Finder", "FlowStyle", "is_map", "is_seq", "plan_yaml", "seconds", "text_of"]

COMMENT = "# proxytest fix: "


class FlowStyle(Exception):
    """The place to insert into is written in flow style: no line to add there."""


def is_map(node: Any) -> bool:
    return isinstance(node, CommentedMap)


def is_seq(node: Any) -> bool:
    return isinstance(node, CommentedSeq)


def text_of(node: Any) -> str | None:
    """A scalar as text (``0s``, ``15``, ``true``), or None for a collection or nothing."""
    if node is None or isinstance(node, (CommentedMap, CommentedSeq)):
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def seconds(value: str | None) -> float | None:
    """A duration as Envoy (``15s``, ``0.5s``) or Traefik (Go ``1m30s``, or a number of
    seconds) writes it, in seconds; None if it is no duration."""
    if value is None:
        return None
    text = value.strip().strip("\"'")
    try:
        return float(text)
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class _Edit:
    index: int  # 0-based line of the original text
    order: int  # edits at one line apply in the order they were made
    replace: str | None = None  # the new text of that line (keeps its line ending)
    after: list[str] = field(default_factory=list)  # new lines after it


class Doc:
    """One YAML file: its parsed tree (placeholders masked) and the edits planned on it."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self._edits: dict[int, _Edit] = {}
        self._count = 0
        self._planned: dict[tuple[int, str], int] = {}  # (id(node), key) → anchor line
        loader = YAML(typ="rt")
        try:
            self.root: Any = loader.load(mask(text))
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise TemplateError(
                f"not valid YAML: {' '.join(str(exc).split())[:200]}",
                file=path,
                line=mark.line + 1 if mark is not None else None,
            ) from None

    # -- reading ----------------------------------------------------------------------
    def get(self, node: Any, *keys: str | int) -> Any:
        for key in keys:
            if isinstance(key, int):
                if not is_seq(node) or key >= len(node):
                    return None
                node = node[key]
            elif is_map(node) and key in node:
                node = node[key]
            else:
                return None
        return node

    def raw_line(self, index: int) -> str:
        return self.lines[index].rstrip("\r\n") if 0 <= index < len(self.lines) else ""

    def key_line(self, mapping: CommentedMap, key: str) -> int:
        """0-based line of ``key`` in ``mapping``."""
        return int(mapping.lc.key(key)[0])

    # -- the extent of a block --------------------------------------------------------
    def block_end(self, mapping: CommentedMap) -> int:
        """0-based index of the last line holding content of a block mapping."""
        first, col = int(mapping.lc.line), int(mapping.lc.col)
        last = first
        for index in range(first + 1, len(self.lines)):
            raw = self.raw_line(index)
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped in ("---", "...") or _indent(raw) < col:
                break
            last = index
        return last

    # -- edits ------------------------------------------------------------------------
    def _edit(self, index: int) -> _Edit:
        if index not in self._edits:
            self._count += 1
            self._edits[index] = _Edit(index, self._count)
        return self._edits[index]

    def replace_value(self, mapping: CommentedMap, key: str, value: str) -> int:
        """Replace a scalar value in place; returns its 0-based line."""
        line, col = mapping.lc.value(key)
        raw = self.raw_line(line)
        end = _scalar_end(raw, col)
        edit = self._edit(line)
        current = edit.replace if edit.replace is not None else raw
        edit.replace = current[:col] + value + current[end:]
        return int(line)

    def insert(self, mapping: CommentedMap, keys: Sequence[str], value: str, why: str) -> int:
        """Insert ``keys[0]: {keys[1]: … value}`` (flow style below the first key) as the
        last entry of ``mapping``, with a comment line above; returns the 0-based line it
        follows. ``value`` is YAML text for one line."""
        planned = self._planned.get((id(mapping), keys[0]))
        if planned is not None:
            return planned  # a second finding asks for the same line: already there
        if mapping.fa.flow_style() or not len(mapping):
            raise FlowStyle(f"{'.'.join(keys[:1])} would go into a mapping written in flow style")
        indent = " " * int(mapping.lc.col)
        inner = value
        for key in reversed(keys[1:]):
            inner = f"{{{key}: {inner}}}"
        anchor = self.block_end(mapping)
        self._edit(anchor).after += [f"{indent}{COMMENT}{why}", f"{indent}{keys[0]}: {inner}"]
        self._planned[(id(mapping), keys[0])] = anchor
        return anchor

    def append_item(self, seq: CommentedSeq, item: str, why: str) -> int:
        """Append ``- item`` to a block sequence (after its last item's lines)."""
        planned = self._planned.get((id(seq), item))
        if planned is not None:
            return planned
        if seq.fa.flow_style() or not len(seq):
            raise FlowStyle("the list is written in flow style")
        line, col = (int(v) for v in seq.lc.item(len(seq) - 1))
        dash = self.raw_line(line).rfind("-", 0, col + 1)
        if dash < 0:
            raise FlowStyle("the list's items are not on lines of their own")
        last = seq[-1]
        anchor = self.block_end(last) if is_map(last) else line
        indent = " " * dash
        self._edit(anchor).after += [f"{indent}{COMMENT}{why}", f"{indent}- {item}"]
        self._planned[(id(seq), item)] = anchor
        return anchor

    def comment_out(self, index: int, why: str) -> None:
        """Turn one line into a comment that says why (the line count stays)."""
        raw = self.raw_line(index)
        indent = raw[: _indent(raw)]
        self._edit(index).replace = f"{indent}{COMMENT}{why}: was `{raw.strip()}`"

    def set_line(self, index: int, text: str) -> None:
        self._edit(index).replace = text

    @property
    def changed(self) -> bool:
        return bool(self._edits)

    def result(self) -> str:
        newline = _newline(self.text)
        out: list[str] = []
        for index, line in enumerate(self.lines):
            edit = self._edits.get(index)
            if edit is None:
                out.append(line)
                continue
            ending = line[len(line.rstrip("\r\n")) :]
            body = edit.replace if edit.replace is not None else line.rstrip("\r\n")
            out.append(body + (ending or (newline if edit.after else "")))
            out.extend(extra + newline for extra in edit.after)
        return "".join(out)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _indent(raw: str) -> int:
    return len(raw) - len(raw.lstrip(" "))


def _scalar_end(raw: str, col: int) -> int:
    """Where the scalar starting at ``col`` of a line ends (quotes, or a ` #` comment)."""
    if col < len(raw) and raw[col] in "\"'":
        quote = raw[col]
        index = col + 1
        while index < len(raw):
            if raw[index] == "\\" and quote == '"':
                index += 2
                continue
            if raw[index] == quote:
                if quote == "'" and raw[index + 1 : index + 2] == "'":
                    index += 2
                    continue
                return index + 1
            index += 1
        return len(raw)
    end = len(raw)
    comment = raw.find(" #", col)
    if comment >= 0:
        end = comment
    for stop in (",", "}", "]"):
        # a scalar inside a flow collection ends at its separator
        if _inside_flow(raw, col):
            found = raw.find(stop, col)
            if 0 <= found < end:
                end = found
    return len(raw[:end].rstrip()) if end > col else end


def _inside_flow(raw: str, col: int) -> bool:
    depth = 0
    for char in raw[:col]:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
    return depth > 0


def walk(node: Any) -> Iterator[Any]:
    """Every mapping and sequence below ``node``, itself first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if is_map(current):
            yield current
            stack.extend(reversed(list(current.values())))
        elif is_seq(current):
            yield current
            stack.extend(reversed(list(current)))


class Finder:
    """One finding answered on a config's documents: a planner's subclass finds the
    place and sets the knob (:meth:`run`)."""

    def __init__(self, docs: Sequence[Doc], collector: Collector, finding: Finding) -> None:
        self.out = collector
        self.finding = finding
        self.path = path_of(finding.check)

    def run(self) -> None:
        raise NotImplementedError

    def change(self, doc: Doc, index: int, knob: str, why: str) -> None:
        """Record a change at the 0-based line ``index`` of ``doc``."""
        self.out.change(doc.path, index + 1, knob, why, self.finding.check)

    def edit(self, doc: Doc, make: Callable[[], int], knob: str, why: str) -> None:
        """Make an edit (``make`` returns its 0-based line) and record it, or refuse
        with the proposal when it would go into a mapping in flow style."""
        try:
            line = make()
        except FlowStyle as exc:
            self.refuse(
                f"cannot add a line: {exc}",
                "add the knob by hand, or write that mapping in block style",
                proposal=knob,
            )
            return
        self.change(doc, line, knob, why)

    def refuse(self, reason: str, remedy: str, proposal: str | None = None) -> None:
        self.out.refuse(self.finding.check, reason, remedy, proposal)


def plan_yaml(
    files: Mapping[Path, str],
    findings: Sequence[Finding],
    finder: Callable[[Sequence[Doc], Collector, Finding], Finder],
    *,
    edits: str,
    first_only: bool = False,
) -> Plan:
    """Every finding run through ``finder`` on the config's files (only the first with
    ``first_only``) read as documents; ``edits`` says what the planner edits, for the
    refusal of a file that is not YAML."""
    if not files or not findings:
        return Plan(files={})
    collector = Collector()
    given = list(files.items())[:1] if first_only else list(files.items())
    not_yaml = [path for path, _ in given if path.suffix not in (".yaml", ".yml")]
    try:
        if not_yaml:
            for finding in findings:
                collector.refuse(
                    finding.check,
                    f"{not_yaml[0].name} is not YAML: proxytest fix edits {edits}",
                    "make the change the hint names by hand",
                )
            docs = []
        else:
            docs = [Doc(path, text) for path, text in given]
    except TemplateError as exc:
        for finding in findings:
            collector.refuse(finding.check, str(exc), "correct the YAML first")
        docs = []
    for finding in findings if docs else ():
        finder(docs, collector, finding).run()
    changes = sorted(collector.changes(), key=lambda c: (str(c.file), c.line))
    return Plan(
        files={doc.path: doc.result() for doc in docs if doc.changed},
        changes=tuple(changes),
        refusals=collector.refusals(),
    )
