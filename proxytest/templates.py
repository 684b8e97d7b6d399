"""Render config templates: ``{{ name }}`` placeholders, nothing else.

Placeholders (docs/architecture.md, "Contracts"): ``listen_host``,
``listen_port``, ``upstream_host``, ``upstream_port`` and ``run_dir``. Spaces
inside the braces are optional. Any other ``{{ … }}`` is an error naming the
file and line. Values never contain a newline, so a rendered file keeps its
source's line numbers and a proxy's error about the rendered copy can be
pointed back at the template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import TemplateError

__all__ = ["PLACEHOLDERS", "Placeholders", "render_file", "render_files", "render_text"]

PLACEHOLDERS = ("listen_host", "listen_port", "upstream_host", "upstream_port", "run_dir")
_PATTERN = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")


@dataclass(frozen=True)
class Placeholders:
    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    run_dir: Path

    def as_mapping(self) -> dict[str, str]:
        values = {name: str(getattr(self, name)) for name in PLACEHOLDERS}
        for name, value in values.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"placeholder {name} must not contain a newline: {value!r}")
        return values


def render_text(text: str, values: Mapping[str, str], *, source: Path | str) -> str:
    """Replace every placeholder in ``text``; ``source`` names the file in errors."""

    def substitute(match: re.Match[str]) -> str:
        inner = _NAME.fullmatch(match.group(1))
        name = inner.group(1) if inner else None
        if name is None or name not in values:
            line = text.count("\n", 0, match.start()) + 1
            shown = match.group(0)
            raise TemplateError(
                f"unknown placeholder {shown}",
                file=source,
                line=line,
                fix="use one of " + ", ".join(f"{{{{ {n} }}}}" for n in PLACEHOLDERS),
            )
        return values[name]

    return _PATTERN.sub(substitute, text)


def render_file(source: Path, values: Mapping[str, str], dest_dir: Path) -> Path:
    """Render ``source`` into ``dest_dir`` under its own base name."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(
            "config file not found", file=source, fix="check the path (relative to the cwd)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read config file: {exc}", file=source) from None
    dest = dest_dir / source.name
    dest.write_text(render_text(text, values, source=source), encoding="utf-8")
    return dest


def render_files(sources: Sequence[Path], placeholders: Placeholders) -> tuple[Path, ...]:
    """Render every file of one config into ``run_dir``; the first is the main one."""
    names = [s.name for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise TemplateError(
                f"two config files share the base name {name!r}",
                file=sources[names.index(name)],
                fix="each file of one config is rendered into the run dir under its base "
                "name: rename one of them",
            )
    values = placeholders.as_mapping()
    return tuple(render_file(s, values, placeholders.run_dir) for s in sources)
