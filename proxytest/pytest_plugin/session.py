"""The plugin's settings, and the matrix run that happens once per pytest session.

Every matrix test needs the verdict of one target × check. The first matrix
test to run starts the whole selected matrix at once (the runner overlaps the
targets far better than test-by-test launches could), and every later test
reads its verdict from that run.

Under pytest-xdist each worker collects the same tests, so the run is shared
through a folder the controller creates: the first worker to need a verdict
takes a file lock, runs the matrix and writes ``results.json``; the others wait
on the lock and read it. Every target is launched once per session, not once
per worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import queue
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ..adapters import ADAPTERS
from ..adapters.base import Notice
from ..checks import Check
from ..matrix import Matrix, TargetSpec, load_matrix, select_targets
from ..options import RunOptions, check_targets
from ..reports import run_from_json
from ..reports.files import write_text_atomic
from ..results import CheckResult, RunResult, TargetResult
from ..runner import run_targets
from ..settings import Settings
from .service import Service


def plugin_flag(key: str) -> str:
    """How the plugin spells setting ``key``: ``max_hold`` is ``--proxytest-max-hold``."""
    return "--proxytest-" + key.replace("_", "-")


def service_for(config: pytest.Config) -> Service:
    """The session's background loop, started on first use."""
    service = config.stash.get(SERVICE, None)
    if service is None:
        service = config.stash[SERVICE] = Service()
    return service


@dataclass(frozen=True)
class PluginSettings:
    """What the options and ini keys ask for, validated once at start-up."""

    matrix_path: Path
    matrix: Matrix
    targets: tuple[TargetSpec, ...]
    run_options: RunOptions
    report_dir: Path | None
    notices: tuple[Notice, ...] = ()  # lines of the configs that were neutralised

    @property
    def checks(self) -> tuple[Check[Any], ...]:
        return self.run_options.checks

    @property
    def runtime(self) -> str | None:
        return self.run_options.runtime

    @property
    def settings(self) -> Settings:
        return self.run_options.settings

    @classmethod
    def build(
        cls,
        matrix_path: Path,
        *,
        runtime: str | None,
        only: Iterable[str],
        checks: Iterable[str],
        max_hold: str | None,
        report_dir: Path | None,
        fanout_max_n: str | None = None,
        skip_missing: bool = False,
        config_in_reports: bool = True,
    ) -> PluginSettings:
        """Load the matrix and apply the options; UsageError names what to fix."""
        matrix = load_matrix(matrix_path, tuple(ADAPTERS))
        targets = tuple(select_targets(matrix.targets, list(only), option=plugin_flag("only")))
        options = RunOptions.from_matrix(
            matrix,
            checks=tuple(checks),
            runtime=runtime,
            max_hold=max_hold,
            fanout_max_n=fanout_max_n,
            skip_missing=skip_missing,
            config_in_reports=config_in_reports,
            flag=plugin_flag,
        )
        notices = check_targets(targets, options)
        return cls(
            matrix_path=matrix_path,
            matrix=matrix,
            targets=targets,
            run_options=options,
            report_dir=report_dir,
            notices=notices,
        )

    def options(self, checks: tuple[Check[Any], ...] | None = None) -> RunOptions:
        """The run's options, for ``checks`` only when given."""
        return self.run_options if checks is None else replace(self.run_options, checks=checks)


class _Progress:
    """Counts launches (for the summary) and queues a line per finished target.

    The runner calls it on the service thread; ``flush`` prints from pytest's.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.launches: dict[str, int] = {}

    def write(self, line: str) -> None:
        self._lines.put(line)

    def flush(self) -> None:
        while not self._lines.empty():
            self._write(self._lines.get())

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        if phase == "starting":
            self.launches[target.id] = self.launches.get(target.id, 0) + 1

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        pass

    def target_done(self, result: TargetResult) -> None:
        self.write(
            f"proxytest: {result.id} {result.status.value} ({result.tally}) "
            f"{result.duration_s:.1f} s"
        )


@dataclass
class MatrixRun:
    """The session's one matrix run, shared by every worker through ``shared_dir``."""

    settings: PluginSettings
    shared_dir: Path
    service: Callable[[], Service]
    write: Callable[[str], None] = print
    _run: RunResult | None = field(default=None, init=False)
    _results: dict[tuple[str, str], CheckResult] = field(default_factory=dict, init=False)
    _targets: dict[str, TargetResult] = field(default_factory=dict, init=False)

    @property
    def results_path(self) -> Path:
        return self.shared_dir / "results.json"

    @property
    def launches_path(self) -> Path:
        return self.shared_dir / "launches.json"

    def record_fixture_launch(self, target_id: str) -> None:
        """Note a target started for the ``proxytest_target`` fixture (any worker)."""
        with open(self.shared_dir / "fixture-launches.txt", "a", encoding="utf-8") as handle:
            handle.write(target_id + "\n")  # one short append: atomic between workers

    def fixture_launches(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            text = (self.shared_dir / "fixture-launches.txt").read_text(encoding="utf-8")
            for line in text.splitlines():
                counts[line] = counts.get(line, 0) + 1
        return counts

    @property
    def failure_path(self) -> Path:
        return self.shared_dir / "failure.txt"

    def ensure(self, wanted: Iterable[tuple[TargetSpec, Check[Any]]]) -> None:
        """Run the matrix for ``wanted`` unless this session has its results already."""
        if self._run is None:
            self._load(list(wanted))

    def verdict(
        self, target: TargetSpec, check: Check[Any], wanted: Iterable[tuple[TargetSpec, Check[Any]]]
    ) -> tuple[TargetResult, CheckResult]:
        """The target's and the check's result for one test; runs the matrix on first use."""
        self.ensure(wanted)
        result = self._results.get((target.id, check.id))
        if result is None:
            pytest.fail(f"the matrix run has no result for {target.id} {check.id}", pytrace=False)
        return self._targets[target.id], result

    def result_of(self, target: TargetSpec, check: Check[Any]) -> CheckResult | None:
        """The check's result once the run is known, else None (never starts a run)."""
        return self._results.get((target.id, check.id))

    def _load(self, wanted: list[tuple[TargetSpec, Check[Any]]]) -> None:
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        with open(self.shared_dir / "run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other workers wait here while one runs
            if self.failure_path.exists():
                pytest.fail(self.failure_path.read_text(encoding="utf-8"), pytrace=False)
            if not self.results_path.exists():
                self._execute(wanted)
        # Every worker reads the run back as the library's types: one rule for
        # what "as expected" means, the CLI's (CheckResult.as_expected).
        run = run_from_json(
            json.loads(self.results_path.read_text(encoding="utf-8")), self.results_path
        )
        for target in run.targets:
            self._targets[target.id] = target
            for result in target.results:
                self._results[(target.id, result.check)] = result
        self._run = run

    def _execute(self, wanted: list[tuple[TargetSpec, Check[Any]]]) -> None:
        ids = {t.id for t, _ in wanted}
        checks = {c.id for _, c in wanted}
        targets = [t for t in self.settings.targets if t.id in ids]
        chosen = tuple(c for c in self.settings.checks if c.id in checks)
        progress = _Progress(self.write)
        self.write(
            f"proxytest: running {_count(len(targets), 'target')} × {_count(len(chosen), 'check')} "
            f"(max-hold {self.settings.settings.max_hold_s:g} s)"
        )
        started = time.monotonic()
        try:
            result: RunResult = self.service().call(
                run_targets(targets, self.settings.options(chosen), progress), tick=progress.flush
            )
            progress.flush()
        except Exception:
            write_text_atomic(
                self.failure_path, "the proxytest matrix run failed:\n" + traceback.format_exc()
            )
            raise
        write_text_atomic(self.results_path, json.dumps(result.to_json(), indent=2) + "\n")
        launches = {"launches": progress.launches, "run_s": round(time.monotonic() - started, 2)}
        write_text_atomic(self.launches_path, json.dumps(launches) + "\n")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


SETTINGS = pytest.StashKey[PluginSettings]()
RUN = pytest.StashKey[MatrixRun]()
SERVICE = pytest.StashKey[Service]()
