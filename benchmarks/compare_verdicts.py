"""Compare the verdicts of two or more JSON reports of the same matrix.

    python benchmarks/compare_verdicts.py BEFORE.json AFTER.json [MORE.json ...]

For a change that must not change behaviour (a refactor), run the default
matrix before and after (`proxytest run --json before.json`, then again) and
compare: every target × check must have the same verdict in every report. A
timing verdict that flips between two runs of the *same* code is noise, not a
regression: compare two runs of the old code too before blaming the change.

Prints one line per target × check whose verdict differs (and per target whose
status differs), then a count. Exit code 0 when every verdict agrees, 1 when
one differs, 2 when a report cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxytest.errors import ReportError
from proxytest.reports import read_report
from proxytest.results import RunResult


def verdicts(run: RunResult) -> dict[tuple[str, str], str]:
    """(target, check) -> verdict; a target's status under the pseudo-check ``(status)``."""
    table: dict[tuple[str, str], str] = {}
    for target in run.targets:
        table[(target.id, "(status)")] = target.status.value
        for result in target.results:
            table[(target.id, result.check)] = result.verdict.value
    return table


def differences(runs: list[dict[tuple[str, str], str]]) -> list[tuple[str, str, list[str]]]:
    keys = sorted({key for run in runs for key in run})
    found = []
    for target, check in keys:
        seen = [run.get((target, check), "(absent)") for run in runs]
        if len(set(seen)) > 1:
            found.append((target, check, seen))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    args = parser.parse_args(argv)
    if len(args.reports) < 2:
        parser.error("name at least two reports")
    try:
        runs = [verdicts(read_report(path)[1]) for path in args.reports]
    except ReportError as exc:
        print(f"compare_verdicts: {exc}", file=sys.stderr)
        return 2
    found = differences(runs)
    names = " | ".join(path.name for path in args.reports)
    for target, check, seen in found:
        print(f"{target:<24} {check:<26} {' | '.join(seen)}   ({names})")
    compared = len({key for run in runs for key in run})
    print(f"{len(found)} of {compared} target × check verdicts differ across {len(runs)} reports")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
