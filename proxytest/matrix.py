"""matrix.yaml, parsed once into frozen, validated specs.

Nothing downstream sees a raw dict: every error names the file and the line
(from PyYAML's marks) and says how to fix it. Example::

    checks: ["*"]          # globs on check IDs
    concurrency: 4         # targets in their start-up and quick checks at once
    max_hold: 75           # seconds a long-lived check holds a connection
    heartbeat: 10          # ws.keepalive ping / sse.heartbeat comment interval
    load_connections: 1000 # WebSockets and SSE streams for load.concurrency
    fanout_max_n: 250      # subscribers per protocol load.fanout steps up to
    runtime: local         # local | docker | auto (also per target)
    images: {nginx: "nginx:1.29.3-alpine"}   # docker runtime (also per target: image:)
    docker_network: host   # host | bridge (published ports, origin via the gateway)
    targets:
      - proxy: nginx
        setup: default     # proxies/nginx/default.*
        expect:
          ws.*: fail       # documented failure: reported as expected
      - proxy: nginx
        setup: realtime

A setup's files are ``<proxies_dir>/<proxy>/<setup>.*``; the main file is the
one with the fewest dots (``default.yaml`` before ``default.dynamic.yaml``).
``configs: [a, b]`` names the files explicitly instead.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import checks as catalogue
from .errors import MatrixError, UsageError
from .results import Verdict
from .runtimes.base import (
    DEFAULT_NETWORK,
    DEFAULT_RUNTIME,
    DOCKER_NETWORKS,
    RUNTIMES,
    NetworkMode,
    RuntimeName,
)
from .settings import DEFAULT_CONCURRENCY, SettingError, Settings, parse_setting

__all__ = [
    "Matrix",
    "TargetSpec",
    "discover_setup",
    "load_matrix",
    "parse_matrix",
    "select_targets",
]

_TOP_KEYS = (
    "checks", "concurrency", "runtime", "proxies_dir", "max_hold", "heartbeat",
    "load_connections", "fanout_max_n", "images", "docker_network", "targets",
)  # fmt: skip
_TARGET_KEYS = (
    "proxy", "setup", "configs", "binary", "image", "expect", "runtime", "id", "note", "optional",
    "env", "checks",
)  # fmt: skip


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_NAME_FIX = "a name of letters, digits and _, not starting with a digit (e.g. GODEBUG)"


def env_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an environment variable's name (None: it can)."""
    if not _ENV_NAME.fullmatch(name):
        return f"{name!r} is not an environment variable name"
    return None


@dataclass(frozen=True)
class TargetSpec:
    """One proxy × setup to run, with the verdicts the matrix expects of it."""

    proxy: str
    setup: str
    configs: tuple[Path, ...]
    id: str = ""
    binary: Path | None = None
    expect: tuple[tuple[str, Verdict], ...] = ()
    runtime: RuntimeName = DEFAULT_RUNTIME
    image: str | None = None  # for the docker runtime; default: the matrix's, else official
    note: str | None = None
    source: str | None = None  # "matrix.yaml:12", for messages
    # A target that may be missing (no binary, image or engine) without failing the run.
    optional: bool = False
    # Environment variables for the proxy process (``env:``; ``--env`` on check),
    # e.g. GODEBUG=http2xconnect=1 for a Go proxy.
    env: tuple[tuple[str, str], ...] = ()
    # The target's own ``checks:`` (globs): it runs those of the run's checks that
    # match one. Empty: every check of the run.
    checks: tuple[str, ...] = ()

    def selects(self, check_id: str) -> bool:
        """Whether this target runs ``check_id`` (of the checks the run selected)."""
        return not self.checks or any(fnmatch.fnmatchcase(check_id, p) for p in self.checks)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{self.proxy}/{self.setup}")
        if not self.configs:
            raise ValueError("a target needs at least one config file")

    def expected(self, check_id: str) -> Verdict | None:
        """The verdict the matrix expects for ``check_id``: exact IDs beat globs."""
        for pattern, verdict in self.expect:
            if pattern == check_id:
                return verdict
        for pattern, verdict in self.expect:
            if fnmatch.fnmatchcase(check_id, pattern):
                return verdict
        return None


@dataclass(frozen=True)
class Matrix:
    targets: tuple[TargetSpec, ...]
    checks: tuple[str, ...] = ("*",)
    concurrency: int = DEFAULT_CONCURRENCY
    runtime: RuntimeName = DEFAULT_RUNTIME
    settings: Settings = field(default_factory=Settings)
    docker_network: NetworkMode = DEFAULT_NETWORK
    path: Path | None = None
    known_proxies: tuple[str, ...] = field(default=(), compare=False)


def discover_setup(proxies_dir: Path, proxy: str, setup: str) -> tuple[Path, ...]:
    """The files of ``setup`` for ``proxy``, main file first."""
    folder = proxies_dir / proxy
    if not folder.is_dir():
        return ()
    files = [p for p in folder.iterdir() if p.is_file() and p.name.split(".", 1)[0] == setup]
    return tuple(sorted(files, key=lambda p: (p.name.count("."), p.name)))


def setups_of(proxies_dir: Path, proxy: str) -> list[str]:
    folder = proxies_dir / proxy
    if not folder.is_dir():
        return []
    return sorted(
        {p.name.split(".", 1)[0] for p in folder.iterdir() if p.is_file() and "." in p.name}
        - {"README", "NOTES"}
    )


class _Parser:
    def __init__(self, path: Path, known_proxies: tuple[str, ...]) -> None:
        self.path = path
        self.known_proxies = known_proxies

    def error(self, node: yaml.Node | None, problem: str, fix: str | None = None) -> MatrixError:
        line = node.start_mark.line + 1 if node is not None else None
        return MatrixError(problem, file=self.path, line=line, fix=fix)

    def mapping(self, node: yaml.Node, what: str, keys: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping", "write it as `key: value` lines")
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, "a key")
            if keys and key not in keys:
                raise self.error(
                    key_node, f"unknown key {key!r} in {what}", "use one of: " + ", ".join(keys)
                )
            if key in result:
                raise self.error(key_node, f"duplicate key {key!r} in {what}")
            result[key] = value_node
        return result

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"{what} must be a single value")
        return str(node.value)

    def string_list(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode):
            return [(self.scalar(node, what), node)]
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list", f"write {what}: [a, b]")
        return [(self.scalar(item, what), item) for item in node.value]

    def setting(self, top: dict[str, yaml.Node], key: str, default: float) -> float:
        """A number of settings.BOUNDS from ``top[key]``, or ``default`` when absent."""
        if key not in top:
            return default
        node = top[key]
        try:
            return parse_setting(key, self.scalar(node, key))
        except SettingError as exc:
            raise self.error(node, f"{key} {exc}") from None

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what).lower()
        if value not in ("true", "false", "yes", "no"):
            raise self.error(
                node, f"{what} must be true or false, got {value!r}", f"write {what}: true"
            )
        return value in ("true", "yes")

    def runtime(self, node: yaml.Node) -> RuntimeName:
        value = self.scalar(node, "runtime")
        if value not in RUNTIMES:
            raise self.error(
                node, f"unknown runtime {value!r}", "use one of: " + ", ".join(RUNTIMES)
            )
        return value

    def docker_network(self, node: yaml.Node) -> NetworkMode:
        value = self.scalar(node, "docker_network")
        if value not in DOCKER_NETWORKS:
            raise self.error(
                node,
                f"unknown docker_network {value!r}",
                "use one of: "
                + ", ".join(DOCKER_NETWORKS)
                + " (bridge: for engines without host networking)",
            )
        return value

    def check_patterns(self, node: yaml.Node) -> tuple[str, ...]:
        patterns = []
        for pattern, item in self.string_list(node, "checks"):
            if not catalogue.matching(pattern):
                raise self.error(
                    item,
                    f"{pattern!r} matches no check",
                    "known checks: " + ", ".join(catalogue.CHECKS),
                )
            patterns.append(pattern)
        return tuple(patterns)

    def expect(self, node: yaml.Node) -> tuple[tuple[str, Verdict], ...]:
        entries = []
        for pattern, value_node in self.mapping(node, "expect", ()).items():
            if not catalogue.matching(pattern):
                raise self.error(
                    value_node,
                    f"expect: {pattern!r} matches no check",
                    "known checks: " + ", ".join(catalogue.CHECKS),
                )
            value = self.scalar(value_node, f"expect: {pattern}")
            try:
                verdict = Verdict(value)
            except ValueError:
                raise self.error(
                    value_node,
                    f"expect: {pattern}: {value!r} is not a verdict",
                    "use one of: " + ", ".join(v.value for v in Verdict),
                ) from None
            entries.append((pattern, verdict))
        return tuple(entries)

    def env(self, node: yaml.Node) -> tuple[tuple[str, str], ...]:
        """``env:`` of a target: NAME: value lines."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(
                node, "env: must be a mapping", "write it as `NAME: value` lines, e.g. GODEBUG: …"
            )
        entries = []
        for key_node, value_node in node.value:
            name = self.scalar(key_node, "an env name")
            problem = env_name_problem(name)
            if problem:
                raise self.error(key_node, f"env: {problem}", ENV_NAME_FIX)
            entries.append((name, self.scalar(value_node, f"env: {name}")))
        return tuple(entries)

    def target(
        self, node: yaml.Node, proxies_dir: Path, runtime: RuntimeName, images: dict[str, str]
    ) -> TargetSpec:
        fields = self.mapping(node, "a target", _TARGET_KEYS)
        if "proxy" not in fields:
            raise self.error(node, "target without `proxy:`", "add proxy: <name>")
        proxy = self.scalar(fields["proxy"], "proxy")
        if proxy not in self.known_proxies:
            raise self.error(
                fields["proxy"],
                f"unknown proxy {proxy!r}",
                "use one of: " + ", ".join(self.known_proxies),
            )
        base = self.path.parent
        if "configs" in fields:
            configs = []
            for name, item in self.string_list(fields["configs"], "configs"):
                path = (base / name).resolve()
                if path.is_dir():
                    raise self.error(
                        item,
                        f"configs: {path} is a folder, not a config file",
                        "name each file of the config (relative to the matrix file)",
                    )
                if not path.is_file():
                    raise self.error(
                        item,
                        f"config file {path} not found",
                        "check the path (relative to the matrix file)",
                    )
                configs.append(path)
            setup = (
                self.scalar(fields["setup"], "setup")
                if "setup" in fields
                else (configs[0].name.split(".", 1)[0] if configs else "")
            )
        else:
            if "setup" not in fields:
                raise self.error(
                    node,
                    "target without `setup:` or `configs:`",
                    "add setup: default (files proxies/<proxy>/<setup>.*)",
                )
            setup = self.scalar(fields["setup"], "setup")
            configs = list(discover_setup(proxies_dir, proxy, setup))
            if not configs:
                known = setups_of(proxies_dir, proxy)
                raise self.error(
                    fields["setup"],
                    f"no config files {proxies_dir / proxy / setup}.*",
                    ("known setups of " + proxy + ": " + ", ".join(known))
                    if known
                    else f"create {proxies_dir / proxy / setup}.<ext>",
                )
        if not configs:
            raise self.error(fields["configs"], "configs: is empty")
        binary = None
        if "binary" in fields:
            binary = (base / self.scalar(fields["binary"], "binary")).expanduser()
        return TargetSpec(
            proxy=proxy,
            setup=setup,
            configs=tuple(configs),
            id=self.scalar(fields["id"], "id") if "id" in fields else "",
            binary=binary,
            expect=self.expect(fields["expect"]) if "expect" in fields else (),
            runtime=self.runtime(fields["runtime"]) if "runtime" in fields else runtime,
            image=self.scalar(fields["image"], "image") if "image" in fields else images.get(proxy),
            note=self.scalar(fields["note"], "note") if "note" in fields else None,
            optional=self.boolean(fields["optional"], "optional")
            if "optional" in fields
            else False,
            env=self.env(fields["env"]) if "env" in fields else (),
            checks=self.check_patterns(fields["checks"]) if "checks" in fields else (),
            source=f"{self.path}:{node.start_mark.line + 1}",
        )

    def matrix(self, root: yaml.Node | None) -> Matrix:
        if root is None:
            raise MatrixError(
                "the matrix file is empty",
                file=self.path,
                fix="add a `targets:` list (see the default matrix.yaml)",
            )
        top = self.mapping(root, "the matrix", _TOP_KEYS)
        runtime = self.runtime(top["runtime"]) if "runtime" in top else DEFAULT_RUNTIME
        proxies_dir = self.path.parent / (
            self.scalar(top["proxies_dir"], "proxies_dir") if "proxies_dir" in top else "proxies"
        )
        if "targets" not in top:
            raise self.error(root, "the matrix has no `targets:`", "add a list of targets")
        targets_node = top["targets"]
        if not isinstance(targets_node, yaml.SequenceNode) or not targets_node.value:
            raise self.error(
                targets_node,
                "`targets:` must be a non-empty list",
                "add entries such as `- proxy: nginx` / `  setup: default`",
            )
        images: dict[str, str] = {}
        if "images" in top:
            for proxy, image_node in self.mapping(top["images"], "images", ()).items():
                if proxy not in self.known_proxies:
                    raise self.error(
                        image_node,
                        f"images: unknown proxy {proxy!r}",
                        "use one of: " + ", ".join(self.known_proxies),
                    )
                images[proxy] = self.scalar(image_node, f"images: {proxy}")
        targets = [self.target(t, proxies_dir, runtime, images) for t in targets_node.value]
        seen: dict[str, TargetSpec] = {}
        for spec, node in zip(targets, targets_node.value, strict=True):
            if spec.id in seen:
                raise self.error(
                    node, f"target {spec.id!r} appears twice", "give one of them a distinct `id:`"
                )
            seen[spec.id] = spec
        return Matrix(
            targets=tuple(targets),
            checks=self.check_patterns(top["checks"]) if "checks" in top else ("*",),
            concurrency=int(self.setting(top, "concurrency", DEFAULT_CONCURRENCY)),
            runtime=runtime,
            settings=Settings(
                max_hold_s=self.setting(top, "max_hold", Settings.max_hold_s),
                heartbeat_s=self.setting(top, "heartbeat", Settings.heartbeat_s),
                load_connections=int(
                    self.setting(top, "load_connections", Settings.load_connections)
                ),
                fanout_max_n=int(self.setting(top, "fanout_max_n", Settings.fanout_max_n)),
            ),
            docker_network=self.docker_network(top["docker_network"])
            if "docker_network" in top
            else DEFAULT_NETWORK,
            path=self.path,
            known_proxies=self.known_proxies,
        )


def parse_matrix(text: str, path: Path, known_proxies: tuple[str, ...]) -> Matrix:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise MatrixError(
            f"not valid YAML: {exc.problem or exc}",
            file=path,
            line=mark.line + 1 if mark else None,
            fix="check the indentation and quoting on that line",
        ) from None
    except yaml.YAMLError as exc:
        raise MatrixError(f"not valid YAML: {exc}", file=path) from None
    return _Parser(path, known_proxies).matrix(root)


def load_matrix(path: Path, known_proxies: tuple[str, ...]) -> Matrix:
    if path.is_dir():
        raise MatrixError(
            "is a folder, not a matrix file",
            file=path,
            fix="name the matrix file itself, e.g. proxytest run path/to/matrix.yaml",
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MatrixError(
            "matrix file not found",
            file=path,
            fix="run from the project folder, or name the file: proxytest run path/to/matrix.yaml",
        ) from None
    except OSError as exc:
        raise MatrixError(
            f"cannot read the matrix file: {exc.strerror or exc}",
            file=path,
            fix="check the path and its permissions",
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MatrixError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            file=path,
            line=raw.count(b"\n", 0, exc.start) + 1,
            fix="save the matrix as UTF-8",
        ) from None
    return parse_matrix(text, path, known_proxies)


def select_targets(
    targets: Sequence[TargetSpec], selectors: Sequence[str] | None, *, option: str = "--only"
) -> list[TargetSpec]:
    """The targets matching any ``PROXY[/SETUP]`` selector (all when there is none)."""
    if not selectors:
        return list(targets)
    chosen: list[TargetSpec] = []
    for selector in selectors:
        proxy, _, setup = selector.partition("/")
        found = [
            t
            for t in targets
            if (t.proxy == proxy and (not setup or t.setup == setup)) or t.id == selector
        ]
        if not found:
            raise UsageError(
                f"{option} {selector!r} matches no target of the matrix",
                fix="targets: " + ", ".join(t.id for t in targets),
            )
        chosen.extend(t for t in found if t not in chosen)
    return chosen
