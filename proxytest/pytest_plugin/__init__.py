"""pytest plugin: the proxy matrix as ordinary tests, plus fixtures for your own.

Registered through the ``pytest11`` entry point; it does nothing until a matrix
is named::

    pytest --proxytest-matrix matrix.yaml          # or: proxytest_matrix = matrix.yaml

Each option is a flag with a matching ini key:

========================  =========================  ================================
flag                      ini key                    meaning
========================  =========================  ================================
--proxytest-matrix        proxytest_matrix           the matrix file
--proxytest-runtime       proxytest_runtime          local | docker | auto
--proxytest-only          proxytest_only             PROXY[/SETUP] targets (repeatable)
--proxytest-checks        proxytest_checks           check ID globs (repeatable)
--proxytest-max-hold      proxytest_max_hold         seconds a long-lived check holds
--proxytest-fanout-max-n  proxytest_fanout_max_n     subscribers load.fanout steps up to
--proxytest-report-dir    proxytest_report_dir       write CI reports here
--proxytest-skip-missing  proxytest_skip_missing     a missing proxy skips, not fails
--proxytest-no-config-    proxytest_no_config_in_    leave the config files out of
in-reports                reports                    the reports (a bool ini key)
========================  =========================  ================================

The matrix's tests are collected when the flag names it, or when the ini key
does and pytest runs its default paths (bare ``pytest``); ``pytest tests/x.py``
with only the ini key runs just that file. Outcomes: see :mod:`.items`.
Fixtures: see :mod:`.fixtures`. Under pytest-xdist the matrix runs once per
session: see :mod:`.session`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from ..errors import UsageError
from ..runtimes import RUNTIMES, make_run_dir, remove_run_dir
from .fixtures import (
    TARGETS_MARKER,
    parametrize_targets,
    proxytest_origin,
    proxytest_sse,
    proxytest_target,
    proxytest_ws,
)
from .items import MARKER, MatrixFile, MatrixItem, wanted_by
from .session import RUN, SERVICE, SETTINGS, MatrixRun, PluginSettings, read_json, service_for

__all__ = [
    "proxytest_origin",
    "proxytest_sse",
    "proxytest_target",
    "proxytest_ws",
]

SHARED_DIR = pytest.StashKey[Path]()
OWN_SHARED_DIR = pytest.StashKey[bool]()
OLD_SIGTERM = pytest.StashKey[Any]()


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job) while proxies run: unwind like Ctrl-C, stopping them."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM: every proxy proxytest started was stopped")


_WORKER_KEY = "proxytest_shared_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("proxytest", "proxytest: reverse proxies under real-time traffic")

    def option(flag: str, ini: str, help: str, *, kind: str = "string", **kwargs: Any) -> None:
        group.addoption(flag, dest=ini, help=f"{help} (ini: {ini})", **kwargs)
        parser.addini(ini, help, type=kind)  # type: ignore[arg-type]

    option("--proxytest-matrix", "proxytest_matrix", "the proxytest matrix file", metavar="PATH")
    option(
        "--proxytest-runtime",
        "proxytest_runtime",
        "run proxies as local processes, containers, or auto",
        choices=RUNTIMES,
    )
    option(
        "--proxytest-only",
        "proxytest_only",
        "run only these targets, PROXY[/SETUP]",
        kind="args",
        action="append",
        metavar="PROXY[/SETUP]",
    )
    option(
        "--proxytest-checks",
        "proxytest_checks",
        "check ID globs to run, e.g. 'sse.*'",
        kind="args",
        action="append",
        metavar="GLOB",
    )
    option(
        "--proxytest-max-hold",
        "proxytest_max_hold",
        "longest time a long-lived check holds a connection, in seconds",
        metavar="SECONDS",
    )
    option(
        "--proxytest-fanout-max-n",
        "proxytest_fanout_max_n",
        "subscribers per protocol that load.fanout steps up to",
        metavar="N",
    )
    group.addoption(
        "--proxytest-skip-missing",
        dest="proxytest_skip_missing",
        action="store_true",
        default=None,
        help="a target whose binary, image or Docker engine is missing is skipped instead "
        "of failing its tests (ini: proxytest_skip_missing)",
    )
    parser.addini(
        "proxytest_skip_missing",
        "a target whose binary, image or Docker engine is missing is skipped, not failed",
        type="bool",
        default=False,
    )
    option(
        "--proxytest-report-dir",
        "proxytest_report_dir",
        "write results.json and the CI reports into this folder",
        metavar="DIR",
    )
    option(
        "--proxytest-no-config-in-reports",
        "proxytest_no_config_in_reports",
        "leave the config files out of the reports (else shown, secrets masked)",
        kind="bool",
        action="store_true",
        default=None,  # None: the ini key decides
    )


def _value(config: pytest.Config, name: str) -> tuple[Any, Path]:
    """An option's value and the folder a relative path in it is relative to."""
    flag = config.getoption(name)
    if flag not in (None, []):
        return flag, config.invocation_params.dir
    base = config.inipath.parent if config.inipath else config.rootpath
    return config.getini(name) or None, base


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a test of the proxytest matrix (one check on one proxy target)"
    )
    config.addinivalue_line(
        "markers",
        f"{TARGETS_MARKER}(*globs): run this test's proxytest_target only for matching "
        "target IDs, e.g. 'nginx/*'",
    )
    matrix, base = _value(config, "proxytest_matrix")
    if not matrix:
        return
    matrix_path = (base / matrix).resolve()
    report_dir, report_base = _value(config, "proxytest_report_dir")
    try:
        settings = PluginSettings.build(
            matrix_path,
            runtime=_value(config, "proxytest_runtime")[0],
            only=_value(config, "proxytest_only")[0] or (),
            checks=_value(config, "proxytest_checks")[0] or (),
            max_hold=_value(config, "proxytest_max_hold")[0],
            fanout_max_n=_value(config, "proxytest_fanout_max_n")[0],
            skip_missing=bool(_value(config, "proxytest_skip_missing")[0]),
            config_in_reports=not _value(config, "proxytest_no_config_in_reports")[0],
            report_dir=(report_base / report_dir).resolve() if report_dir else None,
        )
    except UsageError as exc:
        raise pytest.UsageError(f"proxytest: {exc}") from None
    config.stash[SETTINGS] = settings
    # pytest leaves SIGTERM to the default action, which would end the process
    # without running any clean-up: proxies (and their process groups) would stay.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and _in_main_thread():
        config.stash[OLD_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None and _WORKER_KEY in worker_input:
        config.stash[SHARED_DIR] = Path(worker_input[_WORKER_KEY])
    else:
        # Marked as this session's: a later run removes it should pytest be killed.
        config.stash[SHARED_DIR] = make_run_dir("pytest")
        config.stash[OWN_SHARED_DIR] = True
    config.stash[RUN] = MatrixRun(
        settings, config.stash[SHARED_DIR], lambda: service_for(config), _writer(config)
    )
    _add_matrix_to_args(
        config, matrix_path, from_flag=config.getoption("proxytest_matrix") is not None
    )


def _add_matrix_to_args(config: pytest.Config, matrix_path: Path, *, from_flag: bool) -> None:
    """Collect the matrix file too when the flag names it or pytest runs its default paths."""
    if not from_flag and config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if matrix_path == path or path in matrix_path.parents:
            return  # collected anyway
    config.args.append(str(matrix_path))


def _writer(config: pytest.Config) -> Any:
    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or hasattr(config, "workerinput"):
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)

    return write


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist controller: hand each worker the folder of the shared run."""
    shared = node.config.stash.get(SHARED_DIR, None)
    if shared is not None:
        node.workerinput[_WORKER_KEY] = str(shared)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> MatrixFile | None:
    run = parent.config.stash.get(RUN, None)
    if run is None or file_path.resolve() != run.settings.matrix_path:
        return None
    collector = MatrixFile.from_parent(parent, path=file_path)
    collector.run = run
    return collector


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_targets(metafunc)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Run the selected matrix before the first test, so its progress reads cleanly.

    (pytest-xdist workers: the first runs it, the others wait for its results.)
    Knowing the verdicts before the tests start lets a skip be a skip mark.
    """
    run = session.config.stash.get(RUN, None)
    if run is None or session.config.option.collectonly:
        return
    wanted = wanted_by(session.items, run)
    if not wanted:
        return
    with contextlib.suppress(Exception):  # recorded; every matrix test reports it
        run.ensure(wanted)
    for item in session.items:
        if isinstance(item, MatrixItem):
            item.annotate()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    settings = config.stash.get(SETTINGS, None)
    if settings is None:
        return None
    checks = ", ".join(c.id for c in settings.checks)
    return [
        f"proxytest: matrix {settings.matrix_path} ({len(settings.targets)} target(s), "
        f"runtime {settings.runtime or 'per matrix'}, max-hold {settings.settings.max_hold_s:g} s)",
        f"proxytest: checks {checks}",
        *(f"proxytest: notice: {notice}" for notice in settings.notices),
    ]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None or hasattr(config, "workerinput"):
        return
    launches = read_json(run.launches_path)
    if launches is not None:
        counts = ", ".join(f"{t} ×{n}" for t, n in sorted(launches["launches"].items()))
        terminalreporter.write_line(
            f"proxytest: matrix run {launches['run_s']:g} s; launches: {counts or 'none'}"
        )
    started = run.fixture_launches()
    if started:
        counts = ", ".join(f"{t} ×{n}" for t, n in sorted(started.items()))
        terminalreporter.write_line(f"proxytest: targets started for fixtures: {counts}")
    if run.settings.report_dir is not None and run.results_path.exists():
        terminalreporter.write_line(f"proxytest: reports in {run.settings.report_dir}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(RUN, None)
    if run is None or hasattr(config, "workerinput"):
        return
    if run.settings.report_dir is not None and run.results_path.exists():
        from ..reports import write_reports

        data = read_json(run.results_path)
        if data is not None:
            write_reports(data, run.settings.report_dir)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def pytest_unconfigure(config: pytest.Config) -> None:
    service = config.stash.get(SERVICE, None)
    if service is not None:
        service.close()
    if OLD_SIGTERM in config.stash and _in_main_thread():
        signal.signal(signal.SIGTERM, config.stash[OLD_SIGTERM])
    if config.stash.get(OWN_SHARED_DIR, False):
        remove_run_dir(config.stash[SHARED_DIR])
