"""One road from a matrix and its overrides to the options of a run.

The CLI (flags), the pytest plugin (options and ini keys), the benchmarks and
the tests all build their :class:`RunOptions` with :meth:`RunOptions.from_matrix`,
so every setting is validated once, here, with the bounds of
:mod:`proxytest.settings`, and a bad value is a :class:`UsageError` (exit 2)
naming the flag it came from::

    matrix = load_matrix(Path("matrix.yaml"), tuple(ADAPTERS))
    options = RunOptions.from_matrix(matrix, checks=["sse.*"], max_hold=20)

:func:`check_targets` then refuses, before anything starts, what would only
fail later (an unknown or a missing placeholder, a config that is not UTF-8, a
deployed line it cannot neutralise, a ``binary:`` that does not exist), and
returns the notices of the lines it neutralised, for the caller to show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .adapters import ADAPTERS, Adapter
from .adapters.base import Notice
from .checks import CHECKS, Check, select_valid
from .errors import UsageError
from .matrix import Matrix, TargetSpec
from .runtimes import LocalRuntime
from .runtimes.base import DEFAULT_NETWORK, DOCKER_NETWORKS, RUNTIMES, NetworkMode, RuntimeName
from .settings import DEFAULT_CONCURRENCY, SettingError, Settings, parse_setting
from .templates import (
    PLACEHOLDERS,
    backend_count,
    load_config,
    render_text,
    require_placeholders,
)
from .timing import Thresholds

__all__ = ["RunOptions", "check_images", "check_targets", "cli_flag"]


def cli_flag(key: str) -> str:
    """How the command line spells setting ``key``: ``max_hold`` is ``--max-hold``."""
    return "--" + key.replace("_", "-")


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides its targets. Build it with :meth:`from_matrix`."""

    checks: tuple[Check[Any], ...] = tuple(CHECKS.values())
    thresholds: Thresholds = field(default_factory=Thresholds)
    concurrency: int = DEFAULT_CONCURRENCY
    keep_run_dirs: bool = False
    # The config files in the reports (secrets masked), or left out entirely.
    config_in_reports: bool = True
    # `proxytest check`: a config the proxy rejects is a usage error (exit 2),
    # raised as ConfigRejected, instead of an `error` verdict.
    raise_rejected: bool = False
    settings: Settings = field(default_factory=Settings)
    # None: each target's own runtime (matrix); else local, docker or auto for all.
    runtime: RuntimeName | None = None
    images: Mapping[str, str] = field(default_factory=dict)  # proxy -> image
    docker_network: NetworkMode = DEFAULT_NETWORK  # how containers meet this machine
    # A target that could not run (binary, image or engine missing) is a skip that
    # keeps the run green, as if every target were `optional: true`. Off: not run.
    skip_missing: bool = False

    @classmethod
    def from_matrix(
        cls,
        matrix: Matrix | None = None,
        *,
        checks: Sequence[str] = (),
        runtime: str | None = None,
        docker_network: str | None = None,
        images: Mapping[str, str] | None = None,
        max_hold: object = None,
        heartbeat: object = None,
        load_connections: object = None,
        fanout_max_n: object = None,
        concurrency: object = None,
        keep_run_dirs: bool = False,
        config_in_reports: bool | None = None,
        raise_rejected: bool = False,
        skip_missing: bool = False,
        thresholds: Thresholds | None = None,
        flag: Callable[[str], str] = cli_flag,
    ) -> RunOptions:
        """The matrix's options (defaults without one), with the overrides that are not None.

        Overrides are numbers or text (a flag's or an ini key's value); ``flag``
        names the option a key came from, for messages (``--proxytest-max-hold``).
        ``config_in_reports``: False leaves the config files out of the reports
        (``--no-config-in-reports``); None is the default, in.
        """
        base_settings = matrix.settings if matrix else Settings()
        numbers: dict[str, float] = {}
        for key, value in (
            ("max_hold", max_hold),
            ("heartbeat", heartbeat),
            ("load_connections", load_connections),
            ("fanout_max_n", fanout_max_n),
            ("concurrency", concurrency),
        ):
            if value is None:
                continue
            try:
                numbers[key] = parse_setting(key, value)
            except SettingError as exc:
                raise UsageError(
                    f"{flag(key)} {exc}", fix=f"e.g. {flag(key)} {_EXAMPLE[key]}"
                ) from None
        settings = replace(
            base_settings,
            max_hold_s=numbers.get("max_hold", base_settings.max_hold_s),
            heartbeat_s=numbers.get("heartbeat", base_settings.heartbeat_s),
            load_connections=int(numbers.get("load_connections", base_settings.load_connections)),
            fanout_max_n=int(numbers.get("fanout_max_n", base_settings.fanout_max_n)),
        )
        network = docker_network or (matrix.docker_network if matrix else DEFAULT_NETWORK)
        return cls(
            checks=select_valid(
                checks or (matrix.checks if matrix else ("*",)), option=flag("checks")
            ),
            thresholds=thresholds or Thresholds.from_env(),
            concurrency=int(
                numbers.get("concurrency", matrix.concurrency if matrix else DEFAULT_CONCURRENCY)
            ),
            keep_run_dirs=keep_run_dirs,
            config_in_reports=config_in_reports is not False,
            raise_rejected=raise_rejected,
            skip_missing=skip_missing,
            settings=settings,
            runtime=None if runtime is None else _choice(runtime, RUNTIMES, flag("runtime")),
            images=check_images(images or {}, flag("image")),
            docker_network=_choice(network, DOCKER_NETWORKS, flag("docker_network")),
        )


_EXAMPLE = {
    "max_hold": 20, "heartbeat": 5, "load_connections": 500, "fanout_max_n": 1000,
    "concurrency": 2,
}  # fmt: skip


def _choice(value: str, choices: tuple[Any, ...], name: str) -> Any:
    if value not in choices:
        raise UsageError(
            f"{name} {value!r} is not one of the choices", fix="use one of: " + ", ".join(choices)
        )
    return value


def check_images(images: Mapping[str, str], name: str = "--image") -> dict[str, str]:
    """``images`` (proxy -> image) if every proxy is known and every image named."""
    for proxy, image in images.items():
        if proxy not in ADAPTERS or not image:
            raise UsageError(
                f"{name} {proxy}={image!r}: expected PROXY=IMAGE",
                fix="e.g. nginx=nginx:1.29.3-alpine; proxies: " + ", ".join(ADAPTERS),
            )
    return dict(images)


def check_targets(targets: Sequence[TargetSpec], options: RunOptions) -> tuple[Notice, ...]:
    """Refuse before anything starts what would only fail (or be ignored) later.

    Every config is read (UTF-8), neutralised by its adapter (a deployed config's
    host-bound lines, each with a :class:`Notice`; what cannot be neutralised is
    refused) and rendered once with dummy values (unknown placeholders); it must
    say where the proxy listens and where the origin is. A proxy that takes one
    config file gets one; a target's ``binary:`` must exist, be that proxy and
    answer, and is only for the local runtime; ``--image`` only for docker.
    Returns the notices, once each, in file order.
    """
    dummy = {name: "x" for name in PLACEHOLDERS}
    notices: list[Notice] = []
    runs_docker = False
    for target in targets:
        adapter = ADAPTERS[target.proxy]
        runtime = options.runtime or target.runtime
        runs_docker = runs_docker or runtime != "local"
        file, _, line = (target.source or "").rpartition(":")
        where: dict[str, Any] = {"file": file, "line": int(line)} if file else {}
        limit = adapter.max_config_files
        if limit is not None and len(target.configs) > limit:
            names = ", ".join(p.name for p in target.configs)
            raise UsageError(
                f"{adapter.name} takes one config file; {target.id} has {len(target.configs)} "
                f"({names})",
                fix="give the main file only, and `include` the others from it",
                **where,
            )
        if target.binary is not None:
            if runtime == "docker":
                raise UsageError(
                    f"a binary ({target.binary}) is for the local runtime, but {target.id} "
                    "runs in a container",
                    fix="choose the container with --image PROXY=IMAGE (matrix: image:), or "
                    "use --runtime local",
                    **where,
                )
            if runtime == "local":
                try:
                    binary = adapter.find_binary(target.binary)
                except UsageError as exc:
                    if not where:
                        raise
                    raise UsageError(exc.problem, fix=exc.fix, **where) from None
                verify_binary(adapter, binary, options.thresholds.version_timeout_s)
        template = load_config(target.configs, adapter)
        numbered = {  # backends 1 … N of a config with numbered placeholders
            f"upstream_{what}_{n}": "x"
            for n in range(1, backend_count(template) + 1)
            for what in ("host", "port")
        }
        for config_file in template.files:
            render_text(config_file.text, {**dummy, **numbered}, source=config_file.source)
        require_placeholders(template, adapter)
        notices.extend(n for n in template.notices if n not in notices)
    if options.images and not runs_docker:
        raise UsageError(
            "--image is for the docker runtime, but every target runs locally",
            fix="add --runtime docker (or auto), or leave out --image",
        )
    return tuple(notices)


def verify_binary(adapter: Adapter, binary: Path, timeout_s: float) -> None:
    """A binary a user named must be ``adapter``'s proxy: its version command says so.

    A program that is not the proxy (``/bin/sleep``) would otherwise be started
    and blamed ("nginx rejected the config"), or hang until a timeout.
    """
    argv = adapter.version_argv(binary)

    async def ask() -> tuple[int, str] | None:
        try:
            return await LocalRuntime().run(argv, timeout=timeout_s)
        except TimeoutError:
            return None
        except OSError as exc:
            return 126, f"{type(exc).__name__}: {exc.strerror or exc}"

    answer = asyncio.run(ask())
    shown = " ".join(argv)
    if answer is None:
        raise UsageError(
            f"{binary} is not {adapter.name}: `{shown}` did not answer within {timeout_s:g} s",
            fix=f"pass the path of the {adapter.name} binary with --binary (matrix: binary:)",
        )
    code, output = answer
    if adapter.parse_version(output) is None:
        said = repr(output.strip().splitlines()[0][:200]) if output.strip() else "nothing"
        raise UsageError(
            f"{binary} is not {adapter.name}: `{shown}` exited {code} and printed {said}",
            fix=f"pass the path of the {adapter.name} binary with --binary (matrix: binary:)",
        )
