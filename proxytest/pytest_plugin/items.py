"""The matrix as pytest tests: one item per check × target, named like a parametrized test.

``test_sse_stream[nginx-realtime]`` reads the verdict of ``sse.stream`` on the
target ``nginx/realtime`` from the session's matrix run and turns it into a
pytest outcome:

==========================  =================================================
verdict                     outcome
==========================  =================================================
pass                        passed (XPASS when the matrix expected a failure)
fail, degraded              failed, with the summary and the hint
what the matrix expects     xfailed, with the summary (``expect: error`` too)
skip                        skipped, with the reason (not applicable)
skip: the target not run    failed: its binary, image or engine is missing,
                            unless the target is ``optional: true`` or
                            ``--proxytest-skip-missing`` is given
error                       error (raised in set-up), with the reason
==========================  =================================================

"What the matrix expects" is ``CheckResult.as_expected``: the same rule as the
command line's exit code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from ..checks import Check
from ..matrix import TargetSpec
from ..results import CheckResult, TargetResult, TargetStatus, Verdict
from .session import MatrixRun

MARKER = "proxytest"


class ExpectedVerdict(Exception):
    """Never raised: naming it in the xfail marker makes other failures count as failures.

    Expected verdicts call ``pytest.xfail`` (which carries the summary); failures
    and errors call ``pytest.fail(..., pytrace=False)`` so the report is our text,
    not a traceback of the plugin.
    """


def wanted_by(items: Iterable[pytest.Item], run: MatrixRun) -> list[tuple[TargetSpec, Check[Any]]]:
    """The (target, check) pairs the session's selected matrix tests need."""
    return [
        (item.target, item.check)
        for item in items
        if isinstance(item, MatrixItem) and item.run is run
    ]


def test_name(check: Check[Any]) -> str:
    return "test_" + check.id.replace(".", "_").replace("-", "_")


def param_id(target: TargetSpec) -> str:
    return target.id.replace("/", "-")


class MatrixFile(pytest.File):
    """The matrix file, collected as a module of generated tests."""

    run: MatrixRun

    def collect(self) -> Iterator[MatrixItem]:
        settings = self.run.settings
        for check in settings.checks:
            for target in settings.targets:
                yield MatrixItem.from_parent(
                    self,
                    name=f"{test_name(check)}[{param_id(target)}]",
                    target=target,
                    check=check,
                    run=self.run,
                )


class MatrixItem(pytest.Item):
    def __init__(
        self, *, target: TargetSpec, check: Check[Any], run: MatrixRun, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.check = check
        self.run = run
        self.add_marker(MARKER)
        self.keywords[target.proxy] = True
        self.keywords[check.id] = True
        expected = target.expected(check.id)
        if expected is not None:
            # Only our ExpectedVerdict counts as the expected failure; a different
            # verdict still fails, and a pass shows up as XPASS (a stale entry).
            self.add_marker(
                pytest.mark.xfail(
                    reason=f"the matrix expects {expected.value}; a pass means its expect: "
                    "entry is stale",
                    raises=ExpectedVerdict,
                    strict=False,
                )
            )
        self._target: TargetResult | None = None
        self._result: CheckResult | None = None

    def setup(self) -> None:
        wanted = wanted_by(self.session.items, self.run)
        self._target, self._result = self.run.verdict(self.target, self.check, wanted)
        result = self._result
        self.user_properties.append(("verdict", result.verdict.value))
        self.user_properties.append(
            ("expected", result.expected.value if result.expected else None)
        )
        for name, value in result.metrics.items():
            self.user_properties.append((name, value))
        if result.verdict == Verdict.ERROR and not result.as_expected:
            pytest.fail(self._report(), pytrace=False)

    def runtest(self) -> None:
        result = self._result
        assert result is not None
        if result.verdict == Verdict.PASS:
            return
        if result.not_run:
            pytest.fail(
                f"{self.target.id} could not run, so {self.check.id} measured nothing: "
                f"{self._target.reason if self._target else result.summary}\n"
                "install what is missing, mark the target `optional: true` in the matrix, "
                "or pass --proxytest-skip-missing",
                pytrace=False,
            )
        if result.verdict == Verdict.SKIP:
            pytest.skip(result.summary or "skipped")
        if result.as_expected:
            pytest.xfail(f"{result.verdict.value} as the matrix expects: {result.summary}")
        pytest.fail(self._report(), pytrace=False)

    def _report(self) -> str:
        result, target = self._result, self._target
        assert result is not None and target is not None
        lines = [f"{self.target.id} {self.check.id}: {result.verdict.value} — {result.summary}"]
        if result.expected:
            lines.append(f"expected by the matrix: {result.expected.value}")
        if result.hint:
            lines.append(f"hint: {result.hint}")
        if result.metrics:
            lines.append("metrics: " + ", ".join(f"{k}={v}" for k, v in result.metrics.items()))
        version = target.proxy_version or "version unknown"
        lines.append(f"proxy: {self.target.proxy} {version} ({target.runtime})")
        reason = target.reason or ""
        first, _, more = reason.partition("\n")
        if target.status == TargetStatus.ERROR and reason:
            # The first line is the summary already; the rest is the proxy's log.
            lines.append(more if first in result.summary else f"target error: {reason}")
        return "\n".join(lines)

    def annotate(self) -> None:
        """Once the run is known: a skip verdict becomes a skip mark (reported at this test)."""
        result = self.run.result_of(self.target, self.check)
        if result is not None and result.verdict == Verdict.SKIP and not result.not_run:
            self.add_marker(pytest.mark.skip(reason=result.summary or "skipped"))

    def reportinfo(self) -> tuple[Any, int, str]:
        """Where a report points: the target's entry in the matrix file."""
        _, _, line = (self.target.source or "").rpartition(":")
        return (
            self.path,
            int(line) - 1 if line.isdigit() else 0,
            f"{self.check.id} on {self.target.id}",
        )
