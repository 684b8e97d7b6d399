"""The command line: ``proxytest run | check | fix | probe | report | list | init | origin``.

Exit codes: 0 every verdict is pass or what the matrix expects; 1 otherwise;
2 usage or configuration error (the message names the file, line and fix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._version import VERSION
from .adapters import ADAPTERS
from .adapters.base import Notice
from .checks import CHECKS
from .errors import BinaryNotFound, ConfigRejected, UsageError
from .fixing import fix_targets
from .matrix import (
    ENV_NAME_FIX,
    Matrix,
    TargetSpec,
    env_name_problem,
    load_matrix,
    select_targets,
    setups_of,
)
from .options import RunOptions, check_images, check_targets
from .origin import cli as origin_cli
from .pathprobe import DeployedPath, PathRun, probe_path
from .reports import read_report, run_from_json, write_json, write_reports
from .reports.console import LiveProgress, print_report
from .reports.merge import merge_reports
from .results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict
from .runner import Progress, run_targets
from .runtimes import DOCKER_NETWORKS, RUNTIMES, LocalRuntime
from .shards import Shard, parse_shard
from .starter import MATRIX, PROXIES, copy_starter, starter_matrix, starter_proxies
from .tls import Trust

__all__ = ["main"]

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE = 0, 1, 2
ORIGIN_TOKEN_ENV = "PROXYTEST_ORIGIN_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checks",
        action="append",
        metavar="GLOB",
        help="check IDs to run, as globs (repeatable): --checks 'ws.*'",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here")
    _report_dir(parser)
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="run proxies as local processes (default) or containers",
    )
    parser.add_argument(
        "--image",
        action="append",
        metavar="[PROXY=]IMAGE",
        help="container image for the docker runtime, repeatable (default: pinned official)",
    )
    parser.add_argument(
        "--docker-network",
        choices=DOCKER_NETWORKS,
        help="how containers meet this machine: host networking (default: the matrix's, "
        "else host), or bridge with ports published on 127.0.0.1 for engines without it",
    )
    _holds(parser)
    parser.add_argument(
        "--load-connections",
        type=int,
        metavar="N",
        help="WebSockets and SSE streams opened by load.concurrency (default 1000)",
    )
    parser.add_argument(
        "--fanout-max-n",
        type=int,
        metavar="N",
        help="subscribers per protocol load.fanout steps up to (default 250)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="targets run at once (default: the matrix's, else 4)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="a target whose binary, image or Docker engine is missing is skipped and the "
        "run can still pass (default: it fails the run as 'not run'; or mark the target "
        "`optional: true` in the matrix)",
    )
    parser.add_argument(
        "--keep-run-dirs",
        action="store_true",
        help="keep each target's rendered configs and logs (for debugging); "
        "the run prints where they are",
    )
    parser.add_argument(
        "--no-config-in-reports",
        action="store_true",
        help="leave the config files out of the reports (by default they are shown, "
        "with lines that look like secrets masked)",
    )


def _holds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-hold",
        metavar="SECONDS",
        help="longest time a long-lived check holds a connection: seconds, or 45s, 90m, 2h "
        "(default: the matrix's, else 75)",
    )
    parser.add_argument(
        "--heartbeat",
        metavar="SECONDS",
        help="ping / SSE comment interval of ws.keepalive and sse.heartbeat (default 10)",
    )


def _report_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="write results.json, junit.xml, summary.md, report.html and badges/ here",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="proxytest",
        description="Will your real-time traffic (SSE, "
        "WebSocket) survive your reverse proxy setup?",
    )
    parser.add_argument("--version", action="version", version=f"proxytest {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run a matrix file (default ./matrix.yaml, else the one shipped with proxytest)",
    )
    run.add_argument("matrix", nargs="?", type=Path, metavar="MATRIX")
    run.add_argument(
        "--only",
        action="append",
        metavar="PROXY[/SETUP]",
        help="run only these targets (repeatable)",
    )
    _shard_option(run)
    _common(run)
    check = sub.add_parser("check", help="run the checks against a config you bring")
    _own_config(check, required=True)
    _common(check)
    _probe_parser(sub)
    _fix_parser(sub)
    report = sub.add_parser(
        "report",
        help="show a saved JSON report again, and write its report files",
        description="Read a JSON report (--json PATH, or results.json of a --report-dir), "
        "print its grid and, with --report-dir, write every report file from it. "
        "With --merge, the reports of a matrix's shards (run --shard K/N) become one run's. "
        "Exit code as for the run it describes.",
    )
    report.add_argument("results", nargs="?", type=Path, metavar="RESULTS.json")
    _merge_option(report)
    _report_dir(report)
    lister = sub.add_parser("list", help="proxies, setups and checks")
    lister.add_argument(
        "--proxies-dir",
        type=Path,
        metavar="DIR",
        help="where the setups are (default ./proxies, else the ones shipped with proxytest)",
    )
    lister.add_argument(
        "--image",
        action="append",
        metavar="PROXY=IMAGE",
        help="show this image's presence instead of the default one",
    )
    _init_parser(sub)
    origin = sub.add_parser(
        "origin",
        help="the test origin on its own, for a deployed path to front",
        description="Serve the test origin for `proxytest probe` to reach through a "
        "deployed path (load balancer, CDN, ingress). Loopback only unless --listen "
        "names another address; every request needs the token.",
    )
    origin_cli.add_arguments(origin)
    return parser


def _probe_parser(sub: Any) -> None:
    probe = sub.add_parser(
        "probe",
        help="the client-side checks through a deployed path whose backend is `proxytest origin`",
        description="Run every client-side check through URL (a load balancer, CDN or ingress "
        "in front of `proxytest origin`). The path part of URL is the prefix the origin's routes "
        "sit under. The origin is confirmed first: anything else answering makes every check "
        "an error that names it. Checks that need control of the proxy are skipped.",
    )
    probe.add_argument(
        "url", metavar="URL", help="where the path is reached: http(s)://host[:port][/prefix]"
    )
    probe.add_argument(
        "--origin-token",
        metavar="T",
        default=os.environ.get(ORIGIN_TOKEN_ENV),
        help=f"the origin's token (default: ${ORIGIN_TOKEN_ENV})",
    )
    probe.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header sent on every request, upgrade and browser page (repeatable), "
        "e.g. for an authenticating proxy",
    )
    probe.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="trust this CA (PEM) besides the system's: a path with a private certificate",
    )
    probe.add_argument(
        "--insecure",
        action="store_true",
        help="accept any server certificate (labelled INSECURE in the output); prefer --ca",
    )
    probe.add_argument(
        "--checks",
        action="append",
        metavar="GLOB",
        help="check IDs to run, as globs (repeatable): --checks 'ws.*'",
    )
    probe.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write the JSON report here (saved again after every check: an interrupted "
        "probe keeps what it measured)",
    )
    _report_dir(probe)
    _holds(probe)


# -- run / check -------------------------------------------------------------------
def _images(values: Sequence[str] | None, proxy: str | None = None) -> dict[str, str]:
    """--image PROXY=IMAGE (repeatable); in `check`, a bare IMAGE is for its proxy."""
    images: dict[str, str] = {}
    for value in values or ():
        name, sep, image = value.partition("=")
        if not sep and proxy is not None:
            name, image = proxy, value
        elif not sep:
            raise UsageError(
                f"--image {value!r}: expected PROXY=IMAGE",
                fix="e.g. --image nginx=nginx:1.29.3-alpine; proxies: " + ", ".join(ADAPTERS),
            )
        images[name] = image
    return images


async def _main_task(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run ``coro`` so that Ctrl-C and SIGTERM cancel it (proxies are stopped).

    The event loop handles both signals, so the cancel runs between its callbacks.
    asyncio.run's own Ctrl-C handler cancels inside the signal handler, which can
    interrupt a callback: a socket connect completing at that moment then failed
    with InvalidStateError, printed as a traceback (CI, test_cli's interrupt test).
    A second signal is ignored: the clean-up that stops the proxies must finish.
    Ctrl-C still ends in KeyboardInterrupt, SIGTERM in CancelledError (main()
    tells them apart for the exit code).
    """
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            task.cancel()
        received.append(signum)

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        return await task
    except asyncio.CancelledError:
        if received[:1] == [signal.SIGINT]:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in handled:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


class _Recorder:
    """Passes progress on, and keeps what finished: an interrupted run still reports it."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.targets: dict[str, TargetResult] = {}
        self.checks: dict[str, list[CheckResult]] = {}

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        self.inner.target_phase(target, phase)

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        self.checks.setdefault(target.id, []).append(result)
        self.inner.check_done(target, result)

    def target_done(self, result: TargetResult) -> None:
        self.targets[result.id] = result
        self.inner.target_done(result)

    def partial(
        self, targets: Sequence[TargetSpec], options: RunOptions, started_at: str, took: float
    ) -> RunResult:
        """What was measured before the interruption; every other check is an error."""
        why = "the run was interrupted before this check finished"
        results = []
        for target in targets:
            if target.id in self.targets:
                results.append(self.targets[target.id])
                continue
            done = {r.check: r for r in self.checks.get(target.id, [])}
            results.append(
                TargetResult(
                    id=target.id,
                    proxy=target.proxy,
                    setup=target.setup,
                    runtime=options.runtime or target.runtime,
                    proxy_version=None,
                    status=TargetStatus.ERROR,
                    reason="the run was interrupted",
                    results=tuple(
                        done.get(c.id)
                        or CheckResult(c.id, Verdict.ERROR, why, expected=target.expected(c.id))
                        for c in options.checks
                    ),
                )
            )
        return RunResult(VERSION, started_at, took, tuple(results), interrupted=True)


def _execute(
    args: argparse.Namespace,
    targets: list[TargetSpec],
    matrix: Matrix | None,
    console: Console,
    *,
    raise_rejected: bool = False,
    shard: tuple[Shard, Sequence[TargetSpec]] | None = None,
) -> int:
    options = _run_options(args, matrix, raise_rejected=raise_rejected)
    notices = check_targets(targets, options)
    _usable_report_dir(args.report_dir)
    _usable_json(args.json)
    _print_notices(notices)
    if shard is not None and not targets:
        return _empty_shard(args, shard, console)
    checks = options.checks
    started_at, started = datetime.now(UTC).isoformat(timespec="seconds"), time.monotonic()
    interactive = console.is_terminal
    recorder: _Recorder | None = None
    try:
        if interactive:
            with LiveProgress(console, targets, len(checks)) as live:
                recorder = _Recorder(live)
                result = asyncio.run(_main_task(run_targets(targets, options, recorder)))
        else:
            console.print(f"proxytest {VERSION}: {len(targets)} targets × {len(checks)} checks")
            recorder = _Recorder(_LineProgress(console))
            result = asyncio.run(_main_task(run_targets(targets, options, recorder)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if recorder is not None and (args.json or args.report_dir):
            took = time.monotonic() - started
            _save_partial(
                _as_shard(recorder.partial(targets, options, started_at, took), shard), args
            )
        raise
    result = _as_shard(result, shard)
    return _report(args, result, console)


def _report(args: argparse.Namespace, result: RunResult, console: Console) -> int:
    print_report(console, result)
    if args.json:
        write_json(result, args.json)
        console.print(f"JSON report: {args.json}")
    _write_reports(result.to_json(), args.report_dir, console)
    return result.exit_code


def _run_options(
    args: argparse.Namespace, matrix: Matrix | None, *, raise_rejected: bool
) -> RunOptions:
    """The run's options: the matrix's (or the defaults), with the command line's overrides."""
    return RunOptions.from_matrix(
        matrix,
        checks=args.checks or (),
        runtime=args.runtime,
        docker_network=args.docker_network,
        images=_images(args.image, getattr(args, "proxy", None)),
        max_hold=args.max_hold,
        heartbeat=args.heartbeat,
        load_connections=args.load_connections,
        fanout_max_n=args.fanout_max_n,
        concurrency=args.concurrency,
        keep_run_dirs=args.keep_run_dirs,
        config_in_reports=not args.no_config_in_reports,
        raise_rejected=raise_rejected,
        skip_missing=args.skip_missing,
    )


# -- probe ---------------------------------------------------------------------------
_NOT_YET = "not done yet: the probe was still running when this file was saved"
_INTERRUPTED = "the probe was interrupted before this check finished"


def cmd_probe(args: argparse.Namespace, console: Console) -> int:
    options = RunOptions.from_matrix(
        None, checks=args.checks or (), max_hold=args.max_hold, heartbeat=args.heartbeat
    )
    if args.ca is not None and not args.ca.is_file():
        raise UsageError("--ca: no such file", file=args.ca, fix="name the CA's PEM file")
    trust = Trust(system=True, ca_file=args.ca, insecure=args.insecure)
    path = DeployedPath.parse(args.url, token=args.origin_token, headers=args.header, trust=trust)
    _usable_report_dir(args.report_dir)
    _usable_json(args.json)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    if args.insecure:
        errors.print("proxytest: INSECURE: server certificates are not verified (--insecure)")
    run = PathRun(path, options.checks)
    target = path.target

    def snapshot() -> None:
        """--json after every check: a Ctrl-C, a SIGTERM or a crash keeps what was measured."""
        if args.json:
            write_json(run.result(unfinished=_NOT_YET), args.json)

    def save(progress: Progress) -> Progress:
        return _Saving(progress, snapshot)

    shown = f"{path.base_url}{path.prefix}"
    try:
        if console.is_terminal:
            with LiveProgress(console, [target], len(options.checks)) as live:
                result = asyncio.run(
                    _main_task(probe_path(path, options, run, save(live), started=live.started))
                )
        else:
            console.print(
                f"proxytest {VERSION}: probe {shown} × {len(options.checks)} checks "
                f"(max hold {options.settings.max_hold_s:g} s)"
            )
            result = asyncio.run(
                _main_task(probe_path(path, options, run, save(_CheckLines(console))))
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        _save_partial(run.result(unfinished=_INTERRUPTED), args)
        raise
    print_report(console, result)
    if args.insecure:
        console.print("INSECURE: server certificates were not verified (--insecure)")
    if args.json:
        write_json(result, args.json)
        console.print(f"JSON report: {args.json}")
    _write_reports(result.to_json(), args.report_dir, console)
    return result.exit_code


class _Saving:
    """Passes progress on and saves after every finished check."""

    def __init__(self, inner: Progress, save: Callable[[], None]) -> None:
        self.inner = inner
        self.save = save

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        self.inner.target_phase(target, phase)

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        self.inner.check_done(target, result)
        self.save()

    def target_done(self, result: TargetResult) -> None:
        self.inner.target_done(result)


class _CheckLines:
    """Probe progress for logs: one line per finished check (holds may take hours)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        self.console.print(f"  {target.id}: {phase}")

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        self.console.print(f"  {result.check}: {result.verdict.value} in {result.duration_s:.1f} s")

    def target_done(self, result: TargetResult) -> None:
        pass


def _save_partial(partial: RunResult, args: argparse.Namespace) -> None:
    """What an interrupted run or probe measured, into --json and --report-dir."""
    if args.json:
        write_json(partial, args.json)
    if args.report_dir:
        write_reports(partial.to_json(), args.report_dir)


def _usable_json(path: Path | None) -> None:
    """Fail before a run, not after it, when the JSON report cannot be written there."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError("--json names a folder", file=path, fix="name a file, e.g. results.json")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"--json: {folder} is a file, not a folder", file=path, fix="name a path in a folder"
        )
    if not folder.is_dir():
        raise UsageError(
            "--json: the folder of this file does not exist", file=path, fix="create it first"
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(
            "--json: this file cannot be written", file=path, fix="choose a path you can write to"
        )


def _print_notices(notices: Sequence[Notice]) -> None:
    """The lines of the configs proxytest neutralised, once each, before the run (stderr)."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    for notice in notices:
        errors.print(f"notice: {notice}", markup=False)


def _usable_report_dir(directory: Path | None) -> None:
    """Fail before a run, not after it, when the report folder cannot be one."""
    if directory is not None and directory.exists() and not directory.is_dir():
        raise UsageError(
            "--report-dir is a file, not a folder", file=directory, fix="name a folder"
        )


def _write_reports(data: dict[str, Any], directory: Path | None, console: Console) -> None:
    if directory is None:
        return
    _usable_report_dir(directory)
    try:
        write_reports(data, directory)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report files: {exc.strerror or exc}",
            file=directory,
            fix="choose a folder you can write to",
        ) from None
    console.print(
        f"Reports: {directory}/ (results.json, junit.xml, summary.md, report.html, badges/)"
    )


class _LineProgress:
    """Progress for logs (CI): one line per finished target."""

    def __init__(self, console: Console, label: str = "") -> None:
        self.console = console
        self.label = f" ({label})" if label else ""

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        pass

    def check_done(self, target: TargetSpec, result: object) -> None:
        pass

    def target_done(self, result: object) -> None:
        from .results import TargetResult

        assert isinstance(result, TargetResult)
        self.console.print(
            f"  {result.id}{self.label}: {result.status.value} ({result.tally}) "
            f"in {result.duration_s:.1f} s"
        )


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    shard = parse_shard(args.shard) if args.shard is not None else None
    matrix = load_matrix(_matrix_file(args.matrix), tuple(ADAPTERS))
    targets = select_targets(matrix.targets, args.only)
    if shard is None:
        return _execute(args, targets, matrix, console)
    return _run_shard(args, shard, targets, matrix, console)


def _matrix_file(named: Path | None) -> Path:
    """The matrix to run: the one named, else ./matrix.yaml, else the packaged one."""
    if named is not None:
        return named
    here = Path(MATRIX)
    if here.exists() or here.is_symlink():
        return here
    packaged = starter_matrix()
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"no ./{MATRIX}: running the default matrix shipped with proxytest "
        "(proxytest init copies it here to edit)",
        markup=False,
    )
    return packaged


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    return _execute(args, [_own_target(args)], None, console, raise_rejected=True)


def _own_target(args: argparse.Namespace) -> TargetSpec:
    """The target of ``--proxy NAME --config FILE …`` (check and fix)."""
    configs = []
    for path in args.config:
        if path.is_dir():
            raise UsageError(
                "--config names a folder, not a config file",
                file=path,
                fix="name the config file itself (repeat --config for a config of several files)",
            )
        if not path.is_file():
            raise UsageError(
                "config file not found",
                file=path,
                fix="check the path (relative to the current folder)",
            )
        configs.append(path)
    return TargetSpec(
        proxy=args.proxy,
        setup=configs[0].name,
        configs=tuple(configs),
        id=f"{args.proxy}/{configs[0].name}",
        binary=args.binary,
        env=tuple(_env_option(item) for item in args.env),
    )


def _own_config(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--proxy``, ``--config``, ``--binary``, ``--env``: a config the user brings."""
    parser.add_argument("--proxy", required=required, choices=sorted(ADAPTERS))
    parser.add_argument(
        "--config",
        required=required,
        action="append",
        type=Path,
        metavar="FILE",
        help="config file with placeholders; repeat for multi-file configs "
        "(Traefik: static first, then dynamic)",
    )
    parser.add_argument("--binary", type=Path, metavar="PATH", help="the proxy binary to run")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the proxy process (repeatable), "
        "e.g. GODEBUG=http2xconnect=1",
    )


# -- fix -----------------------------------------------------------------------------------
def _fix_parser(sub: Any) -> None:
    fix = sub.add_parser(
        "fix",
        help="turn failures into a config patch, and prove it by running the checks again",
        description="Run the checks; for each failure whose cause is a config knob, write the "
        "smallest change to your file where the failing traffic is routed; apply it to a "
        "copy, run the failed checks and every check that passed again, and show the diff "
        "and before -> after. Nothing of yours changes without --write, and only a proven "
        "patch is ever written. Either --proxy and --config (your own config), or a matrix "
        "and --only (its targets). Exit code 0: proven, or nothing to fix; 1: anything left.",
    )
    fix.add_argument("matrix", nargs="?", type=Path, metavar="MATRIX")
    fix.add_argument(
        "--only",
        action="append",
        metavar="PROXY[/SETUP]",
        help="with a matrix: fix only these targets (repeatable)",
    )
    _own_config(fix, required=False)
    fix.add_argument(
        "--write",
        action="store_true",
        help="apply the proven patch to your files (a .bak copy of each beside it)",
    )
    _common(fix)


def cmd_fix(args: argparse.Namespace, console: Console) -> int:
    own = args.proxy is not None or args.config
    if own and (args.matrix is not None or args.only):
        raise UsageError(
            "fix takes either --proxy and --config, or a matrix and --only, not both",
            fix="drop MATRIX/--only to fix your own config, or --proxy/--config for a matrix's",
        )
    if own and not (args.proxy and args.config):
        raise UsageError(
            "fix --proxy needs --config and --config needs --proxy",
            fix="e.g. proxytest fix --proxy nginx --config nginx.conf",
        )
    matrix = None if own else load_matrix(_matrix_file(args.matrix), tuple(ADAPTERS))
    targets = [_own_target(args)] if matrix is None else select_targets(matrix.targets, args.only)
    options = _run_options(args, matrix, raise_rejected=bool(own))
    notices = check_targets(targets, options)
    _usable_report_dir(args.report_dir)
    _usable_json(args.json)
    _print_notices(notices)
    console.print(
        f"proxytest {VERSION} fix: {len(targets)} targets × {len(options.checks)} checks, "
        "then the patched copies"
    )
    result = asyncio.run(_main_task(fix_targets(
        targets, options, write=args.write,
        before_progress=_LineProgress(console, "first run"),
        after_progress=_LineProgress(console, "patched copy"),
    )))  # fmt: skip
    return _report(args, result, console)


def _env_option(item: str) -> tuple[str, str]:
    """``--env KEY=VALUE`` as a pair, or a usage error naming the fix."""
    name, sep, value = item.partition("=")
    problem = env_name_problem(name) if sep else f"--env {item!r} has no `=`"
    if problem:
        raise UsageError(f"--env {item!r}: {problem}", fix=f"write KEY=VALUE; {ENV_NAME_FIX}")
    return name, value


# -- shards and merging -------------------------------------------------------------------
def _shard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="run the K-th of N parts of the targets (round robin in the matrix's order), "
        "for N parallel CI jobs; merge their JSON with proxytest report --merge",
    )


def _merge_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--merge",
        action="extend",
        nargs="+",
        type=Path,
        default=[],
        metavar="MORE.json",
        help="merge these reports with RESULTS.json into one (the shards of one matrix)",
    )


def _as_shard(result: RunResult, shard: tuple[Shard, Sequence[TargetSpec]] | None) -> RunResult:
    """A shard's result names the shard and the whole selection (for the merge)."""
    if shard is None:
        return result
    part, selection = shard
    return replace(result, shard=str(part), matrix_targets=tuple(t.id for t in selection))


def _run_shard(
    args: argparse.Namespace,
    shard: Shard,
    targets: list[TargetSpec],
    matrix: Matrix,
    console: Console,
) -> int:
    picked = shard.pick(targets)
    if picked:
        ids = ", ".join(t.id for t in picked)
        console.print(f"shard {shard}: {len(picked)} of {len(targets)} targets: {ids}")
    return _execute(args, picked, matrix, console, shard=(shard, targets))


def _empty_shard(
    args: argparse.Namespace, shard: tuple[Shard, Sequence[TargetSpec]], console: Console
) -> int:
    """CI job matrices are static: more shards than targets is not an error. The
    empty shard still writes its (empty) report, so the merge sees every shard."""
    part, selection = shard
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"notice: shard {part} has no targets (the run selected {len(selection)}); "
        "nothing to measure",
        markup=False,
    )
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    result = _as_shard(RunResult(VERSION, started_at, 0.0, ()), shard)
    if args.json:
        write_json(result, args.json)
        console.print(f"JSON report: {args.json}")
    _write_reports(result.to_json(), args.report_dir, console)
    return EXIT_OK


# -- report ---------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace, console: Console) -> int:
    if args.results is None and not args.merge:
        raise UsageError(
            "no report named",
            fix="proxytest report RESULTS.json [--merge MORE.json …] [--report-dir DIR]",
        )
    if not args.merge:
        data, result = read_report(args.results)
    else:
        data, result = _merged(([args.results] if args.results else []) + args.merge)
    print_report(console, result)
    _write_reports(data, args.report_dir, console)
    return result.exit_code


def _merged(paths: Sequence[Path]) -> tuple[dict[str, Any], RunResult]:
    """Read every report (each validated), then merge them; notices go to stderr."""
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    seen: dict[Path, Path] = {}
    reports = []
    for path in paths:
        key = path.resolve()
        if key in seen:
            errors.print(f"notice: {path}: named twice, merged once", markup=False)
            continue
        seen[key] = path
        reports.append((path, read_report(path)[0]))
    data, notices = merge_reports(reports)
    for notice in notices:
        errors.print(f"notice: {notice}", markup=False)
    return data, run_from_json(data, "the merged report")


# -- list ----------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace, console: Console) -> int:
    async def versions() -> dict[str, tuple[str, str]]:
        local = LocalRuntime()
        found: dict[str, tuple[str, str]] = {}
        for name, adapter in ADAPTERS.items():
            try:
                binary = adapter.find_binary()
            except BinaryNotFound as exc:
                found[name] = ("missing", exc.install_hint)
                continue
            found[name] = (await local.version(adapter, binary) or "?", str(binary))
        return found

    from .runtimes import docker

    images = check_images(_images(args.image))
    engine = docker.engine()
    problem = engine.unavailable()

    def image_state(name: str) -> str:
        image = images.get(name) or ADAPTERS[name].default_image
        if problem:
            return f"{image} (no engine)"
        return f"{image} ({'present' if engine.image_present(image) else 'not in the engine'})"

    proxies = Table(title="proxies", title_justify="left")
    for column in ("proxy", "version", "binary or how to install", "docker image", "setups"):
        proxies.add_column(column)
    proxies_dir = _proxies_dir(args.proxies_dir)
    for name, (version, where) in asyncio.run(versions()).items():
        style = "red" if version == "missing" else ""
        setups = ", ".join(setups_of(proxies_dir, name)) or "-"
        proxies.add_row(name, version, where, image_state(name), setups, style=style)
    console.print(proxies)
    if args.proxies_dir is None and proxies_dir != Path(PROXIES):
        console.print(
            f"setups: the ones shipped with proxytest ({proxies_dir}); "
            "proxytest init copies them here to edit",
            style="dim",
        )
    if problem:
        console.print(f"docker runtime: {problem}", style="dim")
    checks = Table(title="checks", title_justify="left")
    checks.add_column("check")
    checks.add_column("what it detects")
    for check in CHECKS.values():
        checks.add_row(check.id, check.description)
    console.print(checks)
    return EXIT_OK


def _proxies_dir(named: Path | None) -> Path:
    """The setups to list: the folder named, else ./proxies, else the packaged ones."""
    if named is not None:
        return named
    return Path(PROXIES) if Path(PROXIES).is_dir() else starter_proxies()


# -- init ------------------------------------------------------------------------------
def _init_parser(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="copy the default matrix and setups into a folder, to edit",
        description="Copy the default matrix.yaml and proxies/ that ship with proxytest "
        "into DIR (default: the current folder), for you to edit and run.",
    )
    init.add_argument("folder", nargs="?", type=Path, default=Path("."), metavar="DIR")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")


def cmd_init(args: argparse.Namespace, console: Console) -> int:
    folder: Path = args.folder
    written = copy_starter(folder, force=args.force)
    setups = [p for p in written if p.name != MATRIX]
    console.print(f"wrote {folder / MATRIX}", markup=False)
    console.print(
        f"wrote {folder / PROXIES}/ ({len(setups)} files: "
        f"{len({p.parent.name for p in setups})} proxies' setups)",
        markup=False,
    )
    run = (
        "proxytest run"
        if folder.resolve() == Path.cwd().resolve()
        else (f"proxytest run {folder / MATRIX}")
    )
    console.print(f"next: edit {folder / MATRIX}, then: {run}", markup=False)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 132))
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if args.command == "run":
            return cmd_run(args, console)
        if args.command == "check":
            return cmd_check(args, console)
        if args.command == "report":
            return cmd_report(args, console)
        if args.command == "init":
            return cmd_init(args, console)
        if args.command == "probe":
            return cmd_probe(args, console)
        if args.command == "fix":
            return cmd_fix(args, console)
        if args.command == "origin":
            return origin_cli.run(args)
        return cmd_list(args, console)
    except ConfigRejected as exc:
        errors.print(f"proxytest: {exc.as_usage_error()}", markup=False)
        return EXIT_USAGE
    except UsageError as exc:
        errors.print(f"proxytest: {exc}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print(f"proxytest: interrupted; {_stopped(args)}", markup=False)
        return 130
    except asyncio.CancelledError:  # SIGTERM
        errors.print(f"proxytest: terminated; {_stopped(args)}", markup=False)
        return 143


def _stopped(args: argparse.Namespace) -> str:
    if args.command != "probe":
        return "every proxy it started was stopped"
    kept = f"what was measured is in {args.json}" if args.json else "nothing was saved (no --json)"
    return f"the probe's connections were closed; {kept}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
