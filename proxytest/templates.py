"""Render config templates: ``{{ name }}`` placeholders, after neutralising.

Placeholders (docs/architecture.md, "Contracts"): ``listen_host``,
``listen_port``, ``upstream_host``, ``upstream_port`` and ``run_dir``; for TLS
``tls_cert``, ``tls_key``, ``tls_pem`` (both in one file) and ``tls_ca``, PEM
files of the run's certificate written into the run dir (tls.py). Several
backends: ``upstream_host_N`` and ``upstream_port_N`` for N = 1 … 16
(``upstream_*`` without a number is backend 1); :func:`backend_count` reads a
config's highest N, which is how many origins its run starts. Spaces
inside the braces are optional. Any other ``{{ … }}`` is an error naming the
file and line. Values never contain a newline, so a rendered file keeps its
source's line numbers and a proxy's error about the rendered copy can be
pointed back at the template.

A config as deployed is first *neutralised* by its adapter
(``Adapter.neutralise``: lines for the production host become comments or point
into the run dir, each with a :class:`Notice`), which keeps every line too.
:func:`load_config` reads a config's files, neutralises them and follows the
files they include from beside them; :func:`render_config` renders the result
into a run dir; :func:`require_placeholders` refuses a config that does not say
where it listens or where the origin is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .adapters import Adapter, RenderedConfig
from .adapters._edits import PLACEHOLDER, Neutralised, Notice, has_placeholder
from .errors import TemplateError
from .tls import TlsFiles, authority

__all__ = [
    "MAX_BACKENDS",
    "PLACEHOLDERS",
    "ConfigTemplate",
    "Placeholders",
    "TemplateFile",
    "backend_count",
    "load_config",
    "read_template",
    "render_config",
    "render_file",
    "render_files",
    "render_text",
    "require_placeholders",
    "uses_tls",
]

PLACEHOLDERS = (
    "listen_host",
    "listen_port",
    "upstream_host",
    "upstream_port",
    "run_dir",
    "tls_cert",
    "tls_key",
    "tls_pem",
    "tls_ca",
)
# A config that names one of these has a TLS listener.
TLS_PLACEHOLDERS = ("tls_cert", "tls_key", "tls_pem")
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
# Several backends (docs/architecture.md, "Several backends"): upstream_host_N and
# upstream_port_N, N from 1; more than this many origins behind one proxy is a typo.
MAX_BACKENDS = 16
_NUMBERED = re.compile(r"upstream_(host|port)_([0-9A-Za-z_]*)")
_NUMBERED_HELP = (
    "{{ upstream_host_N }}, {{ upstream_port_N }} for backend N = 1 … "
    f"{MAX_BACKENDS} (without a number: backend 1)"
)


def backend_number(name: str) -> int | None:
    """N of a numbered backend placeholder (``upstream_port_2`` → 2), None for any other
    name; raises ValueError for a number that cannot be (0, 01, > MAX_BACKENDS, text)."""
    match = _NUMBERED.fullmatch(name)
    if match is None:
        return None
    digits = match.group(2)
    if not digits.isdigit() or digits.startswith("0") or int(digits) > MAX_BACKENDS:
        raise ValueError(
            f"backends are numbered 1 to {MAX_BACKENDS}: {{{{ upstream_{match.group(1)}_N }}}} "
            f"with N = {digits!r} names none"
        )
    return int(digits)


@dataclass(frozen=True)
class Placeholders:
    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    run_dir: Path
    # Backends 2 … N of a config with numbered placeholders: (host, port) each.
    more: tuple[tuple[str, int], ...] = ()

    @property
    def backends(self) -> tuple[tuple[str, int], ...]:
        """Every backend, backend 1 (``upstream_host``/``upstream_port``) first."""
        return ((self.upstream_host, self.upstream_port), *self.more)

    def as_mapping(self) -> dict[str, str]:
        tls = TlsFiles.at(self.run_dir)  # written there by render_config
        values = {
            name: str(getattr(self, name)) for name in PLACEHOLDERS if not name.startswith("tls_")
        }
        for n, (host, port) in enumerate(self.backends, 1):
            values[f"upstream_host_{n}"], values[f"upstream_port_{n}"] = host, str(port)
        values.update(
            tls_cert=str(tls.cert), tls_key=str(tls.key), tls_pem=str(tls.pem), tls_ca=str(tls.ca)
        )
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
            try:
                number = backend_number(name) if name else None
            except ValueError as exc:
                raise TemplateError(
                    f"{shown}: {exc}", file=source, line=line, fix="use " + _NUMBERED_HELP
                ) from None
            if number is not None:  # a backend beyond the config's own count (in a comment)
                given = sum(1 for key in values if key.startswith("upstream_port_"))
                raise TemplateError(
                    f"{shown} names backend {number}, but this config fronts {given} "
                    "(its highest N outside comments)",
                    file=source,
                    line=line,
                    fix=f"use {{{{ upstream_port_{number} }}}} outside a comment too, or take "
                    "it out of the comment",
                )
            raise TemplateError(
                f"unknown placeholder {shown}",
                file=source,
                line=line,
                fix="use one of "
                + ", ".join(f"{{{{ {n} }}}}" for n in PLACEHOLDERS)
                + "; several backends: "
                + _NUMBERED_HELP,
            )
        return values[name]

    return PLACEHOLDER.sub(substitute, text)


def read_template(path: Path) -> str:
    """The text of a config file: UTF-8, or an error naming the file, the line and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TemplateError(
            "config file not found", file=path, fix="check the path (relative to the cwd)"
        ) from None
    except OSError as exc:
        raise TemplateError(
            f"cannot read config file: {exc.strerror or exc}", file=path, fix="check the path"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TemplateError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
            file=path,
            line=line,
            fix="save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` "
            "(from its own encoding), and pass that file",
        ) from None


def render_file(source: Path, values: Mapping[str, str], dest_dir: Path) -> Path:
    """Render ``source`` into ``dest_dir`` under its own base name (not neutralised)."""
    dest = dest_dir / source.name
    dest.write_text(render_text(read_template(source), values, source=source), encoding="utf-8")
    return dest


@dataclass(frozen=True)
class TemplateFile:
    source: Path
    dest: PurePosixPath  # where it is rendered, relative to the run dir
    text: str  # the neutralised template


@dataclass(frozen=True)
class ConfigTemplate:
    """A config's files read and neutralised, not yet rendered.

    ``files`` holds the given files first (``given`` of them, main first), then
    the files they include from beside the main one, at their relative paths.
    """

    files: tuple[TemplateFile, ...]
    given: int
    notices: tuple[Notice, ...]


def load_config(sources: Sequence[Path], adapter: Adapter | None = None) -> ConfigTemplate:
    """Read, neutralise (with ``adapter``) and follow the includes of one config."""
    names = [s.name for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise TemplateError(
                f"two config files share the base name {name!r}",
                file=sources[names.index(name)],
                fix="each file of one config is rendered into the run dir under its base "
                "name: rename one of them",
            )
    home = sources[0].parent
    queue = [(source, PurePosixPath(source.name)) for source in sources]
    placed = {dest: source for source, dest in queue}
    files: list[TemplateFile] = []
    notices: list[Notice] = []
    for source, dest in queue:  # grows while it is read: includes of includes
        text = read_template(source)
        done = adapter.neutralise(text, source, sources) if adapter else Neutralised(text)
        files.append(TemplateFile(source, dest, done.text))
        notices.extend(done.notices)
        for companion in done.companions:
            path, known = home / companion, placed.get(companion)
            if known is None:
                placed[companion] = path
                queue.append((path, companion))
            elif known != path:
                raise TemplateError(
                    f"{companion} is both a file of this config ({known}) and a file it "
                    f"includes ({path})",
                    file=source,
                    fix="rename one of them",
                )
    return ConfigTemplate(tuple(files), len(sources), tuple(notices))


def render_config(template: ConfigTemplate, placeholders: Placeholders) -> RenderedConfig:
    """Render every file of ``template`` into ``placeholders.run_dir``, with the run's
    certificate files beside them."""
    authority().write(placeholders.run_dir)
    values = placeholders.as_mapping()
    written: list[Path] = []
    for file in template.files:
        dest = placeholders.run_dir / file.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render_text(file.text, values, source=file.source), encoding="utf-8")
        written.append(dest)
    given = template.given
    return RenderedConfig(
        placeholders.run_dir,
        tuple(written[:given]),
        tuple(f.source for f in template.files[:given]),
        companions=tuple(
            zip(written[given:], (f.source for f in template.files[given:]), strict=True)
        ),
        notices=template.notices,
        tls=uses_tls(template),
    )


def render_files(
    sources: Sequence[Path], placeholders: Placeholders, adapter: Adapter | None = None
) -> tuple[Path, ...]:
    """Render every file of one config into ``run_dir``; the first is the main one."""
    return render_config(load_config(sources, adapter), placeholders).files


_COMMENT = re.compile(r"(?:^|\s)#.*$", re.M)


def uses_tls(template: ConfigTemplate) -> bool:
    """Whether the config names the run's certificate outside a comment: its
    listener speaks TLS."""
    return any(
        has_placeholder(_COMMENT.sub("", file.text), name)
        for file in template.files
        for name in TLS_PLACEHOLDERS
    )


def require_placeholders(template: ConfigTemplate, adapter: Adapter) -> None:
    """Refuse a config that does not say where the proxy listens or where the origin is.

    The placeholder may be in any one file of the config (Traefik: the static file
    listens, a dynamic file names the origin); one inside a comment does not count.
    """
    code = [_COMMENT.sub("", file.text) for file in template.files]
    backend_count(template)  # numbered placeholders: valid numbers, no gap
    for name, what, where in (
        ("listen_port", "where the proxy listens", adapter.listen_example),
        ("upstream_port", "where the proxy reaches the origin", adapter.upstream_example),
    ):
        if any(has_placeholder(text, name) for text in code):
            continue
        if name == "upstream_port" and any(has_placeholder(t, "upstream_port_1") for t in code):
            continue
        files = [f.source for f in template.files]
        several = len(files) > 1
        fix = f"put {{{{ {name} }}}} in {where or 'the config'}"
        if several:
            fix += "; it may be in any one of the config's files: " + ", ".join(
                str(f) for f in files
            )
        raise TemplateError(
            f"no {{{{ {name} }}}} placeholder in this config{' (in none of its files)' * several}"
            f": proxytest cannot tell {what}",
            file=files[0],
            fix=fix,
        )


def backend_count(template: ConfigTemplate) -> int:
    """How many origins the config fronts: its highest N of ``{{ upstream_host_N }}``
    and ``{{ upstream_port_N }}`` outside comments, over all its files (1 without them).

    Raises TemplateError, naming the file and line, for a number that names no
    backend (0, 01, above MAX_BACKENDS) anywhere, and for a gap: backends are
    numbered 1 … N, each with its port (``upstream_port`` is backend 1's), so a
    ``{{ upstream_port_3 }}`` without ``{{ upstream_port_2 }}`` is refused.
    """
    highest = 1
    first: dict[int, tuple[str, Path, int]] = {}  # N -> its first placeholder (code only)
    ports: set[int] = set()
    for file in template.files:
        code = _COMMENT.sub("", file.text)  # the same offsets line by line: comments cut
        for text, counted in ((file.text, False), (code, True)):
            for match in PLACEHOLDER.finditer(text):
                inner = _NAME.fullmatch(match.group(1))
                if inner is None:
                    continue  # render_text names it
                line = text.count("\n", 0, match.start()) + 1
                try:
                    number = backend_number(inner.group(1))
                except ValueError as exc:
                    raise TemplateError(
                        f"{match.group(0)}: {exc}",
                        file=file.source,
                        line=line,
                        fix="use " + _NUMBERED_HELP,
                    ) from None
                if inner.group(1) == "upstream_port":
                    number = 1 if counted else None
                if number is None or not counted:
                    continue
                highest = max(highest, number)
                first.setdefault(number, (match.group(0), file.source, line))
                if "port" in inner.group(1):
                    ports.add(number)
    for number in range(2, highest + 1):
        if number not in ports:
            shown, source, line = first[highest]
            raise TemplateError(
                f"{shown} names backend {highest}, but there is no {{{{ upstream_port_{number} }}}}"
                ": backends are numbered 1 to N without a gap, each with its port",
                file=source,
                line=line,
                fix=f"add backend {number} ({{{{ upstream_host_{number} }}}}:"
                f"{{{{ upstream_port_{number} }}}}), or renumber the backends from 1",
            )
    return highest
